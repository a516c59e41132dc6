"""A synthetic Bilibili world: uploaders, videos, collector snapshots and hot-list entries.

The real API gives no labelled early trajectories at scale, so demos, tests and benchmarks run on a
world whose hidden rule is known. Its hot videos are calibrated against the real 综合热门 captures
(`hotvideo simulate --calibrate-against`, ingest/calibrate.py); docs/simulator.md lists every number.

How a video behaves:
- its uploader's followers are log-normal over seven orders of magnitude; it is published on the
  Beijing evening/noon rhythm and the weekly rhythm, into a real sub-zone with the zone's durations;
- views are a fan wave from publication (sized by followers) plus a recommendation wave that starts
  a hidden ~1–7 h later (sized by a hidden quality, followers, zone and the hour), observed with
  Poisson and burst noise; likes, coins, … are per-view rates drawn as Poisson increments;
- at every hourly hot-list refresh in the first day a hidden score (last-hour growth, views so far,
  engagement, quality, refresh noise) is compared with a threshold calibrated so that
  `hot_base_rate` of videos enter; an entered video stays for a hidden number of refreshes and gets
  extra exposure views (the leakage seed 001 warns about);
- the collector adds noise on request: duplicates, out-of-order and late delivery, missed snapshots,
  and malformed messages.

Memory does not grow with the number of videos: videos are drawn one publication hour at a time,
uploaders' attributes are a hash of their index, bvids are a bijection of the video index, and only
videos still being observed (24 h) or listed are held, plus one byte per uploader (profile published).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from core.events import Event, HotListEntry, Snapshot, UpProfile
from core.reference import BEIJING, BEIJING_OFFSET_S
from ingest.zones import HOUR_WEIGHTS, WEEKDAY_WEIGHTS, ZONES, SubZone, Zone

__all__ = ["DEFAULT_START_TS", "ZONES", "SubZone", "WorldConfig", "Zone", "generate"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_START_TS = int(datetime(2026, 11, 2, tzinfo=BEIJING).timestamp())
"""2026-11-02T00:00:00+08:00: a Monday, Beijing midnight, so the first day has a full rhythm."""
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

_TITLE_HOOKS = (
    "原来这么简单",
    "一口气看完",
    "全网最细",
    "我后悔没早点知道",
    "这次真的不一样",
    "看完沉默了",
    "新手必看",
    "挑战一周",
    "花了三个月",
    "实测对比",
)
_NAME_PARTS = (
    ("阿", "小", "大", "老", "一只", "今天也要", "是", "不会飞的"),
    ("猫", "鱼", "熊", "狐狸", "星星", "柚子", "咸鱼", "青柠", "山竹", "团子"),
    ("酱", "君", "同学", "呀", "日常", "实验室", "Studio", "本人"),
)

# The hidden model; docs/simulator.md gives the reason for each number.
FOLLOWER_LOG10_MEDIAN, FOLLOWER_LOG10_SIGMA = 2.58, 1.44
"""uploaders of new videos: log10 followers ~ Normal(2.58, 1.44), clipped to [0, 7.9]"""
_UPLOAD_SKEW = 1.3
"""uploader index = n_up · U^skew: low indices upload more, a few uploaders post many videos"""
_FAN_BASE, _FAN_PER_FOLLOWER = 0.25, 0.744
"""log10 fan views = base + elasticity · log10(followers + 100) (+ quality and noise)"""
_REC_BASE, _REC_PER_FOLLOWER, _REC_QUALITY = 0.66, 0.7, 0.55
"""log10 recommended views: driven by the hidden quality far more than by followers"""
_HOUR_EFFECT = 0.3
"""log10 recommendation gain per log10 of viewer traffic (relative to the mean) at publication + 2 h"""
VIEWER_TRAFFIC: tuple[float, ...] = (
    0.75, 0.45, 0.25, 0.15, 0.1, 0.1, 0.15, 0.3, 0.5, 0.7, 0.8, 0.9,
    1.0, 0.95, 0.9, 0.9, 0.95, 1.0, 1.1, 1.25, 1.4, 1.5, 1.45, 1.1,
)  # fmt: skip
"""Relative site traffic per Beijing hour (peak 20–22 h): when the recommendation wave meets viewers."""
_FAN_GAMMA, _REC_GAMMA = 1.0, 1.5
RATE_MEDIANS = np.array([0.038, 0.004, 0.005, 0.0011, 0.0012, 0.0014])
"""median per-view like, coin, favorite, reply, danmaku, share of a new video"""
RATE_SIGMAS = np.array([0.48, 0.95, 0.75, 0.7, 0.9, 0.9])
"""own ln-spread of each rate, on top of the shared engagement factor"""
_RATE_SHARED = 0.35
"""ln-spread of the engagement factor shared by all six rates (beside quality)"""
_ENGAGEMENT_WEIGHTS = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
"""seed 000's engagement: like + 2·coin + favorite + reply + danmaku + share"""
_ENGAGEMENT_REF = float(RATE_MEDIANS @ _ENGAGEMENT_WEIGHTS)
_FAN_BOOST = 0.3
"""early viewers (fans) engage this much more, fading over about two hours"""
_SCORE_VIEWS = 0.73
_SCORE_ENGAGEMENT = 1.63
_SCORE_QUALITY = 0.3
_SCORE_NOISE = 0.15
STAY_MEDIAN_H, STAY_SIGMA = 47.4, 0.8
"""refreshes an entered video stays listed: log-normal, median 47 h (real videos appear in about two
daily captures), longer the more its peak score exceeds the threshold"""
_STAY_PER_EXCESS = 0.5
_HOT_BOOST = 0.27
"""extra views from hot-list exposure, as a share of the natural final views"""
_HOT_BOOST_TAU_H = 12.0
_PILOT_VIDEOS = 20_000
NOISE_SPLIT = {"duplicate": 0.3, "delayed": 0.3, "late": 0.2, "missed": 0.2}
"""how `noise` divides among the collector faults"""
LATE_DELAY_S = (2 * 3600, 8 * 3600)
"""a late snapshot arrives this long after it was observed: past its checkpoint"""


