"""Event-time checkpoint rules of DESIGN.md, on the pure Checkpointer with a dict as its table."""

from __future__ import annotations

from typing import Any

from stream.checkpoint import Checkpoint, Checkpointer, StateCache
from tests.harness.factories import BVID, T0, hot, snap

OTHER = "BV1ab4y1c7De"


def fired(cps: list[Checkpoint]) -> list[tuple[str, str, str]]:
    return [(c.bvid, c.horizon, c.status) for c in cps]


KEY = BVID.encode()


def make() -> tuple[Checkpointer, dict[bytes, Any]]:
    table: dict[bytes, Any] = {}
    return Checkpointer(StateCache(table), grace_s=600), table


def test_horizon_fires_on_first_snapshot_after_as_of_with_rows_up_to_as_of() -> None:
    cp, _ = make()
    assert cp.on_snapshot(snap(5, 100), 0) == []
    assert cp.on_snapshot(snap(55, 900), 0) == []
    out = cp.on_snapshot(snap(65, 1200), 0)
    assert fired(out) == [(BVID, "1h", "scored")]
    assert [r[0] - T0 for r in out[0].rows] == [300, 3300]  # the 65-minute row is not used
    assert out[0].as_of == T0 + 3600


def test_each_horizon_fires_once_and_state_shrinks_to_a_marker() -> None:
    cp, table = make()
    out = []
    for minute in range(5, 400, 5):
        out += cp.on_snapshot(snap(minute, minute * 10), 0)
    assert fired(out) == [(BVID, h, "scored") for h in ("1h", "3h", "6h")]
    cp.states.flush()
    assert table[KEY] == {"done": True, "pubdate": T0, "hot_ts": None, "label_hot": None, "decided": None}
    assert cp.on_snapshot(snap(200, 5), 0) == []  # a late snapshot cannot re-fire
    assert cp.stats["after_done"] >= 1


def test_a_gap_in_snapshots_fires_every_horizon_it_jumps_over() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(10), 0)
    out = cp.on_snapshot(snap(400), 0)
    assert fired(out) == [(BVID, "1h", "scored"), (BVID, "3h", "scored"), (BVID, "6h", "scored")]
    assert all(len(c.rows) == 1 for c in out)


def test_duplicates_are_dropped() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(5, 100), 0)
    cp.on_snapshot(snap(5, 999), 0)
    assert cp.states.flush() == 2  # the header of a new video and the chunk holding its one row
    assert cp.stats["duplicate"] == 1
    assert cp.states.rows.data == {b"0:1": [[BVID, T0 + 300, 100, 5, 1, 1, 0, 0, 0, 1000]]}


def test_out_of_order_snapshots_before_the_checkpoint_are_placed_in_order() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(30, 300), 0)
    cp.on_snapshot(snap(10, 100), 0)
    cp.on_snapshot(snap(20, 200), 0)
    out = cp.on_snapshot(snap(70, 700), 0)
    assert [r[1] for r in out[0].rows] == [100, 200, 300]


def test_late_snapshot_after_its_checkpoint_is_counted_and_ignored_for_that_horizon() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(10, 100), 0)
    first = cp.on_snapshot(snap(70, 700), 0)
    cp.on_snapshot(snap(50, 500), 0)  # belongs to 1h, which already fired
    assert cp.stats["late"] == 1
    assert [r[1] for r in first[0].rows] == [100]
    three = cp.on_snapshot(snap(190, 1900), 0)
    assert [r[1] for r in three[0].rows] == [100, 500, 700]  # still used for 3h


def test_hot_sighting_before_as_of_makes_already_hot_and_after_does_not() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(10), 0)
    cp.on_hot(hot(100), 0)
    out = cp.on_snapshot(snap(400), 0)
    assert fired(out) == [(BVID, "1h", "scored"), (BVID, "3h", "already_hot"), (BVID, "6h", "already_hot")]


def test_hot_sighting_before_the_first_snapshot_still_counts() -> None:
    cp, _ = make()
    cp.on_hot(hot(30), 0)
    cp.on_snapshot(snap(10), 0)
    assert fired(cp.on_snapshot(snap(70), 0)) == [(BVID, "1h", "already_hot")]


def test_first_snapshot_after_an_as_of_gives_insufficient_data_for_that_horizon() -> None:
    cp, _ = make()
    out = cp.on_snapshot(snap(90), 0)
    assert fired(out) == [(BVID, "1h", "insufficient_data")]
    assert out[0].rows == []


