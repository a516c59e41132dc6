"""`hotvideo live`: the whole live system under one supervisor.

It attaches to the services of the environment or of DATA_DIR's stack, or starts DATA_DIR's
durable stack itself (and stops it again at the end); then it runs the collectors, N workers (web
ports WEB_PORT, WEB_PORT+1, …) and the API with its dashboard as child processes. Their output is
one combined log, each line prefixed with the child's name, with a status line every
`status_every_s`. A child that dies is started again after a backoff (1 s doubling to 60 s, reset
once it has run for a minute) and reported. Ctrl-C or SIGTERM stops the children (collectors first,
workers last, so nothing is collected that no worker reads) and then the stack if live started it.
`DATA_DIR/live.json` names every child, its pid, ports and restarts, for operators and tests.

Why not supervisord or honcho: honcho stops every process when one dies, and supervisord would be a
second daemon with its own configuration and logs; what is needed here is small and specific (start
order, stop order, the stack's lifetime, the worker's pages for status).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TextIO

import redis

from broker.admin import ensure_topics
from core.logs import get_logger
from core.services import NoService, ResolvedServices, Source, attach
from core.settings import Settings
from hotvideo.processes import ChildProcess, WorkerProcess, hotvideo_argv
from hotvideo.stack import down, up
from sink.writer import Backoff

log = get_logger(__name__)

LiveSource = Literal["bilibili", "none"]
RESTART = Backoff(base_s=1.0, cap_s=60.0)
HEALTHY_AFTER_S = 60.0
"""A child that ran this long before it died starts again after the shortest backoff."""
LIVE_FILE = "live.json"


@dataclass(frozen=True)
class LiveOptions:
    source: LiveSource = "bilibili"
    workers: int = 2
    api: bool = True
    ephemeral: bool = False
    """If live starts the stack itself: keep the broker in memory."""
    status_every_s: float = 30.0


@dataclass
class Supervised:
    """One child under supervision: how to make it, and its history."""

    name: str
    make: Callable[[], ChildProcess]
    child: ChildProcess | None = None
    restarts: int = 0
    failures: int = 0
    """Consecutive short-lived runs: the backoff's attempt number."""
    started_at: float = 0.0
    restart_at: float | None = None
    pump: threading.Thread | None = None

    def describe(self) -> dict[str, Any]:
        child = self.child
        row: dict[str, Any] = {
            "name": self.name,
            "pid": None if child is None else child.pid,
            "running": child is not None and child.running(),
            "restarts": self.restarts,
        }
        if isinstance(child, WorkerProcess):
            row["web_port"] = child.web_port
        return row


@dataclass
class Supervisor:
    """Starts its children in order, restarts those that die, stops them in reverse order."""

    children: list[Supervised]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    state_file: Path | None = None
    status: Callable[[], dict[str, Any]] | None = None
    status_every_s: float = 30.0
    stopping: threading.Event = field(default_factory=threading.Event)
    _write: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        """Supervise until `stop()` is called (from a signal handler, say); then stop every child."""
        try:
            for supervised in self.children:
                self._start(supervised)
            self._save()
            next_status = time.monotonic() + self.status_every_s
            while not self.stopping.wait(0.2):
                changed = any([self._check(s) for s in self.children])
                if changed:
                    self._save()
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.status_every_s
                    self._report()
        finally:
            self._stop_all()

    def stop(self) -> None:
        self.stopping.set()

    def _start(self, supervised: Supervised) -> None:
        child = supervised.make().start()
        supervised.child, supervised.started_at, supervised.restart_at = child, time.monotonic(), None
        if child.process is not None and child.process.stdout is not None:
            supervised.pump = threading.Thread(
                target=self._pump, args=(supervised.name, child.process.stdout), daemon=True
            )
            supervised.pump.start()

    def _pump(self, name: str, stream: Any) -> None:
        """Copy a child's output into the combined log, each line prefixed with its name."""
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with self._write:
                self.out.write(f"{name:<10}| {line}\n")
                self.out.flush()

    def _check(self, supervised: Supervised) -> bool:
        """Restart a dead child when its backoff has passed; True if anything changed."""
        child = supervised.child
        if child is None or self.stopping.is_set():
            return False
        now = time.monotonic()
        if supervised.restart_at is None:
            code = child.poll()
            if code is None:
                return False
            ran = now - supervised.started_at
            supervised.failures = 1 if ran >= HEALTHY_AFTER_S else supervised.failures + 1
            pause = RESTART.delay(supervised.failures)
            supervised.restart_at = now + pause
            log.error(
                "child exited; restarting",
                child=supervised.name,
                code=code,
                ran_s=round(ran, 1),
                restart_in_s=round(pause, 1),
            )
            return True
        if now < supervised.restart_at:
            return False
        supervised.restarts += 1
        self._start(supervised)
        log.warning("child restarted", child=supervised.name, restarts=supervised.restarts)
        return True

    def _report(self) -> None:
        """The status line: children up, restarts, and whatever `status` adds."""
        up_count = sum(1 for s in self.children if s.child is not None and s.child.running())
        extra: dict[str, Any] = {}
        if self.status is not None:
            try:
                extra = self.status()
            except Exception as exc:  # a status that cannot be read is reported, not fatal
                extra = {"status_error": f"{type(exc).__name__}: {exc}"[:200]}
        restarts = {s.name: s.restarts for s in self.children if s.restarts}
        log.info("live status", children=f"{up_count}/{len(self.children)}", restarts=restarts, **extra)

    def _save(self) -> None:
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"children": [s.describe() for s in self.children]}, indent=2))
            tmp.replace(self.state_file)

    def _stop_all(self) -> None:
        for supervised in self.children:  # nothing restarts from here on
            supervised.restart_at = None
        for supervised in reversed(self.children):  # collectors first, workers last
            if supervised.child is not None:
                code = supervised.child.stop()
                log.info("child stopped", child=supervised.name, code=code)
        for supervised in self.children:
            if supervised.pump is not None:
                supervised.pump.join(timeout=5)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)


