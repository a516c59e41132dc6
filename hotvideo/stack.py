"""`hotvideo stack up | down | status`: the shared embedded services of a DATA_DIR.

`up` starts, on stable loopback ports (`STACK_*` settings), an S3 object store (SeaweedFS), the
broker (Tansu) keeping its topics in it, and Redis with an append-only file; it records them in
`DATA_DIR/stack/stack.json` and leaves them running. Every command of the same DATA_DIR then
attaches to them (core/services.py). `--ephemeral` keeps the broker in memory instead (tests,
demos). `services()` is what the demo and the benchmark use: the environment's or the stack's
services, or private ephemeral ones for the length of the run.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil

from broker.embedded import EmbeddedBroker
from core.logs import get_logger
from core.servers import LocalServer
from core.services import (
    STACK_FILE,
    NoService,
    ResolvedServices,
    Service,
    Source,
    StackRecord,
    attach,
    running_stack,
    stack_dir,
)
from core.settings import Settings
from hotvideo.embedded import EmbeddedObjectStore, EmbeddedRedis

log = get_logger(__name__)

CREDENTIALS_FILE = "s3-credentials.json"
STOP_ORDER = ("kafka", "redis", "objectstore")
"""The broker first (it writes to the store), the store last."""


class StackError(RuntimeError):
    """A stack cannot be started or stopped as asked; the message says what to do."""


@contextmanager
def _locked(data_dir: Path) -> Iterator[Path]:
    """Hold DATA_DIR's stack lock: two `up`s (or an `up` and a `down`) never interleave."""
    folder = stack_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def _credentials(folder: Path) -> tuple[str, str]:
    """The object store's key pair: made once per DATA_DIR, readable by its owner only."""
    path = folder / CREDENTIALS_FILE
    if not path.exists():
        pair = {"access_key_id": "hotvideo", "secret_access_key": secrets.token_urlsafe(24)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(pair, out)
    pair = json.loads(path.read_text(encoding="utf-8"))
    return str(pair["access_key_id"]), str(pair["secret_access_key"])


def _entry(server: LocalServer, **urls: str) -> dict[str, Any]:
    pid = server.pid
    assert pid is not None  # started
    return {
        "address": server.address,
        "pid": pid,
        "create_time": psutil.Process(pid).create_time(),
        "log": str(server.log_path.resolve()),
        **urls,
    }


def up(settings: Settings, ephemeral: bool = False) -> StackRecord:
    """Start DATA_DIR's stack and record it; refuse if one is already running there."""
    cfg = settings.stack
    with _locked(settings.data_dir) as folder:
        record_path = folder / STACK_FILE
        if record_path.exists():
            previous = StackRecord.read(record_path)
            if any(previous.alive().values()):
                raise StackError(
                    f"a stack is already running for DATA_DIR={settings.data_dir} "
                    f"(see `hotvideo stack status`; `hotvideo stack down` stops it)"
                )
            log.warning("stale stack record removed: its servers are gone", record=str(record_path))
            record_path.unlink()
        services: dict[str, dict[str, Any]] = {}
        with ExitStack() as started:  # a server that fails to start stops the ones before it
            storage = None
            if not ephemeral:
                store = EmbeddedObjectStore(
                    folder / "objectstore", cfg.s3_port, *_credentials(folder), cfg.start_timeout_s, cfg.host
                )
                started.enter_context(store)
                storage = store.storage()
                services["objectstore"] = _entry(store, url=store.endpoint)
            broker = EmbeddedBroker(folder / "broker", cfg.kafka_port, cfg.start_timeout_s, storage, cfg.host)
            started.enter_context(broker)
            services["kafka"] = _entry(broker, bootstrap=broker.bootstrap)
            redis = EmbeddedRedis(
                folder / "redis", cfg.redis_port, cfg.start_timeout_s, cfg.host, not ephemeral
            )
            started.enter_context(redis)
            services["redis"] = _entry(redis, url=redis.url)
            record = StackRecord(str(settings.data_dir.resolve()), not ephemeral, time.time(), services)
            tmp = record_path.with_suffix(".tmp")
            tmp.write_text(record.to_json(), encoding="utf-8")
            tmp.replace(record_path)
            for server in (*([store] if storage is not None else []), broker, redis):
                server.detach()
            started.pop_all()
    log.info("stack up", data_dir=str(settings.data_dir), durable=not ephemeral, **_addresses(record))
    return record


def _addresses(record: StackRecord) -> dict[str, str]:
    return {name: str(service["address"]) for name, service in record.services.items()}


def down(settings: Settings, timeout_s: float = 30.0) -> StackRecord | None:
    """Stop DATA_DIR's stack (SIGTERM, then SIGKILL after `timeout_s`); None if none was recorded."""
    with _locked(settings.data_dir) as folder:
        record_path = folder / STACK_FILE
        if not record_path.exists():
            return None
        record = StackRecord.read(record_path)
        for name in [n for n in STOP_ORDER if n in record.services]:
            process = record.process(name)
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout_s)
            except psutil.TimeoutExpired:
                log.warning("stack service did not stop in time: killed", service=name, pid=process.pid)
                process.kill()
                process.wait(timeout_s)
            log.info("stack service stopped", service=name, pid=process.pid)
        record_path.unlink()
    return record


