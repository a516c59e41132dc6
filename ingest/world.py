"""A synthetic Bilibili world: uploaders, videos, collector snapshots and hot-list entries.

The real API gives no labelled early trajectories at scale, so demos, tests and benchmarks run on a
world whose hidden rule is known. Magnitudes follow the real 综合热门 captures in
`/work/shared/data/bili-popular` (owner followers, per-view engagement rates, durations, publish hours).

How a video behaves:
- views are a fan wave from publication (sized by the owner's followers) plus a recommendation wave
  that starts a hidden ~1–7 h later (sized mostly by a hidden quality, also by followers and zone),
  each a saturating curve, observed with Poisson and burst noise;
- likes, coins, … are per-view rates (higher for better videos, a little higher among the first
  viewers, who are fans) drawn as Poisson increments, so every counter is monotone;
- at every hourly hot-list refresh from 2 h of age a hidden score (last-hour growth, views so far,
  engagement, quality, refresh noise) is compared with a threshold calibrated so that about
  `hot_base_rate` of fully observed videos ever enter; early counts are informative, not decisive;
- once on the list a video gets extra exposure views (the leakage seed 001 warns about).

`generate` streams the events in event-time order with a heap over the active videos, so memory
holds the per-video parameters and the videos still being observed, never the whole event log.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hotvideo.events import Event, HotListEntry, Snapshot, UpProfile

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

BEIJING = timezone(timedelta(hours=8))
DEFAULT_START_TS = int(datetime(2026, 11, 2, tzinfo=BEIJING).timestamp())
"""2026-11-02T00:00:00+08:00: a Monday, Beijing midnight, so the first day has a full rhythm."""
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class Zone:
    """A main zone (bili-api.md §8) and how its videos differ from the site average."""

    tid: int
    tname: str
    tid_v2: int
    share: float
    """share of uploads"""
    view_bias: float
    """log10 offset of the view scale"""
    duration_median_s: int
    coin_mult: float
    danmaku_mult: float
    topics: tuple[str, ...]
    """title and tag words"""


ZONES: tuple[Zone, ...] = (
    Zone(160, "生活", 1030, 0.18, 0.00, 300, 0.9, 0.8, ("日常vlog", "出租屋", "搞笑", "小城生活")),
    Zone(4, "游戏", 1008, 0.16, 0.05, 600, 0.9, 1.4, ("原神", "我的世界", "单机实况", "王者荣耀")),
    Zone(36, "知识", 1010, 0.10, 0.00, 720, 1.6, 0.9, ("历史", "心理学", "经济学", "冷知识")),
    Zone(181, "影视", 1001, 0.08, 0.10, 600, 0.8, 1.0, ("电影解说", "影视杂谈", "混剪", "剧集")),
    Zone(5, "娱乐", 1002, 0.07, 0.05, 240, 0.6, 1.0, ("综艺", "明星", "舞台", "访谈")),
    Zone(188, "科技", 1012, 0.06, 0.05, 540, 1.3, 0.7, ("手机测评", "显卡", "电脑装机", "数码")),
    Zone(211, "美食", 1020, 0.06, 0.05, 360, 0.8, 0.7, ("探店", "家常菜", "烘焙", "夜宵")),
    Zone(1, "动画", 1005, 0.05, -0.05, 420, 1.2, 1.6, ("MAD", "手书", "动漫杂谈", "新番")),
    Zone(3, "音乐", 1003, 0.05, -0.10, 240, 1.5, 1.2, ("翻唱", "原创", "钢琴", "乐评")),
    Zone(217, "动物圈", 1024, 0.04, 0.00, 150, 0.7, 0.8, ("猫", "狗", "萌宠", "鹦鹉")),
    Zone(234, "运动", 1018, 0.04, -0.10, 420, 0.9, 0.8, ("健身", "篮球", "足球", "骑行")),
    Zone(119, "鬼畜", 1007, 0.03, 0.00, 180, 1.3, 2.0, ("鬼畜调教", "音MAD", "名场面", "人力")),
    Zone(129, "舞蹈", 1004, 0.03, -0.10, 180, 1.4, 1.1, ("宅舞", "街舞", "翻跳", "中国舞")),
    Zone(223, "汽车", 1013, 0.03, -0.15, 600, 0.8, 0.6, ("新车", "试驾", "改装", "自驾")),
    Zone(155, "时尚", 1014, 0.02, -0.15, 300, 0.9, 0.6, ("穿搭", "美妆", "护肤", "发型")),
)

HOUR_WEIGHTS: tuple[float, ...] = (
    3.0, 1.6, 0.8, 0.5, 0.4, 0.5, 0.8, 1.3, 2.2, 3.0, 4.0, 5.5,
    5.5, 4.2, 4.0, 4.2, 5.0, 7.5, 8.0, 7.0, 6.0, 5.0, 4.2, 3.5,
)  # fmt: skip
"""Relative uploads per Beijing hour: the smoothed publish hours of the real hot videos (noon bump,
17–20 h peak, quiet small hours)."""

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

# The hidden model. Numbers chosen so that the hot videos look like the real captures.
_FAN_BASE, _FAN_PER_FOLLOWER = 0.1, 0.75
"""log10 fan views = base + elasticity · log10(followers + 100) (+ quality and noise)"""
_REC_BASE, _REC_PER_FOLLOWER, _REC_QUALITY = 1.0, 0.7, 0.55
"""log10 recommended views: driven by the hidden quality far more than by followers"""
_FAN_GAMMA, _REC_GAMMA = 1.0, 1.5
_RATES = np.array([0.04, 0.005, 0.006, 0.0012, 0.0012, 0.0018])
"""median per-view like, coin, favorite, reply, danmaku, share of an average video"""
_ENGAGEMENT_WEIGHTS = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
"""seed 000's engagement: like + 2·coin + favorite + reply + danmaku + share"""
_ENGAGEMENT_REF = float(_RATES @ _ENGAGEMENT_WEIGHTS)
_FAN_BOOST = 0.3
"""early viewers (fans) engage this much more, fading over about two hours"""
_SCORE_VIEWS = 0.5
_SCORE_ENGAGEMENT = 1.5
_SCORE_QUALITY = 0.3
_SCORE_NOISE = 0.15
_STAY_MARGIN = 0.3
"""a listed video stays while its score is above threshold - margin"""
_HOT_BOOST = 0.3
"""extra views from hot-list exposure, as a share of the final views"""
_HOT_BOOST_TAU_H = 12.0
_PILOT_VIDEOS = 20_000


