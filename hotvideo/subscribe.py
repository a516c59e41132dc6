"""Follow the prediction topic: what any subscriber of `bili.prediction` sees, one line per prediction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition

from core.events import BadEvent, Prediction, parse_event
from core.logs import get_logger

log = get_logger(__name__)


def follow(
    bootstrap: str,
    topic: str,
    *,
    horizons: set[str],
    min_prob: float = 0.0,
    from_beginning: bool = False,
    limit: int | None = None,
    idle_timeout_s: float | None = None,
) -> Iterator[str]:
    """Yield a formatted line per matching prediction; stop after `limit` or `idle_timeout_s` of silence.

    Reads every partition by manual assignment (no consumer group), so it never disturbs the workers.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist yet: start the worker first")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        shown = 0
        for record in consumer:
            try:
                pred = parse_event(Prediction, record.value)
            except BadEvent as exc:
                log.warning("unreadable prediction", offset=record.offset, reason=str(exc))
                continue
            if not matches(pred, horizons, min_prob):
                continue
            yield format_line(pred)
            shown += 1
            if limit is not None and shown >= limit:
                return
    finally:
        consumer.close()


def matches(pred: Prediction, horizons: set[str], min_prob: float) -> bool:
    """Horizon filter, and a probability floor that unscored predictions never pass when it is set."""
    if pred.horizon not in horizons:
        return False
    return min_prob <= 0.0 or (pred.prob is not None and pred.prob >= min_prob)


def format_line(pred: Prediction) -> str:
    """One readable line: when, which video, which horizon, the verdict."""
    as_of = datetime.fromtimestamp(pred.as_of, UTC).strftime("%Y-%m-%d %H:%M")
    prob = "   -  " if pred.prob is None else f"{pred.prob:6.3f}"
    title = pred.video.title if pred.video and pred.video.title else ""
    level = pred.level or ""
    return f"{as_of} {pred.bvid} {pred.horizon:>2} {pred.status:<17} {prob} {level:<2} {title}"