def status(settings: Settings) -> dict[str, Any]:
    """Each recorded service with its address, pid, whether it runs and whether it answers."""
    record_path = stack_dir(settings.data_dir) / STACK_FILE
    if not record_path.exists():
        return {"data_dir": str(settings.data_dir), "running": False, "services": []}
    record = StackRecord.read(record_path)
    rows = []
    for name, service in record.services.items():
        alive = record.process(name) is not None
        row = {"name": name, "address": service["address"], "pid": service["pid"], "alive": alive}
        row |= _health(name, service) if alive else {"healthy": False, "error": "process not running"}
        rows.append(row)
    return {
        "data_dir": record.data_dir,
        "running": all(r["healthy"] for r in rows),
        "durable": record.durable,
        "started_at": record.started_at,
        "services": rows,
    }


def _health(name: str, service: dict[str, Any]) -> dict[str, Any]:
    """Ask the service a real question (list topics, PING, the bucket's folder)."""
    host, _, port = str(service["address"]).rpartition(":")
    probe: LocalServer
    folder = Path(service["log"]).parent
    if name == "kafka":
        probe = EmbeddedBroker(folder, int(port), host=host)
    elif name == "redis":
        probe = EmbeddedRedis(folder, int(port), host=host)
    else:
        probe = EmbeddedObjectStore(folder, int(port), "", "", host=host)
    try:
        probe.probe()
    except Exception as exc:  # every failure is reported, not raised: status must answer
        return {"healthy": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"healthy": True}


@contextmanager
def services(settings: Settings, needs: Collection[str] = ("kafka", "redis")) -> Iterator[ResolvedServices]:
    """The environment's or DATA_DIR's stack's services; what neither has runs privately for the block.

    The demo and the benchmark use this: with nothing set and no stack they run on an ephemeral
    broker and Redis of their own (free ports, stopped at the end), and leave a user's stack alone.
    """
    stack = running_stack(settings.data_dir)
    given: dict[Service, str | None] = {"kafka": settings.kafka_bootstrap, "redis": settings.redis_url}
    in_stack: dict[Service, str | None] = {
        "kafka": stack.kafka_bootstrap if stack else None,
        "redis": stack.redis_url if stack else None,
    }
    with ExitStack() as own:
        folder = settings.data_dir / "embedded"
        urls: dict[Service, str] = {}
        sources: dict[str, Source] = {}
        for name in ("kafka", "redis"):
            value, source = (given[name], "env") if given[name] else (in_stack[name], "stack")
            if not value and name in needs:
                server = EmbeddedBroker(folder) if name == "kafka" else EmbeddedRedis(folder)
                own.enter_context(server)
                value, source = (
                    (server.bootstrap if isinstance(server, EmbeddedBroker) else server.url),
                    "started",
                )
            if value:
                urls[name], sources[name] = value, source  # type: ignore[assignment]
        resolved = ResolvedServices(
            urls.get("kafka", ""),
            urls.get("redis", ""),
            settings.database_url or settings.sqlite_url,
            sources,
        )
        resolved.log()
        yield resolved


def attach_or_exit(settings: Settings, needs: Collection[str]) -> ResolvedServices:
    """`attach` for a command line: the services, logged, or a one-line error and exit code 2."""
    try:
        resolved = attach(settings, needs)
    except NoService as exc:
        raise SystemExit(f"hotvideo: {exc}") from None
    resolved.log()
    return resolved
