"""The Faust worker: snapshots and hot-list sightings in, predictions out, sinks fed.

One agent reads `bili.video.snapshot` and `bili.hotlist` (co-partitioned by bvid, so a video's events
and its state table entry live on one worker); a second group of agents writes the prediction,
profile and hot-list topics into Redis and SQL through `sink/`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import faust

from broker.health import BrokerUnreachable, Tracker, report_within
from core.events import (
    BadEvent,
    DanmakuLine,
    DeadLetter,
    Event,
    HotListEntry,
    Prediction,
    Snapshot,
    UpProfile,
    parse_event,
)
from core.logs import get_logger
from core.settings import Settings
from model.registry import ModelBundle, load_promoted
from sink.writer import Backoff, PredictionSink, log_retry
from stream.checkpoint import Changelog, Checkpoint, Checkpointer, Records, StateCache
from stream.lane import Lane, install_lane
from stream.profiles import ProfileReader
from stream.recovery import Restorer
from stream.scoring import Scorer

log = get_logger(__name__)
E = TypeVar("E", bound=Event)

SINK_BATCH = 500
SINK_WITHIN_S = 0.01
SINK_RETRY = Backoff(base_s=1.0, cap_s=60.0)
"""Pauses between attempts at a batch whose write failed with an error the sink does not retry."""


class Emitter(Protocol):
    """Where the scoring agent's output goes: the topics in a worker, a list in unit tests."""

    async def prediction(self, pred: Prediction) -> None: ...

    async def dead(self, letter: DeadLetter) -> None: ...


class TopicEmitter:
    """Sends predictions (keyed by bvid) and dead letters to their topics."""

    def __init__(self, predictions: Any, deadletter: Any) -> None:
        self.predictions, self.deadletter = predictions, deadletter
        self.sent: list[Any] = []

    async def prediction(self, pred: Prediction) -> None:
        # force: produce now. Without it Faust attaches the message to the source offset and produces
        # it only at the next commit, after the state recording it as fired (and `delivered` would wait
        # for a commit that waits for this batch).
        self.sent.append(await self.predictions.send(key=pred.key(), value=pred.to_json(), force=True))

    async def delivered(self) -> None:
        """Wait until the broker acknowledged every prediction sent so far.

        The scoring agent calls it before it writes the states that record those horizons as fired:
        a worker killed in between then re-fires them from its committed offset (a duplicate the
        sinks absorb) instead of recording a checkpoint whose prediction was lost.
        """
        sent, self.sent = self.sent, []
        if sent:
            await asyncio.gather(*sent)

    async def dead(self, letter: DeadLetter) -> None:
        await self.deadletter.send(value=letter.to_json())


@dataclass
class Progress:
    """Wall-clock throughput of the scoring agent (what a benchmark or a liveness probe reads)."""

    messages: int = 0
    first_at: float | None = None
    last_at: float | None = None

    def begin(self) -> None:
        """A batch starts: the clock of the first one marks the start of the run."""
        if self.first_at is None:
            self.first_at = time.time()

    def update(self, n: int) -> None:
        """A batch of n messages is done."""
        self.last_at = time.time()
        self.messages += n

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "first_at": self.first_at, "last_at": self.last_at}


def first_snapshot_offsets(messages: Sequence[Any], topic: str) -> dict[int, int]:
    """Partition -> offset of the batch's first snapshot there: names the batch's row chunks."""
    first: dict[int, int] = {}
    for message in messages:
        if message.topic == topic and message.partition not in first:
            first[message.partition] = message.offset
    return first


