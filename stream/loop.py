"""The scoring loop's work on one batch: absorb the input in order, score what is due, emit.

The lane (stream/lane.py) hands it fetched batches; unit tests hand it lists of messages directly
(`tests/harness/stream_harness.py`), with an emitter that records instead of producing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.events import BadEvent, DeadLetter, HotListEntry, Prediction, Snapshot, parse_event
from core.logs import get_logger
from core.settings import Topics
from stream.checkpoint import Changelog, Checkpoint, Checkpointer
from stream.profiles import ProfileReader
from stream.recovery import Restorer
from stream.scoring import Scorer

log = get_logger(__name__)


class Emitter(Protocol):
    """Where the scoring loop's output goes: the topics in a worker, a list in unit tests."""

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

        The scoring loop calls it before it writes the states that record those horizons as fired:
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
    """Wall-clock throughput of the scoring loop (what a benchmark or a liveness probe reads)."""

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


class ScoringLoop:
    """Absorbs batches of snapshots and hot-list sightings, scores what is due, emits predictions.

    `restorer` None: fed directly by a unit test, with no broker to restore state from.
    """

    def __init__(
        self,
        topics: Topics,
        checkpointer: Checkpointer,
        scorer: Scorer,
        uploaders: ProfileReader,
        out: Emitter,
        topic_out: TopicEmitter | None,
        writes: ChangelogWrites,
        restorer: Restorer | None,
    ) -> None:
        self.topics, self.checkpointer, self.scorer, self.uploaders = topics, checkpointer, scorer, uploaders
        self.out, self.topic_out, self.writes, self.restorer = out, topic_out, writes, restorer
        self.progress = Progress()

    async def dead(self, message: Any, reason: str) -> None:
        """A malformed message to the dead-letter topic, with the reason; the loop goes on."""
        self.checkpointer.stats["deadletter"] += 1
        log.warning("dead letter", topic=message.topic, offset=message.offset, reason=reason)
        await self.out.dead(
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

    def absorb(self, message: Any) -> list[Checkpoint]:
        """One input message into the state; raises BadEvent for anything not a valid event."""
        if message.topic == self.topics.hotlist:
            return self.checkpointer.on_hot(parse_event(HotListEntry, message.value), message.partition)
        snap = parse_event(Snapshot, message.value)
        if message.key != snap.key():
            raise BadEvent(f"message key {message.key!r} is not the bvid {snap.bvid}")
        return self.checkpointer.on_snapshot(snap, message.partition)

    async def score(self, messages: Sequence[Any], fetched_at: float | None = None) -> list[Any]:
        """Absorb a batch of input messages in order, write each touched state once, score what is due.

        `fetched_at`: when the batch's last fetch arrived (the profiles it needs were on the broker).
        Returns the futures of the batch's state records (`ChangelogWrites.take`).
        """
        self.progress.begin()
        if self.restorer is not None:
            self.restorer.ensure()
        due: list[Checkpoint] = []
        for message in messages:
            try:
                due += self.absorb(message)
            except BadEvent as exc:
                await self.dead(message, str(exc))
        scored = [cp.as_of for cp in due if cp.status == "scored"]
        if scored:
            await self.uploaders.ready_for(max(scored), fetched_at)
        for pred in self.scorer.predict(due):
            await self.out.prediction(pred)
        if self.topic_out is not None:
            await self.topic_out.delivered()
        self.checkpointer.flush(first_snapshot_offsets(messages, self.topics.snapshot))
        self.checkpointer.stats["messages"] += len(messages)
        self.progress.update(len(messages))
        return self.writes.take()

    def view(self) -> dict[str, Any]:
        """This worker's own counters; the watermark is the last event time seen per partition."""
        checkpointer, restorer = self.checkpointer, self.restorer
        return {
            **self.progress.as_dict(),
            "counters": dict(checkpointer.stats),
            "profiles": dict(self.uploaders.stats),
            "watermarks": {str(p): w for p, w in checkpointer.watermarks.items()},
            "pending_wakeups": checkpointer.pending(),
            "cached_videos": len(checkpointer.states.live),
            "assigned": [] if restorer is None else sorted(restorer.assigned()),
            "restore": {} if restorer is None else restorer.last,
        }