@dataclass(frozen=True)
class WorldConfig:
    """Size, seed, collector cadence and hot-list rule of a synthetic world."""

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
    hot_base_rate: float = 0.03
    """share of fully observed videos that ever enter the hot list"""
    hot_refresh_s: int = 3600
    hot_min_age_s: int = 2 * 3600
    hot_max_entry_age_s: int = 24 * 3600
    hot_max_entries: int = 24
    """refreshes a video is reported on the list, at most"""
    videos_per_uploader: float = 1.5
    zones: tuple[Zone, ...] = ZONES
    noise: float = 0.0
    """share of snapshots that are duplicated (half) or delivered late, out of order (half)"""
    noise_max_delay_s: int = 1800

    def __post_init__(self) -> None:
        if self.videos < 0 or self.sim_hours <= 0:
            raise ValueError("videos must be >= 0 and sim_hours > 0")
        if not 0.0 < self.hot_base_rate < 1.0:
            raise ValueError("hot_base_rate must be in (0, 1)")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError("noise must be in [0, 1]")
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
        """The curve of one video (int index) or a broadcastable column (`np.s_[:, None]`)."""
        return _Curve(*(getattr(self, f.name)[index] for f in fields(self)))


def _wave(scale: Any, tau_h: Any, gamma: float, age_h: Any) -> FloatArray:
    """Saturating growth `scale · x / (1 + x)`, `x = (age / tau)^gamma`, zero before age 0."""
    x = (np.maximum(age_h, 0.0) / tau_h) ** gamma
    return scale * x / (1.0 + x)


@dataclass(frozen=True)
class _Population:
    """Hidden and static parameters of uploaders (`up_*`) and videos, one array entry each."""

    up_follower: IntArray
    up_quality: FloatArray
    uploader: IntArray
    zone: IntArray
    quality: FloatArray
    curve: _Curve
    rates: FloatArray
    """(videos, 6) per-view like, coin, favorite, reply, danmaku, share"""
    engagement: FloatArray