@dataclass(frozen=True)
class WorldConfig:
    """Size, seed, collector cadence, hot-list rule and collector noise of a synthetic world."""

    videos: int = 400
    sim_hours: float = 10.0
    seed: int = 0
    start_ts: int = DEFAULT_START_TS
    snapshot_interval_s: int = 300
    """collector cadence while dense"""
    dense_window_s: int = 6 * 3600
    sparse_interval_s: int = 1800
    observe_window_s: int = 24 * 3600
    """T of the label protocol: snapshots stop this long after publication"""
    first_seen_max_s: int = 300
    """the collector discovers a new upload within this delay (newlist polling)"""
    jitter_s: int = 15
    """collector timing jitter (four times this in the sparse phase)"""
    hot_base_rate: float = 0.01
    """share of videos that ever enter the hot list"""
    hot_refresh_s: int = 3600
    hot_min_age_s: int = 2 * 3600
    hot_max_entry_age_s: int = 24 * 3600
    hot_max_entries: int = 160
    """refreshes a video is reported on the list, at most"""
    videos_per_uploader: float = 1.5
    zones: tuple[Zone, ...] = ZONES
    noise: float = 0.0
    """share of snapshots hit by a collector fault (NOISE_SPLIT: duplicate, delayed, late, missed)"""
    noise_max_delay_s: int = 1800
    """a delayed (out-of-order) snapshot arrives at most this long after it was observed"""
    malformed: float = 0.0
    """share of snapshots followed by a malformed copy (bad bvid, negative count, ts before pubdate)"""

    def __post_init__(self) -> None:
        if self.videos < 0 or self.sim_hours <= 0:
            raise ValueError("videos must be >= 0 and sim_hours > 0")
        if not 0.0 < self.hot_base_rate < 1.0:
            raise ValueError("hot_base_rate must be in (0, 1)")
        if not (0.0 <= self.noise <= 1.0 and 0.0 <= self.malformed <= 1.0):
            raise ValueError("noise and malformed must be in [0, 1]")
        if not self.zones:
            raise ValueError("zones must not be empty")
        if self.videos_per_uploader <= 0 or self.hot_max_entries < 1:
            raise ValueError("videos_per_uploader must be > 0 and hot_max_entries >= 1")
        if self.jitter_s * 2 >= self.snapshot_interval_s:
            raise ValueError("jitter_s must stay below half the snapshot interval (order)")
        if self.noise_max_delay_s < self.snapshot_interval_s:
            raise ValueError("noise_max_delay_s must be >= snapshot_interval_s")

    @property
    def end_ts(self) -> int:
        """World end: nothing is observed after it."""
        return self.start_ts + round(self.sim_hours * 3600)


@dataclass(frozen=True)
class _Curve:
    """Expected views: a fan wave from publication plus a later, quality-driven recommendation wave.

    Fields are arrays (or scalars for one video) that broadcast against the ages.
    """

    fan: Any
    fan_tau_h: Any
    rec: Any
    rec_start_h: Any
    rec_tau_h: Any

    def views(self, age_h: Any) -> FloatArray:
        """Expected cumulative views at `age_h` hours."""
        return _wave(self.fan, self.fan_tau_h, _FAN_GAMMA, age_h) + _wave(
            self.rec, self.rec_tau_h, _REC_GAMMA, age_h - self.rec_start_h
        )

    def pick(self, index: Any) -> _Curve:
        """The curve of one video (int index), a subset, or a broadcastable column (`np.s_[:, None]`)."""
        return _Curve(*(getattr(self, f.name)[index] for f in fields(self)))


