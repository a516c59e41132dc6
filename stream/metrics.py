"""The worker's Prometheus metrics, served at `/metrics` on its web port (docs/operations.md, *Metrics*).

Counters are kept as the worker goes; the group's lag and the sink backlog are read from the broker
when Prometheus scrapes (bounded by the health check's timeout), since they are about the group, not
this process.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from broker.health import BrokerUnreachable, Tracker, report_within
from core.events import Prediction
from core.settings import Settings

EVENTS_IN = Counter("hotvideo_events_in", "Input messages read by the worker, by topic", ["topic"])
PREDICTIONS = Counter(
    "hotvideo_predictions", "Predictions emitted, by horizon and status", ["horizon", "status"]
)
DEAD_LETTERS = Counter(
    "hotvideo_dead_letters",
    "Messages sent to the dead-letter topic, by topic and reason",
    ["topic", "reason"],
)
MODEL = Gauge("hotvideo_model_info", "The model version the worker scores with (value 1)", ["version"])
LAG = Gauge("hotvideo_consumer_lag", "Records of a topic the worker group has not committed yet", ["topic"])
SINK_BACKLOG = Gauge("hotvideo_sink_backlog", "Predictions emitted but not yet stored in Redis and SQL")
BROKER_UP = Gauge("hotvideo_broker_up", "1 when the broker answered the last scrape's lag check, else 0")


def reason_kind(reason: str) -> str:
    """A dead letter's reason as a label with few values: the field it names, or what kind of defect.

    Reasons read `field: message` (core/events.py); the free text after the colon (which quotes the
    input) would make a label value per message.
    """
    if reason.startswith("message key"):
        return "key is not the bvid"
    return reason.split(":", 1)[0].strip()[:40] or "unknown"


def count_dead(topic: str, reason: str) -> None:
    DEAD_LETTERS.labels(topic=topic, reason=reason_kind(reason)).inc()


def count_predictions(predictions: list[Prediction]) -> None:
    for pred in predictions:
        PREDICTIONS.labels(horizon=pred.horizon, status=pred.status).inc()


def model_in_use(version: str) -> None:
    """Only the current version reads 1: a reload replaces the label."""
    MODEL.clear()
    MODEL.labels(version=version).set(1)


class Exposition:
    """What `/metrics` answers: the counters, with the group's lag read from the broker now."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings, self.bootstrap = settings, bootstrap
        self.tracker = Tracker(settings.health_stuck_after_s)

    def render(self) -> bytes:
        """Blocking (it asks the broker): call it from a thread."""
        try:
            report = report_within(
                self.bootstrap, self.settings.worker_id, self.settings.topics, self.tracker
            )
        except BrokerUnreachable:
            BROKER_UP.set(0)
        else:
            BROKER_UP.set(1)
            for topic, lag in report["lag"].items():
                LAG.labels(topic=topic).set(lag)
            SINK_BACKLOG.set(report["sink_backlog"])
        return generate_latest()
