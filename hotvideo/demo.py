"""`hotvideo demo`: the whole flow on one machine, from nothing to a live hot list and a summary.

World -> event log -> (train if no model) -> worker subprocess -> replay through Kafka -> Redis + SQL.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from broker.admin import end_offsets, ensure_topics, read_all, wait_until_caught_up
from broker.produce import publish
from core.events import Prediction, parse_event
from core.logs import get_logger
from core.reference import HORIZONS
from core.services import ResolvedServices
from core.settings import Settings
from hotvideo.processes import WorkerProcess
from hotvideo.stack import services
from ingest.eventlog import read_events, read_log, write_log
from ingest.world import WorldConfig, generate
from model.registry import load_promoted
from model.train import train
from sink.sql import SqlStore

log = get_logger(__name__)

TRAINING_WORLD = {"videos": 12000, "sim_hours": 72.0}
"""The world the demo trains on when no model exists: its own seed, so the demo never scores its
training videos."""


@dataclass(frozen=True)
class DemoOptions:
    videos: int = 400
    sim_hours: float = 10.0
    seed: int = 7
    malformed: int = 20
    summary_json: Path | None = None
    timeout_s: float = 600.0


def run_demo(settings: Settings, opts: DemoOptions) -> dict[str, Any]:
    """Run the demo to the end of the world and return (and optionally write) its summary."""
    demo_dir = settings.data_dir / "demo"
    if settings.redis_url is None and settings.database_url is None:
        shutil.rmtree(demo_dir / "stores", ignore_errors=True)  # embedded stores start empty per run
    settings = settings.model_copy(update={"data_dir": demo_dir / "stores"})
    world_log = ensure_world(demo_dir / "worlds", WorldConfig(opts.videos, opts.sim_hours, opts.seed))
    ensure_model(settings, demo_dir / "worlds", opts.seed)
    with services(settings) as svc:
        ensure_topics(svc.kafka_bootstrap, settings.topics, settings.partitions)
        worker_log = demo_dir / "worker.log"
        worker = start_worker(settings, svc, worker_log)
        watcher = HotListWatcher(svc.redis_url, settings.redis_prefix)
        try:
            watcher.start()
            published = publish(
                with_malformed(read_log(world_log), opts.malformed, opts.seed),
                svc.kafka_bootstrap,
                settings.topics,
                progress=True,
                total=None,
                kind=settings.broker_kind,
            )
            wait_for_worker(settings, svc, worker, opts.timeout_s)
            summary = summarize(settings, svc, published)
        finally:
            watcher.stop()
            worker.stop()
    print_summary(summary)
    if opts.summary_json is not None:
        opts.summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def ensure_world(folder: Path, cfg: WorldConfig) -> Path:
    """The world's event log, generated once per (videos, hours, seed)."""
    path = folder / f"world-v{cfg.videos}-h{cfg.sim_hours:g}-s{cfg.seed}.jsonl.gz"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.gz")
        write_log(tmp, generate(cfg), progress=True)
        tmp.replace(path)
    return path


def ensure_model(settings: Settings, worlds: Path, seed: int) -> None:
    """Train on a separate world when MODEL_DIR holds no promoted model."""
    if (settings.model_dir / "PROMOTED").exists():
        load_promoted(settings.model_dir)  # fails loudly if the promoted version is broken
        return
    cfg = WorldConfig(seed=seed + 10_000, **TRAINING_WORLD)  # type: ignore[arg-type]
    log.info("no model yet: training one", videos=cfg.videos, hours=cfg.sim_hours)
    train(read_events(ensure_world(worlds, cfg)), settings.model_dir, seed=seed)


