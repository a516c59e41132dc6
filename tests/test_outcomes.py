"""Outcomes in event time: after a replay, `video_label` holds what offline labelling computes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from broker.embedded import EmbeddedBroker
from core.events import Outcome, parse_event
from core.settings import Settings
from ingest.eventlog import read_events, read_log, write_log
from ingest.world import WorldConfig, generate
from model.dataset import observe
from sink.sql import SqlStore
from tests.harness.cluster import Cluster

pytestmark = pytest.mark.slow

WORLD = WorldConfig(videos=150, sim_hours=34.0, seed=23, hot_base_rate=0.05)
"""Longer than T (24 h) + grace, so most windows close within the replay."""


def test_stream_labels_equal_offline_labels_for_a_replayed_world(
    embedded_broker: EmbeddedBroker, trained_model_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "world.jsonl"
    write_log(log, generate(WORLD), progress=False)
    database = f"sqlite:///{tmp_path / 'labels.db'}"
    cluster = Cluster(
        bootstrap=embedded_broker.bootstrap,
        name=f"outcome{uuid.uuid4().hex[:8]}",
        model_dir=trained_model_dir,
        workdir=tmp_path / "cluster",
        redis_url="redis://127.0.0.1:6379/13",
        database_url=database,
        partitions=1,  # one partition: the worker's event time is the whole log's, as offline
    )
    try:
        cluster.start("worker")
        cluster.wait_assigned(["worker"])
        records = list(read_log(log))
        cluster.publish(records)
        cluster.publish(records[: len(records) // 3])  # a stretch delivered twice changes nothing
        cluster.wait_caught_up()
    finally:
        cluster.stop()
    settings = Settings()
    offline = observe(read_events(log), settings.label_window_s, hot_sources=settings.label_sources).labels(
        grace_s=settings.checkpoint_grace_s
    )
    stored = {r["bvid"]: (r["label"], r["label_source"]) for r in SqlStore(database).labels()}
    assert stored == {b: (lb.value, lb.source) for b, lb in offline.items()}
    values = [lb.value for lb in offline.values()]
    assert min(values.count(1), values.count(0), values.count(None)) >= 5, "all three kinds of label"
    emitted = [parse_event(Outcome, r.value) for r in cluster.read(cluster.topics.outcome)]
    assert {o.bvid for o in emitted} == set(offline), "every video seen in a snapshot has an outcome"