def _rng(seq: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seq))


def _draw_population(rng: np.random.Generator, cfg: WorldConfig, videos: int) -> _Population:
    """Uploaders and videos; shared by the world and the threshold calibration so they agree."""
    n_up = max(1, math.ceil(videos / cfg.videos_per_uploader))
    log_follower = np.clip(rng.normal(3.6, 1.1, n_up), 1.0, 7.5)
    up_follower = np.round(10.0**log_follower).astype(np.int64)
    up_quality = rng.standard_normal(n_up)
    activity = np.exp(0.6 * rng.standard_normal(n_up) + 0.15 * log_follower)
    uploader = rng.choice(n_up, size=videos, p=activity / activity.sum()).astype(np.int64)
    shares = np.array([z.share for z in cfg.zones])
    zone = rng.choice(len(cfg.zones), size=videos, p=shares / shares.sum()).astype(np.int64)
    quality = 0.6 * up_quality[uploader] + 0.8 * rng.standard_normal(videos)
    log_f = np.log10(up_follower[uploader] + 100.0)
    view_bias = np.array([z.view_bias for z in cfg.zones])[zone]
    fan = _FAN_BASE + _FAN_PER_FOLLOWER * log_f + 0.2 * quality + 0.3 * rng.standard_normal(videos)
    rec = (
        _REC_BASE
        + _REC_PER_FOLLOWER * log_f
        + _REC_QUALITY * quality
        + view_bias
        + 0.45 * rng.standard_normal(videos)
    )
    curve = _Curve(
        fan=10.0**fan,
        fan_tau_h=np.exp(math.log(3.0) + 0.4 * rng.standard_normal(videos)),
        rec=10.0**rec,
        rec_start_h=np.exp(math.log(2.5) + 0.6 * rng.standard_normal(videos)),
        rec_tau_h=np.exp(math.log(10.0) + 0.4 * rng.standard_normal(videos)),
    )
    mults = np.ones((videos, len(_RATES)))
    mults[:, 1] = np.array([z.coin_mult for z in cfg.zones])[zone]
    mults[:, 4] = np.array([z.danmaku_mult for z in cfg.zones])[zone]
    shared = 0.3 * quality + 0.25 * rng.standard_normal(videos)
    rates = _RATES * mults * np.exp(shared[:, None] + 0.25 * rng.standard_normal(mults.shape))
    return _Population(
        up_follower=up_follower,
        up_quality=up_quality,
        uploader=uploader,
        zone=zone,
        quality=quality,
        curve=curve,
        rates=rates,
        engagement=rates @ _ENGAGEMENT_WEIGHTS,
    )


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


def _calibrate(rng: np.random.Generator, cfg: WorldConfig) -> float:
    """Score threshold at which `hot_base_rate` of fully observed pilot videos ever enter."""
    pop = _draw_population(rng, cfg, _PILOT_VIDEOS)
    phase = rng.uniform(0, cfg.hot_refresh_s, (_PILOT_VIDEOS, 1))
    age_s = cfg.hot_min_age_s + phase + np.arange(0, cfg.hot_max_entry_age_s, cfg.hot_refresh_s)
    column = np.s_[:, None]
    scores = _hot_score(pop.curve.pick(column), pop.engagement[column], pop.quality[column], age_s / 3600.0)
    scores += _SCORE_NOISE * rng.standard_normal(scores.shape)
    scores[age_s > cfg.hot_max_entry_age_s] = -np.inf
    return float(np.quantile(scores.max(axis=1), 1.0 - cfg.hot_base_rate))


