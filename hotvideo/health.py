"""Is the worker group keeping up? Consumer lag, committed-offset progress, sink backlog, a verdict.

Faust consumers can stop silently (faust-streaming issues #175, #523): the process lives, the web
page answers, but offsets stop moving. So the verdict is about progress, read from the broker: a
partition is `stuck` when it has lag and its committed offset has not moved for `stuck_after_s`.
One `Tracker` remembers when each offset last moved; the worker keeps one across requests of its
`/health/` page, and `hotvideo health` samples twice, `stuck_after_s` apart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hotvideo.kafka_admin import group_positions
from hotvideo.settings import Topics


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


def check(bootstrap: str, group: str, topics: Topics, sample_s: float) -> dict[str, Any]:
    """Two samples `sample_s` apart: lag that did not move in between is `stuck` (the CLI's check)."""
    tracker = Tracker(stuck_after_s=sample_s)
    report(bootstrap, group, topics, tracker)
    time.sleep(sample_s)
    return report(bootstrap, group, topics, tracker)
