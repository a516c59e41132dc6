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

It also sets the worker consumer's fetch wait to FETCH_MAX_WAIT_MS instead of the 1.5 s Faust
hard-codes: a broker may hold a fetch until its wait runs out even when data has arrived. The embedded
broker (Tansu) does (measured: p50 produce-to-consume 450 ms at a 1.5 s wait), and each
hop of the flow (snapshot -> scoring, prediction -> sinks) costs up to the whole wait. Real Kafka
answers as soon as data arrives, so a short wait costs it only a few more idle fetches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from core.logs import get_logger

log = get_logger(__name__)

FETCH_MAX_WAIT_MS = 10
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
        loop goes on meanwhile. If a record fails, the batches stay unacked: they are read again from
        the last commit, by this worker after a restart or by the partitions' next owner.
        """
        task = asyncio.create_task(self._ack_when_done(batches, stored))
        self.acking.add(task)
        task.add_done_callback(self.acking.discard)

    async def _ack_when_done(self, batches: list[LaneBatch], stored: list[Any]) -> None:
        try:
            await asyncio.gather(*stored)
        except Exception as exc:
            log.error("state records not stored; the batch will be read again", error=repr(exc))
        else:
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
        """Drop queued fetches (on revocation: the partitions' next owner reads them from the commit)."""
        while not self.queue.empty():
            self.queue.get_nowait()


class _ShortWaitThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by aiokafka when the consumer starts
        return consumer


class LaneConsumer(Consumer):
    """Faust's aiokafka consumer with a short fetch wait, delivering the lane's topics in batches."""

    lane: Lane | None = None

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _ShortWaitThread(self, loop=self.loop, beacon=self.beacon)

    def ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        """`Consumer.ack` for many offsets of one partition, with no `Message` objects (same bookkeeping)."""
        with ack_lock:
            committed = self._committed_offset[tp]
            index, acked = self._acked_index[tp], self._acked[tp]
            for offset in offsets:
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    self._n_acked += 1
            notify(self._waiting_for_ack)

    async def _drain_messages(self, fetcher: Any) -> None:  # the fetch loop: Faust's, batch-wise
        consumer_should_stop, fetcher_should_stop = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)  # as Faust does: getmany may return at once, again and again
                if records and not self.should_stop:
                    await self._deliver(records, active)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, records: Mapping[TP, list[Any]], active: set[TP] | None) -> None:
        if not self.flow_active:
            await self.perform_seek()  # what Faust's getmany does when flow stopped under a fetch
            return
        lane = self.lane
        generation = self.app.consumer_generation_id
        batch, rest = LaneBatch(), {}
        for tp, tp_records in records.items():
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            fresh = await self._unread(tp, tp_records)
            if not fresh:
                continue
            if lane is not None and tp.topic == lane.snapshot_topic:
                batch.snapshots[tp] = fresh
            elif lane is not None and tp.topic == lane.hotlist_topic:
                batch.hot += await self._share_hot(tp, fresh)
            else:
                rest[tp] = fresh
        if batch and lane is not None:
            await self.wait_first(lane.queue.put(batch), self.suspend_flow.wait())
        await self._deliver_each(rest, generation)

    async def _unread(self, tp: TP, records: list[Any]) -> list[Any]:
        """Records past the partition's read offset; gaps in the offsets are noted for commits."""
        last = self._read_offset[tp]
        fresh = [r for r in records if last is None or r.offset >= last]
        if fresh and self.app.topics.acks_enabled_for(tp.topic):
            previous = last
            for record in fresh:
                if previous is not None and record.offset - previous > 1:
                    await self._add_gap(tp, previous + 1, record.offset)
                previous = record.offset
        if fresh:
            self._read_offset[tp] = fresh[-1].offset
        return fresh

    async def _share_hot(self, tp: TP, records: list[Any]) -> list[Any]:
        """Hot-list records as Faust messages: the lane holds one reference, Faust's agents the rest."""
        others = self._other_channels(tp)
        handler = self._conductor()._build_handler(tp, others) if others else None
        messages = []
        for record in records:
            message = self._to_message(tp, record)
            message.incref()
            if handler is not None:
                await self.wait_first(handler(message), self.suspend_flow.wait())
            messages.append(message)
        return messages

    def _other_channels(self, tp: TP) -> set[Any]:
        """The Faust channels reading tp besides the lane's own topic (the hot-list sink agent)."""
        channels = self._conductor()._tp_index.get(tp, ())
        return {c for c in channels if not getattr(c, "is_lane", False)}

    def _conductor(self) -> Conductor:
        return cast(Conductor, self.app.topics)

    async def _deliver_each(self, records: Mapping[TP, list[Any]], generation: int) -> None:
        """Every other topic (changelogs, profiles, predictions) message by message, as Faust does."""
        callback, to_message = self.callback, self._to_message
        commit_every = self._commit_every
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await self.wait_first(callback(to_message(tp, record)), self.suspend_flow.wait())


def install_lane(app: faust.App, lane: Lane) -> Callable[[], None]:
    """Make the app's consumer a `LaneConsumer` feeding `lane`; subscribe the lane's topics.

    Returns the hook to call once the consumer exists (on worker start), which links it to the lane.
    """
    topic = app.topic(*sorted(lane.topics), key_type=bytes, value_type=bytes)
    topic.is_lane = True  # type: ignore[attr-defined]  # told apart from the hot-list sink's channel
    app.topics.add(topic)
    app.transport.Consumer = LaneConsumer  # type: ignore[misc]  # per app, not for every app

    def link() -> None:
        consumer = app.consumer
        assert isinstance(consumer, LaneConsumer)
        consumer.lane, lane.consumer = lane, consumer

    return link
