"""The scoring lane on a real, unstarted Faust consumer (tests/harness/lane_app.py): how a fetch reaches
the lane, which records it drops, the gaps it notes, and how scored batches are acked.

Acks are checked in Faust's own bookkeeping (`_acked`, and `_new_offset`, the offset Faust would commit
next); the state records of a batch are plain futures that a test resolves, the way the broker's
acknowledgement resolves Faust's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from stream.lane import LaneBatch
from tests.harness.lane_app import HIGHWATER, HOTLIST, OTHER, SNAPSHOTS, LaneApp, fetch, lane_app, record

SNAP0, HOT0, OTHER0 = TP(SNAPSHOTS, 0), TP(HOTLIST, 0), TP(OTHER, 0)
ALL = {SNAP0, HOT0, OTHER0}


def offsets(messages: list[Any]) -> list[tuple[str, int]]:
    return [(m.topic, m.offset) for m in messages]


def next_commit(at: LaneApp, tp: TP) -> int | None:
    """The offset Faust's commits reach now for tp, from its acked offsets and noted gaps.

    A commit moves to `_new_offset`; with a gap noted it may take more than one commit to pass it.
    """
    committed: int | None = at.consumer._committed_offset[tp]
    while (offset := at.consumer._new_offset(tp)) is not None:
        committed = at.consumer._committed_offset[tp] = offset
    return committed


async def test_a_fetch_reaches_the_lane_as_one_batch_hot_list_sightings_first() -> None:
    at = await lane_app()
    await at.consumer.deliver(fetch(snapshots=[0, 1, 2], hotlist=[0, 1]), ALL)
    batch = at.lane.queue.get_nowait()
    assert at.lane.queue.empty(), "one fetch, one batch"
    assert offsets(batch.records()) == [
        (HOTLIST, 0),
        (HOTLIST, 1),
        (SNAPSHOTS, 0),
        (SNAPSHOTS, 1),
        (SNAPSHOTS, 2),
    ]
    assert at.app.monitor.tp_end_offsets[SNAP0] == HIGHWATER


async def test_hot_list_records_also_reach_the_sink_agent_and_are_acked_once_both_are_done() -> None:
    at = await lane_app()
    await at.consumer.deliver(fetch(hotlist=[4]), ALL)
    (message,) = at.lane.queue.get_nowait().hot
    event = at.hot_sink.queue.get_nowait()
    assert event.message is message and message.refcount == 2
    at.lane.ack([LaneBatch(hot=[message])])
    assert next_commit(at, HOT0) is None, "acked while the sink agent still holds it"
    message.ack(at.consumer)
    assert next_commit(at, HOT0) == 5


async def test_other_topics_go_through_fausts_path_message_by_message() -> None:
    at = await lane_app()
    await at.consumer.deliver(fetch(other=[0, 1]), ALL)
    assert at.lane.queue.empty()
    assert [at.other.queue.get_nowait().message.offset for _ in range(2)] == [0, 1]


async def test_records_before_the_read_offset_are_dropped() -> None:
    at = await lane_app()
    await at.consumer.deliver(fetch(snapshots=[5, 6, 7]), ALL)
    await at.consumer.deliver(fetch(snapshots=[3, 4]), ALL)
    await at.consumer.deliver(fetch(snapshots=[2, 8, 9]), ALL)
    batches = [at.lane.queue.get_nowait() for _ in range(at.lane.queue.qsize())]
    assert [offsets(b.records()) for b in batches] == [
        [(SNAPSHOTS, 5), (SNAPSHOTS, 6), (SNAPSHOTS, 7)],
        [(SNAPSHOTS, 8), (SNAPSHOTS, 9)],
    ]


async def test_a_gap_in_offsets_is_noted_so_the_commit_passes_it() -> None:
    at = await lane_app()
    await at.consumer.deliver(fetch(snapshots=[0, 1, 4, 5]), ALL)  # 2 and 3 compacted away
    await at.consumer.deliver(fetch(snapshots=[9]), ALL)
    at.lane.ack([at.lane.queue.get_nowait() for _ in range(2)])
    assert next_commit(at, SNAP0) == 10


async def test_a_paused_partition_delivers_only_when_its_buffer_is_full() -> None:
    at = await lane_app()
    await at.consumer.deliver(fetch(snapshots=[0]), {HOT0})
    assert at.lane.queue.empty(), "records of a partition not in the active set are skipped"
    at.consumer.on_buffer_full(SNAP0)
    await at.consumer.deliver(fetch(snapshots=[0]), {HOT0})
    assert offsets(at.lane.queue.get_nowait().records()) == [(SNAPSHOTS, 0)]


async def test_ack_offsets_keeps_the_bookkeeping_fausts_ack_keeps_for_the_same_offsets() -> None:
    bulk, each = await lane_app(), await lane_app()
    acked = [3, 5, 6, 6, 9, 7, 8, 12]
    loop = asyncio.get_running_loop()
    for at in (bulk, each):
        at.consumer._committed_offset[SNAP0] = 5  # what the last commit left: 3 is older
        at.consumer._waiting_for_ack = loop.create_future()
    bulk.consumer.ack_offsets(SNAP0, acked)
    for offset in acked:
        each.consumer.ack(each.consumer.to_message(SNAP0, record(SNAPSHOTS, offset)))
    for name in ("_acked", "_acked_index"):
        assert getattr(bulk.consumer, name)[SNAP0] == getattr(each.consumer, name)[SNAP0], name
    assert bulk.consumer._acked[SNAP0] == [5, 6, 9, 7, 8, 12]
    assert bulk.consumer._n_acked == each.consumer._n_acked == 6
    assert bulk.consumer._waiting_for_ack.done() and each.consumer._waiting_for_ack.done()
    assert next_commit(bulk, SNAP0) == next_commit(each, SNAP0) == 10


def batch(*offsets: int) -> LaneBatch:
    return LaneBatch(snapshots={SNAP0: [record(SNAPSHOTS, o) for o in offsets]})


async def test_offsets_are_acked_only_once_every_state_record_is_stored() -> None:
    at = await lane_app()
    loop = asyncio.get_running_loop()
    stored: list[asyncio.Future[Any]] = [loop.create_future(), loop.create_future()]
    at.lane.ack_once_stored([batch(0, 1), batch(2)], list(stored))
    stored[0].set_result(None)
    await asyncio.sleep(0.01)
    assert next_commit(at, SNAP0) is None, "acked with a state record still on its way"
    stored[1].set_result(None)
    await at.lane.settle()
    assert next_commit(at, SNAP0) == 3
    assert not at.lane.acking


@pytest.mark.parametrize("failed_offsets", [(10, 11), (10,)])
async def test_no_offset_is_acked_after_a_batch_whose_state_record_failed(
    failed_offsets: tuple[int, ...],
) -> None:
    at = await lane_app()
    at.consumer._committed_offset[SNAP0] = 10
    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    failed.set_exception(ConnectionError("broker gone"))
    at.lane.ack_once_stored([batch(*failed_offsets)], [failed])
    at.lane.ack_once_stored([batch(12, 13)], [])  # stored, but after the failed batch
    await at.lane.settle()
    assert at.consumer._acked[SNAP0] == []
    assert next_commit(at, SNAP0) == 10, "no commit past the failed batch"
    at.lane.clear()  # the partitions were handed over: what is read again is acked again
    at.lane.ack_once_stored([batch(10, 11, 12, 13)], [])
    await at.lane.settle()
    assert next_commit(at, SNAP0) == 14


async def test_batches_are_acked_in_the_order_they_were_scored() -> None:
    at = await lane_app()
    loop = asyncio.get_running_loop()
    first: asyncio.Future[Any] = loop.create_future()
    at.lane.ack_once_stored([batch(0)], [first])
    at.lane.ack_once_stored([batch(1)], [])
    await asyncio.sleep(0.01)
    assert at.consumer._acked[SNAP0] == [], "a later batch acked before an earlier one was stored"
    first.set_result(None)
    await at.lane.settle()
    assert at.consumer._acked[SNAP0] == [0, 1]


async def test_settle_waits_for_the_records_on_their_way() -> None:
    at = await lane_app()
    pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    at.lane.ack_once_stored([batch(0)], [pending])
    settling = asyncio.create_task(at.lane.settle())
    await asyncio.sleep(0.01)
    assert not settling.done()
    pending.set_result(None)
    await settling
    assert next_commit(at, SNAP0) == 1


async def test_clear_drops_fetched_batches_not_yet_scored_and_keeps_scored_ones_acking() -> None:
    at = await lane_app()
    pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    at.lane.ack_once_stored([batch(0)], [pending])
    await at.consumer.deliver(fetch(snapshots=[1]), ALL)
    await at.consumer.deliver(fetch(snapshots=[2]), ALL)
    at.lane.clear()
    assert at.lane.queue.empty()
    pending.set_result(None)
    await at.lane.settle()
    assert next_commit(at, SNAP0) == 1, "the scored batch is acked, the dropped ones are not"
