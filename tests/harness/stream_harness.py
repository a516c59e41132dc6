"""Feed batches of messages to the worker's scoring function (no broker), recording what it emits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from faust.types import Message

from core.events import DeadLetter, Event, Outcome, Prediction
from core.settings import Settings
from model.registry import load_promoted
from stream.app import create_app

SNAPSHOT_TOPIC = Settings().topics.snapshot
HOTLIST_TOPIC = Settings().topics.hotlist


class Recorder:
    """Collects what the agent emits."""

    def __init__(self) -> None:
        self.predictions: list[Prediction] = []
        self.outcomes: list[Outcome] = []
        self.letters: list[DeadLetter] = []

    async def prediction(self, pred: Prediction) -> None:
        self.predictions.append(pred)

    async def outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    async def dead(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    async def delivered(self) -> None:
        """Recorded at once: nothing is on its way."""


class Harness:
    def __init__(self, app: Any, recorder: Recorder, model_dir: Path) -> None:
        self.app, self.out, self.model_dir = app, recorder, model_dir
        self.pending: list[Message] = []
        self.offsets: dict[tuple[str, int], int] = {}

    async def send(self, topic: str, value: bytes, key: bytes | None, partition: int = 0) -> None:
        """Queue one message as if fetched from `topic`; `settle` scores what is queued as one batch."""
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        self.pending.append(Message(topic, partition, offset, 0.0, 0, None, key, value, None))

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Score every queued message, in one batch as the worker's lane would."""
        batch, self.pending = self.pending, []
        async with asyncio.timeout(timeout_s):
            await self.app.score(batch)

    async def put_raw(self, topic: str, value: bytes, key: bytes | None, partition: int = 0) -> None:
        await self.send(topic, value, key, partition)
        await self.settle()

    async def put(self, event: Event, partition: int = 0) -> None:
        topic = HOTLIST_TOPIC if event.topic_field == "hotlist" else SNAPSHOT_TOPIC
        await self.put_raw(topic, event.to_json(), event.key(), partition)

    def statuses(self) -> list[tuple[str, str, str]]:
        return [(p.bvid, p.horizon, p.status) for p in self.out.predictions]


@contextlib.asynccontextmanager
async def open_harness(model_dir: Path) -> AsyncIterator[Harness]:
    """The worker's scoring function with a real promoted model, no broker, and a recorder."""
    recorder = Recorder()
    settings = Settings(model_dir=model_dir, checkpoint_grace_s=600)
    app = create_app(
        settings, "localhost:1", bundle=load_promoted(model_dir), with_sinks=False, emitter=recorder
    )
    yield Harness(app, recorder, model_dir)
