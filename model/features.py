"""The one feature function, shared by training (model.dataset) and the Faust stream.

Plain Python on tuples because the stream calls it once per checkpoint on the hot path; a pandas frame
per call would cost more than the ONNX inference itself. Leakage rule of seed 001: nothing observed
after `as_of` may influence the vector, so every function here drops rows with `ts > as_of` itself
instead of trusting the caller.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from core.events import EarlyMetrics, UpProfile
from core.reference import BEIJING_OFFSET_S, COUNT_FIELDS, MAIN_ZONES, zone_of

Row = tuple[int, int, int, int, int, int, int, int]
"""(ts, view, like, coin, favorite, reply, danmaku, share), in COUNT_FIELDS order after ts."""


@dataclass(frozen=True, slots=True)
class UpStats:
    """The uploader's profile (seed 000's UP features, seed 001's `up_profile`) as of one observation.

    The caller picks the latest observation at or before as_of (`model.history.UpHistory.at`); a
    later one could already count this video among the uploader's hot videos.
    """

    follower: int
    archive_count: int
    total_view: int
    total_like: int | None = None
    historical_avg_view: float | None = None
    historical_popular_count: int | None = None
    account_age_days: int | None = None

    @classmethod
    def of(cls, profile: UpProfile) -> UpStats:
        return cls(
            follower=profile.follower,
            archive_count=profile.archive_count,
            total_view=profile.total_view,
            total_like=profile.total_like,
            historical_avg_view=profile.historical_avg_view,
            historical_popular_count=profile.historical_popular_count,
            account_age_days=profile.account_age_days,
        )


@dataclass(frozen=True, slots=True)
class VideoStatic:
    """Static fields of a video as observed at or before as_of (follower changes, so it is dated)."""

    pubdate: int
    duration: int | None
    tid: int | None
    follower: int | None


MIN_ELAPSED_S = 60
"""Floor of every rate's time base, so a snapshot taken at the publication second gives no blow-up."""

_RATIO_FIELDS = COUNT_FIELDS[1:]
FEATURE_NAMES: tuple[str, ...] = (
    *(f"log_{name}" for name in COUNT_FIELDS),
    "log_follower",
    "has_follower",
    *(f"{name}_per_view" for name in _RATIO_FIELDS),
    "engagement_rate",
    "log_view_rate",
    "log_view_rate_last",
    "log_view_half",
    "view_accel",
    "snapshot_count",
    "hours_since_last",
    "log_duration",
    "has_duration",
    "pub_hour_sin",
    "pub_hour_cos",
    "pub_weekday_sin",
    "pub_weekday_cos",
    *(f"zone_{zone}" for zone in MAIN_ZONES),
    "zone_other",
    "has_profile",
    "up_log_follower",
    "up_log_total_view",
    "up_like_rate",
    "up_log_archive_count",
    "up_log_avg_view",
    "up_log_popular_count",
    "up_popular_share",
    "up_log_account_age_days",
    "up_relative_view",
)
_ZONE_SLOT = {zone: i for i, zone in enumerate(MAIN_ZONES)}


def _visible(rows: Sequence[Row], as_of: int) -> int:
    """Number of leading rows with ts <= as_of; raise if there is none (the caller's guarantee)."""
    n = bisect_right(rows, as_of, key=lambda row: row[0])
    if n == 0:
        raise ValueError(f"no snapshot at or before as_of={as_of}")
    return n


def _log1p10(x: float) -> float:
    return math.log10(x + 1.0) if x > 0 else 0.0


def _per_hour(delta: float, seconds: int) -> float:
    return delta * 3600.0 / max(seconds, MIN_ELAPSED_S)


def _engagement(last: Row) -> float:
    """Seed 000: (like + 2·coin + favorite + share + reply + danmaku) / view, 0 without views."""
    _, view, like, coin, favorite, reply, danmaku, share = last
    if view <= 0:
        return 0.0
    return (like + 2 * coin + favorite + share + reply + danmaku) / view


