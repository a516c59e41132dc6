"""`Lane.ack_once_stored`: a scored batch's offsets are acked only once its state records are stored.

The consumer here only records the acks (`Lane.ack` calls `ack_offsets`, Faust's bookkeeping, which
the worker tests exercise on the embedded broker); the state records are plain futures that the test
resolves, the way the broker's acknowledgement resolves Faust's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP

from stream.lane import Lane, LaneBatch

SNAPSHOTS = "test.lane.snapshot"


class AckRecorder:
    def __init__(self) -> None:
        self.acked: list[tuple[TP, list[int]]] = []

    def ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        self.acked.append((tp, offsets))


class Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def lane_with_recorder() -> tuple[Lane, AckRecorder]:
    lane = Lane(SNAPSHOTS, "test.lane.hotlist")
    recorder = AckRecorder()
    lane.consumer = recorder  # type: ignore[assignment]
    return lane, recorder


def batch(partition: int, *offsets: int) -> LaneBatch:
    return LaneBatch(snapshots={TP(SNAPSHOTS, partition): [Record(o) for o in offsets]})


async def test_offsets_are_acked_only_once_every_state_record_is_stored() -> None:
    lane, recorder = lane_with_recorder()
    loop = asyncio.get_running_loop()
    stored: list[asyncio.Future[Any]] = [loop.create_future(), loop.create_future()]
    lane.ack_once_stored([batch(0, 5, 6), batch(1, 9)], list(stored))
    stored[0].set_result(None)
    await asyncio.sleep(0.01)
    assert recorder.acked == [], "acked with a state record still on its way"
    stored[1].set_result(None)
    await lane.settle()
    assert recorder.acked == [(TP(SNAPSHOTS, 0), [5, 6]), (TP(SNAPSHOTS, 1), [9])]
    assert not lane.acking


async def test_a_batch_whose_state_record_failed_is_never_acked() -> None:
    lane, recorder = lane_with_recorder()
    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    failed.set_exception(ConnectionError("broker gone"))
    lane.ack_once_stored([batch(0, 7)], [failed])
    lane.ack_once_stored([batch(0, 8)], [])  # a later batch with nothing to store is acked
    await lane.settle()
    assert recorder.acked == [(TP(SNAPSHOTS, 0), [8])]


async def test_settle_waits_for_the_records_on_their_way() -> None:
    lane, recorder = lane_with_recorder()
    pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    lane.ack_once_stored([batch(2, 1)], [pending])
    settling = asyncio.create_task(lane.settle())
    await asyncio.sleep(0.01)
    assert not settling.done()
    pending.set_result(None)
    await settling
    assert recorder.acked == [(TP(SNAPSHOTS, 2), [1])]