@contextmanager
def live_services(settings: Settings, ephemeral: bool) -> Iterator[ResolvedServices]:
    """The environment's or the stack's services; with neither, DATA_DIR's stack, started for the run."""
    try:
        resolved = attach(settings, ("kafka", "redis"))
        started = False
    except NoService:
        record = up(settings, ephemeral)
        database = settings.database_url or settings.sqlite_url
        sources: dict[str, Source] = {"kafka": "started", "redis": "started"}
        resolved = ResolvedServices(record.kafka_bootstrap, record.redis_url, database, sources)
        started = True
    resolved.log()
    try:
        yield resolved
    finally:
        if started:
            down(settings)


def children(settings: Settings, svc: ResolvedServices, opts: LiveOptions) -> list[Supervised]:
    """The live system's processes, in start order: workers, then the API, then the collectors."""
    env = {
        **svc.env(),
        "DATA_DIR": str(settings.data_dir.resolve()),
        "MODEL_DIR": str(settings.model_dir.resolve()),
    }

    def worker(i: int) -> Supervised:
        name = f"worker-{i + 1}"
        return Supervised(
            name, lambda: WorkerProcess(name, env, web_port=settings.web_port + i, own_session=True)
        )

    made = [worker(i) for i in range(opts.workers)]
    if opts.api:
        api_env = {**env, "API_HOST": settings.api_host, "API_PORT": str(settings.api_port)}
        made.append(
            Supervised("api", lambda: ChildProcess("api", hotvideo_argv("serve"), api_env, own_session=True))
        )
    if opts.source == "bilibili":
        made.append(
            Supervised(
                "collect", lambda: ChildProcess("collect", hotvideo_argv("collect"), env, own_session=True)
            )
        )
    return made


def status_of(settings: Settings, svc: ResolvedServices) -> Callable[[], dict[str, Any]]:
    """What the status line adds: predictions written so far and the live hot list's size."""
    client = redis.Redis.from_url(svc.redis_url, socket_timeout=2)
    prefix = settings.redis_prefix

    def read() -> dict[str, Any]:
        return {
            "predictions": int(client.xlen(f"{prefix}predictions")),
            "hot_1h": int(client.zcard(f"{prefix}hot:1h")),
        }

    return read


def run_live(settings: Settings, opts: LiveOptions) -> None:
    """Run the live system until SIGINT/SIGTERM."""
    from hotvideo.demo import ensure_model  # a simulator-trained model when MODEL_DIR has none

    ensure_model(settings, settings.data_dir / "worlds", seed=0)
    with live_services(settings, opts.ephemeral) as svc:
        ensure_topics(svc.kafka_bootstrap, settings.topics, settings.partitions)
        supervisor = Supervisor(
            children(settings, svc, opts),
            state_file=settings.data_dir / LIVE_FILE,
            status=status_of(settings, svc),
            status_every_s=opts.status_every_s,
        )

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping the live system", signal=signal.Signals(signum).name)
            supervisor.stop()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            supervisor.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