def _wave(scale: Any, tau_h: Any, gamma: float, age_h: Any) -> FloatArray:
    """Saturating growth `scale · x / (1 + x)`, `x = (age / tau)^gamma`, zero before age 0."""
    x = (np.maximum(age_h, 0.0) / tau_h) ** gamma
    return scale * x / (1.0 + x)


def _rng(seq: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seq))


_M64 = (1 << 64) - 1


def _uniform(seed: int, index: IntArray, field: int) -> FloatArray:
    """A uniform in (0, 1) per (seed, index, field): splitmix64, so uploaders need no storage."""
    salt = np.uint64((seed * 0x9E3779B97F4A7C15 + field * 0xD1B54A32D192ED03 + 1) & _M64)
    x = index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + salt
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


@dataclass(frozen=True)
class _Uploaders:
    """Attributes of some uploaders, a pure function of (seed, uploader index)."""

    follower: IntArray
    quality: FloatArray

    @classmethod
    def of(cls, seed: int, up: IntArray) -> _Uploaders:
        log_f = FOLLOWER_LOG10_MEDIAN + FOLLOWER_LOG10_SIGMA * ndtri(_uniform(seed, up, 0))
        follower = np.round(10.0 ** np.clip(log_f, 0.0, 7.9)).astype(np.int64)
        return cls(follower=follower, quality=ndtri(_uniform(seed, up, 1)))


def _profile(seed: int, up: int, ts: int) -> UpProfile:
    """The uploader's profile, consistent with the hidden view model."""
    one = np.array([up], dtype=np.int64)
    ups = _Uploaders.of(seed, one)
    follower, quality = int(ups.follower[0]), float(ups.quality[0])
    z = [float(ndtri(_uniform(seed, one, f))[0]) for f in range(2, 7)]
    log_f = math.log10(follower + 100.0)
    age_days = min(6000.0, max(7.0, math.exp(6.5 + 0.25 * (log_f - 3.6) + 0.7 * z[0])))
    archives = max(1, round(math.exp(3.2 + 0.4 * math.log(age_days / 700) + 0.9 * z[1])))
    typical_fan = _FAN_BASE + _FAN_PER_FOLLOWER * log_f + 0.12 * quality
    typical_rec = _REC_BASE + _REC_PER_FOLLOWER * log_f + _REC_QUALITY * 0.6 * quality
    avg_view = (10.0**typical_fan + 10.0**typical_rec) * math.exp(0.3 * z[2])
    total_view = round(archives * avg_view)
    popular = round(archives * 0.5 / (1.0 + math.exp(-2.5 * (math.log10(avg_view) - 5.3))))
    pick = [int(_uniform(seed, one, 7 + k)[0] * len(part)) for k, part in enumerate(_NAME_PARTS)]
    return UpProfile(
        mid=_mid(seed, up),
        ts=ts,
        follower=follower,
        archive_count=archives,
        total_view=total_view,
        total_like=round(total_view * RATE_MEDIANS[0] * math.exp(0.3 * z[3])),
        name="".join(part[i] for part, i in zip(_NAME_PARTS, pick, strict=True)),
        historical_avg_view=round(avg_view, 1),
        historical_popular_count=popular,
        account_age_days=int(age_days),
    )


def _mid(seed: int, up: int) -> int:
    """A unique, real-looking uploader id: 997 ids per uploader index, one picked by the hash."""
    return 10_007 + up * 997 + int(_uniform(seed, np.array([up]), 10)[0] * 997)


@dataclass(frozen=True)
class _Videos:
    """Hidden and static parameters of a batch of videos, one array entry each."""

    pub: IntArray
    uploader: IntArray
    follower: IntArray
    zone: IntArray
    sub: IntArray
    quality: FloatArray
    curve: _Curve
    rates: FloatArray
    """(videos, 6) per-view like, coin, favorite, reply, danmaku, share"""
    duration: IntArray

    @property
    def engagement(self) -> FloatArray:
        return self.rates @ _ENGAGEMENT_WEIGHTS

    def take(self, index: Any) -> _Videos:
        """A subset (slice or index array) of the batch."""
        parts: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        picked: dict[str, Any] = {
            k: x.pick(index) if isinstance(x, _Curve) else x[index] for k, x in parts.items()
        }
        return _Videos(**picked)


def _uploaders(videos: int, cfg: WorldConfig) -> int:
    return max(1, math.ceil(videos / cfg.videos_per_uploader))


