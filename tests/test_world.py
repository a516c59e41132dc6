"""The synthetic world: deterministic, ordered, valid, bounded in memory, and shaped like Bilibili.

Each property of docs/simulator.md is checked on generated worlds with the number it is set to.
"""

from __future__ import annotations

import shutil
import time
import tracemalloc
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from core.events import BadEvent, Event, HotListEntry, Snapshot, UpProfile, parse_event
from core.reference import BEIJING, COUNT_FIELDS, ZONE_OF_TID
from ingest.calibrate import KS_LIMIT, TV_LIMIT, distances, load_real, simulated
from ingest.captures import captures
from ingest.eventlog import write_log
from ingest.world import (
    DEFAULT_START_TS,
    LATE_DELAY_S,
    RATE_MEDIANS,
    ZONES,
    WorldConfig,
    _hour_counts,
    generate,
)

SMALL = WorldConfig(videos=300, sim_hours=30, seed=3)
BIG = WorldConfig(videos=6000, sim_hours=48, seed=11)
STATIC = ("pubdate", "mid", "tid", "tname", "tid_v2", "duration", "title", "tags", "follower")


@pytest.fixture(scope="module")
def small() -> list[Event]:
    return list(generate(SMALL))


@pytest.fixture(scope="module")
def big() -> list[Event]:
    return list(generate(BIG))


def by_video(events: list[Event]) -> dict[str, list[Snapshot]]:
    videos: dict[str, list[Snapshot]] = defaultdict(list)
    for event in events:
        if isinstance(event, Snapshot):
            videos[event.bvid].append(event)
    return videos


def first_entries(events: list[Event]) -> dict[str, int]:
    first: dict[str, int] = {}
    for event in events:
        if isinstance(event, HotListEntry):
            first.setdefault(event.bvid, event.ts)
    return first


def test_default_start_is_beijing_midnight() -> None:
    assert datetime.fromtimestamp(DEFAULT_START_TS, BEIJING).isoformat() == "2026-11-02T00:00:00+08:00"


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    cfg = WorldConfig(videos=120, sim_hours=12, seed=5)
    logs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        path = tmp_path / f"{name}.jsonl"
        write_log(path, generate(replace(cfg, seed=seed)), progress=False)
        logs.append(path.read_bytes())
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


def test_event_time_order_and_world_end(small: list[Event]) -> None:
    stamps = [e.ts for e in small if isinstance(e, Snapshot | UpProfile | HotListEntry)]
    assert len(stamps) == len(small)
    assert stamps == sorted(stamps)
    assert SMALL.start_ts <= stamps[0] and stamps[-1] <= SMALL.end_ts


def test_every_event_validates_against_its_model(small: list[Event]) -> None:
    for event in small:
        assert parse_event(type(event), event.to_json()) == event


@pytest.mark.slow
def test_counts_monotone_and_static_fields_fixed(big: list[Event]) -> None:
    for snaps in by_video(big).values():
        for field in COUNT_FIELDS:
            values = [getattr(s, field) for s in snaps]
            assert values == sorted(values), field
        for field in STATIC:
            assert len({repr(getattr(s, field)) for s in snaps}) == 1, field
        assert all(getattr(snaps[0], f) is not None for f in STATIC)


@pytest.mark.slow
def test_followers_heavy_tailed_over_orders_of_magnitude(big: list[Event]) -> None:
    videos = by_video(big)
    profiles = [e for e in big if isinstance(e, UpProfile)]
    profile_of = {p.mid: p for p in profiles}
    assert len(profile_of) == len(profiles)  # one profile per uploader, before their first upload
    for snaps in videos.values():
        profile = profile_of[snaps[0].mid or 0]
        assert profile.ts <= snaps[0].pubdate and profile.follower == snaps[0].follower
    assert len(profile_of) < len(videos)  # some uploaders post more than once
    log_f = np.log10(np.array([p.follower for p in profile_of.values()]) + 1)
    assert 2.2 < np.median(log_f) < 3.0  # docs: median 10^2.58
    assert log_f.min() < 1.0 and log_f.max() > 6.5  # tens to millions: seven orders
    assert 1.2 < np.std(log_f) < 1.7  # docs: sigma 1.44 (clipped)


@pytest.mark.slow
def test_zones_and_subzones_are_real_with_their_shares(big: list[Event]) -> None:
    first = [s[0] for s in by_video(big).values()]
    names = {(sub.tid, sub.tname, z.tid_v2) for z in ZONES for sub in z.subzones}
    assert {(s.tid, s.tname, s.tid_v2) for s in first} <= names
    main_of = {sub.tid: z.tid for z in ZONES for sub in z.subzones}
    assert all(
        ZONE_OF_TID.get(s.tid or 0, 202) == main_of[s.tid or 0] for s in first if main_of[s.tid or 0] != 202
    )
    seen = Counter(main_of[s.tid or 0] for s in first)
    total = sum(z.share for z in ZONES)
    tv = 0.5 * sum(abs(seen[z.tid] / len(first) - z.share / total) for z in ZONES)
    assert tv < 0.04
    for zone in (ZONES[0], ZONES[1]):  # 生活 and 游戏: median duration as configured (±25 %)
        durations = [s.duration or 0 for s in first if main_of[s.tid or 0] == zone.tid]
        assert 0.75 < np.median(durations) / zone.duration_median_s < 1.25


