"""The latency half of `hotvideo bench`: its steady load and its reading of the live prediction stream."""

from __future__ import annotations

import json
import time
from collections import Counter

import redis

from hotvideo.bench import LOAD_MINUTES, PredictionWatch, latency_load

START = 4_000_000_000
KEY = "test-bench:predictions"


def test_the_load_is_steady_to_its_end() -> None:
    """One snapshot in 12 fires once the first videos pass 1 h, and the end is no burst of firings."""
    load = latency_load(START, 30_000)
    assert len(load) == 30_000
    assert [s.ts for s, _ in load] == sorted(s.ts for s, _ in load)
    fires = [fired for _, fired in load]
    quarter = len(load) // 4
    for part in range(1, 4):
        share = sum(fires[part * quarter : (part + 1) * quarter]) / quarter
        assert abs(share - 1 / len(LOAD_MINUTES)) < 0.005, (part, share)
    fired = Counter(s.bvid for s, f in load if f)
    assert set(fired.values()) == {1}
    for snap, f in load:
        assert f == (snap.ts - snap.pubdate == LOAD_MINUTES[-1] * 60)


def add(client: redis.Redis, bvid: str) -> None:
    client.xadd(KEY, {"p": json.dumps({"bvid": bvid, "scored_at": time.time()})})


def test_the_watch_waits_for_the_wanted_videos_not_for_a_count(redis_client: redis.Redis) -> None:
    """Many other videos' predictions come first (the warm-up's); the wanted ones still count."""
    add(redis_client, "BVbefore")  # before the watch starts: not its business
    watch = PredictionWatch(redis_client, KEY)
    for i in range(50):
        add(redis_client, f"BVother{i}")
    add(redis_client, "BVwanted1")
    add(redis_client, "BVwanted2")
    watch.until(["BVwanted1", "BVwanted2"], deadline=time.time() + 5)
    assert {"BVwanted1", "BVwanted2"} <= watch.seen.keys()
    assert "BVbefore" not in watch.seen
    assert watch.seen["BVwanted2"] >= watch.seen["BVother0"]


def test_the_watch_gives_up_at_the_deadline(redis_client: redis.Redis) -> None:
    watch = PredictionWatch(redis_client, KEY)
    add(redis_client, "BVwanted1")
    watch.until(["BVwanted1", "BVnever"], deadline=time.time() + 0.5)
    assert "BVwanted1" in watch.seen and "BVnever" not in watch.seen
