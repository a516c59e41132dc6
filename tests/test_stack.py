"""`hotvideo stack`: one shared, durable set of services per DATA_DIR that every command attaches to.

Every command runs as a subprocess with only DATA_DIR and MODEL_DIR set (tests/harness/cli.py), the
way a user runs them in several terminals.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kafka.errors import UnknownTopicOrPartitionError

from broker.admin import read_all, wait_until_caught_up
from core.events import Prediction, Snapshot, parse_event
from core.services import STACK_FILE, StackRecord, running_stack, stack_dir
from core.settings import Settings
from hotvideo.demo import digest_lines
from hotvideo.processes import ChildProcess, WorkerProcess, hotvideo_argv
from ingest.eventlog import write_log
from ingest.world import WorldConfig, generate
from sink.sql import SqlStore
from tests.harness.cli import kill_leftovers, run, stack_env
from tests.harness.cluster import wait_for

WORLD = WorldConfig(videos=80, sim_hours=8.0, seed=11)
INPUTS = ("bili.video.snapshot", "bili.hotlist", "bili.up.profile", "bili.prediction")


@pytest.fixture
def world_log(tmp_path: Path) -> Path:
    path = tmp_path / "world.jsonl.gz"
    write_log(path, generate(WORLD))
    return path


@pytest.fixture
def env(tmp_path: Path, trained_model_dir: Path) -> Iterator[dict[str, str]]:
    """A user's terminal for a DATA_DIR of its own; its stack is stopped after the test."""
    environment = stack_env(tmp_path / "var", trained_model_dir)
    yield environment
    run(environment, "stack", "down", "--timeout", "10")
    kill_leftovers(tmp_path / "var")


def record(env: dict[str, str]) -> StackRecord:
    stack = running_stack(Path(env["DATA_DIR"]))
    assert stack is not None, "the stack is running"
    return stack


def worker(env: dict[str, str], name: str = "worker") -> WorkerProcess:
    data_dir = Path(env["DATA_DIR"])
    return WorkerProcess(name, env, data_dir / f"{name}.log", web_port=int(env["WEB_PORT"])).start()


def caught_up(env: dict[str, str]) -> None:
    wait_until_caught_up(record(env).kafka_bootstrap, "hotvideo-worker", INPUTS, timeout_s=180, settle_s=2)


def predictions(env: dict[str, str]) -> list[Prediction]:
    return [
        parse_event(Prediction, r.value) for r in read_all(record(env).kafka_bootstrap, "bili.prediction")
    ]


