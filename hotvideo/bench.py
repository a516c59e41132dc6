"""`hotvideo bench`: throughput, latency, scoring cost and state size, measured in one run.

Every figure is measured against the others on the same machine and broker in the same run:
the raw aiokafka consumer is the ceiling, a naive Faust agent the floor, and the real worker sits
between them. Latency is measured at a steady rate well below the maximum.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import tracemalloc
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from broker.admin import ensure_topics
from broker.produce import publish
from core.events import Snapshot
from core.logs import get_logger
from core.services import ResolvedServices
from core.settings import Settings, Topics
from hotvideo.processes import WorkerProcess
from hotvideo.stack import services
from ingest.world import WorldConfig, generate
from model.dataset import build_datasets
from model.history import VideoHistory
from stream.checkpoint import StateCache, VideoState

log = get_logger(__name__)


@dataclass(frozen=True)
class BenchOptions:
    snapshots: int = 200_000
    """At least this many snapshots are replayed through each consumer."""
    rate: int = 2000
    """Snapshots per second of the steady load for the latency figures."""
    latency_s: float = 15.0
    seed: int = 5
    json_path: Path | None = None


def run_bench(settings: Settings, opts: BenchOptions) -> dict[str, Any]:
    """Run every measurement and return the figures (also printed, and written with --json)."""
    from hotvideo.demo import ensure_model  # the demo's "train a model if none is promoted"

    run = uuid.uuid4().hex[:8]
    topics = Topics.under(f"bench-{run}")
    bench_dir = settings.data_dir / "bench"
    settings = settings.model_copy(
        update={"data_dir": bench_dir / "stores", "topics": topics, "redis_prefix": f"bench-{run}:"}
    )
    ensure_model(settings, bench_dir / "worlds", opts.seed)
    records, snapshots = world_records(opts)
    figures: dict[str, Any] = {"snapshots": snapshots, "messages": len(records)}
    with services(settings) as svc:
        ensure_topics(svc.kafka_bootstrap, topics, settings.partitions)
        publish(
            iter(records),
            svc.kafka_bootstrap,
            topics,
            progress=True,
            total=len(records),
            kind=settings.broker_kind,
        )
        figures["raw_consumer_eps"] = asyncio.run(raw_consumer_eps(svc.kafka_bootstrap, topics.snapshot))
        figures["naive_faust_eps"] = worker_eps(settings, svc, run, "naive", snapshots)
        figures["worker_eps"] = worker_eps(settings, svc, run, "worker", len(records), keep=True)
        figures["ratio_to_raw"] = figures["worker_eps"] / figures["raw_consumer_eps"]
        figures["speedup_vs_naive"] = figures["worker_eps"] / figures["naive_faust_eps"]
        figures["latency_ms"] = steady_latency(settings, svc, opts)
        _workers.pop("worker").stop()
    figures["scoring"] = scoring_cost(opts)
    figures["state_bytes_per_video"] = state_size(opts)
    print(json.dumps(figures, indent=2), flush=True)
    if opts.json_path is not None:
        opts.json_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def world_records(opts: BenchOptions) -> tuple[list[tuple[str, bytes | None, bytes]], int]:
    """Snapshots and hot-list sightings of a simulated world, in event-time order, enough of them."""
    videos = max(400, opts.snapshots // 80)
    records: list[tuple[str, bytes | None, bytes]] = []
    snapshots = 0
    for event in generate(WorldConfig(videos=videos, sim_hours=30.0, seed=opts.seed)):
        if event.topic_field not in ("snapshot", "hotlist"):
            continue
        records.append((event.topic_field, event.key(), event.to_json()))
        snapshots += event.topic_field == "snapshot"
        if snapshots >= opts.snapshots:
            break
    if snapshots < opts.snapshots:
        raise RuntimeError(f"the bench world holds only {snapshots} snapshots; raise its size")
    return records, snapshots


async def raw_consumer_eps(bootstrap: str, topic: str) -> float:
    """The ceiling: a plain aiokafka consumer, getmany + json.loads, every partition from the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        todo = sum(ends.values())
        total, started = 0, time.perf_counter()
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                total += sum(len(r) for r in batches.values())
            if not batches or total >= todo:
                if not batches and total < todo * 0.9:
                    continue
                break
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


_workers: dict[str, WorkerProcess] = {}