@pytest.mark.slow
def test_hot_share_near_base_rate(big: list[Event]) -> None:
    first = first_entries(big)
    full = [b for b, s in by_video(big).items() if s[0].pubdate <= BIG.end_ts - BIG.hot_max_entry_age_s]
    share = sum(b in first for b in full) / len(full)
    assert 0.5 * BIG.hot_base_rate <= share <= 1.7 * BIG.hot_base_rate  # default 1 %


@pytest.mark.slow
def test_hot_entries_follow_the_refresh_rule(big: list[Event]) -> None:
    videos = by_video(big)
    ranks: dict[int, list[int]] = defaultdict(list)
    per_video: dict[str, list[int]] = defaultdict(list)
    for e in big:
        if isinstance(e, HotListEntry):
            assert e.source == "popular" and e.ts % BIG.hot_refresh_s == 0
            ranks[e.ts].append(e.rank)
            per_video[e.bvid].append(e.ts)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks.values())
    ages = []
    for bvid, stamps in per_video.items():
        pubdate = videos[bvid][0].pubdate
        ages.append((stamps[0] - pubdate) / 3600)
        assert BIG.hot_min_age_s <= stamps[0] - pubdate <= BIG.hot_max_entry_age_s  # enters in day one
        assert len(stamps) <= BIG.hot_max_entries
        assert np.all(np.diff(stamps) == BIG.hot_refresh_s)  # one per refresh while listed
    assert np.median(ages) > 3  # the list is not decided at the first chance


@pytest.mark.slow
def test_engagement_rates_in_realistic_ranges(big: list[Event]) -> None:
    first = first_entries(big)
    last = {b: s[-1] for b, s in by_video(big).items() if s[-1].view >= 1000}
    rate = {f: np.median([getattr(s, f) / s.view for s in last.values()]) for f in COUNT_FIELDS[1:]}
    assert 0.02 < rate["like"] < 0.07  # likes a few percent (docs: median 3.8 %)
    assert rate["coin"] < rate["like"] / 4 and rate["favorite"] < rate["like"] / 4
    assert all(0.0003 < rate[f] < 0.005 for f in ("reply", "danmaku", "share"))
    hot = [s for b, s in last.items() if b in first]
    cold = [s for b, s in last.items() if b not in first]
    assert np.median([s.follower for s in hot]) > 10 * np.median([s.follower for s in cold])
    assert np.median([s.like / s.view for s in hot]) > RATE_MEDIANS[0]  # the list favours engagement


@pytest.mark.slow
def test_early_growth_depends_on_followers(big: list[Event]) -> None:
    rows = []
    for snaps in by_video(big).values():
        at_1h = [s.view for s in snaps if s.ts <= s.pubdate + 3600]
        if at_1h:
            rows.append((np.log10((snaps[0].follower or 0) + 1), np.log10(at_1h[-1] + 1)))
    follower, views = np.array(rows).T
    assert np.corrcoef(follower, views)[0, 1] > 0.5


@pytest.mark.slow
def test_early_views_are_informative_not_decisive(big: list[Event]) -> None:
    first = first_entries(big)
    rows = []
    for bvid, snaps in by_video(big).items():
        if snaps[0].pubdate <= BIG.end_ts - BIG.hot_max_entry_age_s:
            at_1h = [s.view for s in snaps if s.ts <= s.pubdate + 3600]
            rows.append((at_1h[-1] if at_1h else 0, bvid in first))
    views = np.array([v for v, _ in rows])
    hot = np.array([h for _, h in rows])
    threshold = np.quantile(views, 1 - hot.mean())  # as many flagged as there are hot videos
    precision = hot[views >= threshold].mean()
    assert 0.1 < precision < 0.9


@pytest.mark.slow
def test_collector_cadence_dense_then_sparse(big: list[Event]) -> None:
    for snaps in by_video(big).values():
        pubdate = snaps[0].pubdate
        offsets = np.array([s.ts - pubdate for s in snaps])
        assert 0 < offsets[0] <= BIG.first_seen_max_s + BIG.jitter_s
        assert offsets[-1] <= BIG.observe_window_s and pubdate + offsets[-1] <= BIG.end_ts
        gaps = np.diff(offsets)
        dense = gaps[offsets[1:] <= BIG.dense_window_s]
        sparse = gaps[offsets[:-1] > BIG.dense_window_s]
        assert np.all(abs(dense - BIG.snapshot_interval_s) <= 2 * BIG.jitter_s)
        assert np.all(abs(sparse - BIG.sparse_interval_s) <= 8 * BIG.jitter_s)