@pytest.mark.slow
def test_a_second_stack_on_one_data_dir_is_refused(env: dict[str, str]) -> None:
    first = run(env, "stack", "up", "--ephemeral")
    assert first.returncode == 0, first.stderr
    assert {line.split()[0] for line in first.stdout.splitlines()} == {"kafka", "redis"}
    second = run(env, "stack", "up", "--ephemeral")
    assert second.returncode == 1 and "already running" in second.stderr
    status = run(env, "stack", "status", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["running"] and not report["durable"]
    assert {s["name"]: (s["healthy"], s["alive"]) for s in report["services"]} == {
        "kafka": (True, True),
        "redis": (True, True),
    }
    recorded = json.loads((stack_dir(Path(env["DATA_DIR"])) / STACK_FILE).read_text())
    assert recorded["services"]["kafka"]["bootstrap"] == f"127.0.0.1:{env['STACK_KAFKA_PORT']}"
    pids = [s["pid"] for s in report["services"]]
    assert run(env, "stack", "down").returncode == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    gone = run(env, "stack", "status")
    assert gone.returncode == 1 and "no stack" in gone.stdout
    assert "no stack recorded" in run(env, "stack", "down").stdout


@pytest.mark.slow
def test_a_command_without_a_broker_says_what_to_do(env: dict[str, str]) -> None:
    done = run(env, "subscribe", "--limit", "1")
    assert done.returncode != 0
    assert "hotvideo stack up" in done.stderr and "KAFKA_BOOTSTRAP" in done.stderr


@pytest.mark.slow
def test_a_stale_record_is_replaced(env: dict[str, str]) -> None:
    """A stack whose servers died (a reboot, a kill) does not block the next `up`."""
    assert run(env, "stack", "up", "--ephemeral").returncode == 0
    for service in record(env).services.values():
        psutil.Process(service["pid"]).kill()
    wait_for("servers gone", lambda: running_stack(Path(env["DATA_DIR"])) is None, 10)
    again = run(env, "stack", "up", "--ephemeral")
    assert again.returncode == 0, again.stderr
    assert all(record(env).alive().values())


@pytest.mark.slow
def test_every_stack_server_listens_on_loopback_only(env: dict[str, str]) -> None:
    assert run(env, "stack", "up").returncode == 0
    listening = {
        (name, conn.laddr.ip, conn.laddr.port)
        for name, service in record(env).services.items()
        for conn in psutil.Process(service["pid"]).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    assert {name for name, _, _ in listening} == {"objectstore", "kafka", "redis"}
    assert {ip for _, ip, _ in listening} == {"127.0.0.1"}, sorted(listening)


@pytest.mark.slow
def test_commands_in_separate_terminals_see_each_other_and_topics_survive_a_restart(
    env: dict[str, str], world_log: Path
) -> None:
    assert run(env, "stack", "up").returncode == 0
    scorer = worker(env)
    api = ChildProcess("api", hotvideo_argv("serve"), env, Path(env["DATA_DIR"]) / "api.log").start()
    try:
        replayed = run(env, "replay", str(world_log))
        assert replayed.returncode == 0, replayed.stderr
        assert "'kafka': 'stack'" in replayed.stderr  # the one line that says where the broker came from
        caught_up(env)
        shown = run(env, "subscribe", "--from-beginning", "--limit", "50")
        assert shown.returncode == 0 and len(shown.stdout.splitlines()) == 50
        hot = json.load(
            urllib.request.urlopen(f"http://127.0.0.1:{env['API_PORT']}/hot?horizon=1h", timeout=10)
        )
        assert hot["items"], "the API reads the Redis the worker writes"
        healthy = run(env, "health", "--sample-s", "1")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert json.loads(healthy.stdout)["verdict"] == "ok"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{env['WEB_PORT']}/metrics", timeout=30).read()
        assert b'hotvideo_events_in_total{topic="bili.video.snapshot"}' in metrics
        assert b'hotvideo_predictions_total{horizon="1h",status="scored"}' in metrics
        assert b'hotvideo_consumer_lag{topic="bili.video.snapshot"} 0.0' in metrics
        assert b"hotvideo_model_info{version=" in metrics
        listening = {
            (child.name, conn.laddr.ip)
            for child in (scorer, api)
            for conn in psutil.Process(child.pid).net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        assert {ip for _, ip in listening} == {"127.0.0.1"}, "the worker and the API listen on loopback only"
    finally:
        api.stop()
        scorer.stop()
    assert run(env, "stack", "down").returncode == 0
    assert run(env, "stack", "up").returncode == 0
    again = run(env, "subscribe", "--from-beginning", "--limit", "50")
    assert again.returncode == 0 and again.stdout == shown.stdout, "the topic survived the restart"


@pytest.mark.slow
def test_sigkill_of_everything_mid_replay_loses_nothing(
    env: dict[str, str], world_log: Path, tmp_path: Path, trained_model_dir: Path
) -> None:
    """Broker, object store, Redis, worker and publisher killed halfway; started again, the replay
    is run again (at-least-once): every due prediction is in SQL once, no stored snapshot is lost,
    and the predictions equal those of an undisturbed run."""
    reference = stack_env(tmp_path / "reference", trained_model_dir)
    try:
        assert run(reference, "stack", "up", "--ephemeral").returncode == 0
        undisturbed = worker(reference)
        assert run(reference, "replay", str(world_log)).returncode == 0
        caught_up(reference)
        undisturbed.stop()
        expected = digest_lines(predictions(reference))
    finally:
        run(reference, "stack", "down")

    assert run(env, "stack", "up").returncode == 0
    scorer = worker(env)
    publisher = ChildProcess(
        "replay", hotvideo_argv("replay", str(world_log), "--speed", "3000"), env
    ).start()
    bootstrap = record(env).kafka_bootstrap
    half = sum(1 for event in generate(WORLD) if isinstance(event, Snapshot)) // 2

    def published() -> int:
        try:
            return len(read_all(bootstrap, "bili.video.snapshot"))
        except UnknownTopicOrPartitionError:
            return 0  # the publisher has not created the topics yet

    wait_for("half the world published", lambda: published() > half, 60)
    stored_before = {(r.key, r.value) for r in read_all(bootstrap, "bili.video.snapshot")}
    for service in record(env).services.values():
        psutil.Process(service["pid"]).send_signal(signal.SIGKILL)
    publisher.kill()
    scorer.kill()

    assert run(env, "stack", "up").returncode == 0, "a stack whose servers were killed starts again"
    after = {(r.key, r.value) for r in read_all(record(env).kafka_bootstrap, "bili.video.snapshot")}
    assert stored_before <= after, f"{len(stored_before - after)} stored snapshots lost"
    scorer = worker(env, "worker-again")
    try:
        assert run(env, "replay", str(world_log)).returncode == 0
        caught_up(env)
    finally:
        scorer.stop()
    assert digest_lines(predictions(env)) == expected
    rows = SqlStore(Settings(data_dir=Path(env["DATA_DIR"])).sqlite_url).predictions()
    keys = [(r["bvid"], r["horizon"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(expected), "every due (bvid, horizon) in SQL exactly once"
