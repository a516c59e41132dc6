"""`ProfileReader` on the embedded broker: `ready_for` returns only once every profile published
before the wait is read, so a checkpoint's features never depend on how fast the profile topic was read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import TopicPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from broker.embedded import EmbeddedBroker
from core.events import UpProfile
from stream.profiles import ProfileReader
from tests.harness.factories import T0

TOPIC = "test.profiles.reader"
PARTITIONS = 3


def profile(mid: int, ts: int, follower: int) -> UpProfile:
    return UpProfile(mid=mid, ts=ts, follower=follower, archive_count=1, total_view=10)


@pytest.fixture(scope="module")
def profile_topic(embedded_broker: EmbeddedBroker) -> str:
    admin = KafkaAdminClient(bootstrap_servers=embedded_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        admin.close()
    return TOPIC


@pytest.fixture
async def reader(embedded_broker: EmbeddedBroker, profile_topic: str) -> AsyncIterator[ProfileReader]:
    reader = ProfileReader(embedded_broker.bootstrap, profile_topic, ready_timeout_s=10.0)
    task = asyncio.create_task(reader.run())
    try:
        yield reader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def producer(embedded_broker: EmbeddedBroker) -> Iterator[KafkaProducer]:
    """A producer with its own thread, so it publishes while the event loop is blocked."""
    producer = KafkaProducer(bootstrap_servers=embedded_broker.bootstrap, linger_ms=0)
    try:
        yield producer
    finally:
        producer.close()


@pytest.mark.slow  # 40 rounds of deliberate pauses
async def test_every_profile_published_before_the_wait_is_read(
    reader: ProfileReader, producer: KafkaProducer
) -> None:
    """Each round publishes a newer profile and then waits: the wait must see it, every time.

    The loop is blocked around the publish, as scoring blocks the worker's: a fetch response that
    arrives meanwhile is stamped late, though the broker answered it before the publish.
    """
    mid = 9_001
    for round_ in range(1, 41):
        sent = profile(mid, ts=T0 + round_, follower=round_)
        await asyncio.sleep(0.01)  # the reader sends its next fetch
        time.sleep(0.02)  # the broker answers it, unread: the loop is busy
        producer.send(TOPIC, sent.to_json(), partition=round_ % PARTITIONS).get(timeout=10)
        asked = time.time()
        time.sleep(0.02)  # still busy: that stale answer is processed only after asked + 20 ms
        assert await reader.ready_for(as_of=sent.ts, since=asked)
        seen = reader.at(mid, sent.ts)
        assert seen is not None and seen.follower == round_, f"round {round_}: read {seen}"
    assert reader.stats["not_ready"] == 0


async def test_ready_at_once_when_a_later_profile_was_read(
    reader: ProfileReader, producer: KafkaProducer
) -> None:
    """A partition whose profiles already passed as_of needs no fresh fetch (it is in event-time order)."""
    for partition in range(PARTITIONS):
        producer.send(TOPIC, profile(9_002, T0 + 5_000, 1).to_json(), partition=partition).get(timeout=10)
    assert await reader.ready_for(as_of=T0 + 5_000)
    # No fetch is sent after `since` within the reader's 10 s timeout: only the read profiles can tell.
    assert await reader.ready_for(as_of=T0 + 4_000, since=time.time() + 60)
    assert reader.stats["not_ready"] == 0


async def test_gives_up_after_the_timeout_and_counts_it(embedded_broker: EmbeddedBroker) -> None:
    """With no reader running the wait cannot finish: it returns False after ready_timeout_s."""
    idle = ProfileReader(embedded_broker.bootstrap, TOPIC, ready_timeout_s=0.2)
    assert not await idle.ready_for(as_of=T0)
    assert idle.stats["not_ready"] == 1


async def test_a_response_stamped_after_the_wait_began_is_trusted_only_from_the_next(
    reader: ProfileReader,
) -> None:
    """aiokafka stamps a response when it processes it: the first one stamped after the wait began may
    answer a fetch sent before it (its end offset stale), so only a later response makes a partition ready."""
    while reader.consumer is None or any(
        reader.consumer.last_poll_timestamp(tp) is None for tp in reader.partitions
    ):
        await asyncio.sleep(0.01)
    consumer = reader.consumer
    asked_ms = min(consumer.last_poll_timestamp(tp) for tp in reader.partitions) - 20
    as_of = T0 + 10**6  # no profile read is past it: only the end offsets can make the reader ready
    first_stamps: dict[TopicPartition, int] = {}
    assert not await reader._ready(as_of, asked_ms, first_stamps)  # every stamp is after asked_ms
    trusted_from = dict(first_stamps)
    while not await reader._ready(as_of, asked_ms, first_stamps):
        await asyncio.sleep(0.002)
    assert all(consumer.last_poll_timestamp(tp) > trusted_from.get(tp, asked_ms) for tp in reader.partitions)