def _draw_pubdates(rng: np.random.Generator, cfg: WorldConfig) -> IntArray:
    """Sorted publish times in [start, end) following the Beijing daily rhythm."""
    first_hour = cfg.start_ts // 3600
    edges = np.arange(first_hour, -(-cfg.end_ts // 3600) + 1) * 3600
    lo = np.maximum(edges[:-1], cfg.start_ts)
    hi = np.minimum(edges[1:], cfg.end_ts)
    beijing_hour = ((edges[:-1] // 3600) + 8) % 24
    weight = np.array(HOUR_WEIGHTS)[beijing_hour] * (hi - lo)
    bins = rng.choice(len(lo), size=cfg.videos, p=weight / weight.sum())
    pub = lo[bins] + np.floor(rng.random(cfg.videos) * (hi - lo)[bins]).astype(np.int64)
    return np.sort(pub).astype(np.int64)


def _draw_bvids(rng: np.random.Generator, n: int) -> list[str]:
    """Unique `BV1` + 9 base58 ids; collisions are redrawn, so the result depends only on rng."""
    space = 58**9
    nums = rng.integers(0, space, n)
    while len(np.unique(nums)) < n:
        _, first = np.unique(nums, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        nums[dup] = rng.integers(0, space, len(dup))
    out = []
    for num in nums.tolist():
        chars = []
        for _ in range(9):
            num, r = divmod(num, 58)
            chars.append(BASE58[r])
        out.append("BV1" + "".join(chars))
    return out


def _snapshot_offsets(cfg: WorldConfig) -> tuple[IntArray, IntArray]:
    """Collector offsets after discovery (dense) and after publication (sparse), before jitter."""
    dense = np.arange(0, cfg.dense_window_s + 1, cfg.snapshot_interval_s, dtype=np.int64)
    sparse = np.arange(
        cfg.dense_window_s + cfg.sparse_interval_s,
        cfg.observe_window_s + cfg.sparse_interval_s,
        cfg.sparse_interval_s,
        dtype=np.int64,
    )
    return dense, sparse


@dataclass
class _Active:
    """A video still being observed: its snapshot rows and what the noise option does to them."""

    static: dict[str, Any]
    ts: list[int]
    counts: IntArray
    """(snapshots, 7) view, like, coin, favorite, reply, danmaku, share; numpy, compact"""
    noise: list[tuple[int, int]] | None
    """per snapshot (action, delay of the late copy in s)"""


_ARRIVAL, _SNAPSHOT, _LATE, _REFRESH = 0, 1, 2, 3
_NORMAL, _DUPLICATE, _DELAYED = 0, 1, 2


class _World:
    """One run of `generate`: the drawn population and the event-time heap."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        pop_seq, traj_seq, noise_seq, pilot_seq = np.random.SeedSequence(cfg.seed).spawn(4)
        rng = _rng(pop_seq)
        self.pop = _draw_population(rng, cfg, cfg.videos)
        self.pubdate = _draw_pubdates(rng, cfg)
        self.bvid = _draw_bvids(rng, cfg.videos)
        n = cfg.videos
        self.topic = rng.integers(0, 4, n).tolist()
        self.hook = rng.integers(0, len(_TITLE_HOOKS), n).tolist()
        self.episode = rng.integers(1, 300, n).tolist()
        med = np.array([z.duration_median_s for z in cfg.zones])[self.pop.zone]
        self.duration = np.clip(med * np.exp(0.8 * rng.standard_normal(n)), 10, 4 * 3600)
        self.profiles = self._draw_profiles(rng)
        self.threshold = _calibrate(_rng(pilot_seq), cfg)
        self.traj_rng = _rng(traj_seq)
        self.noise_rng = _rng(noise_seq) if cfg.noise > 0 else None
        self.dense, self.sparse = _snapshot_offsets(cfg)
        self.profiled = np.zeros(len(self.pop.up_follower), dtype=bool)
        self.active: dict[int, _Active] = {}
        self.late: dict[tuple[int, int], Snapshot] = {}
        self.listed: dict[int, list[tuple[float, int]]] = {}
        """refresh ts -> (score, video) of the videos on the list then"""

    def _draw_profiles(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        """UpProfile fields per uploader, consistent with the hidden view model."""
        pop = self.pop
        n_up = len(pop.up_follower)
        log_f = np.log10(pop.up_follower + 100.0)
        age_days = np.clip(np.exp(6.5 + 0.25 * (log_f - 3.6) + 0.7 * rng.standard_normal(n_up)), 7, 6000)
        archives = np.maximum(
            1, np.round(np.exp(3.2 + 0.4 * np.log(age_days / 700) + 0.9 * rng.standard_normal(n_up)))
        )
        typical_fan = _FAN_BASE + _FAN_PER_FOLLOWER * log_f + 0.12 * pop.up_quality
        typical_rec = _REC_BASE + _REC_PER_FOLLOWER * log_f + _REC_QUALITY * 0.6 * pop.up_quality
        avg_view = (10.0**typical_fan + 10.0**typical_rec) * np.exp(0.3 * rng.standard_normal(n_up))
        log_avg = np.log10(avg_view)
        total_view = np.round(archives * avg_view * rng.uniform(0.8, 1.2, n_up))
        total_like = np.round(total_view * 0.04 * np.exp(0.3 * rng.standard_normal(n_up)))
        popular = rng.poisson(archives * 0.5 / (1.0 + np.exp(-2.5 * (log_avg - 5.3))))
        mids = 1 + np.cumsum(rng.integers(1, 2_000_000, n_up))
        rng.shuffle(mids)
        names = [rng.integers(0, len(part), n_up).tolist() for part in _NAME_PARTS]
        return [
            {
                "mid": int(mids[u]),
                "follower": int(pop.up_follower[u]),
                "archive_count": int(archives[u]),
                "total_view": int(total_view[u]),
                "total_like": int(total_like[u]),
                "name": "".join(part[idx[u]] for part, idx in zip(_NAME_PARTS, names, strict=True)),
                "historical_avg_view": round(float(avg_view[u]), 1),
                "historical_popular_count": int(popular[u]),
                "account_age_days": int(age_days[u]),
            }
            for u in range(n_up)
        ]

    def run(self) -> Iterator[Event]:
        """Pop the earliest pending item: a publication, a snapshot, a late copy or a refresh."""
        cfg = self.cfg
        heap: list[tuple[int, int, int, int]] = []
        if cfg.videos:
            heap.append((int(self.pubdate[0]), _ARRIVAL, 0, 0))
        first_refresh = (cfg.start_ts // cfg.hot_refresh_s + 1) * cfg.hot_refresh_s
        if first_refresh <= cfg.end_ts:
            heapq.heappush(heap, (first_refresh, _REFRESH, 0, 0))
        while heap:
            ts, kind, i, k = heapq.heappop(heap)
            if kind == _SNAPSHOT:
                yield from self._snapshot(heap, i, k)
            elif kind == _LATE:
                yield self.late.pop((i, k))
            elif kind == _ARRIVAL:
                yield from self._arrive(i)
                self._start(heap, i)
                if i + 1 < cfg.videos:
                    heapq.heappush(heap, (int(self.pubdate[i + 1]), _ARRIVAL, i + 1, 0))
            else:
                yield from self._refresh(ts)
                if ts + cfg.hot_refresh_s <= cfg.end_ts:
                    heapq.heappush(heap, (ts + cfg.hot_refresh_s, _REFRESH, 0, 0))

    def _arrive(self, i: int) -> Iterator[Event]:
        """The uploader's profile, the first time one of their videos appears."""
        up = int(self.pop.uploader[i])
        if not self.profiled[up]:
            self.profiled[up] = True
            yield UpProfile(ts=int(self.pubdate[i]), **self.profiles[up])

    def _start(self, heap: list[tuple[int, int, int, int]], i: int) -> None:
        """Draw video i's hot-list fate and snapshots; schedule its first snapshot."""
        cfg, pop, rng = self.cfg, self.pop, self.traj_rng
        pub = int(self.pubdate[i])
        entered_h = self._schedule_hot(i, pub)
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
        curve = pop.curve.pick(i)
        expected = curve.views(age_h)
        if entered_h is not None:
            after = np.maximum(age_h - entered_h, 0.0)
            boost = _HOT_BOOST * (curve.fan + curve.rec)
            expected = expected + boost * (1.0 - np.exp(-after / _HOT_BOOST_TAU_H))
        burst = rng.gamma(20.0, 1.0 / 20.0, len(offsets))
        views = np.cumsum(rng.poisson(np.diff(expected, prepend=0.0) * burst))
        fans = 1.0 + _FAN_BOOST * np.exp(-age_h / 2.0)
        lam = np.diff(views, prepend=0)[:, None] * fans[:, None] * pop.rates[i]
        counts = np.column_stack((views, np.cumsum(rng.poisson(lam), axis=0)))
        noise = None
        if self.noise_rng is not None:
            u = self.noise_rng.random(len(offsets))
            action = np.where(u < cfg.noise / 2, _DUPLICATE, _NORMAL)
            action[(u >= cfg.noise / 2) & (u < cfg.noise)] = _DELAYED
            lo, hi = cfg.snapshot_interval_s, cfg.noise_max_delay_s + 1
            delay = self.noise_rng.integers(lo, hi, len(offsets))
            noise = list(zip(action.tolist(), delay.tolist(), strict=True))
        zone = cfg.zones[int(pop.zone[i])]
        topic = zone.topics[self.topic[i] % len(zone.topics)]
        static = {
            "bvid": self.bvid[i],
            "pubdate": pub,
            "mid": self.profiles[int(pop.uploader[i])]["mid"],
            "tid": zone.tid,
            "tname": zone.tname,
            "tid_v2": zone.tid_v2,
            "duration": int(self.duration[i]),
            "title": f"【{zone.tname}】{topic}第{self.episode[i]}期：{_TITLE_HOOKS[self.hook[i]]}",
            "tags": [topic, zone.tname],
            "follower": int(pop.up_follower[pop.uploader[i]]),
        }
        ts = (pub + offsets).tolist()
        self.active[i] = _Active(static, ts, counts, noise)
        heapq.heappush(heap, (ts[0], _SNAPSHOT, i, 0))

    def _schedule_hot(self, i: int, pub: int) -> float | None:
        """List video i at the refreshes where the hidden rule puts it; return its entry age (h)."""
        cfg, pop = self.cfg, self.pop
        step = cfg.hot_refresh_s
        first = -(-(pub + cfg.hot_min_age_s) // step) * step
        last = min(cfg.end_ts, pub + cfg.hot_max_entry_age_s + (cfg.hot_max_entries - 1) * step)
        if first > last:
            return None
        refresh = np.arange(first, last + 1, step)
        age_h = (refresh - pub) / 3600.0
        score = _hot_score(
            pop.curve.pick(i), pop.engagement[i], pop.quality[i], age_h
        ) + _SCORE_NOISE * self.traj_rng.standard_normal(len(refresh))
        can_enter = (score >= self.threshold) & (refresh - pub <= cfg.hot_max_entry_age_s)
        if not can_enter.any():
            return None
        j = int(np.argmax(can_enter))
        stays = score[j:] >= self.threshold - _STAY_MARGIN
        n = min(cfg.hot_max_entries, int(np.argmin(stays)) if not stays.all() else len(stays))
        for r, s in zip(refresh[j : j + n].tolist(), score[j : j + n].tolist(), strict=True):
            self.listed.setdefault(r, []).append((-s, i))
        return float(age_h[j])

    def _snapshot(self, heap: list[tuple[int, int, int, int]], i: int, k: int) -> Iterator[Event]:
        """Emit snapshot k of video i (or hold it back as noise) and schedule the next one."""
        video = self.active[i]
        view, like, coin, favorite, reply, danmaku, share = video.counts[k].tolist()
        snap = Snapshot(
            ts=video.ts[k],
            view=view,
            like=like,
            coin=coin,
            favorite=favorite,
            reply=reply,
            danmaku=danmaku,
            share=share,
            **video.static,
        )
        action, delay = (_NORMAL, 0) if video.noise is None else video.noise[k]
        if action != _DELAYED:
            yield snap
        if action != _NORMAL:
            self.late[(i, k)] = snap
            heapq.heappush(heap, (video.ts[k] + delay, _LATE, i, k))
        if k + 1 < len(video.ts):
            heapq.heappush(heap, (video.ts[k + 1], _SNAPSHOT, i, k + 1))
        else:
            del self.active[i]

    def _refresh(self, ts: int) -> Iterator[Event]:
        """Hot-list entries at one refresh, ranked by the hidden score."""
        for rank, (_, i) in enumerate(sorted(self.listed.pop(ts, [])), start=1):
            yield HotListEntry(bvid=self.bvid[i], ts=ts, source="popular", rank=rank)


def generate(cfg: WorldConfig) -> Iterator[Event]:
    """Stream the world's events in non-decreasing event time (except the injected noise).

    Deterministic for `cfg`: every draw comes from PCG64 generators spawned from `cfg.seed`, in an
    order fixed by the heap (ties broken by kind, video index and snapshot index). The noise option
    draws from its own generator, so the world itself is the same with or without noise.
    """
    return _World(cfg).run()
