"""Worker processes (`hotvideo worker`) on the session's embedded broker: crash, outage and fuzz tests.

Each `Cluster` has its own topic names and consumer group, so clusters share one broker without
seeing each other, and a short session timeout, so a killed worker's partitions move in seconds.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.admin import Record, ensure_topics, read_all, wait_until_caught_up
from broker.produce import publish
from core.events import Prediction, parse_event
from core.settings import Settings, Topics
from hotvideo.processes import WorkerProcess

SESSION_TIMEOUT_S = 3.0


def wait_for(what: str, check: Callable[[], object], timeout_s: float = 90.0) -> float:
    """Poll `check()` until true; return the monotonic time it became true."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)
    return time.monotonic()


@dataclass
class Cluster:
    """Workers of one consumer group over their own topics, stores and model."""

    bootstrap: str
    name: str
    model_dir: Path
    workdir: Path
    redis_url: str
    database_url: str
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    """More settings for every worker (a Redis prefix of its own, say)."""
    workers: dict[str, WorkerProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics = Topics.under(self.name)
        self.group = f"{self.name}-worker"
        ensure_topics(self.bootstrap, self.topics, self.partitions)

    def env(self, worker: str) -> dict[str, str]:
        topic_env = {f"TOPIC_{k.upper()}": v for k, v in self.topics.model_dump().items()}
        return {
            **topic_env,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "MODEL_DIR": str(self.model_dir),
            "DATA_DIR": str(self.workdir / worker),
            "WORKER_ID": self.group,
            "PARTITIONS": str(self.partitions),
            "WORKER_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
            "HEALTH_STUCK_AFTER_S": "5",
            **self.extra_env,
        }

    def start(self, worker: str) -> None:
        """Start `hotvideo worker` as a child process; its log is `<workdir>/<worker>.log`."""
        log = self.workdir / f"{worker}.log"
        self.workers[worker] = WorkerProcess(worker, self.env(worker), log).start()

    def page(self, worker: str, path: str = "stats") -> dict[str, Any]:
        """A JSON page of the worker's web server (a 503 health answer is returned, not raised)."""
        return self.workers[worker].page(path)

    def wait_assigned(self, workers: Iterable[str], timeout_s: float = 90.0) -> dict[str, list[int]]:
        """Block until the workers together hold every input partition, each restored."""
        names = list(workers)
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            try:
                held = {w: self.page(w)["assigned"] for w in names}
                if sorted(p for ps in held.values() for p in ps) == list(range(self.partitions)) and all(
                    held.values()
                ):
                    return held
            except OSError:
                pass  # web server not up yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions not assigned within {timeout_s} s; see {self.workdir}")
            time.sleep(0.3)

    def publish(self, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
        return publish(records, self.bootstrap, self.topics, progress=False)

    def wait_caught_up(self, timeout_s: float = 120.0) -> None:
        t = self.topics
        wait_until_caught_up(
            self.bootstrap,
            self.group,
            [t.snapshot, t.hotlist, t.profile, t.prediction, t.outcome],
            timeout_s=timeout_s,
            settle_s=2.0,
        )

    def read(self, topic: str) -> list[Record]:
        return read_all(self.bootstrap, topic)

    def predictions(self) -> list[Prediction]:
        return [parse_event(Prediction, r.value) for r in self.read(self.topics.prediction)]

    def check_alive(self) -> None:
        for worker in self.workers.values():
            code = worker.poll()
            if code is not None and code != -signal.SIGKILL:
                raise RuntimeError(worker.failure())

    def kill(self, worker: str) -> None:
        self.workers[worker].kill()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.signal(signal.SIGTERM)
        for worker in self.workers.values():
            worker.stop(timeout_s=20)


def settings_of(cluster: Cluster) -> Settings:
    return Settings(topics=cluster.topics, worker_id=cluster.group, partitions=cluster.partitions)
