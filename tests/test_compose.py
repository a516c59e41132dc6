"""The production stack file: it cannot start here (no Docker engine), so its wiring is checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import CollectSettings, Settings, Topics

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("worker", "collector", "api")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def test_every_part_of_the_stack_is_there(compose: dict[str, Any]) -> None:
    assert {"kafka", "mysql", "redis", *APP_SERVICES} <= set(compose["services"])


def test_kafka_runs_in_kraft_mode_without_zookeeper(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in compose["services"]
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])


def test_servers_are_mysql_8_and_redis_7(compose: dict[str, Any]) -> None:
    assert compose["services"]["mysql"]["image"].startswith("mysql:8")
    assert compose["services"]["redis"]["image"].startswith("redis:7")


@pytest.mark.parametrize("name", ["kafka", "mysql", "redis", *APP_SERVICES])
def test_every_long_running_service_has_a_health_check(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"] and not check.get("disable")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_healthy_servers_and_use_them(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["build"] == "."
    deps = service["depends_on"]
    assert all(deps[s]["condition"] == "service_healthy" for s in ("kafka", "mysql", "redis"))
    env = service["environment"]
    assert env["KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["BROKER_KIND"] == "kafka", "Apache Kafka, not the embedded broker's workarounds"
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    user, password, database = re.fullmatch(
        r"mysql\+pymysql://(\w+):(\w+)@mysql:3306/(\w+)", env["DATABASE_URL"]
    ).groups()  # type: ignore[union-attr]
    mysql_env = compose["services"]["mysql"]["environment"]
    assert (user, password, database) == (
        mysql_env["MYSQL_USER"],
        mysql_env["MYSQL_PASSWORD"],
        mysql_env["MYSQL_DATABASE"],
    )


@pytest.mark.parametrize("name", [*APP_SERVICES, "train"])
def test_app_environment_names_real_settings(compose: dict[str, Any], name: str) -> None:
    """A typo in a variable name would silently fall back to a default: every name must be known."""
    known = {f.upper() for f in Settings.model_fields}
    known |= {f"TOPIC_{f.upper()}" for f in Topics.model_fields}
    known |= {f"COLLECT_{f.upper()}" for f in CollectSettings.model_fields}
    assert set(compose["services"][name]["environment"]) <= known


def test_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    """`--scale worker=N` needs no fixed container name and no host port per worker."""
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["environment"]["WEB_HOST"] == "0.0.0.0"


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    assert {"kafka-data", "mysql-data", "redis-data", "models"} <= volumes
    for name in ("worker", "api"):
        assert "models:/models" in compose["services"][name]["volumes"]


def test_the_trainer_fills_the_models_volume(compose: dict[str, Any]) -> None:
    train = compose["services"]["train"]
    assert train["profiles"] == ["setup"]
    assert "hotvideo train" in " ".join(train["command"]) and "--out /models" in " ".join(train["command"])


def test_dockerfile_installs_every_package_of_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for package in ("hotvideo", "ingest", "stream", "model", "sink", "api"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["hotvideo"]' in dockerfile
