"""After a partition assignment: finish the tables' recovery, then rebuild the event-time queues.

Two gaps make this necessary. Faust replays a changelog up to the end offset ListOffsets reports,
and Tansu reports the start of the partition's last record batch + 1, so the last batch of state
changes (up to a few hundred records with batched produce requests) would be missing after a restart
or a failover on the embedded broker. And the `Checkpointer`'s watermarks and wake-up queues live in
memory only: without a rebuild a video whose snapshots stopped would never fire on its new worker.

So, before the scoring loop absorbs the first batch after an assignment, `Restorer` reads the rest of
the row changelog's partitions (from where Faust stopped to the fetch's high watermark, which is right
on both brokers) when the broker kind needs it (`Quirks.read_changelogs_to_end`: Tansu, not Apache
Kafka), re-reads the small header changelog of the assigned partitions whole (which tells which
partition each video belongs to), and hands that to `Checkpointer.restore`.
"""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from typing import Any

from broker.admin import Record, read_from
from core.logs import get_logger
from stream.checkpoint import Checkpointer
from stream.faust_internals import recovered_offsets, table_store

log = get_logger(__name__)


def apply(data: MutableMapping[bytes, Any], records: list[Record]) -> None:
    """Changelog records into a table's store, in order: the last value per key wins, None deletes."""
    for record in records:
        if record.key is None:
            continue
        if record.value is None:
            data.pop(record.key, None)
        else:
            data[record.key] = json.loads(record.value)


class Restorer:
    """Completes recovery of the worker's tables and restores the checkpointer, once per assignment."""

    def __init__(
        self,
        app: Any,
        bootstrap: str,
        input_topic: str,
        checkpointer: Checkpointer,
        headers: Any,
        rows: Any,
        read_to_end: bool,
    ) -> None:
        """`read_to_end`: Faust's recovery stops short of the changelogs' ends (`Quirks`)."""
        self.app, self.bootstrap, self.input_topic = app, bootstrap, input_topic
        self.checkpointer = checkpointer
        self.headers, self.rows, self.read_to_end = headers, rows, read_to_end
        self.restored: frozenset[int] | None = None
        """Input partitions the checkpointer was last restored for; None: restore before the next batch."""
        self.last: dict[str, Any] = {}
        """What the last restore did (for the health page)."""

    def invalidate(self) -> None:
        """A rebalance happened: restore before the next batch (Faust recovers the tables first)."""
        self.restored = None

    def assigned(self) -> frozenset[int]:
        assignment = self.app.consumer.assignment()
        return frozenset(tp.partition for tp in assignment if tp.topic == self.input_topic)

    def ensure(self) -> None:
        """Restore if the assignment changed since the last restore (cheap check per batch).

        It blocks the event loop on purpose: awaiting a thread here, inside the first batch after a
        rebalance, left Faust's acknowledgements of that batch with a gap on the new partitions, and
        their committed offsets never moved again (seen on Tansu). A restore reads only the header
        changelog and what Faust's recovery missed: well under a second for the test worlds.
        """
        partitions = self.assigned()
        if self.restored == partitions:
            return
        began = time.monotonic()
        completed = self.complete_rows(partitions)
        header_records = read_from(
            self.bootstrap, self._changelog(self.headers), dict.fromkeys(partitions, 0)
        )
        apply(table_store(self.headers), header_records)
        owner = {r.key: r.partition for r in header_records if r.key is not None and r.value is not None}
        self.checkpointer.restore(partitions, owner)
        self.restored = partitions
        self.last = {
            "partitions": sorted(partitions),
            "records_past_faust_recovery": completed,
            "header_records": len(header_records),
            "seconds": round(time.monotonic() - began, 3),
            "at": time.time(),
        }
        log.info("state restored", **self.last)

    def complete_rows(self, partitions: frozenset[int]) -> int:
        """Apply the row changelog records Faust's recovery did not reach (when the broker kind makes
        it stop short); returns how many there were."""
        if not self.read_to_end:
            return 0
        table = self.rows
        topic = self._changelog(table)
        reached = recovered_offsets(self.app, topic)
        starts: dict[int, int] = {}
        for number in partitions:
            offset = reached.get(number)
            starts[number] = 0 if offset is None or offset < 0 else offset + 1
        records = read_from(self.bootstrap, topic, starts)
        apply(table_store(table), records)
        return len(records)

    @staticmethod
    def _changelog(table: Any) -> str:
        return str(table.changelog_topic.get_topic_name())
