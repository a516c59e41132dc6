"""A worker-shaped Faust app whose `LaneConsumer` is built but never started: no broker needed.

The consumer is Faust's own (`LaneConsumer` over Faust's aiokafka consumer), with the conductor's
subscriptions and partition index set as a worker's would be after an assignment, so the lane's
delivery and acking run through Faust's real bookkeeping and handlers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP

from stream.lane import Lane, LaneConsumer, install_lane

SNAPSHOTS, HOTLIST, OTHER = "test.lane.snapshot", "test.lane.hotlist", "test.lane.other"
HIGHWATER = 1000
"""What the unstarted consumer reports as every partition's end (it has no fetch to read it from)."""


@dataclass
class LaneApp:
    app: faust.App
    lane: Lane
    consumer: LaneConsumer
    hot_sink: Any
    """The channel of a hot-list sink agent: Faust's own path for hot-list records."""
    other: Any
    """The channel of an agent on a topic outside the lane."""


async def lane_app(fetch_wait_ms: int | None = 10) -> LaneApp:
    """An app with the lane installed, a hot-list sink channel and another topic, partition 0 assigned."""
    app = faust.App(
        f"test-lane-{uuid.uuid4().hex[:8]}",
        broker="kafka://localhost:1",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
    )
    lane = Lane(SNAPSHOTS, HOTLIST)
    install_lane(app, lane, fetch_wait_ms)
    hot_sink = app.topic(HOTLIST, key_type=bytes, value_type=bytes)
    other = app.topic(OTHER, key_type=bytes, value_type=bytes)
    app.topics.add(hot_sink)
    app.topics.add(other)
    consumer = app.consumer
    assert isinstance(consumer, LaneConsumer)
    consumer.highwater = lambda tp: HIGHWATER  # type: ignore[method-assign]
    app.flow_control.resume()  # as a worker does once partitions are assigned
    await app.topics._update_indices()  # the subscriptions a worker's conductor makes on start
    await app.topics.on_partitions_assigned({TP(t, 0) for t in (SNAPSHOTS, HOTLIST, OTHER)})
    return LaneApp(app, lane, consumer, hot_sink, other)


def record(topic: str, offset: int, partition: int = 0) -> Any:
    """An aiokafka ConsumerRecord's fields, as the fetch hands them to Faust."""
    return SimpleNamespace(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        headers=[],
        key=b"BV1xx4y1a7Aa",
        value=b"{}",
        checksum=None,
        serialized_key_size=12,
        serialized_value_size=2,
    )


def fetch(**offsets: list[int]) -> dict[TP, list[Any]]:
    """A fetch: records at the given offsets of partition 0 of `snapshots`, `hotlist` and `other`."""
    topics = {"snapshots": SNAPSHOTS, "hotlist": HOTLIST, "other": OTHER}
    return {TP(topics[k], 0): [record(topics[k], o) for o in v] for k, v in offsets.items()}