def worker_eps(
    settings: Settings, svc: ResolvedServices, run: str, kind: str, expected: int, keep: bool = False
) -> float:
    """Start a worker process ("worker" or "naive"), wait until it consumed `expected` messages."""
    env = {
        **svc.env(),
        **{f"TOPIC_{k.upper()}": v for k, v in settings.topics.model_dump().items()},
        "WORKER_ID": f"bench-{run}-{kind}",
        "MODEL_DIR": str(settings.model_dir.resolve()),
        "REDIS_PREFIX": settings.redis_prefix,
        "LOG_LEVEL": "WARNING",
    }
    module = "stream.naive" if kind == "naive" else "hotvideo.cli"
    worker = WorkerProcess(kind, env, settings.data_dir / f"{kind}.log", module=module).start()
    try:
        stats = worker.wait_for_stats(lambda s: s["messages"] >= expected)
    except BaseException:
        worker.stop()
        raise
    if keep:
        _workers[kind] = worker
    else:
        worker.stop()
    eps = stats["messages"] / (stats["last_at"] - stats["first_at"])
    log.info("throughput measured", kind=kind, messages=stats["messages"], eps=round(eps))
    return float(eps)


LOAD_MINUTES = (*range(5, 60, 5), 61)
"""A latency-load video's snapshots: every 5 minutes, then one past 1 h that fires its checkpoint."""
LOAD_SPACING_S = 5
"""Seconds between the latency-load videos' publication times."""


def latency_load(start_ts: int, count: int, first: int = 0) -> list[tuple[Snapshot, bool]]:
    """The first `count` snapshots, in event-time order, of fresh videos published 5 s apart.

    Once the first videos pass 1 h, one snapshot in 12 fires a checkpoint, to the end: enough
    videos are made that the load stops while later ones are still being published (had it run
    every video to its end, its last minutes would hold only firing snapshots, a burst).
    """
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    videos = count // len(LOAD_MINUTES) + LOAD_MINUTES[-1] * 60 // LOAD_SPACING_S + 1
    load: list[tuple[Snapshot, bool]] = []
    for i in range(videos):
        digits, n = [], first + i
        for _ in range(9):
            n, r = divmod(n, len(alphabet))
            digits.append(alphabet[r])
        pubdate = start_ts + LOAD_SPACING_S * i
        for minute in LOAD_MINUTES:
            view = 100 * minute + i % 500
            snap = Snapshot(
                bvid="BV1" + "".join(reversed(digits)),
                ts=pubdate + minute * 60,
                pubdate=pubdate,
                view=view,
                like=view // 25,
                coin=view // 200,
                favorite=view // 150,
                reply=view // 300,
                danmaku=view // 250,
                share=view // 500,
                tid=4,
                duration=300,
                follower=5000,
            )
            load.append((snap, minute == LOAD_MINUTES[-1]))
    load.sort(key=lambda item: item[0].ts)
    return load[:count]


class PredictionWatch:
    """Reads the live prediction stream, noting when each video's first prediction became readable."""

    def __init__(self, client: redis.Redis, stream_key: str) -> None:
        self.client, self.stream_key = client, stream_key
        self.cursor: bytes | str = (
            client.xinfo_stream(stream_key)["last-generated-id"] if client.exists(stream_key) else "0-0"
        )
        self.seen: dict[str, float] = {}
        """bvid -> when its first prediction was added: the entry id, Redis's own clock (ms)."""
        self.scored: dict[str, float] = {}
        """bvid -> the worker's scored_at of that prediction."""

    def read(self, block_ms: int = 200) -> None:
        """One read of the entries added since the last one (waits up to block_ms for some)."""
        for _, entries in self.client.xread({self.stream_key: self.cursor}, block=block_ms, count=1000) or []:
            for entry_id, fields in entries:
                self.cursor = entry_id
                pred = json.loads(next(iter(fields.values())))
                self.seen.setdefault(pred["bvid"], int(entry_id.split(b"-")[0]) / 1000)
                self.scored.setdefault(pred["bvid"], pred["scored_at"])

    def until(self, wanted: Collection[str], deadline: float) -> None:
        """Read until every wanted video has a prediction, or time.time() passes deadline.

        Other videos' predictions (those the warm-up fires, say) do not count.
        """
        while not self.seen.keys() >= set(wanted) and time.time() < deadline:
            self.read()


