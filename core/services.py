"""Where a command finds its services: the environment first, then the running stack of its DATA_DIR.

`hotvideo stack up` records the embedded services it started in `DATA_DIR/stack/stack.json`; every
other command of that DATA_DIR reads the file and attaches to them, so a worker, a replay, a
subscriber and the dashboard started in four terminals see the same broker and Redis. A URL set in
the environment always wins (production: Kafka, Redis and MySQL of their own). SQLite in DATA_DIR
stands in for an unset DATABASE_URL, so it is shared the same way.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import psutil

from core.logs import get_logger
from core.settings import Settings

log = get_logger(__name__)

Service = Literal["kafka", "redis"]
Source = Literal["env", "stack", "started"]

STACK_DIR = "stack"
STACK_FILE = "stack.json"


class NoService(RuntimeError):
    """A command needs a service that neither the environment nor a running stack provides."""


def stack_dir(data_dir: Path) -> Path:
    """The folder of DATA_DIR's stack: its record, data and logs."""
    return data_dir / STACK_DIR


def process_of(pid: int, create_time: float) -> psutil.Process | None:
    """The running process with this pid and start time; None if it is gone (or the pid was reused)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > 1.0 or process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return process


@dataclass(frozen=True)
class StackRecord:
    """What `hotvideo stack up` started: per service its address, pid and log (`stack.json`)."""

    data_dir: str
    durable: bool
    started_at: float
    services: dict[str, dict[str, Any]]
    """name -> {"address": …, "pid": …, "create_time": …, "log": …, and the URL a client uses}"""

    @property
    def kafka_bootstrap(self) -> str:
        return str(self.services["kafka"]["bootstrap"])

    @property
    def redis_url(self) -> str:
        return str(self.services["redis"]["url"])

    def process(self, name: str) -> psutil.Process | None:
        """The recorded process of a service, if it still runs."""
        service = self.services[name]
        return process_of(int(service["pid"]), float(service["create_time"]))

    def alive(self) -> dict[str, bool]:
        """Per service: is its recorded process still there?"""
        return {name: self.process(name) is not None for name in self.services}

    def to_json(self) -> str:
        return json.dumps(
            {
                "data_dir": self.data_dir,
                "durable": self.durable,
                "started_at": self.started_at,
                "services": self.services,
            },
            indent=2,
        )

    @classmethod
    def read(cls, path: Path) -> StackRecord:
        """Parse a stack file; a damaged one is an error that says where it is."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                data_dir=str(raw["data_dir"]),
                durable=bool(raw["durable"]),
                started_at=float(raw["started_at"]),
                services={str(k): dict(v) for k, v in raw["services"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NoService(
                f"the stack record {path} is unreadable ({exc}); run `hotvideo stack down` to clear it"
            ) from exc


def running_stack(data_dir: Path) -> StackRecord | None:
    """DATA_DIR's stack if its record exists and every recorded process is alive."""
    path = stack_dir(data_dir) / STACK_FILE
    if not path.exists():
        return None
    record = StackRecord.read(path)
    return record if all(record.alive().values()) else None


def redact(url: str) -> str:
    """The URL with its password masked, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


@dataclass(frozen=True)
class ResolvedServices:
    """Where the running program finds its services, and where each address came from."""

    kafka_bootstrap: str
    redis_url: str
    database_url: str
    sources: Mapping[str, Source] = field(default_factory=dict)

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
                "kafka_bootstrap": self.kafka_bootstrap or None,
                "redis_url": self.redis_url or None,
                "database_url": self.database_url,
            }
        )

    def log(self) -> None:
        """The one line that says which services this command uses and why."""
        log.info(
            "services resolved",
            kafka=self.kafka_bootstrap or None,
            redis=redact(self.redis_url) if self.redis_url else None,
            database=redact(self.database_url),
            sources=dict(self.sources),
        )


def attach(settings: Settings, needs: Collection[str] = ("kafka", "redis")) -> ResolvedServices:
    """The services `needs` names, from the environment or else from DATA_DIR's running stack.

    Raises `NoService` saying what to do when one is in neither place. Services not needed are
    filled in the same way when available (empty otherwise).
    """
    given: dict[Service, str | None] = {"kafka": settings.kafka_bootstrap, "redis": settings.redis_url}
    stack = None if all(given.values()) else running_stack(settings.data_dir)
    stacked: dict[Service, str] = (
        {"kafka": stack.kafka_bootstrap, "redis": stack.redis_url} if stack is not None else {}
    )
    found: dict[Service, str] = {}
    sources: dict[str, Source] = {}
    for name in ("kafka", "redis"):
        value = given[name]
        if value:
            found[name], sources[name] = value, "env"
        elif name in stacked:
            found[name], sources[name] = stacked[name], "stack"
        elif name in needs:
            variable = "KAFKA_BOOTSTRAP" if name == "kafka" else "REDIS_URL"
            raise NoService(
                f"no {name}: {variable} is not set and no stack is running for "
                f"DATA_DIR={settings.data_dir}. Start one with `hotvideo stack up` (same DATA_DIR), "
                f"or set {variable}."
            )
    return ResolvedServices(
        kafka_bootstrap=found.get("kafka", ""),
        redis_url=found.get("redis", ""),
        database_url=settings.database_url or settings.sqlite_url,
        sources=sources,
    )