class ChangelogWrites:
    """The state records sent to the tables' changelogs: a batch is acked once they are stored
    (`Lane.ack_once_stored`)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def of(self, table: Any) -> Changelog:
        """The send function for `Records`: a state record (None: a tombstone) on the given partition."""

        def send(partition: int, key: bytes, value: Any) -> None:
            serializer = "raw" if value is None else None  # None: the table's own
            self.sent.append(table.send_changelog(partition, key, value, value_serializer=serializer))

        return send

    def take(self) -> list[Any]:
        """The futures of the records sent since the last take (each resolves once stored)."""
        sent, self.sent = self.sent, []
        return sent


def create_app(
    settings: Settings,
    bootstrap: str,
    *,
    bundle: ModelBundle | None = None,
    sink: PredictionSink | None = None,
    with_sinks: bool = True,
    emitter: Emitter | None = None,
) -> faust.App:
    """Build the worker app. `bundle` and `sink` default to the promoted model and configured stores."""
    topics = settings.topics
    app = faust.App(
        settings.worker_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.web_port,
        web_host=settings.web_host,
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.worker_session_timeout_s / 3),
        broker_commit_interval=1.0,
        producer_linger=0.001,  # batch produce requests: a millisecond of latency for far fewer requests
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=16384,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        table_standby_replicas=0,
        # Tansu under-reports end offsets (see stream/recovery.py), so a changelog offset Faust already
        # read can exceed the "highwater"; the check guards RocksDB files, and we keep state in memory.
        recovery_consistency_check=False,
    )
    lane = Lane(topics.snapshot, topics.hotlist)
    link_lane = install_lane(app, lane)
    predictions = app.topic(topics.prediction, key_type=bytes, value_type=bytes)
    profiles = app.topic(topics.profile, key_type=bytes, value_type=bytes)
    hotlist = app.topic(topics.hotlist, key_type=bytes, value_type=bytes)
    danmaku = app.topic(topics.danmaku, key_type=bytes, value_type=bytes)
    deadletter = app.topic(topics.deadletter, key_type=bytes, value_type=bytes)
    headers = app.Table("video_state", default=None, key_type=bytes, partitions=settings.partitions)
    rows = app.Table("video_rows", default=None, key_type=bytes, partitions=settings.partitions)
    # The cache writes the tables' stores and changelogs itself, once per batch and to the partition
    # each video's events came from (`table[key] = value` only works one event at a time).
    writes = ChangelogWrites()
    checkpointer = Checkpointer(
        StateCache(Records(headers.data, writes.of(headers)), Records(rows.data, writes.of(rows))),
        grace_s=settings.checkpoint_grace_s,
    )
    model = bundle if bundle is not None else load_promoted(settings.model_dir)
    # On a broker (not fed directly by a unit test): finish recovery and rebuild the queues per assignment.
    on_broker = emitter is None
    uploaders = ProfileReader(bootstrap if on_broker else None, topics.profile)
    scorer = Scorer(model, uploaders.at)
    restorer = Restorer(app, bootstrap, topics.snapshot, checkpointer, headers, rows)
    app.checkpointer = checkpointer  # type: ignore[attr-defined]
    app.uploaders = uploaders  # type: ignore[attr-defined]
    app.restorer = restorer  # type: ignore[attr-defined]

    topic_out = TopicEmitter(predictions, deadletter)
    out = emitter if emitter is not None else topic_out
    progress = Progress()

    async def dead(message: Any, reason: str) -> None:
        checkpointer.stats["deadletter"] += 1
        log.warning("dead letter", topic=message.topic, offset=message.offset, reason=reason)
        await out.dead(
            DeadLetter.of(
                topic=message.topic,
                payload=message.value or b"",
                key=message.key,
                reason=reason,
                partition=message.partition,
                offset=message.offset,
                at=time.time(),
            )
        )

    def absorb(message: Any) -> list[Checkpoint]:
        """One input message into the state; raises BadEvent for anything not a valid event."""
        if message.topic == topics.hotlist:
            return checkpointer.on_hot(parse_event(HotListEntry, message.value), message.partition)
        snap = parse_event(Snapshot, message.value)
        if message.key != snap.key():
            raise BadEvent(f"message key {message.key!r} is not the bvid {snap.bvid}")
        return checkpointer.on_snapshot(snap, message.partition)

    async def score(messages: Sequence[Any], fetched_at: float | None = None) -> list[Any]:
        """Absorb a batch of input messages in order, write each touched state once, score what is due.

        `fetched_at`: when the batch's last fetch arrived (the profiles it needs were on the broker).
        Returns the futures of the batch's state records (`ChangelogWrites.take`).
        """
        progress.begin()
        if on_broker:
            restorer.ensure()
        due: list[Checkpoint] = []
        for message in messages:
            try:
                due += absorb(message)
            except BadEvent as exc:
                await dead(message, str(exc))
        scored = [cp.as_of for cp in due if cp.status == "scored"]
        if scored:
            await uploaders.ready_for(max(scored), fetched_at)
        for pred in scorer.predict(due):
            await out.prediction(pred)
        if on_broker:
            await topic_out.delivered()
        checkpointer.flush(first_snapshot_offsets(messages, topics.snapshot))
        checkpointer.stats["messages"] += len(messages)
        progress.update(len(messages))
        return writes.take()

    app.score = score  # type: ignore[attr-defined]  # unit tests feed batches to it directly

    @app.task
    async def score_lane() -> None:
        """The scoring loop: every fetch of the lane's topics, as soon as it arrives (stream/lane.py).

        It goes on to the next batch while the last one's state records are on their way.
        """
        link_lane()
        while True:
            batches = await lane.take()
            async with lane.busy:
                records = [r for b in batches for r in b.records()]
                lane.ack_once_stored(batches, await score(records, max(b.fetched_at for b in batches)))

    if on_broker:

        @app.task
        async def read_profiles() -> None:
            """Every uploader profile, from the whole profile topic (stream/profiles.py)."""
            await uploaders.run()

    def worker_view() -> dict[str, Any]:
        """This worker's own counters; the watermark is the last event time seen per partition."""
        return {
            **progress.as_dict(),
            "counters": dict(checkpointer.stats),
            "profiles": dict(uploaders.stats),
            "watermarks": {str(p): w for p, w in checkpointer.watermarks.items()},
            "pending_wakeups": checkpointer.pending(),
            "cached_videos": len(checkpointer.states.live),
            "assigned": sorted(restorer.assigned()),
            "restore": restorer.last,
        }

    @app.page("/stats/")
    async def stats_page(web: Any, request: Any) -> Any:
        """Counters for benchmarks and health checks: messages, checkpoints, watermarks, queue."""
        return web.json(worker_view())

    tracker = Tracker(settings.health_stuck_after_s)

    @app.page("/health/")
    async def health_page(web: Any, request: Any) -> Any:
        """The group's lag, offset progress, sink backlog and verdict (503 when stuck), and this worker."""
        try:
            body = await asyncio.to_thread(report_within, bootstrap, settings.worker_id, topics, tracker)
        except BrokerUnreachable as exc:
            down = {"verdict": "unreachable", "error": str(exc), "worker": worker_view()}
            return web.json(down, status=503)
        body["worker"] = worker_view()
        return web.json(body, status=200 if body["verdict"] == "ok" else 503)

    async def forget_cached_state(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions may move to another worker: from now on the table, not the cache, is the truth.

        A batch being scored finishes first, and scored batches' state records are stored (they reach
        the changelog before the next owner reads it); fetched batches not yet scored are dropped (the
        next owner reads them again).
        """
        async with lane.busy:
            lane.clear()
            await lane.settle()  # scored batches' state stored before the next owner reads it
        checkpointer.states.clear()
        restorer.invalidate()

    app.on_partitions_revoked.connect(forget_cached_state)  # type: ignore[arg-type]

    if with_sinks:
        writer = sink

        def get_sink() -> PredictionSink:
            nonlocal writer
            if writer is None:
                writer = PredictionSink.from_settings(settings)
            return writer

        async def valid(model: type[E], events: Sequence[Any], dead_letter: bool = True) -> list[E]:
            """Parse a batch; malformed messages go to the dead-letter topic, the rest go on."""
            good: list[E] = []
            for event in events:
                try:
                    good.append(parse_event(model, event.message.value))
                except BadEvent as exc:
                    if dead_letter:
                        await dead(event.message, str(exc))
            return good

        async def write_until_done(what: str, write: Callable[[list[E]], None], items: list[E]) -> None:
            """Write a batch, retrying whatever fails: the sink's own retries cover connection trouble,
            this covers the rest (bad credentials, a full disk, a bug) until someone fixes it."""
            attempt = 0
            while True:
                try:
                    await asyncio.to_thread(write, items)
                    return
                except Exception as exc:
                    attempt += 1
                    pause = SINK_RETRY.delay(attempt)
                    message = "sink batch not written; retrying, its offsets stay uncommitted"
                    log_retry(message, what, attempt, pause, exc, error=True)
                    await asyncio.sleep(pause)

        async def store(
            stream: Any, model: type[E], write: Callable[[list[E]], None], dead_letter: bool = True
        ) -> None:
            """A sink agent's loop: take a batch, write it, and only then acknowledge it.

            `noack_take` leaves acknowledging to us, so neither an outage, an error the sink does not
            retry, nor a shutdown in the middle of a write lets the committed offset pass an unwritten
            batch (`take_events` acknowledges a batch when the agent stops, written or not).
            """
            async for events in stream.noack_take(SINK_BATCH, within=SINK_WITHIN_S):
                items = await valid(model, events, dead_letter)
                await write_until_done(model.__name__, write, items)
                for event in events:
                    await stream.ack(event)

        @app.agent(predictions, name="sink-predictions")
        async def sink_predictions(stream: Any) -> None:
            """Predictions into Redis, then SQL, in batches."""
            await store(stream, Prediction, lambda batch: get_sink().write(batch))

        @app.agent(profiles, name="sink-profiles")
        async def sink_profiles(stream: Any) -> None:
            """UP profiles into `up_profile`."""
            await store(stream, UpProfile, lambda batch: get_sink().write_profiles(batch))

        @app.agent(hotlist, name="sink-hotlist")
        async def sink_hotlist(stream: Any) -> None:
            """The collected hot-list set (seed 001's positives) into `hot_entry`; the scoring loop
            already dead-letters malformed sightings."""
            await store(stream, HotListEntry, lambda batch: get_sink().write_hot_entries(batch), False)

        @app.agent(danmaku, name="sink-danmaku")
        async def sink_danmaku(stream: Any) -> None:
            """Danmaku lines into `danmaku` (the word cloud's text)."""
            await store(stream, DanmakuLine, lambda batch: get_sink().write_danmaku(batch))

    return app
