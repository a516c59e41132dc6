"""The sink agents: the prediction, profile, hot-list, outcome and danmaku topics into Redis and SQL.

Each agent takes a batch, writes it until the write succeeds, and only then acknowledges it, so the
group never commits one of these topics past an unwritten record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust

from core.events import (
    BadEvent,
    DanmakuLine,
    Event,
    HotListEntry,
    Outcome,
    Prediction,
    UpProfile,
    parse_event,
)
from core.logs import get_logger
from core.settings import Settings
from sink.writer import Backoff, PredictionSink, log_retry
from stream.metrics import EVENTS_IN

log = get_logger(__name__)
E = TypeVar("E", bound=Event)

SINK_BATCH = 500
SINK_WITHIN_S = 0.01
SINK_RETRY = Backoff(base_s=1.0, cap_s=60.0)
"""Pauses between attempts at a batch whose write failed with an error the sink does not retry."""

DeadLetters = Callable[[Any, str], Awaitable[None]]
"""Sends a malformed message (a Faust message) with the reason to the dead-letter topic."""


async def valid(model: type[E], events: Sequence[Any], dead: DeadLetters | None) -> list[E]:
    """Parse a batch; malformed messages go to `dead` (None: dropped, another path reports them)."""
    good: list[E] = []
    for event in events:
        try:
            good.append(parse_event(model, event.message.value))
        except BadEvent as exc:
            if dead is not None:
                await dead(event.message, str(exc))
    return good


async def write_until_done(what: str, write: Callable[[list[E]], None], items: list[E]) -> None:
    """Write a batch, retrying whatever fails: the sink's own retries cover connection trouble,
    this covers the rest (bad credentials, a full disk, a bug) until someone fixes it."""
    attempt = 0
    while True:
        try:
            await asyncio.to_thread(write, items)
            return
        except Exception as exc:
            attempt += 1
            pause = SINK_RETRY.delay(attempt)
            message = "sink batch not written; retrying, its offsets stay uncommitted"
            log_retry(message, what, attempt, pause, exc, error=True)
            await asyncio.sleep(pause)


async def store(
    stream: Any, model: type[E], write: Callable[[list[E]], None], dead: DeadLetters | None, topic: str | None
) -> None:
    """A sink agent's loop: take a batch, write it, and only then acknowledge it.

    `topic` names the input for the `hotvideo_events_in` count (None: the scoring loop counts it).
    `noack_take` leaves acknowledging to us, so neither an outage, an error the sink does not
    retry, nor a shutdown in the middle of a write lets the committed offset pass an unwritten
    batch (`take_events` acknowledges a batch when the agent stops, written or not).
    """
    async for events in stream.noack_take(SINK_BATCH, within=SINK_WITHIN_S):
        if topic is not None:
            EVENTS_IN.labels(topic=topic).inc(len(events))
        items = await valid(model, events, dead)
        await write_until_done(model.__name__, write, items)
        for event in events:
            await stream.ack(event)


def add_sink_agents(
    app: faust.App, settings: Settings, sink: PredictionSink | None, dead: DeadLetters
) -> None:
    """Register the sink agents; `sink` defaults to the configured stores, opened on first use."""
    topics = settings.topics
    writer = sink

    def get_sink() -> PredictionSink:
        nonlocal writer
        if writer is None:
            writer = PredictionSink.from_settings(settings)
        return writer

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes)

    @app.agent(topic(topics.prediction), name="sink-predictions")
    async def sink_predictions(stream: Any) -> None:
        """Predictions into Redis, then SQL, in batches."""
        await store(stream, Prediction, lambda batch: get_sink().write(batch), dead, topics.prediction)

    @app.agent(topic(topics.profile), name="sink-profiles")
    async def sink_profiles(stream: Any) -> None:
        """UP profiles into `up_profile`."""
        await store(stream, UpProfile, lambda batch: get_sink().write_profiles(batch), dead, topics.profile)

    @app.agent(topic(topics.hotlist), name="sink-hotlist")
    async def sink_hotlist(stream: Any) -> None:
        """The collected hot-list set (seed 001's positives) into `hot_entry`; the scoring loop
        already dead-letters malformed sightings."""
        await store(stream, HotListEntry, lambda batch: get_sink().write_hot_entries(batch), None, None)

    @app.agent(topic(topics.outcome), name="sink-outcomes")
    async def sink_outcomes(stream: Any) -> None:
        """Outcomes (seed 001's labels, decided in event time) into `video_label`."""
        await store(stream, Outcome, lambda batch: get_sink().write_outcomes(batch), dead, topics.outcome)

    @app.agent(topic(topics.danmaku), name="sink-danmaku")
    async def sink_danmaku(stream: Any) -> None:
        """Danmaku lines into `danmaku` (the word cloud's text)."""
        await store(stream, DanmakuLine, lambda batch: get_sink().write_danmaku(batch), dead, topics.danmaku)