def _draw_videos(rng: np.random.Generator, cfg: WorldConfig, pub: IntArray, videos: int) -> _Videos:
    """Videos published at `pub` in a world of `videos`; shared by the world, the threshold pilot and
    the calibration."""
    n, n_up = len(pub), _uploaders(videos, cfg)
    uploader = np.minimum((n_up * rng.random(n) ** _UPLOAD_SKEW).astype(np.int64), n_up - 1)
    ups = _Uploaders.of(cfg.seed, uploader)
    shares = np.array([z.share for z in cfg.zones])
    zone = rng.choice(len(cfg.zones), size=n, p=shares / shares.sum()).astype(np.int64)
    sub = np.zeros(n, dtype=np.int64)
    for z, spec in enumerate(cfg.zones):
        here = zone == z
        if spec.subzones and here.any():
            p = np.array([s.share for s in spec.subzones])
            sub[here] = rng.choice(len(p), size=int(here.sum()), p=p / p.sum())
    quality = 0.6 * ups.quality + 0.8 * rng.standard_normal(n)
    log_f = np.log10(ups.follower + 100.0)
    view_bias = np.array([z.view_bias for z in cfg.zones])[zone]
    traffic = np.array(VIEWER_TRAFFIC)
    hour = ((pub + BEIJING_OFFSET_S) // 3600 + 2) % 24
    hour_gain = _HOUR_EFFECT * np.log10(traffic[hour] / traffic.mean())
    fan = _FAN_BASE + _FAN_PER_FOLLOWER * log_f + 0.2 * quality + 0.3 * rng.standard_normal(n)
    rec = (
        _REC_BASE
        + _REC_PER_FOLLOWER * log_f
        + _REC_QUALITY * quality
        + view_bias
        + hour_gain
        + 0.45 * rng.standard_normal(n)
    )
    curve = _Curve(
        fan=10.0**fan,
        fan_tau_h=np.exp(math.log(3.0) + 0.4 * rng.standard_normal(n)),
        rec=10.0**rec,
        rec_start_h=np.exp(math.log(2.5) + 0.6 * rng.standard_normal(n)),
        rec_tau_h=np.exp(math.log(10.0) + 0.4 * rng.standard_normal(n)),
    )
    mults = np.ones((n, len(RATE_MEDIANS)))
    mults[:, 1] = np.array([z.coin_mult for z in cfg.zones])[zone]
    mults[:, 4] = np.array([z.danmaku_mult for z in cfg.zones])[zone]
    shared = 0.3 * quality + _RATE_SHARED * rng.standard_normal(n)
    rates = RATE_MEDIANS * mults * np.exp(shared[:, None] + RATE_SIGMAS * rng.standard_normal(mults.shape))
    med = np.array([z.duration_median_s for z in cfg.zones])[zone]
    sigma = np.array([z.duration_sigma for z in cfg.zones])[zone]
    duration = np.clip(med * np.exp(sigma * rng.standard_normal(n)), 5, 10 * 3600).astype(np.int64)
    return _Videos(pub, uploader, ups.follower, zone, sub, quality, curve, np.minimum(rates, 0.5), duration)


def _hot_score(curve: _Curve, engagement: Any, quality: Any, age_h: Any) -> FloatArray:
    """The hidden hot-list score, before refresh noise."""
    now = curve.views(age_h)
    gained = now - curve.views(age_h - 1.0)
    return (
        np.log10(1.0 + gained)
        + _SCORE_VIEWS * np.log10(1.0 + now)
        + _SCORE_ENGAGEMENT * np.log10(engagement / _ENGAGEMENT_REF)
        + _SCORE_QUALITY * quality
    )


@dataclass(frozen=True)
class _Listing:
    """Hot-list fate of a batch: first listed refresh (ts, or -1), refreshes listed, score per refresh."""

    first: IntArray
    count: IntArray
    refresh0: IntArray
    """the first refresh each video could be listed at; column k of `score` is refresh0 + k·step"""
    score: FloatArray


def _entry_scores(cfg: WorldConfig, v: _Videos, rng: np.random.Generator) -> tuple[IntArray, FloatArray]:
    """Noisy score of each video at every refresh it could be listed (first day, then its stay)."""
    step = cfg.hot_refresh_s
    refresh0 = -(-(v.pub + cfg.hot_min_age_s) // step) * step
    columns = (cfg.hot_max_entry_age_s - cfg.hot_min_age_s) // step + cfg.hot_max_entries + 1
    age_h = (refresh0[:, None] + step * np.arange(columns) - v.pub[:, None]) / 3600.0
    col = np.s_[:, None]
    score = _hot_score(v.curve.pick(col), v.engagement[col], v.quality[col], age_h)
    return refresh0, score + _SCORE_NOISE * rng.standard_normal(score.shape)


def _listing(cfg: WorldConfig, v: _Videos, rng: np.random.Generator, threshold: float) -> _Listing:
    """Which videos enter (score at a first-day refresh >= threshold), when, and for how long."""
    refresh0, score = _entry_scores(cfg, v, rng)
    step = cfg.hot_refresh_s
    ages = refresh0[:, None] + step * np.arange(score.shape[1]) - v.pub[:, None]
    eligible = np.where(ages <= cfg.hot_max_entry_age_s, score, -np.inf)
    entered = (eligible >= threshold).any(axis=1)
    j = np.argmax(eligible >= threshold, axis=1)
    excess = eligible.max(axis=1) - threshold
    stay_h = STAY_MEDIAN_H * np.exp(STAY_SIGMA * rng.standard_normal(len(v.pub)) + _STAY_PER_EXCESS * excess)
    count = np.clip(np.round(stay_h * 3600 / step), 1, cfg.hot_max_entries).astype(np.int64)
    first = np.where(entered, refresh0 + j * step, -1)
    return _Listing(first=first, count=np.where(entered, count, 0), refresh0=refresh0, score=score)


def _expected_views(curve: _Curve, entered_h: Any, age_h: Any) -> FloatArray:
    """Expected views at `age_h`, with the exposure boost from `entered_h` (NaN: never listed)."""
    after = np.nan_to_num(np.maximum(age_h - entered_h, 0.0), nan=0.0)
    boost = _HOT_BOOST * (curve.fan + curve.rec) * (1.0 - np.exp(-after / _HOT_BOOST_TAU_H))
    return curve.views(age_h) + boost


def _hour_counts(rng: np.random.Generator, cfg: WorldConfig, videos: int) -> tuple[IntArray, IntArray]:
    """Start of each publication hour bin and how many videos it gets (multinomial, Beijing rhythm)."""
    first_hour = cfg.start_ts // 3600
    edges = np.arange(first_hour, -(-cfg.end_ts // 3600) + 1) * 3600
    lo = np.maximum(edges[:-1], cfg.start_ts)
    hi = np.minimum(edges[1:], cfg.end_ts)
    local = edges[:-1] + BEIJING_OFFSET_S
    weekday = (local // 86400 + 3) % 7  # 1970-01-01 was a Thursday
    weight = np.array(HOUR_WEIGHTS)[(local // 3600) % 24] * np.array(WEEKDAY_WEIGHTS)[weekday] * (hi - lo)
    return lo, rng.multinomial(videos, weight / weight.sum()).astype(np.int64)


def _pubdates(rng: np.random.Generator, lo: int, hi: int, n: int) -> IntArray:
    return np.sort(lo + np.floor(rng.random(n) * (hi - lo)).astype(np.int64))


_BVID_SPACE = 58**9
_BVID_STEP = 3_486_784_401
"""3^20: coprime to 58, so index -> index · step + offset (mod 58^9) never repeats an id"""


def _bvid(seed: int, index: int) -> str:
    """`BV1` + 9 base58 characters, unique per video index (a bijection, nothing remembered)."""
    offset = int(_uniform(seed, np.array([0]), 99)[0] * _BVID_SPACE)
    num = (index * _BVID_STEP + offset) % _BVID_SPACE
    chars = []
    for _ in range(9):
        num, r = divmod(num, 58)
        chars.append(BASE58[r])
    return "BV1" + "".join(chars)


def _pilot(cfg: WorldConfig, seq: np.random.SeedSequence, videos: int, days: float) -> _Videos:
    """Videos published over `days` from the start with the world's rhythm (threshold, calibration)."""
    rng = _rng(seq)
    span = WorldConfig(videos=videos, sim_hours=24 * days, seed=cfg.seed, start_ts=cfg.start_ts)
    lo, counts = _hour_counts(rng, span, videos)
    pub = np.concatenate([_pubdates(rng, a, a + 3600, c) for a, c in zip(lo, counts, strict=True)])
    return _draw_videos(rng, cfg, pub, videos)


def _threshold(cfg: WorldConfig, seq: np.random.SeedSequence) -> float:
    """Score at which `hot_base_rate` of pilot videos reach the list in their first day."""
    pilot_seq, noise_seq = seq.spawn(2)
    pilot = _pilot(cfg, pilot_seq, _PILOT_VIDEOS, 7.0)
    refresh0, score = _entry_scores(cfg, pilot, _rng(noise_seq))
    ages = refresh0[:, None] + cfg.hot_refresh_s * np.arange(score.shape[1]) - pilot.pub[:, None]
    best = np.where(ages <= cfg.hot_max_entry_age_s, score, -np.inf).max(axis=1)
    return float(np.quantile(best, 1.0 - cfg.hot_base_rate))


@dataclass(frozen=True)
class HotCapture:
    """The simulated hot list as daily captures see it: one row per (capture, listed video)."""

    follower: IntArray
    view: FloatArray
    age_h: FloatArray
    duration: IntArray
    rates: FloatArray
    """(rows, 6) like, coin, favorite, reply, danmaku, share per view"""
    pubdate: IntArray
    tid: IntArray


def capture_hot(cfg: WorldConfig, videos: int, days: int, capture_hour: float = 23.75) -> HotCapture:
    """Daily captures (Beijing `capture_hour`) of the list over the last `days` of a pilot world.

    Uses the functions `generate` uses (population, threshold, listing, view curve, rates), with the
    expectation instead of the Poisson draws, which at hot-list counts differ by well under 1 %.
    """
    pop_seq, noise_seq, thr_seq = np.random.SeedSequence([cfg.seed, 77]).spawn(3)
    lead = 7
    v = _pilot(cfg, pop_seq, videos, lead + days)
    rng, threshold, chunk = _rng(noise_seq), _threshold(cfg, thr_seq), 20_000
    parts = [_listing(cfg, v.take(np.s_[a : a + chunk]), rng, threshold) for a in range(0, videos, chunk)]
    first = np.concatenate([p.first for p in parts])
    count = np.concatenate([p.count for p in parts])
    day0 = (cfg.start_ts + BEIJING_OFFSET_S) // 86400 * 86400 - BEIJING_OFFSET_S
    captures = day0 + 86400 * np.arange(lead, lead + days) + round(capture_hour * 3600)
    hot = np.flatnonzero(first >= 0)
    last = first[hot] + (count[hot] - 1) * cfg.hot_refresh_s
    rows_v, rows_c = [], []
    for c in captures:
        on = (first[hot] <= c) & (c < last + cfg.hot_refresh_s)
        rows_v.append(hot[on])
        rows_c.append(np.full(int(on.sum()), c))
    idx, cap = np.concatenate(rows_v), np.concatenate(rows_c)
    curve = v.curve.pick(idx)
    age_h = (cap - v.pub[idx]) / 3600.0
    entered_h = (first[idx] - v.pub[idx]) / 3600.0
    grid = age_h[:, None] * np.linspace(0.0, 1.0, 49)
    views = _expected_views(curve.pick(np.s_[:, None]), entered_h[:, None], grid)
    fans = 1.0 + _FAN_BOOST * np.exp(-grid[:, 1:] / 2.0)
    factor = (np.diff(views, axis=1) * fans).sum(axis=1) / np.maximum(views[:, -1], 1.0)
    sub_tids = [[s.tid for s in z.subzones] or [z.tid] for z in cfg.zones]
    tid = [sub_tids[z][k] for z, k in zip(v.zone[idx].tolist(), v.sub[idx].tolist(), strict=True)]
    return HotCapture(
        follower=v.follower[idx],
        view=views[:, -1],
        age_h=age_h,
        duration=v.duration[idx],
        rates=v.rates[idx] * factor[:, None],
        pubdate=v.pub[idx],
        tid=np.array(tid, dtype=np.int64),
    )


@dataclass
class _Active:
    """A video still being observed: its snapshot rows and what the collector does to them."""

    static: dict[str, Any]
    ts: IntArray
    counts: NDArray[np.int32]
    """(snapshots, 7) view, like, coin, favorite, reply, danmaku, share"""
    noise: NDArray[np.int64] | None
    """per snapshot: action and delay of the (late) copy in s"""


_ARRIVAL, _SNAPSHOT, _LATE, _REFRESH, _HOUR = 0, 1, 2, 3, 4
_NORMAL, _DUPLICATE, _DELAYED, _LATE_COPY, _MISSED = 0, 1, 2, 3, 4


class _World:
    """One run of `generate`: the event-time heap over hour batches, active videos and the list."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        root = np.random.SeedSequence(cfg.seed)
        hours_seq, traj_seq, noise_seq, pilot_seq = root.spawn(4)
        self.video_seq = root.spawn(1)[0]
        self.threshold = _threshold(cfg, pilot_seq)
        self.bin_lo, self.bin_count = _hour_counts(_rng(hours_seq), cfg, cfg.videos)
        self.traj_rng = _rng(traj_seq)
        self.noise_rng = _rng(noise_seq) if cfg.noise > 0 or cfg.malformed > 0 else None
        dense = np.arange(0, cfg.dense_window_s + 1, cfg.snapshot_interval_s, dtype=np.int64)
        sparse_end = cfg.observe_window_s + cfg.sparse_interval_s
        sparse = np.arange(cfg.dense_window_s + cfg.sparse_interval_s, sparse_end, cfg.sparse_interval_s)
        self.dense, self.sparse = dense, sparse.astype(np.int64)
        self.batch: _Videos | None = None
        self.batch_listing: _Listing | None = None
        self.batch_first = 0
        """global index of the batch's first video"""
        self.active: dict[int, _Active] = {}
        self.late: dict[tuple[int, int, int], Snapshot] = {}
        self.listed: dict[int, list[tuple[float, str]]] = {}
        """refresh ts -> (-score, bvid) of the videos on the list then"""
        self.profiled = np.zeros(_uploaders(cfg.videos, cfg), dtype=bool)
        """the one per-uploader state (a byte each, 0.67 MB at a million videos): profile published"""

    def run(self) -> Iterator[Event]:
        """Pop the earliest pending item: an hour batch, a publication, a snapshot, a copy, a refresh."""
        cfg = self.cfg
        heap: list[tuple[int, int, int, int]] = []
        if len(self.bin_lo):
            heap.append((int(self.bin_lo[0]), _HOUR, 0, 0))
        first_refresh = (cfg.start_ts // cfg.hot_refresh_s + 1) * cfg.hot_refresh_s
        if first_refresh <= cfg.end_ts:
            heapq.heappush(heap, (first_refresh, _REFRESH, 0, 0))
        while heap:
            ts, kind, i, k = heapq.heappop(heap)
            if kind == _SNAPSHOT:
                yield from self._snapshot(heap, i, k)
            elif kind == _LATE:
                yield self.late.pop((i, k, ts))
            elif kind == _ARRIVAL:
                yield from self._arrive(heap, i)
            elif kind == _HOUR:
                self._hour(heap, i)
            else:
                yield from self._refresh(ts)
                if ts + cfg.hot_refresh_s <= cfg.end_ts:
                    heapq.heappush(heap, (ts + cfg.hot_refresh_s, _REFRESH, 0, 0))

    def _hour(self, heap: list[tuple[int, int, int, int]], b: int) -> None:
        """Draw the videos of publication hour `b` (their own generator) and schedule their arrivals."""
        n = int(self.bin_count[b])
        self.batch_first += 0 if self.batch is None else len(self.batch.pub)
        rng = _rng(np.random.SeedSequence(self.cfg.seed, spawn_key=(*self.video_seq.spawn_key, 1, b)))
        lo = int(self.bin_lo[b])
        hi = min(lo - lo % 3600 + 3600, self.cfg.end_ts)
        self.batch = _draw_videos(rng, self.cfg, _pubdates(rng, lo, hi, n), self.cfg.videos)
        self.batch_listing = _listing(self.cfg, self.batch, rng, self.threshold)
        for j in range(n):
            heapq.heappush(heap, (int(self.batch.pub[j]), _ARRIVAL, self.batch_first + j, j))
        if b + 1 < len(self.bin_lo):
            heapq.heappush(heap, (int(self.bin_lo[b + 1]), _HOUR, b + 1, 0))

    def _arrive(self, heap: list[tuple[int, int, int, int]], i: int) -> Iterator[Event]:
        """The uploader's profile (before their first upload), then video i's list fate and snapshots."""
        assert self.batch is not None
        j = i - self.batch_first
        pub, up = int(self.batch.pub[j]), int(self.batch.uploader[j])
        if not self.profiled[up]:
            self.profiled[up] = True
            yield _profile(self.cfg.seed, up, pub)
        self._start(heap, i, j)

    def _start(self, heap: list[tuple[int, int, int, int]], i: int, j: int) -> None:
        """Put video i on the list's future refreshes, draw its snapshots, schedule the first one."""
        cfg, v, listing, rng = self.cfg, self.batch, self.batch_listing, self.traj_rng
        assert v is not None and listing is not None
        pub, bvid = int(v.pub[j]), _bvid(cfg.seed, i)
        entered_h = math.nan
        if listing.first[j] >= 0:
            entered_h = (int(listing.first[j]) - pub) / 3600.0
            k0 = (int(listing.first[j]) - int(listing.refresh0[j])) // cfg.hot_refresh_s
            for k in range(int(listing.count[j])):
                r = int(listing.first[j]) + k * cfg.hot_refresh_s
                if r <= cfg.end_ts:
                    self.listed.setdefault(r, []).append((-float(listing.score[j, k0 + k]), bvid))
        dense = rng.integers(30, cfg.first_seen_max_s + 1) + self.dense
        dense = dense[dense <= cfg.dense_window_s]
        offsets = np.concatenate((dense, self.sparse))
        jitter = rng.integers(-cfg.jitter_s, cfg.jitter_s + 1, len(offsets))
        jitter[len(dense) :] *= 4
        offsets = np.minimum(offsets + jitter, cfg.observe_window_s)  # the last one ends the window
        offsets = offsets[pub + offsets <= cfg.end_ts]
        if not len(offsets):
            return
        age_h = offsets / 3600.0
        expected = _expected_views(v.curve.pick(j), entered_h, age_h)
        burst = rng.gamma(20.0, 1.0 / 20.0, len(offsets))
        views = np.cumsum(rng.poisson(np.diff(expected, prepend=0.0) * burst))
        fans = 1.0 + _FAN_BOOST * np.exp(-age_h / 2.0)
        lam = np.diff(views, prepend=0)[:, None] * fans[:, None] * v.rates[j]
        counts = np.column_stack((views, np.cumsum(rng.poisson(lam), axis=0)))
        zone = cfg.zones[int(v.zone[j])]
        sub = zone.subzones[int(v.sub[j])] if zone.subzones else SubZone(zone.tid, zone.tname, 1.0)
        topic = zone.topics[i % len(zone.topics)]
        hook = _TITLE_HOOKS[(i // 7) % len(_TITLE_HOOKS)]
        static = {
            "bvid": bvid,
            "pubdate": pub,
            "mid": _mid(cfg.seed, int(v.uploader[j])),
            "tid": sub.tid,
            "tname": sub.tname,
            "tid_v2": zone.tid_v2,
            "duration": int(v.duration[j]),
            "title": f"【{sub.tname}】{topic}第{1 + i % 299}期：{hook}",
            "tags": [topic, sub.tname, zone.tname],
            "follower": int(v.follower[j]),
        }
        noise = self._noise(len(offsets))
        self.active[i] = _Active(static, pub + offsets, np.minimum(counts, 2**31 - 1).astype(np.int32), noise)
        heapq.heappush(heap, (pub + int(offsets[0]), _SNAPSHOT, i, 0))

    def _noise(self, n: int) -> NDArray[np.int64] | None:
        """(action, delay) per snapshot, drawn from the noise generator so the world stays the same."""
        if self.noise_rng is None:
            return None
        cfg, rng = self.cfg, self.noise_rng
        u = rng.random(n)
        action = np.full(n, _NORMAL, dtype=np.int64)
        edge = 0.0
        for name, code in (("duplicate", _DUPLICATE), ("delayed", _DELAYED), ("late", _LATE_COPY)):
            share = cfg.noise * NOISE_SPLIT[name]
            action[(u >= edge) & (u < edge + share)] = code
            edge += share
        action[(u >= edge) & (u < cfg.noise)] = _MISSED
        delay = np.where(
            action == _LATE_COPY,
            rng.integers(*LATE_DELAY_S, n),
            rng.integers(cfg.snapshot_interval_s, cfg.noise_max_delay_s + 1, n),
        )
        bad = (rng.random(n) < cfg.malformed).astype(np.int64)
        return np.column_stack((action, delay, bad))

    def _snapshot(self, heap: list[tuple[int, int, int, int]], i: int, k: int) -> Iterator[Event]:
        """Emit snapshot k of video i (or hold it back as noise) and schedule the next one."""
        video = self.active[i]
        view, like, coin, favorite, reply, danmaku, share = video.counts[k].tolist()
        ts = int(video.ts[k])
        counts = {"view": view, "like": like, "coin": coin, "favorite": favorite, "reply": reply}
        snap = Snapshot(ts=ts, danmaku=danmaku, share=share, **counts, **video.static)
        action, delay, bad = (_NORMAL, 0, 0) if video.noise is None else video.noise[k].tolist()
        if action in (_NORMAL, _DUPLICATE):
            yield snap
        if action in (_DUPLICATE, _DELAYED, _LATE_COPY):
            self.late[(i, k, ts + delay)] = snap
            heapq.heappush(heap, (ts + delay, _LATE, i, k))
        if bad:
            yield _malformed(snap, k)
        if k + 1 < len(video.ts):
            heapq.heappush(heap, (int(video.ts[k + 1]), _SNAPSHOT, i, k + 1))
        else:
            del self.active[i]

    def _refresh(self, ts: int) -> Iterator[Event]:
        """Hot-list entries at one refresh, ranked by the hidden score."""
        for rank, (_, bvid) in enumerate(sorted(self.listed.pop(ts, [])), start=1):
            yield HotListEntry(bvid=bvid, ts=ts, source="popular", rank=rank)


def _malformed(snap: Snapshot, k: int) -> Snapshot:
    """A broken copy the worker must dead-letter: unvalidated, so it serialises as is."""
    fields = snap.model_dump()
    kind = k % 3
    if kind == 0:
        fields["bvid"] = "BV0" + snap.bvid[3:]  # 0 is not base58
    elif kind == 1:
        fields["view"] = -1
    else:
        fields["ts"] = snap.pubdate - 3600
    return Snapshot.model_construct(**fields)


def generate(cfg: WorldConfig) -> Iterator[Event]:
    """Stream the world's events in non-decreasing event time (except the injected noise).

    Deterministic for `cfg`: every draw comes from PCG64 generators spawned from `cfg.seed`, in an
    order fixed by the heap (ties broken by kind, video index and snapshot index). Noise draws from its
    own generator, so the world underneath is the same with or without noise.
    """
    return _World(cfg).run()