def _views_at(rows: Sequence[Row], n: int, pubdate: int, t: float) -> float:
    """Views at time t, linear between observations, with the publication itself as (pubdate, 0)."""
    i = bisect_right(rows, t, 0, n, key=lambda row: row[0])
    if i == n:
        return float(rows[n - 1][1])
    t1, v1 = rows[i][0], rows[i][1]
    t0, v0 = (rows[i - 1][0], rows[i - 1][1]) if i > 0 else (pubdate, 0)
    if t1 <= t0:
        return float(v1)
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def early_metrics(rows: Sequence[Row], video: VideoStatic, as_of: int) -> EarlyMetrics:
    """Seed 001's `video_early_metrics` at as_of: counts of the last visible row and two ratios."""
    last = rows[_visible(rows, as_of) - 1]
    ts, view, like, coin, favorite, reply, danmaku, share = last
    return EarlyMetrics(
        view=view,
        like=like,
        coin=coin,
        favorite=favorite,
        reply=reply,
        danmaku=danmaku,
        share=share,
        view_rate=_per_hour(view, ts - video.pubdate),
        engagement_ratio=_engagement(last),
    )


def _up_features(up: UpStats | None, view: int) -> list[float]:
    """Seed 000's UP features and seed 001's profile fields; all 0 with has_profile 0 when unknown.

    `up_relative_view` compares this video's views with the uploader's usual ones: a video far above
    its uploader's average is the early sign of a breakout, whatever the uploader's size.
    """
    if up is None:
        return [0.0] * 10
    archives = up.archive_count
    avg_view = up.historical_avg_view
    if avg_view is None:
        avg_view = up.total_view / archives if archives > 0 else 0.0
    popular = up.historical_popular_count or 0
    like = up.total_like
    return [
        1.0,
        _log1p10(up.follower),
        _log1p10(up.total_view),
        like / up.total_view if like is not None and up.total_view > 0 else 0.0,
        _log1p10(archives),
        _log1p10(avg_view),
        _log1p10(popular),
        min(popular / archives, 1.0) if archives > 0 else 0.0,
        _log1p10(up.account_age_days or 0),
        _log1p10(view) - _log1p10(avg_view),
    ]


def feature_vector(
    rows: Sequence[Row], video: VideoStatic, as_of: int, up: UpStats | None = None
) -> list[float]:
    """FEATURE_NAMES values at as_of from rows sorted by ts; every value finite, missing ones 0.

    Rates and the growth shape use the observed span (publication to the last visible row), so a
    late or missing snapshot shows up in `hours_since_last` instead of faking a slowdown. `up` is the
    uploader's profile as of as_of (None: unknown, has_profile 0).
    """
    n = _visible(rows, as_of)
    last = rows[n - 1]
    ts, view = last[0], last[1]
    pubdate = video.pubdate
    elapsed = max(ts - pubdate, 0)
    prev_ts, prev_view = (rows[n - 2][0], rows[n - 2][1]) if n > 1 else (pubdate, 0)
    half_views = _views_at(rows, n, pubdate, pubdate + elapsed / 2)

    out = [_log1p10(c) for c in last[1:]]
    follower = video.follower
    out += [_log1p10(follower or 0), 0.0 if follower is None else 1.0]
    out += [c / view if view > 0 else 0.0 for c in last[2:]]
    out.append(_engagement(last))
    out += [
        _log1p10(_per_hour(view, elapsed)),
        _log1p10(_per_hour(view - prev_view, ts - prev_ts)),
        _log1p10(half_views),
        min(1.0, max(-1.0, (view - 2 * half_views) / view)) if view > 0 else 0.0,
        float(n),
        max(as_of - ts, 0) / 3600.0,
    ]
    duration = video.duration
    out += [_log1p10(duration or 0), 0.0 if duration is None else 1.0]
    local = pubdate + BEIJING_OFFSET_S
    hour_angle = 2 * math.pi * (local % 86400) / 86400
    weekday_angle = 2 * math.pi * ((local // 86400 + 3) % 7) / 7  # 1970-01-01 was a Thursday (3)
    out += [
        math.sin(hour_angle),
        math.cos(hour_angle),
        math.sin(weekday_angle),
        math.cos(weekday_angle),
    ]
    zones = [0.0] * (len(MAIN_ZONES) + 1)
    zone = zone_of(video.tid)
    zones[len(MAIN_ZONES) if zone is None else _ZONE_SLOT[zone]] = 1.0
    out += zones
    out += _up_features(up, view)
    return out
