"""The broker restarts mid-replay: the worker and the publisher reconnect, every due prediction arrives.

The restarted broker is Tansu with durable storage (`S3Storage`, here on the file-backed S3 server
of tests/s3_server.py), stopped with SIGTERM and started again on the same port, so its topics,
committed offsets and changelogs come back. A publisher (`broker.produce`, the path replays and
collectors use) sends the world slowly enough that the restart falls in the middle of it and keeps
its producer across the restart. A reference worker on the session's in-memory broker gets the
same world at the same pace, undisturbed: the two must give the same predictions, each once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from broker.admin import HOLE_WAIT_S, committed_offsets, end_offsets, ensure_topics, read_all, read_from
from broker.embedded import EmbeddedBroker, S3Storage
from broker.produce import publish
from core.servers import free_port
from core.settings import Topics
from ingest.eventlog import read_log, write_log
from ingest.world import WorldConfig, generate
from sink.sql import SqlStore
from tests.harness.cluster import Cluster, wait_for
from tests.harness.s3_server import S3Server

pytestmark = pytest.mark.slow

WORLD = WorldConfig(videos=80, sim_hours=8.0, seed=11)
DOWN_S = 5.0
"""How long the broker stays down: past the workers' 3 s session timeout."""
CHUNK, PAUSE_S = 150, 0.3
"""The publisher sends this many records, then pauses: the world takes ~10 s to publish."""


def paced(
    records: list[tuple[str, bytes | None, bytes]], sent: list[int]
) -> Iterator[tuple[str, bytes | None, bytes]]:
    """The records with a pause after every CHUNK; `sent[0]` counts what was handed to the producer."""
    for i, record in enumerate(records):
        if i and i % CHUNK == 0:
            time.sleep(PAUSE_S)
        sent[0] = i + 1
        yield record


def test_broker_restart_mid_replay_loses_no_prediction(
    embedded_broker: EmbeddedBroker, trained_model_dir: Path, tmp_path: Path, redis_pair: tuple[str, str]
) -> None:
    write_log(tmp_path / "world.jsonl", generate(WORLD), progress=False)
    records = list(read_log(tmp_path / "world.jsonl"))
    run = uuid.uuid4().hex[:8]
    ref_sql, dur_sql = (f"sqlite:///{tmp_path / name}.db" for name in ("ref", "dur"))
    with S3Server(tmp_path / "s3") as s3:
        s3.create_bucket("tansu")
        storage = S3Storage(s3.endpoint)
        port = free_port()
        broker = EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage).start()
        reference = Cluster(
            bootstrap=embedded_broker.bootstrap,
            name=f"rref{run}",
            model_dir=trained_model_dir,
            workdir=tmp_path / "ref",
            redis_url=redis_pair[0],
            database_url=ref_sql,
        )
        durable = Cluster(
            bootstrap=broker.bootstrap,
            name=f"rdur{run}",
            model_dir=trained_model_dir,
            workdir=tmp_path / "dur",
            redis_url=redis_pair[1],
            database_url=dur_sql,
        )
        sent, ref_sent = [0], [0]
        errors: list[BaseException] = []

        def publisher(cluster: Cluster, counter: list[int]) -> None:
            try:
                publish(paced(records, counter), cluster.bootstrap, cluster.topics, progress=False)
            except BaseException as exc:
                errors.append(exc)

        # the reference is published at the same pace, so that only the restart tells the runs apart
        thread = threading.Thread(target=publisher, args=(durable, sent), name="publisher")
        ref_thread = threading.Thread(target=publisher, args=(reference, ref_sent), name="ref-publisher")
        try:
            reference.start("solo")
            durable.start("w")
            reference.wait_assigned(["solo"])
            durable.wait_assigned(["w"])
            started = time.monotonic()
            ref_thread.start()
            thread.start()
            topic = durable.topics.snapshot
            wait_for(
                "predictions before the restart",
                lambda: sum(end_offsets(broker.bootstrap, durable.topics.prediction).values()) > 0,
            )
            wait_for("a third published", lambda: sent[0] >= len(records) // 3)
            before = committed_offsets(broker.bootstrap, durable.group, topic)
            emitted_before = sum(end_offsets(broker.bootstrap, durable.topics.prediction).values())
            published_before = sent[0]
            broker.stop()
            stopped_at, stopped_wall = time.monotonic(), time.time()
            time.sleep(DOWN_S)
            broker = EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage).start()
            restarted_at = time.monotonic()
            survived = committed_offsets(broker.bootstrap, durable.group, topic)

            def resumed() -> bool:
                now = committed_offsets(broker.bootstrap, durable.group, topic)
                return sum(now.values()) > sum(before.values())

            resume_s = wait_for("the worker commits again", resumed) - restarted_at
            thread.join(timeout=120)
            ref_thread.join(timeout=120)
            assert not thread.is_alive(), "the publisher did not finish"
            publish_s = time.monotonic() - started
            durable.wait_caught_up()
            reference.wait_caught_up()
            durable.check_alive()
            got, expected = durable.predictions(), reference.predictions()
            # What each broker kept of the published snapshots (the durable one lived through the restart).
            published: Counter[bytes] = Counter(value for topic, _, value in records if topic == "snapshot")
            kept = {
                cluster.name: Counter(
                    r.value or b"" for r in read_all(cluster.bootstrap, cluster.topics.snapshot)
                )
                for cluster in (reference, durable)
            }
        finally:
            thread.join(timeout=1)
            ref_thread.join(timeout=1)
            reference.stop()
            durable.stop()
            broker.stop()
        assert errors == [], f"the publisher failed across the restart: {errors}"

    assert all(survived.get(p, -1) >= offset for p, offset in before.items()), "commits survive the restart"
    due = {(p.bvid, p.horizon) for p in expected}
    assert len(due) == len(expected)
    assert {(p.bvid, p.horizon) for p in got} == due, "every due prediction arrives, none extra"
    rows = SqlStore(dur_sql).predictions()
    assert sorted((r["bvid"], r["horizon"]) for r in rows) == sorted(due), "one SQL row per due checkpoint"
    differ = {p.digest_line() for p in got} - {p.digest_line() for p in expected}
    changed_after_stop = sum(1 for p in got if p.digest_line() in differ and p.scored_at >= stopped_wall)
    print(
        f"\nbroker restart (S3 storage, down {DOWN_S:.0f} s, {stopped_at - started:.1f} s into a "
        f"{publish_s:.1f} s publication): {published_before} of {len(records)} records handed to the "
        f"producer and {emitted_before} predictions emitted before the stop; committed snapshot offsets "
        f"{sum(before.values())} before, {sum(survived.values())} after the restart; the worker committed "
        f"again {resume_s:.1f} s after the restart; due checkpoints {len(due)}, predictions on the topic "
        f"{len(got)} ({len(got) - len(due)} re-emitted duplicates), SQL rows {len(rows)}; S3 objects "
        f"{sum(len(k) for k in s3.store.keys.values())}; {len(differ)} probabilities differ from the "
        f"reference run ({changed_after_stop} scored after the stop)"
    )
    lost = {name: (published - values).total() for name, values in kept.items()}
    doubled = {name: (values - published).total() for name, values in kept.items()}
    print(f"published snapshots the broker lost: {lost}, kept twice: {doubled}")
    assert not any(lost.values()), f"the broker lost published snapshots across the restart: {lost}"
    ref_of = {(p.bvid, p.horizon): p for p in expected}
    inputs = [
        (
            p.bvid,
            p.horizon,
            p.snapshots_used,
            ref_of[p.bvid, p.horizon].snapshots_used,
            p.early_metrics,
            ref_of[p.bvid, p.horizon].early_metrics,
        )
        for p in got
        if p.digest_line() in differ
    ]
    assert not differ, (
        f"{len(differ)} of {len(due)} probabilities differ; "
        f"(snapshots used, metrics) here vs the reference: {inputs[:3]}"
    )