def with_malformed(
    records: Iterator[tuple[str, bytes | None, bytes]], count: int, seed: int
) -> Iterator[tuple[str, bytes | None, bytes]]:
    """Mix `count` broken snapshot messages into the stream at fixed places (bad input must not stop it)."""
    bad = [
        b"{not json",
        b'{"bvid": "BV1xx4y1a7Aa", "ts": 1}',
        b'{"bvid": "not-a-bvid", "ts": 1793000000, "pubdate": 1793000000}',
        b"\xff\xfe\xfd",
        b"[]",
    ]
    for i, record in enumerate(records):
        if i % 97 == seed % 97 and count > 0:
            count -= 1
            yield ("snapshot", b"BV1xx4y1a7Aa", bad[count % len(bad)])
        yield record


def start_worker(settings: Settings, svc: ResolvedServices, log_path: Path) -> WorkerProcess:
    """The worker as a child process on the same services; its log goes to a file."""
    env = {
        **svc.env(),
        "MODEL_DIR": str(settings.model_dir.resolve()),
        "DATA_DIR": str(settings.data_dir.resolve()),
    }
    return WorkerProcess("worker", env, log_path).start()


def wait_for_worker(
    settings: Settings,
    svc: ResolvedServices,
    worker: WorkerProcess,
    timeout_s: float,
) -> None:
    """Block until the worker has consumed everything and the sinks caught up; fail fast if it died."""
    topics = settings.topics
    deadline = time.monotonic() + timeout_s
    while True:
        if worker.poll() is not None:
            raise RuntimeError(worker.failure())
        try:
            wait_until_caught_up(
                svc.kafka_bootstrap,
                settings.worker_id,
                [topics.snapshot, topics.hotlist, topics.profile, topics.prediction],
                timeout_s=5.0,
                settle_s=3.0,
            )
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def summarize(settings: Settings, svc: ResolvedServices, published: int) -> dict[str, Any]:
    """Counts from the topics, SQL and Redis, and the digest of every prediction emitted."""
    topics = settings.topics
    records = read_all(svc.kafka_bootstrap, topics.prediction)
    preds = [parse_event(Prediction, r.value or b"") for r in records]
    statuses: dict[str, Counter[str]] = {h: Counter() for h in HORIZONS}
    for p in preds:
        statuses[p.horizon][p.status] += 1
    lines = digest_lines(preds)
    client = redis.Redis.from_url(svc.redis_url)
    return {
        "events": published,
        "deadletter": sum(end_offsets(svc.kafka_bootstrap, topics.deadletter).values()),
        "predictions": {
            h: {s: statuses[h][s] for s in ("scored", "already_hot", "insufficient_data")} for h in HORIZONS
        },
        "sql_prediction_rows": SqlStore(svc.database_url).count_predictions(),
        "redis_hot_list_size": {h: int(client.zcard(f"{settings.redis_prefix}hot:{h}")) for h in HORIZONS},
        "duplicate_predictions": len(preds) - len({(p.bvid, p.horizon, p.model_version) for p in preds}),
        "predictions_sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(),
    }


def digest_lines(preds: list[Prediction]) -> list[str]:
    """The digest's sorted distinct lines: an identical re-emission (at-least-once delivery after a
    crash or rebalance) counts once, as in the sinks; a duplicate that differs changes the digest."""
    return sorted({p.digest_line() for p in preds})


def print_summary(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2), flush=True)


class HotListWatcher:
    """Prints the top of the live hot list (from Redis) whenever it changes, while the demo runs."""

    def __init__(self, redis_url: str, prefix: str, top: int = 5, every_s: float = 2.0) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.prefix, self.top, self.every_s = prefix, top, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hot-list-watcher", daemon=True)
        self._last: dict[str, list[tuple[bytes, float]]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                for h in HORIZONS:
                    top = self.client.zrevrange(f"{self.prefix}hot:{h}", 0, self.top - 1, withscores=True)
                    if top and top != self._last.get(h):
                        self._last[h] = top
                        board = "  ".join(f"{b.decode()} {s:.2f}" for b, s in top)
                        sys.stderr.write(f"\n[hot list {h}] {board}\n")
            except redis.RedisError:
                continue  # the store may be starting or stopping; the next tick tries again
