"""`/stream` with many clients: `hotvideo serve` as a child process on 127.0.0.1 over the Redis server.

As many SSE clients as API_SSE_MAX_CLIENTS allows connect over raw sockets; each prediction written
to Redis afterwards must reach every one of them within a second, one client more is refused with a
503, and the other endpoints keep answering quickly meanwhile.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import redis

from api.live import Feed
from api.service import Platform
from core.servers import free_port, port_open
from sink.redis_store import RedisStore
from tests.harness.api_support import SEED_000_BODY, make_platform
from tests.harness.predictions import bvid, make_prediction
from tests.harness.servers import REDIS_DB, REDIS_HOST, REDIS_PORT

CLIENTS = 200
WRITES = 5
FANOUT_S = 1.0
"""Longest time from a prediction's write to its arrival at any client."""
ENDPOINT_S = 0.050
"""Other endpoints answer within this (95th percentile) while the clients follow the stream."""
FIRST = 900_000
"""Video numbers of the predictions written during the test."""


@pytest.fixture
def api(redis_client: redis.Redis, trained_model_dir: Path, tmp_path: Path) -> Iterator[tuple[int, Platform]]:
    """`hotvideo serve --host --port` with the client cap; and a Platform writing to the same Redis."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        "REDIS_PREFIX": "hv:",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
        "DATA_DIR": str(tmp_path),
        "MODEL_DIR": str(trained_model_dir),
        "API_SSE_MAX_CLIENTS": str(CLIENTS),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hotvideo.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        writer = make_platform(f"sqlite:///{tmp_path / 'writer.db'}", redis_client, trained_model_dir)
        yield port, writer
        writer.sql.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def timed_calls(conn: http.client.HTTPConnection, bvid: str) -> list[float]:
    """Seconds for /hot, /videos/{bvid} and POST /predict, one after another."""
    timings = []
    for method, path, body in (
        ("GET", "/hot?n=20", None),
        ("GET", f"/videos/{bvid}", None),
        ("POST", "/predict", json.dumps(SEED_000_BODY)),
    ):
        started = time.perf_counter()
        conn.request(method, path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)
        timings.append(time.perf_counter() - started)
    return timings


def probe(port: int, bvid: str, ready: Event, stop: Event, out: Queue[list[float]]) -> None:
    """timed_calls until stopped, in a process of its own: the clients read in the test's process, and
    its interpreter lock would add their work to the times measured here."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    timings: list[float] = []
    ready.set()
    while not stop.is_set():
        timings += timed_calls(conn, bvid)
        time.sleep(0.02)
    conn.close()
    out.put(timings)


async def open_stream(port: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET /stream; returns the response head, then reads up to the `: connected` comment."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 200"):
        await reader.readuntil(b": connected")
    return head, reader, writer


async def arrivals(reader: asyncio.StreamReader, bvids: list[str]) -> dict[str, float]:
    """When each of the bvids first appears in the client's stream."""
    seen: dict[str, float] = {}
    data = b""
    while len(seen) < len(bvids):
        chunk = await reader.read(65536)
        assert chunk, "the server closed the stream"
        data += chunk
        now = time.monotonic()
        for name in bvids:
            if name not in seen and name.encode() in data:
                seen[name] = now
    return seen


@pytest.mark.slow  # `hotvideo serve` as a child process over the trained model, 200 clients
async def test_every_client_gets_every_prediction_within_a_second(api: tuple[int, Platform]) -> None:
    port, writer = api
    predictions = [make_prediction(FIRST + i, "1h", prob=0.9) for i in range(WRITES)]
    bvids = [p.bvid for p in predictions]
    writer.redis.write_predictions(predictions[:1])  # so /videos/{bvid} has a live hash
    timed_calls(http.client.HTTPConnection("127.0.0.1", port, timeout=30), bvids[0])  # loads the model

    started = time.monotonic()
    streams = await asyncio.gather(*(open_stream(port) for _ in range(CLIENTS)))
    connect_s = time.monotonic() - started
    heads = [head.split(b"\r\n")[0] for head, _, _ in streams]
    assert heads == [b"HTTP/1.1 200 OK"] * CLIENTS, sorted(set(heads))

    refused, extra_reader, extra_writer = await open_stream(port)
    body = json.loads(await extra_reader.read(4096))
    extra_writer.close()
    assert refused.startswith(b"HTTP/1.1 503") and b"retry-after: 5" in refused.lower(), refused
    assert f"{CLIENTS} clients" in body["message"]

    spawn = multiprocessing.get_context("spawn")
    ready, stop, out = spawn.Event(), spawn.Event(), spawn.Queue()
    prober = spawn.Process(target=probe, args=(port, bvids[0], ready, stop, out), daemon=True)
    prober.start()
    assert await asyncio.to_thread(ready.wait, 60)
    receivers = [asyncio.create_task(arrivals(reader, bvids[1:])) for _, reader, _ in streams]
    written: dict[str, float] = {}
    for prediction in predictions[1:]:
        await asyncio.sleep(0.3)
        written[prediction.bvid] = time.monotonic()
        await asyncio.to_thread(writer.redis.write_predictions, [prediction])
    seen = await asyncio.wait_for(asyncio.gather(*receivers), timeout=10)
    stop.set()
    timings = await asyncio.to_thread(out.get, True, 30)
    prober.join(timeout=10)

    delays = sorted(arrived[b] - written[b] for arrived in seen for b in written)
    print(
        f"{CLIENTS} clients connected in {connect_s:.2f} s; fan-out delay median "
        f"{statistics.median(delays) * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms; "
        f"other endpoints median {statistics.median(timings) * 1000:.1f} ms, "
        f"max {max(timings) * 1000:.1f} ms over {len(timings)} calls"
    )
    assert len(delays) == CLIENTS * (WRITES - 1) and delays[-1] < FANOUT_S
    assert statistics.quantiles(timings, n=20)[-1] < ENDPOINT_S  # 95 %: a shared machine has hiccups

    for _, _, stream_writer in streams:
        stream_writer.close()
    deadline = time.monotonic() + 5
    while True:  # the slots are freed when the clients leave
        head, _, again = await open_stream(port)
        again.close()
        if head.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert head.startswith(b"HTTP/1.1 200")


async def test_a_client_that_falls_behind_catches_up_from_redis(redis_client: redis.Redis) -> None:
    """Its queue overflows; it then reads the missed entries from the stream, in order, once each."""
    store = RedisStore(redis_client, "hv:", ttl_s=3600, hotlist_size=100, stream_maxlen=10_000)
    feed = Feed(store.async_client(15, 4), store.stream_key, max_clients=1, queue_size=2)
    async with feed.running():
        sub = feed.subscribe()
        events = feed.follow(sub, feed.position or (0, 0), False, lambda _: True, limit=10)
        assert await anext(events) == ": connected\n\n"
        store.write_predictions([make_prediction(i) for i in range(10)])
        for _ in range(50):
            if sub.lagged:
                break
            await asyncio.sleep(0.05)
        assert sub.lagged
        frames = [frame async for frame in events]
    assert [json.loads(f.split("data: ")[1])["bvid"] for f in frames] == [bvid(i) for i in range(10)]
