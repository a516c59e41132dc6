"""Redis and MariaDB cut off from a running worker mid-replay: nothing committed unwritten, nothing lost.

A real `hotvideo worker` (tests/cluster.py) reaches the real MariaDB and Redis servers through two
TCP proxies. While the world is replayed, both proxies are cut for `CUT_S` seconds. Scoring goes on
(it needs neither store), so predictions pile up on the prediction topic; the sink retries and must
not commit the prediction topic past a prediction that is not in both stores, and the health report
must show the backlog. After the restore every prediction on the topic must be in MariaDB and in
Redis, once per (bvid, horizon).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, make_url

from broker.admin import committed_offsets, end_offsets, read_all
from broker.embedded import EmbeddedBroker
from broker.health import Tracker, report
from core.events import Prediction, parse_event
from ingest.eventlog import read_log, write_log
from ingest.world import WorldConfig, generate
from sink.sql import SqlStore
from tests.harness.cluster import Cluster, wait_for
from tests.harness.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, TcpProxy

pytestmark = pytest.mark.slow

WORLD = WorldConfig(videos=80, sim_hours=8.0, seed=11)
CUT_S = 8.0
"""How long both stores stay unreachable: several backoff rounds, and past the worker's 5 s stuck limit."""


@pytest.fixture
def outage_database(mariadb_url: str) -> Iterator[str]:
    """A MariaDB database of this run's own (so runs and other tests never share tables), dropped after."""
    name = f"hv_outage_{uuid.uuid4().hex[:8]}"  # an identifier cannot be a bound parameter: ours only
    engine = create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield make_url(mariadb_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        engine.dispose()


def redis_predictions(client: redis.Redis, prefix: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(bvid, horizon) -> (status, prob) from the per-video hashes the sink wrote under `prefix`."""
    found: dict[tuple[str, str], tuple[str, str | None]] = {}
    for key in client.scan_iter(match=f"{prefix}video:*", count=1000):
        bvid = key.decode().removeprefix(f"{prefix}video:")
        fields = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        for name, value in fields.items():
            horizon, _, what = name.partition(":")
            if what == "status":
                found[bvid, horizon] = (value, fields.get(f"{horizon}:prob"))
    return found


def sql_predictions(store: SqlStore) -> dict[tuple[str, str], tuple[str, float | None]]:
    return {(r["bvid"], r["horizon"]): (r["status"], r["prob"]) for r in store.predictions()}


def unwritten_below_commit(
    cluster: Cluster, store: SqlStore, client: redis.Redis, prefix: str
) -> tuple[int, list[tuple[str, str]]]:
    """Predictions the group committed past that are missing from SQL or Redis (must be none).

    The committed offsets are read first: whatever was committed by then was written before, so a
    store read afterwards must hold it.
    """
    committed = committed_offsets(cluster.bootstrap, cluster.group, cluster.topics.prediction)
    in_sql, in_redis = sql_predictions(store), redis_predictions(client, prefix)
    below = [
        parse_event(Prediction, r.value)
        for r in read_all(cluster.bootstrap, cluster.topics.prediction)
        if r.offset < committed.get(r.partition, 0)
    ]
    stored = in_sql.keys() & in_redis.keys()
    missing: list[tuple[str, str]] = [(p.bvid, p.horizon) for p in below if (p.bvid, p.horizon) not in stored]
    return len(below), missing


def test_sink_waits_out_a_redis_and_mariadb_outage_and_writes_every_prediction(
    embedded_broker: EmbeddedBroker,
    trained_model_dir: Path,
    tmp_path: Path,
    outage_database: str,
    redis_client: redis.Redis,
    tcp_proxy: Callable[[str, int], TcpProxy],
) -> None:
    write_log(tmp_path / "world.jsonl", generate(WORLD), progress=False)
    records = list(read_log(tmp_path / "world.jsonl"))
    run = uuid.uuid4().hex[:8]
    prefix = f"out{run}:"
    db = make_url(outage_database)
    sql_proxy = tcp_proxy(db.host or "127.0.0.1", db.port or 3306)
    redis_proxy = tcp_proxy(REDIS_HOST, REDIS_PORT)
    cluster = Cluster(
        bootstrap=embedded_broker.bootstrap,
        name=f"out{run}",
        model_dir=trained_model_dir,
        workdir=tmp_path / "cluster",
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB}",
        database_url=db.set(port=sql_proxy.port).render_as_string(hide_password=False),
        extra_env={"REDIS_PREFIX": prefix},
    )
    direct = SqlStore(outage_database)  # the test's own view, not through the proxy
    topic = cluster.topics.prediction
    health: list[dict[str, Any]] = []
    try:
        cluster.start("w")
        cluster.wait_assigned(["w"])
        first = len(records) // 3
        cluster.publish(records[:first])
        wait_for("the sink writes predictions", lambda: direct.count_predictions() > 0)

        emitted_before = sum(end_offsets(cluster.bootstrap, topic).values())
        sql_proxy.cut()
        redis_proxy.cut()
        cut_at = time.monotonic()
        cluster.publish(records[first:])
        tracker = Tracker(stuck_after_s=3.0)
        # Past one commit interval (1 s) a batch written before the cut has been committed; from then
        # on the prediction topic's committed offsets must stand still.
        time.sleep(2.0)
        frozen = committed_offsets(cluster.bootstrap, cluster.group, topic)
        # The worker's tracker starts here, after the last commit: it stamps a change when it sees it,
        # so a commit between this sample and the next would look like fresh progress (seen under load).
        cluster.page("w", "health")
        while time.monotonic() - cut_at < CUT_S:
            health.append(report(cluster.bootstrap, cluster.group, cluster.topics, tracker))
            checked, missing = unwritten_below_commit(cluster, direct, redis_client, prefix)
            assert missing == [], f"committed past unwritten predictions: {missing[:5]}"
            time.sleep(0.5)
        worker_health = cluster.page("w", "health")
        assert committed_offsets(cluster.bootstrap, cluster.group, topic) == frozen
        emitted_during_cut = sum(end_offsets(cluster.bootstrap, topic).values()) - emitted_before
        written_during_cut = direct.count_predictions()

        sql_proxy.restore()
        redis_proxy.restore()
        restored_at = time.monotonic()
        expected = [parse_event(Prediction, r.value) for r in read_all(cluster.bootstrap, topic)]
        due = {(p.bvid, p.horizon) for p in expected}
        back_s = (
            wait_for("SQL has every prediction", lambda: direct.count_predictions() >= len(due)) - restored_at
        )
        cluster.wait_caught_up()
        caught_up_s = time.monotonic() - restored_at
        cluster.check_alive()
    finally:
        cluster.stop()

    got = cluster.predictions()
    due = {(p.bvid, p.horizon) for p in got}
    assert len(got) == len(due), "one worker, no crash: each (bvid, horizon) emitted once"
    assert emitted_during_cut > 0, "predictions kept flowing to the topic during the outage"

    # while cut: the backlog was visible and, past the stuck limit, called stuck
    assert all(h["sink_backlog"] > 0 for h in health), [h["sink_backlog"] for h in health]
    assert health[-1]["verdict"] == "stuck"
    assert any(s.startswith(f"{topic}:") for s in health[-1]["stuck"]), health[-1]["stuck"]
    assert worker_health["verdict"] == "stuck" and worker_health["sink_backlog"] > 0

    # after: every prediction in both stores, once per (bvid, horizon), with the topic's values
    want = {(p.bvid, p.horizon): (p.status, p.prob) for p in got}
    rows = direct.predictions()
    assert sorted((r["bvid"], r["horizon"]) for r in rows) == sorted(due), "one SQL row per prediction"
    assert sql_predictions(direct) == want
    in_redis = redis_predictions(redis_client, prefix)
    assert in_redis == {key: (status, None if p is None else str(p)) for key, (status, p) in want.items()}
    stream_len = redis_client.xlen(f"{prefix}predictions")
    assert stream_len >= len(due)
    log_text = (cluster.workdir / "w.log").read_text(encoding="utf-8", errors="replace")
    retries = log_text.count("sink write failed, retrying")
    assert retries > 0
    direct.close()
    print(
        f"\noutage of Redis and MariaDB for {CUT_S:.0f} s: {emitted_during_cut} predictions emitted during "
        f"the cut, {written_during_cut} of {len(due)} in SQL at its end, prediction-topic commits frozen "
        f"at {sum(frozen.values())}; {checked} committed predictions checked in both stores each 0.5 s; "
        f"{retries} sink retries logged; after the restore SQL complete in {back_s:.1f} s, group caught "
        f"up in {caught_up_s:.1f} s (incl. 2 s settle); Redis stream entries {stream_len} for "
        f"{len(due)} predictions"
    )
