"""Publish event records to Kafka in order (kafka-python).

Records are `(topic field, key, value bytes)` as `eventlog.read_log` yields them, so a replay sends the
logged bytes untouched (bad ones included, for the dead-letter path). Order: one request in flight per
connection keeps each partition in send order across retries; after a run of hot-list records (one
refresh) the producer is flushed before anything else is sent, so no later snapshot reaches the broker
before the label that precedes it in event time.

Delivery is at least once. On the embedded broker (Tansu) it is not idempotent: its durable store
counts an idempotent producer's sequence number before it stores the batch; stopped in between, it
answers the retry "duplicate", which producers take for success, and the batch is lost. A plain retry
stores the batch (at worst twice), and the worker ignores a snapshot it already holds. On Apache Kafka
the producer is idempotent (`BROKER_KIND`, broker/quirks.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from kafka import KafkaProducer
from tqdm import tqdm

from broker.quirks import QUIRKS
from core.events import HotListEntry
from core.logs import get_logger
from core.settings import BrokerKind, Topics

log = get_logger(__name__)

_TS = re.compile(rb'[{,]\s*"ts"\s*:\s*(\d+)')
"""The event time of a value without decoding it (inside JSON strings quotes are escaped)."""


def make_producer(bootstrap: str, kind: BrokerKind) -> KafkaProducer:
    """The publisher's producer for a broker of `kind` (idempotent on Kafka only, see the docstring)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=QUIRKS[kind].idempotent_producer,
        max_in_flight_requests_per_connection=1,
        linger_ms=5,
        batch_size=256 * 1024,
        compression_type=None,
    )


def event_time_ms(value: bytes) -> int | None:
    """The event's `ts` (epoch s) in ms, or None (the broker stamps it then).

    The first `"ts"` key wins: no event model nests one, and snapshots put it second.
    """
    match = _TS.search(value)
    return None if match is None else int(match.group(1)) * 1000


def publish(
    records: Iterable[tuple[str, bytes | None, bytes]],
    bootstrap: str,
    topics: Topics,
    progress: bool = True,
    total: int | None = None,
    kind: BrokerKind = "tansu",
) -> int:
    """Send every record to the topic `topics` names for its field, in order; return how many were sent.

    Raises the first delivery error after the final flush, so a run never reports success for
    records the broker did not acknowledge.
    """
    names = topics.model_dump()
    producer = make_producer(bootstrap, kind)
    errors: list[Exception] = []
    count = 0
    hot_pending = False
    started = time.perf_counter()
    try:
        for field, key, value in tqdm(records, total=total, disable=not progress, unit="msg"):
            if hot_pending and field != HotListEntry.topic_field:
                producer.flush()  # the labels of one refresh are acknowledged before what follows
                hot_pending = False
            if field not in names:
                raise ValueError(f"unknown topic field {field!r} (one of {sorted(names)})")
            future = producer.send(names[field], value=value, key=key, timestamp_ms=event_time_ms(value))
            future.add_errback(errors.append)
            count += 1
            hot_pending = hot_pending or field == HotListEntry.topic_field
        producer.flush()
    finally:
        producer.close()
    if errors:
        raise errors[0]
    log.info("published", records=count, seconds=round(time.perf_counter() - started, 3))
    return count


def publish_raw(
    topic: str, key: bytes | None, value: bytes, *, bootstrap: str, kind: BrokerKind = "tansu"
) -> None:
    """Send one message of arbitrary bytes to a Kafka topic name (tests inject malformed input)."""
    producer = make_producer(bootstrap, kind)
    try:
        producer.send(topic, value=value, key=key).get(timeout=30)
    finally:
        producer.close()
