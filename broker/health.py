"""Is the worker group keeping up? Consumer lag, committed-offset progress, sink backlog, a verdict.

Faust consumers can stop silently (faust-streaming issues #175, #523): the process lives, the web
page answers, but offsets stop moving. So the verdict is about progress, read from the broker: a
partition is `stuck` when it has lag and its committed offset has not moved for `stuck_after_s`.
One `Tracker` remembers when each offset last moved; the worker keeps one across requests of its
`/health/` page, and `hotvideo health` samples twice, `stuck_after_s` apart.

A health check must answer even when the broker does not: kafka-python waits 30 s to bootstrap
from a closed port, and as long as the broker lets it from one that accepts connections but never
answers. `report_within` therefore bounds each sample and raises `BrokerUnreachable` instead.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

from broker.admin import group_positions
from core.settings import Topics

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
"""How long one health sample may take before the broker counts as unreachable."""


class BrokerUnreachable(RuntimeError):
    """The broker did not answer within the timeout: health is unknown, which is not `ok`."""


_UNREACHABLE = (KafkaTimeoutError, NodeNotReadyError, KafkaConnectionError, TimeoutError)
"""Client errors that mean "no answer from the broker" (an unknown topic, say, is another matter)."""


@dataclass
class Tracker:
    """When each partition's committed offset last changed (wall clock: liveness is about now)."""

    stuck_after_s: float
    seen: dict[tuple[str, int], tuple[int | None, float]] = field(default_factory=dict)

    def idle_s(
        self, committed: Mapping[tuple[str, int], int | None], now: float
    ) -> dict[tuple[str, int], float]:
        """Seconds since each partition's committed offset last moved (0 the first time it is seen)."""
        idle: dict[tuple[str, int], float] = {}
        for tp, offset in committed.items():
            last = self.seen.get(tp)
            if last is None or last[0] != offset:
                self.seen[tp] = (offset, now)
            idle[tp] = now - self.seen[tp][1]
        return idle


def report(
    bootstrap: str, group: str, topics: Topics, tracker: Tracker, now: float | None = None
) -> dict[str, Any]:
    """The group's health from the broker: per partition end, committed, lag, idle seconds; a verdict.

    `sink_backlog` is the lag on the prediction topic: predictions emitted but not yet written to SQL
    and Redis (the sink agents commit only after a batch is stored).
    """
    now = time.time() if now is None else now
    inputs = [topics.snapshot, topics.hotlist, topics.profile]
    positions = group_positions(bootstrap, group, [*inputs, topics.prediction])
    idle = tracker.idle_s({tp: committed for tp, (_, committed) in positions.items()}, now)
    partitions: list[dict[str, Any]] = []
    stuck: list[str] = []
    lag_by_topic: dict[str, int] = {}
    for (topic, number), (end, committed) in sorted(positions.items()):
        lag = end - (committed or 0)
        lag_by_topic[topic] = lag_by_topic.get(topic, 0) + lag
        entry = {
            "topic": topic,
            "partition": number,
            "end": end,
            "committed": committed,
            "lag": lag,
            "idle_s": round(idle[topic, number], 3),
        }
        partitions.append(entry)
        if lag > 0 and idle[topic, number] >= tracker.stuck_after_s:
            stuck.append(f"{topic}:{number}")
    return {
        "verdict": "stuck" if stuck else "ok",
        "stuck": stuck,
        "group": group,
        "lag": lag_by_topic,
        "sink_backlog": lag_by_topic.get(topics.prediction, 0),
        "stuck_after_s": tracker.stuck_after_s,
        "partitions": partitions,
        "checked_at": now,
    }


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    """`host:port[,host:port…]` (IPv6 hosts in brackets) as (host, port) pairs."""
    servers: list[tuple[str, int]] = []
    for item in bootstrap.split(","):
        address = item.strip().removeprefix("kafka://")
        host, colon, port = address.rpartition(":")
        if not colon or not port.isdigit() or (":" in host and not host.startswith("[")):
            host, port = address, "9092"  # no port given: Kafka's default
        servers.append((host.strip("[]"), int(port)))
    return servers


def refused(bootstrap: str, timeout_s: float) -> str | None:
    """Why no bootstrap server accepts a TCP connection (None if one does): the quick common failure."""
    errors: list[str] = []
    for host, port in _servers(bootstrap):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return None
        except OSError as exc:
            errors.append(f"{host}:{port}: {exc.strerror or exc}")
    return "; ".join(errors)


def within(op: Callable[[], T], timeout_s: float, bootstrap: str, budget_s: float | None = None) -> T:
    """`op()` on a daemon thread, given up after `timeout_s`: a hung client cannot hang the check.

    The abandoned thread ends with the process (or when its client times out on its own); a daemon
    thread, not an executor's, so that interpreter exit does not wait for it. `budget_s` is the
    timeout the caller was given, for the message (`timeout_s` may be what is left of it).
    """
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(op())
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    thread = threading.Thread(target=run, name="health-sample", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        said = timeout_s if budget_s is None else budget_s
        raise BrokerUnreachable(f"the broker at {bootstrap} did not answer within {said:g} s")
    if error:
        exc = error[0]
        if isinstance(exc, _UNREACHABLE):
            raise BrokerUnreachable(f"the broker at {bootstrap} failed the check: {exc}") from exc
        raise exc
    return result[0]


def report_within(
    bootstrap: str,
    group: str,
    topics: Topics,
    tracker: Tracker,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """`report`, but `BrokerUnreachable` within about `timeout_s` when the broker is down or hangs."""
    started = time.monotonic()
    why = refused(bootstrap, timeout_s)
    if why is not None:
        raise BrokerUnreachable(f"nothing accepts connections at {bootstrap} ({why})")
    left = max(timeout_s - (time.monotonic() - started), 0.1)
    return within(lambda: report(bootstrap, group, topics, tracker), left, bootstrap, timeout_s)


def check(
    bootstrap: str, group: str, topics: Topics, sample_s: float, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Any]:
    """Two samples `sample_s` apart: lag that did not move in between is `stuck` (the CLI's check).

    Each sample raises `BrokerUnreachable` if the broker does not answer within `timeout_s`.
    """
    tracker = Tracker(stuck_after_s=sample_s)
    report_within(bootstrap, group, topics, tracker, timeout_s)
    time.sleep(sample_s)
    return report_within(bootstrap, group, topics, tracker, timeout_s)
