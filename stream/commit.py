"""The commit protocol: the order in which a scored batch becomes durable, in one place.

1. The batch's predictions and outcomes are sent and the broker acknowledged every one
   (`Emitter.delivered`).
2. The batch's state records (video headers, row chunks, watermarks: the horizons it fired) are sent
   to the tables' changelogs (`Checkpointer.flush` through `ChangelogWrites`).
3. Once the broker has stored every one of those records, the batch's input offsets are acked in
   Faust's bookkeeping (`Lane.ack_once_stored`), in batch order; the scoring loop goes on with the
   next batch meanwhile. A record that fails stops all acking until the partitions are handed over.
4. Faust commits acked offsets on its commit interval.

So a step never runs ahead of the one before it, and a worker that stops anywhere loses nothing:
after a restart (or on the partitions' next owner) the input is read again from the last commit,
which is never past a batch whose state is not stored, and the state is restored from the changelogs,
which never record a horizon as fired whose prediction the broker did not hold. A checkpoint that
fired before the stop but whose state was not stored fires again from the same snapshots: the same
prediction again, which the sinks upsert. Snapshots read again are dropped as duplicates (same video,
same `ts`), and a row chunk written again has the same key (`partition:first offset of the batch`).
tests/test_commit.py stops a worker between every two steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from core.events import DeadLetter, Outcome, Prediction
from stream.checkpoint import Changelog, Checkpointer
from stream.lane import Lane, LaneBatch


class Emitter(Protocol):
    """Where the scoring loop's output goes: the topics in a worker, a list in unit tests."""

    async def prediction(self, pred: Prediction) -> None: ...

    async def outcome(self, outcome: Outcome) -> None: ...

    async def dead(self, letter: DeadLetter) -> None: ...

    async def delivered(self) -> None:
        """Return once the broker acknowledged every prediction and outcome sent so far."""
        ...


class ChangelogWrites:
    """The state records sent to the tables' changelogs since the last batch, as futures."""

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


def first_snapshot_offsets(messages: Sequence[Any], topic: str) -> dict[int, int]:
    """Partition -> offset of the batch's first snapshot there: names the batch's row chunks."""
    first: dict[int, int] = {}
    for message in messages:
        if message.topic == topic and message.partition not in first:
            first[message.partition] = message.offset
    return first


class BatchCommit:
    """Runs the commit protocol (module docstring) for each scored batch, and hands state over on a
    revocation."""

    def __init__(
        self,
        out: Emitter,
        checkpointer: Checkpointer,
        writes: ChangelogWrites,
        lane: Lane,
        snapshot_topic: str,
    ) -> None:
        self.out, self.checkpointer, self.writes, self.lane = out, checkpointer, writes, lane
        self.snapshot_topic = snapshot_topic

    async def run(self, messages: Sequence[Any], batches: Sequence[LaneBatch]) -> None:
        """Make a scored batch durable, in order: `messages` were absorbed, `batches` are their fetches
        (none when a unit test feeds messages directly: nothing to ack)."""
        await self.out.delivered()  # 1. predictions acknowledged by the broker
        self.checkpointer.flush(first_snapshot_offsets(messages, self.snapshot_topic))  # 2. state sent
        self.lane.ack_once_stored(list(batches), self.writes.take())  # 3. acked once stored; 4. Faust

    async def hand_over(self) -> None:
        """Partitions may move to another worker: from now on the tables, not the cache, are the truth.

        The batch being scored finishes first and the scored batches' state records are stored (they
        reach the changelog before the next owner reads it); fetched batches not yet scored are
        dropped (the next owner reads them again from the last commit).
        """
        async with self.lane.busy:
            await self.lane.settle()
            self.lane.clear()
        self.checkpointer.states.clear()
