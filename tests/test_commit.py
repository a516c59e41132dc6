"""The commit protocol (stream/commit.py) with the worker stopped between every two of its steps.

A worker here is the real scoring loop, checkpointer, scorer (an ONNX model), `BatchCommit` and lane,
over a broker made of lists: it stores what is acknowledged, and at a stop it stores, or loses,
what was still on its way (both are tried). A restart rebuilds the state from the stored changelog
records and reads the input again from the last commit, as a worker restarted after a crash or the
partitions' next owner does. Whatever the stop, the stores (which upsert by bvid and horizon) end
up with exactly the predictions of a run that never stopped, and every repeated prediction on the
topic is the same as the first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP, Message

from core.events import DeadLetter, Outcome, Prediction, Snapshot
from core.settings import Topics
from ingest.world import WorldConfig, generate
from model.registry import ModelBundle, load_promoted
from stream.checkpoint import Checkpointer, Records, StateCache
from stream.commit import BatchCommit, ChangelogWrites
from stream.lane import Lane, LaneBatch
from stream.loop import ScoringLoop
from stream.profiles import ProfileReader
from stream.recovery import Record, apply
from stream.scoring import Scorer

pytestmark = pytest.mark.slow  # every case scores with the session's trained model (conftest)

TOPICS = Topics.under("test.commit")
INPUT = TP(TOPICS.snapshot, 0)
BATCH = 40
STOPS = [
    "predictions sent, not yet acknowledged",
    "predictions acknowledged, state not yet sent",
    "state sent, not yet stored",
    "state stored, offsets not yet acked",
    "offsets acked, not yet committed",
]


class Stop(BaseException):
    """The worker process stops here (nothing after it runs)."""


@dataclass
class Broker:
    """What survives a worker: the input, the prediction topic, the changelogs, the committed offset."""

    snapshots: list[bytes]
    predictions: list[Prediction] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    changelog: dict[str, list[Record]] = field(default_factory=lambda: {"headers": [], "rows": []})
    committed: int = 0


@dataclass
class Flight:
    """Sent to the broker, not yet acknowledged."""

    predictions: list[Prediction] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    records: list[tuple[str, Record, asyncio.Future[None]]] = field(default_factory=list)


class ChangelogTable:
    """A table's changelog on the list broker: `send_changelog` as Faust's tables have it."""

    def __init__(self, name: str, worker: Worker) -> None:
        self.name, self.worker = name, worker

    def send_changelog(self, partition: int, key: bytes, value: Any, value_serializer: Any) -> Any:
        self.worker.at("predictions acknowledged, state not yet sent")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        raw = None if value is None else json.dumps(value).encode()  # the tables' JSON serializer
        self.worker.flight.records.append((self.name, Record(key, raw, partition, 0, 0), future))
        return future


class Worker:
    """One worker process: state restored from the broker's changelogs, input read from its commit."""

    def __init__(self, broker: Broker, bundle: ModelBundle, stop: tuple[int, str] | None) -> None:
        self.broker, self.stop, self.batch = broker, stop, 0
        self.flight = Flight()
        self.acked: set[int] = set()
        self.busy: list[int] = []
        """The batches that fired checkpoints."""
        stores: dict[str, dict[bytes, Any]] = {"headers": {}, "rows": {}}
        for name, store in stores.items():
            apply(store, broker.changelog[name])
        writes = ChangelogWrites()
        checkpointer = Checkpointer(
            StateCache(
                Records(stores["headers"], writes.of(ChangelogTable("headers", self))),
                Records(stores["rows"], writes.of(ChangelogTable("rows", self))),
            )
        )
        checkpointer.restore({0}, dict.fromkeys(stores["headers"], 0))
        self.lane = Lane(TOPICS.snapshot, TOPICS.hotlist)
        self.lane.consumer = self  # type: ignore[assignment]
        commit = BatchCommit(self, checkpointer, writes, self.lane, TOPICS.snapshot)
        scorer = Scorer(bundle)
        self.loop = ScoringLoop(TOPICS, checkpointer, scorer, ProfileReader(None, ""), self, commit, None)

    def at(self, step: str) -> None:
        if self.stop == (self.batch, step):
            raise Stop(step)

    async def prediction(self, pred: Prediction) -> None:
        self.flight.predictions.append(pred)

    async def outcome(self, outcome: Outcome) -> None:
        self.flight.outcomes.append(outcome)

    async def dead(self, letter: DeadLetter) -> None:
        raise AssertionError(f"no dead letters in this world: {letter.reason}")

    async def delivered(self) -> None:
        self.at("predictions sent, not yet acknowledged")
        if self.flight.predictions:
            self.busy.append(self.batch)
        self.broker.predictions += self.flight.predictions
        self.broker.outcomes += self.flight.outcomes
        self.flight.predictions, self.flight.outcomes = [], []

    def ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        assert tp == INPUT
        self.acked.update(offsets)

    def store_state(self) -> None:
        """The broker stores the records on their way and acknowledges them."""
        self.at("state sent, not yet stored")
        for name, record, future in self.flight.records:
            self.broker.changelog[name].append(record)
            future.set_result(None)
        self.flight.records = []

    def commit(self) -> None:
        """Faust's commit: up to the first offset not acked."""
        self.at("offsets acked, not yet committed")
        while self.broker.committed in self.acked:
            self.broker.committed += 1

    def crash(self, in_flight_stored: tuple[bool, bool]) -> None:
        """The process is gone: what was on its way is stored or lost (the broker decides), and Faust,
        which commits on its own interval, may have committed whatever was acked just before."""
        for task in self.lane.acking:
            task.cancel()
        if self.stop is not None and self.stop[1] != "offsets acked, not yet committed":
            self.stop = None
            self.commit()
        predictions_stored, records_stored = in_flight_stored
        if predictions_stored:
            self.broker.predictions += self.flight.predictions
            self.broker.outcomes += self.flight.outcomes
        if records_stored:
            for name, record, _ in self.flight.records:
                self.broker.changelog[name].append(record)

    async def run(self) -> None:
        """Score the input from the last commit to its end, a batch at a time, committing each."""
        offset = self.broker.committed
        while offset < len(self.broker.snapshots):
            end = min(offset + BATCH, len(self.broker.snapshots))
            messages = [
                Message(INPUT.topic, 0, o, 0.0, 0, None, snapshot_key(v), v, None)
                for o, v in zip(range(offset, end), self.broker.snapshots[offset:end], strict=True)
            ]
            await self.loop.score(messages, None, [LaneBatch(snapshots={INPUT: messages})])
            self.store_state()
            self.at("state stored, offsets not yet acked")
            await self.lane.settle()
            self.commit()
            offset, self.batch = end, self.batch + 1


