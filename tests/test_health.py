"""`hotvideo health` as an operator or a container probe runs it: a verdict, or exit 2 in bounded time.

The command runs as a subprocess (the way a probe runs it, with its settings from the environment).
The stuck and backlog verdicts against a real worker are in tests/test_outage.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from broker.admin import ensure_topics
from broker.embedded import EmbeddedBroker
from broker.health import BrokerUnreachable, Tracker, _servers, report_within
from core.settings import Topics


def health(bootstrap: str, *args: str, topics: Topics | None = None) -> tuple[int, str, str, float]:
    """Run `hotvideo health`; return exit code, stdout, stderr and wall seconds."""
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "WORKER_ID": f"health-{uuid.uuid4().hex[:6]}"}
    if topics is not None:
        env |= {f"TOPIC_{k.upper()}": v for k, v in topics.model_dump().items()}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hotvideo.cli", "health", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (the OS gave it out and it was closed again)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung broker."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as s:
        yield s.getsockname()[1]


def test_broker_down_exits_2_at_once_with_what_to_do(closed_port: int) -> None:
    code, out, err, seconds = health(f"127.0.0.1:{closed_port}", "--timeout", "3")
    assert code == 2
    assert json.loads(out)["verdict"] == "unreachable"
    assert "KAFKA_BOOTSTRAP" in err and f"127.0.0.1:{closed_port}" in err
    assert seconds < 10  # the client alone would wait 30 s; a refused connect answers at once
    print(f"\nbroker down: exit {code} after {seconds:.1f} s (including interpreter start)")


@pytest.mark.slow  # waits out its 2 s timeout
def test_hung_broker_exits_2_after_the_timeout(silent_port: int) -> None:
    code, out, err, seconds = health(f"127.0.0.1:{silent_port}", "--timeout", "2")
    assert code == 2
    assert "did not answer within 2 s" in json.loads(out)["error"]
    assert "--timeout" in err
    assert seconds < 12
    print(f"\nhung broker, --timeout 2: exit {code} after {seconds:.1f} s (including interpreter start)")


@pytest.mark.slow  # waits out a 1.5 s timeout
def test_report_within_is_bounded_in_process(closed_port: int, silent_port: int) -> None:
    for port, bound in ((closed_port, 1.0), (silent_port, 2.5)):
        started = time.monotonic()
        with pytest.raises(BrokerUnreachable):
            report_within(f"127.0.0.1:{port}", "g", Topics(), Tracker(5.0), timeout_s=1.5)
        assert time.monotonic() - started < bound


def test_bootstrap_lists_are_parsed() -> None:
    assert _servers("127.0.0.1:9092") == [("127.0.0.1", 9092)]
    assert _servers("a:1, b:2") == [("a", 1), ("b", 2)]
    assert _servers("[::1]:9093") == [("::1", 9093)]
    assert _servers("kafka") == [("kafka", 9092)]


def test_idle_group_on_a_live_broker_is_ok(embedded_broker: EmbeddedBroker) -> None:
    name = f"health{uuid.uuid4().hex[:8]}"
    topics = Topics.under(name)
    ensure_topics(embedded_broker.bootstrap, topics, 2)
    code, out, err, _ = health(embedded_broker.bootstrap, "--sample-s", "0.5", topics=topics)
    assert code == 0, err
    result = json.loads(out)
    assert (result["verdict"], result["sink_backlog"]) == ("ok", 0)
    assert len(result["partitions"]) == 4 * 2  # snapshot, hotlist, profile, prediction
