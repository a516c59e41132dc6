"""The fence: every use of a private name of faust-streaming, aiokafka or mode is in this module.

Written against faust-streaming 0.15.3, aiokafka 0.14.0 and mode-streaming 0.7.1 (`WRITTEN_AGAINST`).
The rest of the worker uses only the public names defined here. `UPSTREAM` holds a hash of the source
of every upstream function this module overrides or copies; the canary test
(`pytest -k canary`, tests/test_faust_canary.py) fails when the installed source differs from it or
when a private attribute read here is gone, and says what to re-check, so an upgrade of Faust fails
one test by name instead of the worker at run time.

Private names used (each: how, and why):

- `Consumer._drain_messages`, overridden with a copy of its loop: Faust's fetch loop hands on one
  message at a time; ours hands a whole fetch to `deliver`.
- `Consumer._wait_next_records`, called: the fetch itself (records and active partitions), as
  `getmany` gets it.
- `Consumer._read_offset`, read and written: records at or below the last read offset are dropped,
  as Faust's loop does (`unread`).
- `Consumer._add_gap`, called: a gap in a partition's offsets is noted so that commits can pass it.
- `Consumer._buffered_partitions`, read: as in `getmany`, a partition paused for a full stream
  buffer still delivers what was fetched.
- `Consumer._to_message`, called: an aiokafka record as a Faust message.
- `Consumer._commit_every` and `._n_acked`, read and written: `broker_commit_every`, applied as
  Faust's fetch loop applies it (`deliver_each`).
- `Consumer._committed_offset`, `._acked_index`, `._acked`, `._n_acked`, `._waiting_for_ack`,
  written: `ack_offsets` copies the body of `Consumer.ack`, for many offsets and no `Message`s.
- `faust.types.tuples.ack_lock`, held: the lock `Consumer.ack` holds for that bookkeeping.
- mode's `Service._stopped`, read: how Faust's fetch loop sees that the consumer or fetcher stopped.
- `Consumer._new_consumer_thread` and `AIOKafkaConsumerThread._create_worker_consumer`, overridden:
  the one place the worker's aiokafka consumer is built, with a fetch wait Faust fixes at 1.5 s.
- aiokafka's `AIOKafkaConsumer._fetch_max_wait_ms`, written: the fetch wait, which
  `AIOKafkaConsumer.start` hands to its fetcher.
- `Conductor._tp_index`, read: the channels reading a partition (the hot-list sink agent's, besides
  the lane's).
- `Conductor._build_handler`, called: the conductor's delivery of a message to those channels.

Not private, but Faust's internals all the same, so they are here too: a table's store (`Table.data`,
written by the state cache and the restorer without going through `table[key] = value`), the
changelog offsets Faust's recovery reached (`app.tables.recovery.active_offsets`), and the consumer
class an app's transport builds (`app.transport.Consumer`).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aiokafka
import faust
import faust.types.tuples as faust_tuples
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.consumer import Consumer as BaseConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP
from mode.utils.futures import notify

WRITTEN_AGAINST = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}
PACKAGES = {"faust": "faust-streaming", "aiokafka": "aiokafka", "mode": "mode-streaming"}
"""Import name -> distribution name, for the canary's messages."""