def snapshot_key(value: bytes) -> bytes:
    return Snapshot.model_validate_json(value).key()


@pytest.fixture(scope="module")
def world() -> list[bytes]:
    events = generate(WorldConfig(videos=12, sim_hours=8.0, seed=7))
    return [e.to_json() for e in events if isinstance(e, Snapshot)]


@pytest.fixture(scope="module")
def bundle(trained_model_dir: Path) -> ModelBundle:
    return load_promoted(trained_model_dir)


def upserted(predictions: list[Prediction]) -> dict[tuple[str, str], str]:
    """What a store that upserts by (bvid, horizon) holds: the last prediction's digest line."""
    return {(p.bvid, p.horizon): p.digest_line() for p in predictions}


def labelled(outcomes: list[Outcome]) -> dict[str, str]:
    """What `video_label` holds: the last outcome per video (an upsert by bvid)."""
    return {o.bvid: o.model_dump_json() for o in outcomes}


@dataclass
class Undisturbed:
    stored: dict[tuple[str, str], str]
    """What the stores hold after a run that never stopped."""
    labels: dict[str, str]
    stop_at: int
    """The batch to stop in: the one that fired the most checkpoints."""


@pytest.fixture(scope="module")
def undisturbed(world: list[bytes], bundle: ModelBundle) -> Undisturbed:
    broker = Broker(world)
    worker = Worker(broker, bundle, None)
    asyncio.run(worker.run())
    assert broker.committed == len(world)
    assert len(upserted(broker.predictions)) == len(broker.predictions), "each checkpoint fires once"
    counts = {batch: worker.busy.count(batch) for batch in worker.busy}
    stop_at = max(counts, key=lambda b: (counts[b], b))
    return Undisturbed(upserted(broker.predictions), labelled(broker.outcomes), stop_at)


def cases() -> Iterator[Any]:
    for step in STOPS:
        for predictions_stored in (False, True):
            for records_stored in (False, True):
                fate = f"in-flight predictions {'stored' if predictions_stored else 'lost'}, "
                fate += f"records {'stored' if records_stored else 'lost'}"
                yield pytest.param(step, (predictions_stored, records_stored), id=f"{step} / {fate}")


@pytest.mark.parametrize(("step", "in_flight_stored"), list(cases()))
async def test_a_worker_stopped_between_two_steps_loses_nothing_and_repeats_only_identical_predictions(
    world: list[bytes],
    bundle: ModelBundle,
    undisturbed: Undisturbed,
    step: str,
    in_flight_stored: tuple[bool, bool],
) -> None:
    broker = Broker(world)
    first = Worker(broker, bundle, (undisturbed.stop_at, step))
    with pytest.raises(Stop):
        await first.run()
    first.crash(in_flight_stored)
    await Worker(broker, bundle, None).run()
    assert broker.committed == len(world)
    assert upserted(broker.predictions) == undisturbed.stored, "the stores differ from an undisturbed run"
    assert labelled(broker.outcomes) == undisturbed.labels, "an outcome was lost or differs"
    repeated = {(p.bvid, p.horizon, p.digest_line()) for p in broker.predictions}
    assert len(repeated) == len(undisturbed.stored), "a repeated prediction differs from the first"
