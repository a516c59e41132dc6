"""`hotvideo subscribe`: reads the prediction topic on the embedded broker, filters, formats."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from kafka import KafkaProducer
from typer.testing import CliRunner

from broker.embedded import EmbeddedBroker
from core.events import Prediction
from hotvideo.cli import app
from hotvideo.subscribe import follow
from tests.harness.factories import BVID, T0

OTHER = "BV1ab4y1c7De"


def pred(bvid: str, horizon: str, prob: float | None) -> Prediction:
    return Prediction(
        bvid=bvid,
        horizon=horizon,  # type: ignore[arg-type]
        as_of=T0 + 3600,
        status="scored" if prob is not None else "insufficient_data",
        prob=prob,
        model_version="v1",
        scored_at=1.0,
    )


@pytest.fixture(scope="module")
def prediction_topic(embedded_broker: EmbeddedBroker) -> str:
    topic = "test.subscribe.prediction"
    producer = KafkaProducer(bootstrap_servers=embedded_broker.bootstrap)
    for p in [pred(BVID, "1h", 0.9), pred(OTHER, "1h", 0.1), pred(BVID, "3h", 0.7), pred(OTHER, "3h", None)]:
        producer.send(topic, key=p.key(), value=p.to_json())
    producer.send(topic, key=b"x", value=b"{broken")
    producer.flush()
    producer.close()
    return topic


def lines(bootstrap: str, topic: str, **kw: object) -> list[str]:
    return list(follow(bootstrap, topic, from_beginning=True, idle_timeout_s=2.0, **kw))  # type: ignore[arg-type]


@pytest.mark.slow  # waits out the 2 s idle timeout
def test_from_beginning_shows_every_readable_prediction(
    embedded_broker: EmbeddedBroker, prediction_topic: str
) -> None:
    out = lines(embedded_broker.bootstrap, prediction_topic, horizons={"1h", "3h", "6h"})
    assert len(out) == 4  # the broken message is logged and skipped
    assert any(BVID in line and " 1h " in line and "0.900" in line for line in out)


@pytest.mark.slow  # waits out the 2 s idle timeout
def test_filters_by_horizon_and_probability(embedded_broker: EmbeddedBroker, prediction_topic: str) -> None:
    out = lines(embedded_broker.bootstrap, prediction_topic, horizons={"3h"}, min_prob=0.5)
    assert len(out) == 1 and BVID in out[0] and " 3h " in out[0]


def test_limit_stops_early(embedded_broker: EmbeddedBroker, prediction_topic: str) -> None:
    assert len(lines(embedded_broker.bootstrap, prediction_topic, horizons={"1h", "3h"}, limit=2)) == 2


def test_missing_topic_says_what_to_do(embedded_broker: EmbeddedBroker) -> None:
    with pytest.raises(RuntimeError, match="start the worker"):
        lines(embedded_broker.bootstrap, "no.such.topic", horizons={"1h"})


def test_cli_subscribe_end_to_end(
    embedded_broker: EmbeddedBroker, prediction_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", embedded_broker.bootstrap)
    monkeypatch.setenv("TOPIC_PREDICTION", prediction_topic)
    from core.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["subscribe", "--from-beginning", "--horizon", "1h", "--limit", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 2  # logs go to stderr


def test_cli_rejects_unknown_horizon() -> None:
    result = CliRunner().invoke(app, ["subscribe", "--horizon", "2h"])
    assert result.exit_code != 0
    assert "unknown horizon" in result.output


COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_the_documented_commands_exist() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `hotvideo (\w+)", readme, flags=re.MULTILINE))
    assert documented == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