def test_video_first_seen_after_six_hours_is_not_scored_but_keeps_a_marker_for_its_label() -> None:
    cp, table = make()
    assert cp.on_snapshot(snap(20 * 60), 0) == []
    cp.states.flush()
    assert table[KEY]["done"] and table[KEY]["decided"] is None  # T (24 h) is not over yet
    assert cp.stats["untracked_old"] == 1
    assert [(o.bvid, o.label) for o in cp.take_outcomes()] == [(BVID, None)]


def test_watermark_fires_a_silent_video_after_grace() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(10), 0)  # the video then goes silent
    later = T0 + 3600  # another video, published an hour later, keeps the partition's clock going
    assert cp.on_snapshot(snap(5, bvid=OTHER, pubdate=later), 0) == []  # 1h + 5 min: within grace
    assert cp.on_snapshot(snap(10, bvid=OTHER, pubdate=later), 0) == []  # exactly 1h + grace
    out = cp.on_snapshot(snap(11, bvid=OTHER, pubdate=later), 0)  # past 1h + 10 min grace
    assert fired(out) == [(BVID, "1h", "scored")]


def test_watermarks_are_per_partition() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(10), 0)
    assert cp.on_snapshot(snap(20, bvid=OTHER, pubdate=T0 + 3 * 3600), 1) == []
    assert cp.watermarks == {0: T0 + 600, 1: T0 + 3 * 3600 + 1200}


def test_finished_marker_expires_after_retention() -> None:
    cp, table = make()
    cp.retention_s, cp.window_s, cp.outcome_retention_s = 3600, 3600, 0
    cp.on_snapshot(snap(10), 0)
    cp.on_snapshot(snap(400), 0)
    cp.states.flush()
    assert table[KEY]["done"]
    cp.on_snapshot(snap(5, bvid=OTHER, pubdate=T0 + 7 * 3600), 0)  # moves the watermark past 7 h
    cp.states.flush()
    assert KEY not in table
    assert cp.stats["expired"] == 1


def test_same_input_order_gives_same_checkpoints() -> None:
    events = [snap(m, m * 3, bvid=b) for m in range(5, 420, 7) for b in (BVID, OTHER)]
    runs = []
    for _ in range(2):
        cp, _ = make()
        runs.append([fired(cp.on_snapshot(e, 0)) for e in events])
    assert runs[0] == runs[1]


def test_state_survives_a_fresh_cache_over_the_same_table() -> None:
    """What a restarted worker sees: a new cache reading the states an earlier one flushed."""
    cp, table = make()
    cp.on_snapshot(snap(10, 100), 0)
    cp.on_snapshot(snap(20, 200), 0)
    cp.states.flush()
    restarted = Checkpointer(StateCache(table, cp.states.rows), grace_s=600)
    out = restarted.on_snapshot(snap(70, 700), 0)
    assert [r[1] for r in out[0].rows] == [100, 200]


def test_a_batch_writes_one_row_chunk_per_partition_and_headers_only_when_they_change() -> None:
    cp, table = make()
    cp.on_snapshot(snap(5, 100), 0)
    assert cp.states.flush() == 2  # new video: header + chunk
    cp.on_snapshot(snap(10, 200), 0)
    cp.on_snapshot(snap(15, 300), 0)
    cp.on_snapshot(snap(15, 300, bvid=OTHER), 1)
    assert cp.states.flush({0: 40, 1: 7}) == 3  # a chunk per partition, and OTHER's new header
    assert set(cp.states.rows.data) == {b"0:1", b"0:40", b"1:7"}
    assert len(cp.states.rows.data[b"0:40"]) == 2
    cp.on_snapshot(snap(65, 900), 0)
    assert cp.states.flush() == 2  # a chunk, and the header (1h fired)
    assert table[KEY]["fired"] == ["1h"]


def test_a_chunk_is_dropped_once_every_video_in_it_finished() -> None:
    cp, table = make()
    cp.on_snapshot(snap(5, 50), 0)
    cp.on_snapshot(snap(5, 50, bvid=OTHER), 0)
    cp.states.flush()
    for minute in (65, 190, 370):
        cp.on_snapshot(snap(minute, minute * 10), 0)
        cp.states.flush()
    assert table[KEY] == {"done": True, "pubdate": T0, "hot_ts": None, "label_hot": None, "decided": None}
    assert b"0:1" in cp.states.rows.data  # OTHER still needs its row
    cp.on_snapshot(snap(370, 999, bvid=OTHER), 0)
    cp.states.flush()
    assert cp.states.rows.data == {}


