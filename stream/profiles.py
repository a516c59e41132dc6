"""Uploader profiles for the features: every worker reads the whole profile topic itself.

A checkpoint's features use the uploader's profile as of the checkpoint (`UpHistory.at`). For a
replay to give exactly the predictions live scoring gave, and two workers the predictions one gives,
that profile must not depend on how fast each topic happened to be read. So before a batch with
scored checkpoints is scored, `ProfileReader.ready_for(as_of)` waits until the reader has every
profile with ts <= as_of that the broker held when the batch was fetched. A profile partition is
ready when the reader has read a profile later than as_of there (partitions are in event-time order: the
collectors publish a profile when they fetch it, replays publish in event-time order), or has read
to the partition's end as a fetch sent after the wait began reported it.

aiokafka stamps a partition's fetch response (`last_poll_timestamp`) when it processes it, not when
the fetch was sent, and sends a broker its next fetch only after processing the last one. So a
response stamped at or after the wait began may answer a fetch sent before it; the response after
that one cannot, and its end offset (`highwater`) counts every profile published before the wait.

The reader is a plain aiokafka consumer assigned every partition (no consumer group), so each
worker sees every uploader whatever partitions of the inputs it owns. Profiles are few (one per
uploader per collection round), so holding all of them is cheap; a restart reads them again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.events import BadEvent, UpProfile, parse_event
from core.logs import get_logger
from model.features import UpStats
from model.history import UpHistory

log = get_logger(__name__)

FETCH_WAIT_MS = 5
"""The reader's fetch wait: how long an idle fetch is held, so the bound of `ready_for` on an idle topic."""


class ProfileReader:
    """Every uploader's profile history, fed from the profile topic (or by `add` in unit tests)."""

    def __init__(self, bootstrap: str | None, topic: str, ready_timeout_s: float = 30.0) -> None:
        self.bootstrap, self.topic, self.ready_timeout_s = bootstrap, topic, ready_timeout_s
        self.histories: dict[int, UpHistory] = {}
        self.latest: dict[int, int] = {}
        """partition -> largest profile ts read there."""
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: list[TopicPartition] = []
        self.stats: Counter[str] = Counter()

    def add(self, profile: UpProfile, partition: int = 0) -> None:
        self.histories.setdefault(profile.mid, UpHistory()).add(profile)
        self.latest[partition] = max(self.latest.get(partition, profile.ts), profile.ts)
        self.stats["profiles"] += 1

    def at(self, mid: int, as_of: int) -> UpStats | None:
        """The uploader's profile as known at as_of (`Scorer`'s lookup)."""
        history = self.histories.get(mid)
        return None if history is None else history.at(as_of)

    async def run(self) -> None:
        """Read the topic from its start, forever (a task of the worker)."""
        assert self.bootstrap is not None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self.consumer, self.partitions = consumer, partitions
            while True:
                batches = await consumer.getmany(timeout_ms=4 * FETCH_WAIT_MS)
                for tp, records in batches.items():
                    for record in records:
                        try:
                            self.add(parse_event(UpProfile, record.value), tp.partition)
                        except BadEvent:
                            self.stats["malformed"] += 1  # the profile sink agent dead-letters it
        finally:
            self.consumer = None
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        while True:
            numbers = consumer.partitions_for_topic(self.topic)
            if numbers:
                return [TopicPartition(self.topic, p) for p in sorted(numbers)]
            await consumer.topics()  # refreshes the metadata; the topic may be created any moment
            await asyncio.sleep(0.1)

    async def ready_for(self, as_of: int, since: float | None = None) -> bool:
        """Wait until every profile with ts <= as_of the broker held at `since` (default: now) is read.

        `since` is when the batch that made the checkpoints due was fetched: the profiles its
        snapshots came after were on the broker by then.

        Returns False (and counts it) if that took longer than ready_timeout_s: the batch is then
        scored with what is known rather than never. Without a broker (unit tests) it is ready.
        """
        if self.bootstrap is None:
            return True
        asked_ms = (time.time() if since is None else since) * 1000
        deadline = time.monotonic() + self.ready_timeout_s
        first_stamps: dict[TopicPartition, int] = {}
        while not await self._ready(as_of, asked_ms, first_stamps):
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats["not_ready"] += 1
                log.warning("profiles not caught up; scoring with what is known", as_of=as_of)
                return False
            await asyncio.sleep(FETCH_WAIT_MS / 4000)  # a few checks per fetch the reader gets
        return True

    async def _ready(self, as_of: int, asked_ms: float, first_stamps: dict[TopicPartition, int]) -> bool:
        """One check of `ready_for`; first_stamps keeps each partition's first response stamp >= asked_ms."""
        consumer = self.consumer
        if consumer is None:
            return False
        for tp in self.partitions:
            if self.latest.get(tp.partition, as_of) > as_of:  # past as_of: another profile may share it
                continue
            polled, end = consumer.last_poll_timestamp(tp), consumer.highwater(tp)
            if polled is None or end is None or polled < asked_ms:
                return False
            if polled <= first_stamps.setdefault(tp, polled):
                return False  # this response may answer a fetch sent before asked_ms: wait for the next
            if await consumer.position(tp) < end:
                return False
        return True