def test_a_send_cut_by_a_broker_restart_is_stored_on_retry(tmp_path: Path) -> None:
    """The broker stops halfway through storing a batch; the publisher's retry must store it.

    Tansu's S3 store records a produce in three writes: the producer's sequence number, the
    partition's end offset, then the batch itself. Stopped before the last, it came back with the
    sequence already counted, so an idempotent producer's retry was answered "duplicate" (which
    producers take for success) and the batch was lost without an error.
    """
    topics = Topics.under("cut")
    value = b'{"bvid": "BV1cut", "ts": 1700000000}'
    outcome: list[int | BaseException] = []

    def send(bootstrap: str) -> None:
        try:
            outcome.append(publish([("snapshot", b"BV1cut", value)], bootstrap, topics, progress=False))
        except BaseException as exc:
            outcome.append(exc)

    with S3Server(tmp_path / "s3") as s3:
        s3.create_bucket("tansu")
        storage, port = S3Storage(s3.endpoint), free_port()
        broker = EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage).start()
        ensure_topics(broker.bootstrap, topics, 1)
        s3.stall_puts(".batch")
        thread = threading.Thread(target=send, args=(broker.bootstrap,), name="publisher")
        thread.start()
        try:
            assert s3.stalled.wait(30), "the publisher's batch never reached the store"
            broker.stop(timeout_s=2)
            s3.release()
            broker = EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage).start()
            thread.join(60)
            stored = [r.value for r in read_all(broker.bootstrap, topics.snapshot, timeout_s=10)]
        finally:
            s3.release()
            thread.join(1)
            broker.stop()
    assert outcome == [1], f"the publisher failed across the restart: {outcome}"
    assert stored == [value], "the batch whose write the stop cut short is stored by the retry"


def test_a_hole_at_the_end_of_a_partition_does_not_stall_a_read(tmp_path: Path) -> None:
    """A write cut by a stop, never retried (its producer died too), leaves offsets with no records.

    Recovery reads each changelog to its end offset; with the hole at the end no record ever comes,
    and the read must give up on the hole (quickly, logging it) instead of waiting for its timeout.
    """
    topics = Topics.under("hole")
    with S3Server(tmp_path / "s3") as s3:
        s3.create_bucket("tansu")
        storage, port = S3Storage(s3.endpoint), free_port()
        broker = EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage).start()
        try:
            ensure_topics(broker.bootstrap, topics, 1)
            kept = [(b"k", f"kept {i}".encode()) for i in range(5)]
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", retries=0)
            for key, value in kept:
                producer.send(topics.snapshot, key=key, value=value)
            producer.flush()
            s3.stall_puts(".batch")
            producer.send(topics.snapshot, key=b"k", value=b"cut short")
            assert s3.stalled.wait(30), "the batch never reached the store"
            broker.stop(timeout_s=2)
            s3.release()
            producer.close(timeout=1)  # no retry: the record is gone, its offsets stay
            broker = EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage).start()
            assert end_offsets(broker.bootstrap, topics.snapshot)[0] > len(kept), "a hole at the end"
            began = time.monotonic()
            records = read_from(broker.bootstrap, topics.snapshot, {0: 0}, timeout_s=30)
            took = time.monotonic() - began
        finally:
            broker.stop()
    assert [(r.key, r.value) for r in records] == kept
    assert took < HOLE_WAIT_S + 3, f"the read waited {took:.1f} s on the hole"