def test_a_restarted_cache_lets_go_of_rows_of_finished_videos() -> None:
    cp, table = make()
    cp.on_snapshot(snap(5, 50), 0)
    cp.on_snapshot(snap(5, 50, bvid=OTHER), 0)
    cp.states.flush()
    table[KEY] = {"done": True, "pubdate": T0, "hot_ts": None}  # finished; its chunk was shared
    restarted = StateCache(table, cp.states.rows)
    assert restarted.get(OTHER) is not None and restarted.members == {b"0:1": {OTHER}}


def outcomes(cp: Checkpointer) -> list[tuple[str, int | None, str | None, int]]:
    return [(o.bvid, o.label, o.source, o.covered_until) for o in cp.take_outcomes()]


DAY = 24 * 3600


def test_an_outcome_is_unknown_at_first_sight_and_decided_when_the_window_closes() -> None:
    cp, table = make()
    cp.on_snapshot(snap(5), 0)
    assert outcomes(cp) == [(BVID, None, None, T0 + 300)]
    close = T0 + DAY + 600  # pubdate + T + grace
    cp.on_snapshot(snap(5, bvid=OTHER, pubdate=close - 301), 0)  # the watermark one second short
    assert [o[:2] for o in outcomes(cp)] == [(OTHER, None)]
    cp.on_snapshot(snap(5, bvid=OTHER, pubdate=close - 300), 0)  # reaches the close
    assert outcomes(cp) == [(BVID, 0, None, T0 + DAY)]
    cp.states.flush()
    assert table[KEY]["decided"] == 0


def test_a_sighting_on_a_labelling_list_makes_a_positive_and_other_lists_do_not() -> None:
    cp, _ = make()
    cp.label_sources = frozenset({"weekly"})
    cp.on_snapshot(snap(5), 0)
    cp.on_hot(hot(30), 0)  # popular: already_hot, but not a positive for this configuration
    cp.take_outcomes()
    assert outcomes(cp) == []
    cp.on_hot(hot(90).model_copy(update={"source": "weekly"}), 0)  # a positive at once: final
    assert outcomes(cp) == [(BVID, 1, "weekly", T0 + 300)]
    cp.on_hot(hot(60).model_copy(update={"source": "weekly"}), 0)  # earlier: the first sighting now
    assert outcomes(cp) == [(BVID, 1, "weekly", T0 + 300)]
    cp.on_snapshot(snap(5, bvid=OTHER, pubdate=T0 + DAY + 600), 0)
    assert [o for o in outcomes(cp) if o[0] == BVID] == [], "a decided positive is not decided again"


def test_a_late_sighting_turns_a_zero_into_a_one_until_the_marker_expires() -> None:
    cp, table = make()
    cp.outcome_retention_s = 3600
    cp.on_snapshot(snap(5), 0)
    cp.on_snapshot(snap(0, bvid=OTHER, pubdate=T0 + DAY + 600), 0)
    assert (BVID, 0, None, T0 + DAY) in outcomes(cp)
    cp.on_hot(hot(DAY // 60 + 20), 0)
    assert outcomes(cp) == [(BVID, 1, "popular", T0 + DAY)]
    cp.on_hot(hot(DAY // 60 + 25), 0)  # a later sighting of a positive changes nothing
    assert outcomes(cp) == []
    cp.on_snapshot(snap(0, bvid=OTHER, pubdate=T0 + DAY + 600 + 6 * 3600 + 1), 0)  # past the expiry
    cp.states.flush()
    assert KEY not in table


def test_a_video_first_seen_after_its_window_closed_is_decided_at_once() -> None:
    cp, _ = make()
    cp.on_snapshot(snap(0, bvid=OTHER, pubdate=T0 + 2 * DAY), 0)
    cp.take_outcomes()
    cp.on_snapshot(snap(DAY // 60 + 20), 0)  # on a hot list's page, a day after publication
    assert outcomes(cp) == [(BVID, 0, None, T0 + DAY)]


def test_a_restored_worker_does_not_decide_a_video_twice() -> None:
    cp, table = make()
    cp.on_snapshot(snap(5), 0)
    cp.on_snapshot(snap(0, bvid=OTHER, pubdate=T0 + DAY + 600), 0)
    cp.flush()
    restored = Checkpointer(StateCache(table), grace_s=600)
    restored.restore({0}, dict.fromkeys(table, 0))
    restored.on_snapshot(snap(0, bvid="BV1zz4y1z7Zz", pubdate=T0 + DAY + 3600), 0)
    assert [o for o in outcomes(restored) if o[0] == BVID] == []
