"""`hotvideo live`: the live system under one supervisor, as a user runs it."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from broker.admin import read_all, wait_until_caught_up
from core.events import Prediction, Snapshot, parse_event
from core.services import running_stack
from hotvideo.live import LIVE_FILE
from hotvideo.processes import ChildProcess, WorkerProcess, hotvideo_argv
from ingest.eventlog import write_log
from ingest.world import WorldConfig, generate
from tests.harness.cli import kill_leftovers, run, stack_env
from tests.harness.cluster import wait_for

pytestmark = pytest.mark.slow

WORLD = WorldConfig(videos=80, sim_hours=8.0, seed=11)
INPUTS = ("bili.video.snapshot", "bili.hotlist", "bili.up.profile", "bili.prediction")


def children(data_dir: Path) -> dict[str, dict[str, Any]]:
    """What `live.json` says of each child (empty before the supervisor wrote it)."""
    try:
        return {c["name"]: c for c in json.loads((data_dir / LIVE_FILE).read_text())["children"]}
    except (OSError, ValueError):
        return {}


def test_a_killed_worker_is_restarted_and_its_partitions_are_scored(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    data_dir = tmp_path / "var"
    env = stack_env(data_dir, trained_model_dir)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    events = sorted(generate(WORLD), key=lambda e: int(getattr(e, "ts", 0)))
    write_log(first, events[: len(events) // 2])
    write_log(rest, events[len(events) // 2 :])
    argv = hotvideo_argv("live", "--source", "none", "--workers", "2", "--ephemeral", "--status-every", "2")
    live = ChildProcess("live", argv, env, tmp_path / "live.log").start()
    try:
        wait_for("both workers up", lambda: len(children(data_dir)) == 3, 120)
        web = {name: c["web_port"] for name, c in children(data_dir).items() if name.startswith("worker")}
        assert sorted(web.values()) == [int(env["WEB_PORT"]), int(env["WEB_PORT"]) + 1]
        pages = {name: WorkerProcess(name, web_port=port) for name, port in web.items()}
        wait_for(
            "partitions shared",
            lambda: all(_assigned(p) for p in pages.values()),
            120,
        )
        assert run(env, "replay", str(first)).returncode == 0
        victim = children(data_dir)["worker-2"]
        psutil.Process(victim["pid"]).send_signal(signal.SIGKILL)
        wait_for(
            "worker-2 restarted",
            lambda: (
                children(data_dir).get("worker-2", {}).get("restarts") == 1
                and children(data_dir)["worker-2"]["running"]
            ),
            60,
        )
        assert children(data_dir)["worker-2"]["pid"] != victim["pid"]
        wait_for("the restarted worker holds partitions again", lambda: _assigned(pages["worker-2"]), 120)
        assert run(env, "replay", str(rest)).returncode == 0
        stack = running_stack(data_dir)
        assert stack is not None, "live started the stack and keeps it while it runs"
        wait_until_caught_up(stack.kafka_bootstrap, "hotvideo-worker", INPUTS, timeout_s=180, settle_s=2)
        restarted = pages["worker-2"].page("stats")
        assert restarted["messages"] > 0, "the restarted worker read its partitions"
        scored = [
            parse_event(Prediction, r.value) for r in read_all(stack.kafka_bootstrap, "bili.prediction")
        ]
        assert {p.bvid for p in scored if p.horizon == "1h"} >= due_at_1h(events)
        assert {p.horizon for p in scored} == {"1h", "3h", "6h"}
    finally:
        live.signal(signal.SIGTERM)
        code = live.stop(timeout_s=60)
        leftovers = kill_leftovers(data_dir)
    assert leftovers == [], "live stopped every child it started"
    assert code == 0, (tmp_path / "live.log").read_text()[-3000:]
    assert running_stack(data_dir) is None, "the stack live started is stopped with it"
    log = (tmp_path / "live.log").read_text()
    assert "child exited; restarting" in log and "worker-2  |" in log


def due_at_1h(events: list[Any]) -> set[str]:
    """Videos whose 1 h checkpoint every partition's watermark has passed (half an hour to spare)."""
    snaps = [e for e in events if isinstance(e, Snapshot)]
    end = max(s.ts for s in snaps)
    return {s.bvid for s in snaps if s.ts <= s.pubdate + 3600 and s.pubdate + 3600 + 600 < end - 1800}


def _assigned(worker: WorkerProcess) -> bool:
    try:
        return bool(worker.page("stats", timeout_s=5)["assigned"])
    except OSError:
        return False
