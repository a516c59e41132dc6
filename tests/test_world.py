"""The synthetic world: deterministic, ordered, valid, and shaped like Bilibili."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from hotvideo.events import Event, HotListEntry, Snapshot, UpProfile, parse_event
from ingest.eventlog import write_log
from ingest.world import BEIJING, DEFAULT_START_TS, ZONES, WorldConfig, generate

SMALL = WorldConfig(videos=300, sim_hours=30, seed=3)
BIG = WorldConfig(videos=4000, sim_hours=48, seed=11)
COUNTS = ("view", "like", "coin", "favorite", "reply", "danmaku", "share")
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


def test_counts_monotone_and_static_fields_fixed(big: list[Event]) -> None:
    for snaps in by_video(big).values():
        for field in COUNTS:
            values = [getattr(s, field) for s in snaps]
            assert values == sorted(values), field
        for field in STATIC:
            assert len({repr(getattr(s, field)) for s in snaps}) == 1, field
        assert all(getattr(snaps[0], f) is not None for f in STATIC)


def test_videos_uploaders_and_profiles(big: list[Event]) -> None:
    videos = by_video(big)
    assert 0.99 * BIG.videos <= len(videos) <= BIG.videos
    profiles = [e for e in big if isinstance(e, UpProfile)]
    assert len({p.mid for p in profiles}) == len(profiles)
    mids = {s[0].mid for s in videos.values()}
    assert mids <= {p.mid for p in profiles}
    assert len(profiles) - len(mids) <= BIG.videos - len(videos)  # published just before the end
    assert len(profiles) < len(videos)  # some uploaders post more than once
    profile_of: dict[int | None, UpProfile] = {p.mid: p for p in profiles}
    for snaps in videos.values():
        profile = profile_of[snaps[0].mid]
        assert profile.ts <= snaps[0].pubdate
        assert profile.follower == snaps[0].follower
    followers = np.array([p.follower for p in profiles])
    assert followers.min() < 100 and followers.max() > 1_000_000  # tens to millions
    assert 1_000 < np.median(followers) < 30_000


def test_zones_are_real_main_zones(big: list[Event]) -> None:
    table = {(z.tid, z.tname, z.tid_v2) for z in ZONES}
    seen = Counter((s[0].tid, s[0].tname, s[0].tid_v2) for s in by_video(big).values())
    assert set(seen) <= table
    assert len(seen) == len(ZONES)
    assert seen.most_common(1)[0][0][1] in ("生活", "游戏")


def test_hot_share_near_base_rate_for_fully_observed_videos(big: list[Event]) -> None:
    first = first_entries(big)
    full = [b for b, s in by_video(big).items() if s[0].pubdate <= BIG.end_ts - BIG.observe_window_s]
    share = sum(b in first for b in full) / len(full)
    assert 0.5 * BIG.hot_base_rate <= share <= 1.6 * BIG.hot_base_rate


def test_hot_entries_follow_the_refresh_rule(big: list[Event]) -> None:
    videos = by_video(big)
    entries = [e for e in big if isinstance(e, HotListEntry)]
    ranks: dict[int, list[int]] = defaultdict(list)
    per_video: dict[str, list[int]] = defaultdict(list)
    for e in entries:
        assert e.source == "popular" and e.ts % BIG.hot_refresh_s == 0
        ranks[e.ts].append(e.rank)
        per_video[e.bvid].append(e.ts)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks.values())
    ages = []
    for bvid, stamps in per_video.items():
        pubdate = videos[bvid][0].pubdate
        ages.append((stamps[0] - pubdate) / 3600)
        assert stamps[0] - pubdate >= BIG.hot_min_age_s
        assert len(stamps) <= BIG.hot_max_entries
        assert np.all(np.diff(stamps) == BIG.hot_refresh_s)  # one per refresh while listed
    assert np.median(ages) > 3  # the list is not decided at the first chance


def test_hot_videos_look_like_real_hot_videos(big: list[Event]) -> None:
    first = first_entries(big)
    last = {b: s[-1] for b, s in by_video(big).items()}
    hot = [s for b, s in last.items() if b in first]
    cold = [s for b, s in last.items() if b not in first]
    assert np.median([s.follower for s in hot]) > 10 * np.median([s.follower for s in cold])
    like_rate = np.median([s.like / s.view for s in hot if s.view])
    coin_rate = np.median([s.coin / s.view for s in hot if s.view])
    assert 0.04 < like_rate < 0.14 and 0.003 < coin_rate < 0.02  # real captures: 8 % and 0.9 %
    early = [s for b, s in last.items() if b in first and s.ts - s.pubdate >= 20 * 3600]
    assert np.median([s.view for s in early]) > 100_000


def test_early_views_are_informative_not_decisive(big: list[Event]) -> None:
    first = first_entries(big)
    rows = []
    for bvid, snaps in by_video(big).items():
        if snaps[0].pubdate <= BIG.end_ts - BIG.observe_window_s:
            at_1h = [s.view for s in snaps if s.ts <= s.pubdate + 3600]
            rows.append((at_1h[-1] if at_1h else 0, bvid in first))
    views = np.array([v for v, _ in rows])
    hot = np.array([h for _, h in rows])
    threshold = np.quantile(views, 1 - hot.mean())  # as many flagged as there are hot videos
    precision = hot[views >= threshold].mean()
    assert 0.2 < precision < 0.9


def test_collector_cadence_dense_then_sparse(big: list[Event]) -> None:
    for snaps in by_video(big).values():
        pubdate = snaps[0].pubdate
        offsets = np.array([s.ts - pubdate for s in snaps])
        assert 0 < offsets[0] <= BIG.first_seen_max_s + BIG.jitter_s
        assert offsets[-1] <= BIG.observe_window_s
        assert pubdate + offsets[-1] <= BIG.end_ts
        gaps = np.diff(offsets)
        dense = gaps[offsets[1:] <= BIG.dense_window_s]
        sparse = gaps[offsets[:-1] > BIG.dense_window_s]
        assert np.all(abs(dense - BIG.snapshot_interval_s) <= 2 * BIG.jitter_s)
        assert np.all(abs(sparse - BIG.sparse_interval_s) <= 8 * BIG.jitter_s)
    full = [s for s in by_video(big).values() if s[0].pubdate <= BIG.end_ts - BIG.observe_window_s]
    assert all(s[-1].ts - s[0].pubdate >= BIG.observe_window_s - 4 * BIG.jitter_s for s in full)


def test_daily_rhythm_peaks_in_the_evening(big: list[Event]) -> None:
    hours = Counter(datetime.fromtimestamp(s[0].pubdate, BEIJING).hour for s in by_video(big).values())
    evening = sum(hours[h] for h in range(17, 21))
    small_hours = sum(hours[h] for h in range(2, 6))
    assert evening > 5 * small_hours


def test_noise_adds_duplicates_and_late_snapshots_only(small: list[Event]) -> None:
    noisy = list(generate(replace(SMALL, noise=0.1)))
    snaps = [e for e in noisy if isinstance(e, Snapshot)]
    seen = Counter((s.bvid, s.ts) for s in snaps)
    duplicates = sum(n - 1 for n in seen.values())
    latest: dict[str, int] = {}
    out_of_order = 0  # delivered after a later snapshot of the same video, and not a duplicate
    for s in snaps:
        out_of_order += s.ts < latest.get(s.bvid, 0) and seen[(s.bvid, s.ts)] == 1
        latest[s.bvid] = max(s.ts, latest.get(s.bvid, 0))
    clean = [e for e in small if isinstance(e, Snapshot)]
    assert 0.02 * len(clean) < duplicates < 0.08 * len(clean)
    assert 0.02 * len(clean) < out_of_order < 0.08 * len(clean)
    assert {s.to_json() for s in snaps} == {s.to_json() for s in clean}  # same world underneath
    assert [e for e in noisy if not isinstance(e, Snapshot)] == [
        e for e in small if not isinstance(e, Snapshot)
    ]


def test_noise_is_deterministic() -> None:
    cfg = WorldConfig(videos=40, sim_hours=8, seed=2, noise=0.2)
    assert list(generate(cfg)) == list(generate(cfg))


def test_generation_speed_400_videos_10_hours() -> None:
    started = time.perf_counter()
    count = sum(1 for _ in generate(WorldConfig(videos=400, sim_hours=10, seed=1)))
    assert count > 10_000
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    "bad",
    [{"videos": -1}, {"sim_hours": 0}, {"noise": 1.5}, {"hot_base_rate": 0.0}, {"jitter_s": 200}],
)
def test_config_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WorldConfig(**bad)  # type: ignore[arg-type]
