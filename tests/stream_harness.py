"""Drive the scoring agent through Faust's `agent.test_context()`, recording what it emits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hotvideo.events import DeadLetter, Event, Prediction
from hotvideo.settings import Settings
from model.registry import load_promoted
from stream.app import create_app

SNAPSHOT_TOPIC = Settings().topics.snapshot
HOTLIST_TOPIC = Settings().topics.hotlist


class Recorder:
    """Collects what the agent emits."""

    def __init__(self) -> None:
        self.predictions: list[Prediction] = []
        self.letters: list[DeadLetter] = []

    async def prediction(self, pred: Prediction) -> None:
        self.predictions.append(pred)

    async def dead(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


class Harness:
    def __init__(self, agent: Any, app: Any, recorder: Recorder, model_dir: Path) -> None:
        self.agent, self.app, self.out, self.model_dir = agent, app, recorder, model_dir

    async def send(self, topic: str, value: bytes, key: bytes | None, partition: int = 0) -> None:
        """Deliver one message as if read from `topic` (the test context alone cannot name a topic)."""
        msg = self.agent.to_message(key, value, partition=partition, offset=self.agent.sent_offset)
        msg.topic = topic
        channel = self.agent.stream().channel
        await channel.put(await channel.decode(msg))
        self.agent.sent_offset += 1

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait until the agent has processed every message sent (it works in batches)."""
        stats = self.app.checkpointer.stats
        async with asyncio.timeout(timeout_s):
            while stats["messages"] < self.agent.sent_offset:
                await asyncio.sleep(0.002)

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
    """A scoring agent with a real promoted model, no broker, and a recorder for its output."""
    recorder = Recorder()
    settings = Settings(model_dir=model_dir, checkpoint_grace_s=600)
    app = create_app(
        settings, "localhost:1", bundle=load_promoted(model_dir), with_sinks=False, emitter=recorder
    )
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    async with app.agents["score"].test_context() as agent:
        yield Harness(agent, app, recorder, model_dir)