def source_hash(function: Callable[..., Any]) -> str:
    """A short hash of a function's source: what the canary compares."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Upstream:
    """An upstream function this module overrides or copies, as it was when the code was written."""

    owner: type
    name: str
    sha: str
    """`source_hash` of the function as written against."""
    ours: str
    """What here depends on it: what to re-check when it changes."""

    def drift(self) -> str | None:
        """A message when the installed function is gone or its source changed."""
        function = self.owner.__dict__.get(self.name)
        package = PACKAGES[self.owner.__module__.split(".")[0]]
        what = f"{self.owner.__name__}.{self.name}"
        if function is None:
            return f"{package} removed {what}; re-check stream/faust_internals.py ({self.ours})"
        if source_hash(function) != self.sha:
            return f"{package} changed {what}; re-check stream/faust_internals.py ({self.ours})"
        return None


UPSTREAM = (
    Upstream(BaseConsumer, "ack", "5fcf41cf45153475", "FencedConsumer.ack_offsets copies its body"),
    Upstream(
        BaseConsumer,
        "_drain_messages",
        "44a2500309e83c63",
        "FencedConsumer overrides it with a copy of its loop; unread copies its read-offset and gap rules",
    ),
    Upstream(
        BaseConsumer,
        "getmany",
        "4b168d84882a70d6",
        "LaneConsumer.deliver and FencedConsumer.deliver_each copy its flow, partition and generation checks",
    ),
    Upstream(
        BaseConsumer, "_add_gap", "4df2573ded7c1c2c", "FencedConsumer.unread calls it as Faust's loop does"
    ),
    Upstream(Consumer, "_new_consumer_thread", "0870ec53dea75083", "FencedConsumer overrides it"),
    Upstream(
        AIOKafkaConsumerThread,
        "_create_worker_consumer",
        "c2701bfc3e6f6cad",
        "FetchWaitThread overrides it and changes the fetch wait of the consumer it builds",
    ),
    Upstream(
        aiokafka.AIOKafkaConsumer,
        "start",
        "2f1ba70443327538",
        "FetchWaitThread sets _fetch_max_wait_ms, which start hands to the fetcher",
    ),
    Upstream(Conductor, "_build_handler", "5c071d1277988c57", "FencedConsumer.handler calls it"),
)

CONSUMER_ATTRIBUTES = (
    "_wait_next_records",
    "_read_offset",
    "_add_gap",
    "_buffered_partitions",
    "_to_message",
    "_commit_every",
    "_n_acked",
    "_committed_offset",
    "_acked_index",
    "_acked",
    "_waiting_for_ack",
    "_stopped",
)
"""Private attributes of Faust's consumer (and of mode's service) read or written here."""
CONDUCTOR_ATTRIBUTES = ("_tp_index", "_build_handler")
KAFKA_CONSUMER_ATTRIBUTES = ("_fetch_max_wait_ms",)
MODULE_ATTRIBUTES = ((faust_tuples, "ack_lock"),)


class FetchWaitThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, building the worker's aiokafka consumer with the consumer's fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = cast(FencedConsumer, self.consumer).fetch_wait_ms
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # read by aiokafka when the consumer starts
        return consumer


class FencedConsumer(Consumer):
    """Faust's aiokafka consumer with its private hooks turned into public methods.

    A subclass implements `deliver` (what to do with one fetch) and may set `fetch_wait_ms`.
    """

    fetch_wait_ms: int | None = None
    """The worker's fetch wait (aiokafka's `fetch_max_wait_ms`); None keeps the 1.5 s Faust sets."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return FetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    async def deliver(self, records: Mapping[TP, list[Any]], active: set[TP] | None) -> None:
        """Hand on one fetch: aiokafka records per partition; `active` as `getmany` has it."""
        raise NotImplementedError

    async def _drain_messages(self, fetcher: Any) -> None:  # Faust's fetch loop, a fetch at a time
        consumer_should_stop, fetcher_should_stop = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)  # as Faust does: getmany may return at once, again and again
                if records and not self.should_stop:
                    await self.deliver(records, active)
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

    def is_buffered(self, tp: TP) -> bool:
        """The partition is paused because its stream buffer is full (its fetched records still count)."""
        return tp in self._buffered_partitions

    async def unread(self, tp: TP, records: list[Any]) -> list[Any]:
        """Records past the partition's read offset, which moves to the last; gaps are noted for commits."""
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

    def to_message(self, tp: TP, record: Any) -> Any:
        """An aiokafka record as the Faust message Faust's own loop would make of it."""
        return self._to_message(tp, record)

    def ack_offsets(self, tp: TP, offsets: Iterable[int]) -> None:
        """`Consumer.ack` for many offsets of one partition, with no `Message` objects (same bookkeeping)."""
        with faust_tuples.ack_lock:
            committed = self._committed_offset[tp]
            index, acked = self._acked_index[tp], self._acked[tp]
            for offset in offsets:
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    self._n_acked += 1
            notify(self._waiting_for_ack)

    def channels(self, tp: TP) -> set[Any]:
        """The Faust channels (topics of agents and of the lane) reading `tp`."""
        return set(self._conductor()._tp_index.get(tp, ()))

    def handler(self, tp: TP, channels: set[Any]) -> Callable[[Any], Any]:
        """The conductor's delivery of one message of `tp` to `channels` (decode, queue, reference count)."""
        return cast(Callable[[Any], Any], self._conductor()._build_handler(tp, channels))

    def _conductor(self) -> Conductor:
        return cast(Conductor, self.app.topics)

    async def deliver_each(self, records: Mapping[TP, list[Any]], generation: int) -> None:
        """Records message by message through Faust's callback, as its fetch loop does."""
        callback, commit_every = self.callback, self._commit_every
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())


def use_consumer(app: faust.App, consumer_class: type[FencedConsumer]) -> None:
    """Make `consumer_class` the consumer this app builds (per app, not for every app)."""
    app.transport.Consumer = consumer_class  # type: ignore[misc]


def table_store(table: Any) -> MutableMapping[bytes, Any]:
    """A table's store: written directly, not through `table[key] = value` (one event at a time)."""
    return cast(MutableMapping[bytes, Any], table.data)


def recovered_offsets(app: faust.App, changelog: str) -> dict[int, int]:
    """Partition -> last offset of the `changelog` topic that Faust's table recovery reached."""
    reached = app.tables.recovery.active_offsets  # type: ignore[attr-defined]
    return {tp.partition: offset for tp, offset in reached.items() if tp.topic == changelog}


@asynccontextmanager
async def worker_kafka_consumer(consumer: FencedConsumer) -> AsyncIterator[aiokafka.AIOKafkaConsumer]:
    """The aiokafka consumer `consumer`'s thread builds for a worker (never started; closed after)."""
    kafka_consumer = consumer._thread._create_worker_consumer(consumer.transport)  # type: ignore[arg-type]
    try:
        yield kafka_consumer
    finally:
        await kafka_consumer.stop()


async def drift(consumer: FencedConsumer) -> list[str]:
    """What changed upstream since this module was written; `consumer` an app's (not started) one."""
    found = [message for upstream in UPSTREAM if (message := upstream.drift()) is not None]
    async with worker_kafka_consumer(consumer) as kafka_consumer:
        where: list[tuple[object, str, Iterable[str]]] = [
            (consumer, "Consumer", CONSUMER_ATTRIBUTES),
            (consumer.app.topics, "Conductor", CONDUCTOR_ATTRIBUTES),
            (kafka_consumer, "aiokafka AIOKafkaConsumer", KAFKA_CONSUMER_ATTRIBUTES),
            *((module, module.__name__, [name]) for module, name in MODULE_ATTRIBUTES),
        ]
        for owner, label, names in where:
            found += [
                f"{label}.{name} is gone; re-check stream/faust_internals.py"
                for name in names
                if not hasattr(owner, name)
            ]
    return found