def steady_latency(settings: Settings, svc: ResolvedServices, opts: BenchOptions) -> dict[str, float]:
    """Produce at a fixed rate; time each firing snapshot from send to its prediction in Redis."""
    watch = PredictionWatch(redis.Redis.from_url(svc.redis_url), f"{settings.redis_prefix}predictions")
    sent: dict[str, float] = {}
    done = threading.Event()

    def read_while_sending() -> None:  # reads as the load goes, so no entry waits for the reader
        while not done.is_set():
            watch.read()

    reader = threading.Thread(target=read_while_sending, daemon=True)
    reader.start()
    producer = KafkaProducer(bootstrap_servers=svc.kafka_bootstrap, linger_ms=5, acks=1)
    total = int(opts.rate * opts.latency_s)
    start_ts = 4_000_000_000  # far past the replayed world, so the watermark only moves forward
    # Warm-up: moving the watermark this far fires every video the replay left waiting, once, now.
    warm, _ = latency_load(start_ts - 86400, 1, first=10**9)[0]
    producer.send(settings.topics.snapshot, key=warm.key(), value=warm.to_json())
    producer.flush()
    time.sleep(5)
    began = time.perf_counter()
    for i, (snap, fires) in enumerate(latency_load(start_ts, total)):
        target = began + i / opts.rate
        pause = target - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        producer.send(settings.topics.snapshot, key=snap.key(), value=snap.to_json())
        if fires:
            sent[snap.bvid] = time.time()
    producer.flush()
    producer.close()
    done.set()
    reader.join()
    watch.until(sent, deadline=time.time() + 10)
    seen, scored = watch.seen, watch.scored
    got = [b for b in sent if b in seen]
    total_ms = np.array([(seen[b] - sent[b]) * 1000 for b in got])
    score_ms = np.array([(scored[b] - sent[b]) * 1000 for b in got])
    sink_ms = np.array([(seen[b] - scored[b]) * 1000 for b in got])
    return {
        "rate_per_s": opts.rate,
        "predictions": len(got),
        "missing": len(sent) - len(got),
        **percentiles(total_ms, ""),
        **percentiles(score_ms, "produce_to_scored_"),
        **percentiles(sink_ms, "scored_to_redis_"),
    }


def percentiles(values: np.ndarray, prefix: str) -> dict[str, float]:
    """p50/p95/p99 in ms (NaN when nothing was measured)."""
    if values.size == 0:
        return {f"{prefix}p{q}": float("nan") for q in (50, 95, 99)}
    return {f"{prefix}p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}


def scoring_cost(opts: BenchOptions) -> dict[str, float]:
    """ONNX against scikit-learn, one row at a time and as one batch, on the same trained model."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from model.classifiers import export_onnx
    from model.onnx_io import make_session, predict_proba

    events = list(generate(WorldConfig(videos=2000, sim_hours=48.0, seed=opts.seed + 1)))
    data = build_datasets(events, window_s=86400)["1h"]
    clf = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(data.X, data.y)
    session = make_session(export_onnx(clf))
    rows = data.X[:1000]

    def onnx(x: Any) -> Any:
        return predict_proba(session, x)

    def per_row(fn: Any) -> float:
        started = time.perf_counter()
        for i in range(200):
            fn(rows[i : i + 1])
        return (time.perf_counter() - started) / 200 * 1e6

    def batched(fn: Any) -> float:
        started = time.perf_counter()
        fn(rows)
        return (time.perf_counter() - started) * 1e6

    with threadpool_limits(limits=1):  # like the ONNX session: one thread, no oversubscription
        onnx_row, sk_row = per_row(onnx), per_row(clf.predict_proba)
        onnx_batch, sk_batch = batched(onnx), batched(clf.predict_proba)
    return {
        "onnx_row_us": onnx_row,
        "sklearn_row_us": sk_row,
        "row_speedup": sk_row / onnx_row,
        "onnx_batch_1000_us": onnx_batch,
        "sklearn_batch_1000_us": sk_batch,
        "batch_speedup": sk_batch / onnx_batch,
    }


def state_size(opts: BenchOptions) -> dict[str, float]:
    """Memory of one video at its fullest (every snapshot up to 6 h) in the cache and the table."""
    per_video: dict[str, list[Snapshot]] = {}
    for event in generate(WorldConfig(videos=300, sim_hours=10.0, seed=opts.seed)):
        if isinstance(event, Snapshot) and event.ts <= event.pubdate + 6 * 3600:
            per_video.setdefault(event.bvid, []).append(event)
    store: dict[bytes, Any] = {}
    tracemalloc.start()
    cache = StateCache(store)
    for bvid, snaps in per_video.items():
        history = VideoHistory(pubdate=snaps[0].pubdate)
        for snap in snaps:
            history.add(snap)
        cache.put(bvid, VideoState(history=history), 0)
    cache.flush()
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows = sum(len(s) for s in per_video.values()) / len(per_video)
    changelog = sum(len(json.dumps(v)) for v in store.values()) / len(store)
    return {
        "videos": len(per_video),
        "rows_per_video": rows,
        "bytes_in_memory": size / len(per_video),
        "changelog_bytes": changelog,
    }
