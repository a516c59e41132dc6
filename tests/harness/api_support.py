"""Data for the API tests: a simulated world replayed through the stream's own code into SQL and Redis.

Kafka is left out on purpose (the flow tests cover it): the checkpointer, the scorer and the sink
writers are the ones the worker runs, fed in event-time order on one partition, so the stores hold
what a demo run leaves behind, in a second instead of a minute.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from api.app import create_app
from api.prototype import build_artifact
from api.server import api_server
from api.service import Platform
from core.events import Event, HotListEntry, Prediction, Snapshot, UpProfile
from core.servers import free_port
from core.settings import Settings
from ingest.world import WorldConfig, generate
from model.features import UpStats
from model.history import UpHistory
from model.registry import load_promoted
from sink.redis_store import RedisStore
from sink.sql import SqlStore
from stream.checkpoint import Checkpointer, StateCache
from stream.scoring import Scorer

REPLAY_WORLD = WorldConfig(videos=240, sim_hours=54.0, seed=11)
"""Three Beijing days of uploads: the heat map and the UP histories get more than one day."""
TRAINING_WORLD = WorldConfig(videos=1500, sim_hours=60.0, seed=3)
"""The world conftest's `trained_model_dir` is trained on (its event log rebuilds the artifact)."""
SEED_000_BODY = {
    "点赞率": 0.06,
    "弹幕率": 0.01,
    "评论率": 0.02,
    "投币率": 0.03,
    "hour": 15,
    "weekday": 3,
    "duration": 300,
}
"""Seed 000's example body of `POST /predict`."""


def history_body(**changes: object) -> dict[str, object]:
    """A small valid history body of `POST /predict` (one snapshot ten minutes after pubdate)."""
    snap = {
        "ts": 1793549400,
        "view": 10,
        "like": 1,
        "coin": 0,
        "favorite": 0,
        "reply": 0,
        "danmaku": 0,
        "share": 0,
    }
    return {"horizon": "1h", "pubdate": 1793548800, "snapshots": [snap], **changes}


def platform_model_dir(trained: Path, dest: Path) -> Path:
    """A copy of the session's trained model with its platform artifact built from its training world."""
    shutil.copytree(trained, dest)
    build_artifact(generate(TRAINING_WORLD), load_promoted(dest), dest, "tests: training world")
    return dest


def replay(events: Iterable[Event], platform: Platform) -> list[Prediction]:
    """Feed the events through checkpointer + scorer and write every output where the worker would."""
    profiles: dict[int, UpHistory] = {}

    def profile_at(mid: int, as_of: int) -> UpStats | None:
        history = profiles.get(mid)
        return None if history is None else history.at(as_of)

    checkpointer = Checkpointer(StateCache({}), grace_s=600)
    scorer = Scorer(platform.bundle(), profile_at)
    predictions: list[Prediction] = []
    for event in events:
        if isinstance(event, Snapshot):
            predictions += scorer.predict(checkpointer.on_snapshot(event, 0))
        elif isinstance(event, HotListEntry):
            checkpointer.on_hot(event, 0)
            platform.sql.write_hot_entries([event])
        elif isinstance(event, UpProfile):
            profiles.setdefault(event.mid, UpHistory()).add(event)
            platform.sql.write_profiles([event])
    platform.sql.write_predictions(predictions)
    platform.redis.write_predictions(predictions)
    return predictions


def make_platform(sql_url: str, client: redis.Redis, model_dir: Path) -> Platform:
    """A Platform over the given stores, with the test settings' key layout."""
    store = RedisStore(client, "hv:", ttl_s=3600, hotlist_size=1000, stream_maxlen=10_000)
    return Platform(SqlStore(sql_url), store, model_dir)


@contextmanager
def serving(platform: Platform, settings: Settings | None = None) -> Iterator[str]:
    """`hotvideo serve`'s app and uvicorn configuration on a free port of 127.0.0.1, in a thread;
    yields the base URL."""
    settings = (settings or Settings()).model_copy(update={"api_host": "127.0.0.1", "api_port": free_port()})
    server = api_server(create_app(platform, settings), settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.api_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
