"""The shared feature function: hand-computed values, the leakage rule, finiteness on edge cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.reference import MAIN_ZONES, zone_of
from model.features import FEATURE_NAMES, Row, UpStats, VideoStatic, early_metrics, feature_vector

PUB = 1_704_110_400
"""2024-01-01 12:00 UTC = Monday 20:00 in Beijing."""
ROWS: list[Row] = [
    (PUB + 600, 100, 10, 5, 4, 3, 2, 1),
    (PUB + 1800, 400, 40, 20, 16, 12, 8, 4),
    (PUB + 3000, 1000, 100, 50, 40, 30, 20, 10),
    (PUB + 4000, 99_999, 9_999, 999, 999, 999, 999, 999),
]
VIDEO = VideoStatic(pubdate=PUB, duration=300, tid=17, follower=9_999)


def named(rows: list[Row], video: VideoStatic, as_of: int) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, feature_vector(rows, video, as_of), strict=True))


def test_hand_computed_example() -> None:
    got = named(ROWS, VIDEO, PUB + 3600)
    expected = {
        "log_view": math.log10(1001),
        "log_like": math.log10(101),
        "log_coin": math.log10(51),
        "log_favorite": math.log10(41),
        "log_reply": math.log10(31),
        "log_danmaku": math.log10(21),
        "log_share": math.log10(11),
        "log_follower": 4.0,
        "has_follower": 1.0,
        "like_per_view": 0.1,
        "coin_per_view": 0.05,
        "favorite_per_view": 0.04,
        "reply_per_view": 0.03,
        "danmaku_per_view": 0.02,
        "share_per_view": 0.01,
        "engagement_rate": (100 + 2 * 50 + 40 + 10 + 30 + 20) / 1000,
        "log_view_rate": math.log10(1000 * 3600 / 3000 + 1),  # 1200 views/h over 50 min
        "log_view_rate_last": math.log10(600 * 3600 / 1200 + 1),  # +600 views in 20 min
        "log_view_half": math.log10(100 + 300 * 900 / 1200 + 1),  # 325 views at minute 25
        "view_accel": (1000 - 2 * 325) / 1000,
        "snapshot_count": 3.0,
        "hours_since_last": 600 / 3600,
        "log_duration": math.log10(301),
        "has_duration": 1.0,
        "pub_hour_sin": math.sin(2 * math.pi * 20 / 24),
        "pub_hour_cos": math.cos(2 * math.pi * 20 / 24),
        "pub_weekday_sin": 0.0,
        "pub_weekday_cos": 1.0,
        **{f"zone_{z}": float(z == 4) for z in MAIN_ZONES},  # tid 17 单机游戏 is in 4 游戏
        "zone_other": 0.0,
        **{name: 0.0 for name in FEATURE_NAMES if name == "has_profile" or name.startswith("up_")},
    }
    assert list(got) == list(expected)
    assert got == pytest.approx(expected, abs=1e-12)


def test_up_profile_features() -> None:
    up = UpStats(
        follower=99_999,
        archive_count=50,
        total_view=999_999,
        total_like=40_000,
        historical_avg_view=9_999.0,
        historical_popular_count=5,
        account_age_days=999,
    )
    got = {k: v for k, v in named_with(ROWS, VIDEO, PUB + 3600, up).items() if k.startswith("up_")}
    assert named_with(ROWS, VIDEO, PUB + 3600, up)["has_profile"] == 1.0
    assert got == pytest.approx(
        {
            "up_log_follower": 5.0,
            "up_log_total_view": 6.0,
            "up_like_rate": 0.04,
            "up_log_archive_count": math.log10(51),
            "up_log_avg_view": 4.0,
            "up_log_popular_count": math.log10(6),
            "up_popular_share": 0.1,
            "up_log_account_age_days": 3.0,
            "up_relative_view": math.log10(1001) - 4.0,  # this video's views against the usual ones
        },
        abs=1e-6,
    )
    bare = named_with(ROWS, VIDEO, PUB + 3600, UpStats(follower=0, archive_count=4, total_view=4000))
    assert bare["up_log_avg_view"] == pytest.approx(math.log10(1001))  # total_view / archive_count
    assert bare["up_like_rate"] == 0.0 and bare["up_popular_share"] == 0.0


def named_with(rows: list[Row], video: VideoStatic, as_of: int, up: UpStats) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, feature_vector(rows, video, as_of, up), strict=True))


def test_early_metrics_match_the_last_visible_row() -> None:
    m = early_metrics(ROWS, VIDEO, PUB + 3600)
    assert (m.view, m.like, m.coin, m.favorite, m.reply, m.danmaku, m.share) == ROWS[2][1:]
    assert m.view_rate == pytest.approx(1200.0)
    assert m.engagement_ratio == pytest.approx(0.3)


def test_no_visible_row_is_refused() -> None:
    with pytest.raises(ValueError, match="no snapshot"):
        feature_vector(ROWS, VIDEO, PUB + 599)


def test_zones() -> None:
    assert zone_of(4) == 4
    assert zone_of(17) == 4
    assert zone_of(13) is None  # 番剧 is not a main zone of the one-hot
    assert zone_of(None) is None
    vec = named(ROWS, VideoStatic(PUB, None, None, None), PUB + 3600)
    assert vec["zone_other"] == 1.0
    assert sum(v for k, v in vec.items() if k.startswith("zone_")) == 1.0


counts = st.integers(min_value=0, max_value=10**12)
statics = st.builds(
    VideoStatic,
    pubdate=st.integers(min_value=1_300_000_000, max_value=2_000_000_000),
    duration=st.none() | st.integers(min_value=0, max_value=864_000),
    tid=st.none() | st.integers(min_value=0, max_value=300),
    follower=st.none() | counts,
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[VideoStatic, list[Row], int]:
    """A video, rows sorted by unique ts from its publication on, and an as_of at or after row 0."""
    video = draw(statics)
    offsets = sorted(draw(st.sets(st.integers(0, 30_000), min_size=1, max_size=12)))
    rows: list[Row] = [(video.pubdate + dt, *draw(st.tuples(*[counts] * 7))) for dt in offsets]
    as_of = rows[0][0] + draw(st.integers(0, 40_000))
    return video, rows, as_of


@given(histories(), st.lists(st.tuples(*[counts] * 7), max_size=5))
def test_rows_after_as_of_change_nothing(
    case: tuple[VideoStatic, list[Row], int], future: list[tuple[int, ...]]
) -> None:
    video, rows, as_of = case
    visible = [r for r in rows if r[0] <= as_of]
    leaked = visible + [cast(Row, (as_of + 1 + i, *c)) for i, c in enumerate(future)]
    assert feature_vector(leaked, video, as_of) == feature_vector(visible, video, as_of)
    assert feature_vector(rows, video, as_of) == feature_vector(visible, video, as_of)
    assert early_metrics(leaked, video, as_of) == early_metrics(visible, video, as_of)


@given(histories())
def test_always_finite_and_fixed_length(case: tuple[VideoStatic, list[Row], int]) -> None:
    video, rows, as_of = case
    vec = feature_vector(rows, video, as_of)
    assert len(vec) == len(FEATURE_NAMES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in vec)


@given(st.integers(min_value=1_300_000_000, max_value=2_000_000_000))
def test_publish_time_is_beijing_time(pubdate: int) -> None:
    local = datetime.fromtimestamp(pubdate, UTC) + timedelta(hours=8)
    rows: list[Row] = [(pubdate, 0, 0, 0, 0, 0, 0, 0)]
    vec = named(rows, VideoStatic(pubdate, None, 1, None), pubdate)
    hour = 2 * math.pi * (local.hour * 3600 + local.minute * 60 + local.second) / 86400
    day = 2 * math.pi * local.weekday() / 7
    assert vec["pub_hour_sin"] == pytest.approx(math.sin(hour), abs=1e-9)
    assert vec["pub_hour_cos"] == pytest.approx(math.cos(hour), abs=1e-9)
    assert vec["pub_weekday_sin"] == pytest.approx(math.sin(day), abs=1e-9)
    assert vec["pub_weekday_cos"] == pytest.approx(math.cos(day), abs=1e-9)


@pytest.mark.parametrize(
    ("rows", "video"),
    [
        pytest.param([(PUB + 60, 0, 0, 0, 0, 0, 0, 0)], VIDEO, id="zero-views"),
        pytest.param([(PUB, 50, 5, 0, 0, 0, 0, 0)], VIDEO, id="one-row-at-publication"),
        pytest.param(ROWS[:1], VideoStatic(PUB, None, None, None), id="no-static-fields"),
        pytest.param(
            [(PUB + 60, 9, 0, 0, 0, 0, 0, 0), (PUB + 61, 3, 0, 0, 0, 0, 0, 0)], VIDEO, id="views-going-down"
        ),
    ],
)
def test_edge_cases_stay_finite(rows: list[Row], video: VideoStatic) -> None:
    vec = named(rows, video, PUB + 3600)
    assert all(math.isfinite(v) for v in vec.values())
    assert -1.0 <= vec["view_accel"] <= 1.0
    assert vec["has_follower"] == float(video.follower is not None)
    assert vec["has_duration"] == float(video.duration is not None)
