"""Kill one of two workers with SIGKILL mid-replay: nothing lost, nothing twice, same digest.

A reference cluster (one worker) replays the same world undisturbed on its own topics at the same
time. The pair loses worker `b` after the first half of the world; worker `a` takes its partitions
over (state from the changelogs, offsets from the group's commits, wake-up queues rebuilt) while the
second half is published.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import pytest

from broker.admin import committed_offsets
from broker.embedded import EmbeddedBroker
from core.events import Prediction
from hotvideo.demo import digest_lines
from ingest.eventlog import read_log, write_log
from ingest.world import WorldConfig, generate
from sink.sql import SqlStore
from tests.harness.cluster import Cluster, wait_for

pytestmark = pytest.mark.slow

WORLD = WorldConfig(videos=120, sim_hours=8.0, seed=5)


def digest(preds: list[Prediction]) -> str:
    return hashlib.sha256("\n".join(digest_lines(preds)).encode()).hexdigest()


def test_sigkill_of_one_of_two_workers_loses_nothing_and_doubles_nothing(
    embedded_broker: EmbeddedBroker, trained_model_dir: Path, tmp_path: Path, redis_pair: tuple[str, str]
) -> None:
    write_log(tmp_path / "world.jsonl", generate(WORLD), progress=False)
    records = list(read_log(tmp_path / "world.jsonl"))
    run = uuid.uuid4().hex[:8]
    ref_sql, pair_sql = (f"sqlite:///{tmp_path / name}.db" for name in ("ref", "pair"))
    common = {"bootstrap": embedded_broker.bootstrap, "model_dir": trained_model_dir}
    reference = Cluster(
        name=f"ref{run}", workdir=tmp_path / "ref", redis_url=redis_pair[0], database_url=ref_sql, **common
    )
    pair = Cluster(
        name=f"pair{run}", workdir=tmp_path / "pair", redis_url=redis_pair[1], database_url=pair_sql, **common
    )
    try:
        reference.start("solo")
        pair.start("a")
        pair.start("b")
        reference.wait_assigned(["solo"])
        pair.wait_assigned(["a", "b"])
        reference.publish(records)
        half = len(records) // 2
        pair.publish(records[:half])
        wait_for("b processes", lambda: pair.page("b")["messages"] > 0)
        doomed = pair.page("b")["assigned"]
        before = committed_offsets(pair.bootstrap, pair.group, pair.topics.snapshot)
        killed_at = time.monotonic()
        pair.kill("b")
        pair.publish(records[half:])

        def resumed() -> bool:
            now = committed_offsets(pair.bootstrap, pair.group, pair.topics.snapshot)
            return all(now.get(p, 0) > before.get(p, 0) for p in doomed)

        recovery_s = wait_for("a resumes b's partitions", resumed) - killed_at
        pair.wait_caught_up()
        reference.wait_caught_up()
        restore = pair.page("a")["restore"]
    finally:
        reference.stop()
        pair.stop()

    expected, got = reference.predictions(), pair.predictions()
    due = {(p.bvid, p.horizon) for p in expected}
    assert len(due) == len(expected), "the undisturbed run emits each (bvid, horizon) once"
    rows = SqlStore(pair_sql).predictions()
    assert sorted((r["bvid"], r["horizon"]) for r in rows) == sorted(due), "one SQL row per due checkpoint"
    differ = sorted({p.digest_line() for p in got} - {p.digest_line() for p in expected})
    print(
        f"\nSIGKILL of worker b (partitions {doomed}): a resumed them after {recovery_s:.1f} s "
        f"(session timeout 3 s); due checkpoints {len(due)}, predictions on the topic {len(got)} "
        f"({len(got) - len(due)} re-emitted duplicates), SQL rows {len(rows)}; last restore {restore}"
    )
    assert not differ, f"{len(differ)} of {len(due)} predictions differ from the one-worker run: {differ[:3]}"