def test_daily_and_weekly_rhythm_beijing() -> None:
    four_weeks = WorldConfig(videos=200_000, sim_hours=28 * 24, seed=1)
    lo, counts = _hour_counts(np.random.default_rng(0), four_weeks, four_weeks.videos)
    local = [datetime.fromtimestamp(int(t), BEIJING) for t in lo]
    by_hour, by_day = Counter(), Counter()
    for when, n in zip(local, counts.tolist(), strict=True):
        by_hour[when.hour] += n
        by_day[when.weekday()] += n
    assert sum(by_hour[h] for h in (17, 18)) > 10 * sum(by_hour[h] for h in (3, 4))  # evening peak
    assert by_hour[18] == max(by_hour.values())
    assert by_day[5] > 1.25 * by_day[0]  # Saturday over Monday (docs: 1.21 vs 0.88)


def test_noise_duplicates_reorders_delays_and_misses(small: list[Event]) -> None:
    noisy = list(generate(replace(SMALL, noise=0.2)))
    snaps = [e for e in noisy if isinstance(e, Snapshot)]
    clean = {(s.bvid, s.ts): s for s in small if isinstance(s, Snapshot)}
    seen = Counter((s.bvid, s.ts) for s in snaps)
    duplicates = sum(n - 1 for n in seen.values())
    missed = len(clean) - len(seen)
    latest: dict[str, int] = {}
    out_of_order = late = 0
    for s in snaps:
        if s.ts < latest.get(s.bvid, 0) and seen[(s.bvid, s.ts)] == 1:
            out_of_order += 1
            late += latest[s.bvid] - s.ts >= LATE_DELAY_S[0] - SMALL.sparse_interval_s
        latest[s.bvid] = max(s.ts, latest.get(s.bvid, 0))
    n = len(clean)
    assert 0.03 * n < duplicates < 0.09 * n  # 0.2 · 0.3
    assert 0.02 * n < missed < 0.06 * n  # 0.2 · 0.2
    assert 0.05 * n < out_of_order < 0.12 * n  # delayed 0.2 · 0.3 and late 0.2 · 0.2 (some at the end)
    assert late > 0.01 * n
    assert all(clean[(s.bvid, s.ts)] == s for s in snaps)  # same world underneath
    assert [e for e in noisy if not isinstance(e, Snapshot)] == [
        e for e in small if not isinstance(e, Snapshot)
    ]


def test_malformed_share_is_rejected_by_the_contract(small: list[Event]) -> None:
    noisy = list(generate(replace(SMALL, malformed=0.05)))
    bad = 0
    for event in noisy:
        try:
            parse_event(type(event), event.to_json())
        except BadEvent:
            bad += 1
    snapshots = sum(isinstance(e, Snapshot) for e in small)
    assert len(noisy) - len(small) == bad
    assert 0.035 * snapshots < bad < 0.065 * snapshots


def test_noise_is_deterministic() -> None:
    cfg = WorldConfig(videos=40, sim_hours=8, seed=2, noise=0.2, malformed=0.1)
    assert [e.to_json() for e in generate(cfg)] == [e.to_json() for e in generate(cfg)]


@pytest.mark.slow
def test_memory_does_not_grow_with_videos() -> None:
    """Same upload rate, three times the videos: the peak of traced allocations stays put."""
    peaks = []
    for scale in (1, 3):
        tracemalloc.start()
        for _ in generate(WorldConfig(videos=400 * scale, sim_hours=30.0 * scale, seed=4)):
            pass
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0], peaks


def test_generation_speed_400_videos_10_hours() -> None:
    started = time.perf_counter()
    count = sum(1 for _ in generate(WorldConfig(videos=400, sim_hours=10, seed=1)))
    assert count > 10_000
    assert time.perf_counter() - started < 10


@pytest.mark.slow
def test_calibration_holds_on_held_out_days(real_captures: Path, tmp_path: Path) -> None:
    """Every distance within its limit on the first ten days and, separately, on the other eleven."""
    sim = simulated(WorldConfig(seed=2), videos=200_000, days=10)
    days = captures(real_captures)
    for name, part in (("early", days[:10]), ("late", days[10:])):
        folder = tmp_path / name
        folder.mkdir()
        for capture in part:
            shutil.copy(capture.path, folder)
        shutil.copy(real_captures / "manifest.csv", folder)
        for prop, value in distances(load_real(folder), sim).items():
            assert value <= (TV_LIMIT if "TV" in prop else KS_LIMIT), (name, prop, value)


@pytest.mark.parametrize(
    "bad",
    [
        {"videos": -1},
        {"sim_hours": 0},
        {"noise": 1.5},
        {"malformed": -0.1},
        {"hot_base_rate": 0.0},
        {"jitter_s": 200},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WorldConfig(**bad)  # type: ignore[arg-type]
