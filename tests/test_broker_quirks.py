"""`BROKER_KIND`: each kind of broker gets the behaviour broker/quirks.py and docs/operations.md state,
checked on the real objects (the publisher's producer, the worker's consumer and app, the Restorer)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from broker.admin import ensure_topics
from broker.embedded import EmbeddedBroker
from broker.produce import make_producer
from core.settings import BrokerKind, Settings, Topics
from model.registry import load_promoted
from stream.app import create_app
from stream.faust_internals import worker_kafka_consumer

KINDS = ["tansu", "kafka"]


@pytest.mark.parametrize(("kind", "idempotent"), [("tansu", False), ("kafka", True)])
def test_the_publisher_is_idempotent_on_kafka_only(
    embedded_broker: EmbeddedBroker, kind: BrokerKind, idempotent: bool
) -> None:
    producer = make_producer(embedded_broker.bootstrap, kind)
    try:
        assert producer.config["enable_idempotence"] is idempotent
        assert producer.config["acks"] == -1  # "all": every kind waits for the broker's storage
    finally:
        producer.close()


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "wait_ms", "checked"), [("tansu", 10, False), ("kafka", 500, True)])
async def test_the_worker_fetch_wait_and_recovery_check_follow_the_broker_kind(
    trained_model_dir: Path, kind: BrokerKind, wait_ms: int, checked: bool
) -> None:
    settings = Settings(broker_kind=kind, model_dir=trained_model_dir)
    app = create_app(settings, "localhost:1", bundle=load_promoted(trained_model_dir), with_sinks=False)
    async with worker_kafka_consumer(app.consumer) as consumer:
        assert consumer._fetch_max_wait_ms == wait_ms  # what aiokafka's fetcher is built with
    assert app.conf.recovery_consistency_check is checked


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "read"), [("tansu", 3), ("kafka", 0)])
def test_the_restorer_reads_the_row_changelog_past_fausts_recovery_on_tansu_only(
    embedded_broker: EmbeddedBroker, trained_model_dir: Path, kind: BrokerKind, read: int
) -> None:
    worker_id = f"quirks-{kind}-{uuid.uuid4().hex[:8]}"
    settings = Settings(broker_kind=kind, worker_id=worker_id, partitions=1, topics=Topics.under(worker_id))
    app = create_app(
        settings, embedded_broker.bootstrap, bundle=load_promoted(trained_model_dir), with_sinks=False
    )
    changelog = f"{worker_id}-video_rows-changelog"
    ensure_topics(embedded_broker.bootstrap, settings.topics.model_copy(update={"snapshot": changelog}), 1)
    producer = make_producer(embedded_broker.bootstrap, "tansu")
    try:
        for n in range(3):
            producer.send(changelog, key=f"0:{n}".encode(), value=json.dumps([[n]]).encode(), partition=0)
        producer.flush()
    finally:
        producer.close()
    assert app.restorer.complete_rows(frozenset({0})) == read
    assert len(app.checkpointer.states.rows.data) == read
