"""The scoring lane: input records handed to the scoring loop in fetched batches, below Faust's streams.

Faust delivers every message on its own: per message the fetch loop starts two tasks (`wait_first` of
the delivery and the flow-suspension event), the conductor takes a lock and decodes an `Event`, a
queue hands it to the stream, and the stream acks it. Profiled on the worker (py-spy), that path
took about 60 % of the main thread, several times the scoring work itself. So the worker's consumer
(`LaneConsumer`) hands the records of the lane's topics (snapshots and hot-list sightings) to a
`Lane` one fetch at a time, and the scoring loop acks them in bulk after the batch is scored and
its state written. Everything else stays Faust's: group membership and rebalances, offset commits
(from the same acked-offset bookkeeping), tables and their changelogs, the producer, the sink agents.

A hot-list record is also read by the hot-list sink agent; it goes through Faust's usual path to that
agent too, and Faust's per-message reference count acks it once both are done.

The consumer reaches Faust's internals only through `FencedConsumer` (stream/faust_internals.py).

It also sets the worker consumer's fetch wait (`Quirks.fetch_wait_ms`, broker/quirks.py) instead of
the 1.5 s Faust hard-codes: a broker may hold a fetch until its wait runs out even when data has
arrived. The embedded broker (Tansu) does (measured: p50 produce-to-consume 450 ms at a 1.5 s wait),
and each hop of the flow (snapshot -> scoring, prediction -> sinks) costs up to the whole wait, so it
gets 10 ms; Kafka answers as soon as data arrives and keeps its own default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP

from core.logs import get_logger
from stream.faust_internals import FencedConsumer, use_consumer

log = get_logger(__name__)

QUEUED_FETCHES = 8
"""Fetches waiting for the scoring loop before the fetch loop waits: backpressure."""


@dataclass
class LaneBatch:
    """One fetch's lane records: hot-list sightings first, then snapshots, each in partition order.

    Sightings go first so that one fetched together with a later snapshot is known before that
    snapshot fires a checkpoint (a collector publishes a sighting before later snapshots).
    """

    hot: list[Any] = field(default_factory=list)
    """Faust messages (acked through their reference count: the hot-list sink reads them too)."""
    snapshots: dict[TP, list[Any]] = field(default_factory=dict)
    """aiokafka records per partition (acked by offset)."""
    fetched_at: float = field(default_factory=time.time)
    """When the fetch arrived: every record in it was on the broker before then."""

    def records(self) -> list[Any]:
        return self.hot + [r for records in self.snapshots.values() for r in records]

    def __len__(self) -> int:
        return len(self.hot) + sum(len(r) for r in self.snapshots.values())


class Lane:
    """Fetched batches between the worker's fetch loop and its scoring loop."""

    def __init__(self, snapshot_topic: str, hotlist_topic: str) -> None:
        self.snapshot_topic, self.hotlist_topic = snapshot_topic, hotlist_topic
        self.topics = frozenset((snapshot_topic, hotlist_topic))
        self.queue: asyncio.Queue[LaneBatch] = asyncio.Queue(maxsize=QUEUED_FETCHES)
        self.busy = asyncio.Lock()
        """Held while a batch is scored: a revocation waits for it (its state goes to the changelog)."""
        self.consumer: LaneConsumer | None = None
        self.acking: set[asyncio.Task[None]] = set()
        """Scored batches waiting for their state records to be stored before their offsets are acked."""
        self.last_acking: asyncio.Task[None] | None = None
        self.stalled = False
        """A batch's state records failed: no later batch is acked either until the partitions are
        handed over (`clear`). Faust's commit would pass an unacked offset at the head of the acked
        ones when it is a single one, or when the partition has no commit yet."""

    async def take(self) -> list[LaneBatch]:
        """Wait for a fetch, then take every fetch already queued behind it (one bigger batch)."""
        batches = [await self.queue.get()]
        while not self.queue.empty():
            batches.append(self.queue.get_nowait())
        return batches

    def ack_once_stored(self, batches: list[LaneBatch], stored: list[Any]) -> None:
        """Ack the scored batches once the futures of their state records (`stored`) resolve.

        Faust produces a changelog record later, from its producer buffer, and its flush before a
        commit gives up on a buffer that does not drain within 0.1 s (a busy loop); acking only once
        the broker stored the records keeps every commit behind the state it stands for. The scoring
        loop goes on meanwhile. Batches are acked in the order they were scored. If a record fails,
        neither its batch nor any later one is acked (`stalled`): they are read again from the last
        commit, by the partitions' next owner or by this worker after a restart.
        """
        task = asyncio.create_task(self._ack_when_done(batches, stored, self.last_acking))
        self.last_acking = task
        self.acking.add(task)
        task.add_done_callback(self.acking.discard)

    async def _ack_when_done(
        self, batches: list[LaneBatch], stored: list[Any], before: asyncio.Task[None] | None
    ) -> None:
        try:
            await asyncio.gather(*stored)
        except Exception as exc:
            self.stalled = True
            log.error("state records not stored; no offset is acked until a rebalance", error=repr(exc))
        if before is not None:
            await asyncio.wait({before})  # in order: a failure before this batch stalls it too
        if not self.stalled:
            self.ack(batches)

    async def settle(self) -> None:
        """Wait until every scored batch's state records are stored (or failed)."""
        await asyncio.gather(*self.acking)

    def ack(self, batches: Iterable[LaneBatch]) -> None:
        """The batches are scored and their state stored: their offsets may be committed."""
        consumer = self.consumer
        if consumer is None:
            return
        for batch in batches:
            for message in batch.hot:
                message.ack(consumer)
            for tp, records in batch.snapshots.items():
                consumer.ack_offsets(tp, [r.offset for r in records])

    def clear(self) -> None:
        """Drop queued fetches and ack again (on revocation, once settled: the partitions' next owner,
        maybe this worker, reads everything not acked from the last commit)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.stalled = False


class LaneConsumer(FencedConsumer):
    """The worker's consumer: the lane's topics a fetch at a time to the lane, the rest as Faust does."""

    lane: Lane
    """Set per app by `install_lane`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lane.consumer = self

    async def deliver(self, records: Mapping[TP, list[Any]], active: set[TP] | None) -> None:
        if not self.flow_active:
            await self.perform_seek()  # what Faust's getmany does when flow stopped under a fetch
            return
        lane = self.lane
        generation = self.app.consumer_generation_id
        batch, rest = LaneBatch(), {}
        for tp, tp_records in records.items():
            if active is not None and tp not in active and not self.is_buffered(tp):
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            fresh = await self.unread(tp, tp_records)
            if not fresh:
                continue
            if tp.topic == lane.snapshot_topic:
                batch.snapshots[tp] = fresh
            elif tp.topic == lane.hotlist_topic:
                batch.hot += await self._share_hot(tp, fresh)
            else:
                rest[tp] = fresh
        if batch:
            await self.wait_first(lane.queue.put(batch), self.suspend_flow.wait())
        await self.deliver_each(rest, generation)

    async def _share_hot(self, tp: TP, records: list[Any]) -> list[Any]:
        """Hot-list records as Faust messages: the lane holds one reference, Faust's agents the rest."""
        others = {c for c in self.channels(tp) if not getattr(c, "is_lane", False)}
        handler = self.handler(tp, others) if others else None
        messages = []
        for record in records:
            message = self.to_message(tp, record)
            message.incref()
            if handler is not None:
                await self.wait_first(handler(message), self.suspend_flow.wait())
            messages.append(message)
        return messages


def install_lane(app: faust.App, lane: Lane, fetch_wait_ms: int | None) -> None:
    """Make the app's consumer a `LaneConsumer` feeding `lane`; subscribe the lane's topics.

    `fetch_wait_ms`: the worker consumer's fetch wait (None: Faust's 1.5 s).
    """
    topic = app.topic(*sorted(lane.topics), key_type=bytes, value_type=bytes)
    topic.is_lane = True  # type: ignore[attr-defined]  # told apart from the hot-list sink's channel
    app.topics.add(topic)
    attributes = {"lane": lane, "fetch_wait_ms": fetch_wait_ms, "__module__": __name__}
    use_consumer(app, type("LaneConsumer", (LaneConsumer,), attributes))
