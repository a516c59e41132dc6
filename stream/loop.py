"""The scoring loop's work on one batch: absorb the input in order, score what is due, emit.

The lane (stream/lane.py) hands it fetched batches; unit tests hand it lists of messages directly
(`tests/harness/stream_harness.py`), with an emitter that records instead of producing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.events import BadEvent, DeadLetter, HotListEntry, Outcome, Prediction, Snapshot, parse_event
from core.logs import get_logger
from core.settings import Topics
from stream.checkpoint import Checkpoint, Checkpointer
from stream.commit import BatchCommit, Emitter
from stream.lane import LaneBatch
from stream.metrics import EVENTS_IN, count_dead, count_predictions
from stream.profiles import ProfileReader
from stream.recovery import Restorer
from stream.scoring import Scorer

log = get_logger(__name__)


class TopicEmitter:
    """Sends predictions and outcomes (keyed by bvid) and dead letters to their topics."""

    def __init__(self, predictions: Any, outcomes: Any, deadletter: Any) -> None:
        self.predictions, self.outcomes, self.deadletter = predictions, outcomes, deadletter
        self.sent: list[Any] = []

    async def prediction(self, pred: Prediction) -> None:
        # force: produce now. Without it Faust attaches the message to the source offset and produces
        # it only at the next commit, after the state recording it as fired (and `delivered` would wait
        # for a commit that waits for this batch).
        self.sent.append(await self.predictions.send(key=pred.key(), value=pred.to_json(), force=True))

    async def outcome(self, outcome: Outcome) -> None:
        self.sent.append(await self.outcomes.send(key=outcome.key(), value=outcome.to_json(), force=True))

    async def delivered(self) -> None:
        """Wait until the broker acknowledged every prediction sent so far.

        Step 1 of the commit protocol (stream/commit.py): before the states that record those
        horizons as fired are written, so a worker killed in between re-fires them from its committed
        offset (a duplicate the sinks absorb) instead of recording a checkpoint whose prediction was lost.
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


class ScoringLoop:
    """Absorbs batches of snapshots and hot-list sightings, scores what is due, emits predictions,
    and hands each batch to the commit protocol.

    `restorer` None: fed directly by a unit test, with no broker to restore state from.
    """

    def __init__(
        self,
        topics: Topics,
        checkpointer: Checkpointer,
        scorer: Scorer,
        uploaders: ProfileReader,
        out: Emitter,
        commit: BatchCommit,
        restorer: Restorer | None,
    ) -> None:
        self.topics, self.checkpointer, self.scorer, self.uploaders = topics, checkpointer, scorer, uploaders
        self.out, self.commit, self.restorer = out, commit, restorer
        self.progress = Progress()

    async def dead(self, message: Any, reason: str) -> None:
        """A malformed message to the dead-letter topic, with the reason; the loop goes on."""
        self.checkpointer.stats["deadletter"] += 1
        count_dead(message.topic, reason)
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

    async def score(
        self,
        messages: Sequence[Any],
        fetched_at: float | None = None,
        batches: Sequence[LaneBatch] = (),
    ) -> None:
        """Absorb a batch of input messages in order, score what is due, then commit it (`BatchCommit`).

        `fetched_at`: when the batch's last fetch arrived (the profiles it needs were on the broker).
        `batches`: the lane's fetches the messages came from (none when a unit test feeds them).
        """
        self.progress.begin()
        if self.restorer is not None:
            self.restorer.ensure()
        due: list[Checkpoint] = []
        for message in messages:
            EVENTS_IN.labels(topic=message.topic).inc()
            try:
                due += self.absorb(message)
            except BadEvent as exc:
                await self.dead(message, str(exc))
        scored = [cp.as_of for cp in due if cp.status == "scored"]
        if scored:
            await self.uploaders.ready_for(max(scored), fetched_at)
        predictions = self.scorer.predict(due)
        count_predictions(predictions)
        for pred in predictions:
            await self.out.prediction(pred)
        for outcome in self.checkpointer.take_outcomes():
            await self.out.outcome(outcome)
        await self.commit.run(messages, batches)
        self.checkpointer.stats["messages"] += len(messages)
        self.progress.update(len(messages))

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
