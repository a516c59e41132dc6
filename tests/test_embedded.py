"""The embedded stack: Tansu and redis-server start, answer, stop; the Kafka helpers work on Tansu."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import UnknownTopicOrPartitionError
from kafka.structs import OffsetAndMetadata

from broker.admin import (
    committed_offsets,
    consumer_lag,
    end_offsets,
    ensure_topics,
    read_all,
    wait_until_caught_up,
)
from broker.embedded import EmbeddedBroker, S3Storage
from core.servers import EmbeddedServiceError, free_port, port_open
from core.settings import Settings, Topics
from hotvideo.embedded import EmbeddedRedis
from hotvideo.stack import services
from tests.harness.s3_server import S3Server

PARTITIONS = 3


def _commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit for `group` without joining it (a group join takes seconds on Tansu)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign(list(offsets))
        consumer.commit({tp: OffsetAndMetadata(n, "", -1) for tp, n in offsets.items()})
    finally:
        consumer.close()


def test_topics_produce_read_and_track_a_group(embedded_broker: EmbeddedBroker) -> None:
    bootstrap = embedded_broker.bootstrap
    topics = Topics.under("kafka-admin")
    assert sorted(ensure_topics(bootstrap, topics, PARTITIONS)) == sorted(topics.model_dump().values())
    assert ensure_topics(bootstrap, topics, PARTITIONS) == []

    # Batched sends (linger) put several records in one batch: the case where Tansu's ListOffsets
    # is wrong and end_offsets must still be right.
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    sent = {(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)}
    for key, value in sent:
        producer.send(topics.snapshot, key=key, value=value)
    producer.flush()
    producer.close()

    records = read_all(bootstrap, topics.snapshot)
    assert {(r.key, r.value) for r in records} == sent
    assert len(records) == len(sent)
    per_partition = {p: sum(r.partition == p for r in records) for p in range(PARTITIONS)}
    ends = end_offsets(bootstrap, topics.snapshot)
    assert ends == per_partition
    assert read_all(bootstrap, topics.profile) == []

    group = "kafka-admin-group"
    names = [topics.snapshot, topics.profile]
    assert committed_offsets(bootstrap, group, topics.snapshot) == {}
    assert consumer_lag(bootstrap, group, names) == {
        **{(topics.snapshot, p): n for p, n in ends.items()},
        **{(topics.profile, p): 0 for p in range(PARTITIONS)},
    }

    _commit(bootstrap, group, {TopicPartition(topics.snapshot, 0): 1})
    assert committed_offsets(bootstrap, group, topics.snapshot) == {0: 1}
    with pytest.raises(TimeoutError, match="not caught up"):
        wait_until_caught_up(bootstrap, group, names, timeout_s=0.5, settle_s=0.1)

    _commit(bootstrap, group, {TopicPartition(topics.snapshot, p): n for p, n in ends.items()})
    assert committed_offsets(bootstrap, group, topics.snapshot) == ends
    assert set(consumer_lag(bootstrap, group, names).values()) == {0}
    wait_until_caught_up(bootstrap, group, names, timeout_s=10, settle_s=0.3)


@pytest.mark.parametrize("durable", [True, False], ids=["s3", "memory"])
def test_durable_broker_keeps_records_and_commits_across_a_restart(tmp_path: Path, durable: bool) -> None:
    with S3Server(tmp_path / "s3") as s3:
        s3.create_bucket("tansu")  # Tansu does not create its bucket
        storage = S3Storage(s3.endpoint) if durable else None
        port, topics = free_port(), Topics.under("durable")
        with EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage) as broker:
            ensure_topics(broker.bootstrap, topics, PARTITIONS)
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
            for i in range(20):
                producer.send(topics.snapshot, key=f"k{i}".encode(), value=f"v{i}".encode())
            producer.flush()
            producer.close()
            ends = end_offsets(broker.bootstrap, topics.snapshot)
            _commit(broker.bootstrap, "durable-group", {TopicPartition(topics.snapshot, 0): ends[0]})
        with EmbeddedBroker(tmp_path / "tansu", port=port, storage=storage) as broker:
            if not durable:
                admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
                assert topics.snapshot not in admin.list_topics(), "memory storage starts empty"
                admin.close()
                return
            assert len(read_all(broker.bootstrap, topics.snapshot)) == 20
            assert end_offsets(broker.bootstrap, topics.snapshot) == ends
            assert committed_offsets(broker.bootstrap, "durable-group", topics.snapshot) == {0: ends[0]}


def test_s3_storage_settings_for_tansu() -> None:
    local = S3Storage("http://127.0.0.1:9000", bucket="kafka")
    assert local.url == "s3://kafka/"
    assert local.env()["AWS_ENDPOINT"] == "http://127.0.0.1:9000"
    assert local.env()["AWS_ALLOW_HTTP"] == "true"
    assert "AWS_ENDPOINT" not in S3Storage(None).env()  # AWS itself


def test_helpers_reject_unknown_topics(embedded_broker: EmbeddedBroker) -> None:
    with pytest.raises(UnknownTopicOrPartitionError, match="no-such-topic"):
        end_offsets(embedded_broker.bootstrap, "no-such-topic")


def test_broker_refuses_a_port_in_use(embedded_broker: EmbeddedBroker, tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServiceError, match="in use"):
        EmbeddedBroker(tmp_path, port=embedded_broker.port).start()


def test_broker_start_failure_quotes_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'cannot open storage: boom'\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CALF_TANSU_BIN", str(fake))
    with pytest.raises(EmbeddedServiceError, match=r"(?s)code 3.*cannot open storage: boom"):
        EmbeddedBroker(tmp_path).start()


def test_embedded_redis_serves_tcp_and_keeps_its_data(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        assert server.url.startswith("redis://127.0.0.1:")
        with redis.Redis.from_url(server.url) as client:
            client.set("hv:test", "42")
            assert client.get("hv:test") == b"42"
    assert not port_open(server.port)
    assert (tmp_path / "redis.rdb").exists()
    with EmbeddedRedis(tmp_path) as again, redis.Redis.from_url(again.url) as client:
        assert client.get("hv:test") == b"42"


def test_services_uses_configured_servers_and_starts_nothing(
    embedded_broker: EmbeddedBroker,
    tmp_path: Path,
) -> None:
    settings = Settings(
        kafka_bootstrap=embedded_broker.bootstrap,
        redis_url="redis://127.0.0.1:6379/0",
        database_url=f"sqlite:///{tmp_path / 'configured.db'}",
        data_dir=tmp_path / "data",
    )
    with services(settings) as resolved:
        assert resolved.sources == {"kafka": "env", "redis": "env"}
        assert resolved.env() == {
            "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "REDIS_URL": settings.redis_url,
            "DATABASE_URL": settings.database_url,
        }
    assert not (settings.data_dir / "embedded").exists()


def test_services_starts_only_what_is_missing(
    embedded_broker: EmbeddedBroker,
    tmp_path: Path,
) -> None:
    settings = Settings(
        kafka_bootstrap=embedded_broker.bootstrap, redis_url="", database_url=None, data_dir=tmp_path
    )
    with services(settings) as resolved:
        assert resolved.sources == {"kafka": "env", "redis": "started"}
        assert resolved.kafka_bootstrap == embedded_broker.bootstrap
        assert resolved.database_url == settings.sqlite_url


def test_services_starts_and_stops_what_is_missing(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=None, redis_url=None, database_url=None, data_dir=tmp_path / "data")
    with services(settings) as resolved:
        assert resolved.sources == {"kafka": "started", "redis": "started"}
        assert resolved.database_url == settings.sqlite_url
        assert settings.data_dir.is_dir()
        admin = KafkaAdminClient(bootstrap_servers=resolved.kafka_bootstrap)
        admin.list_topics()
        admin.close()
        with redis.Redis.from_url(resolved.redis_url) as client:
            assert client.ping()
        kafka_port = int(resolved.kafka_bootstrap.rpartition(":")[2])
        redis_port = urlsplit(resolved.redis_url).port
    assert redis_port is not None
    assert not port_open(kafka_port)
    assert not port_open(redis_port)
