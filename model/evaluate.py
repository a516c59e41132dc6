"""Scoring a labelled sample with a model and its baselines: the one metrics block training writes
and `hotvideo evaluate` writes again for a new event log.

Both paths go through `assess`, so a metrics.json from training and one from a later evaluation
compare field by field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import Event
from model.classifiers import columns
from model.dataset import Dataset, datasets_from, matched_mask, observe
from model.metrics import compare
from model.onnx_io import make_session, predict_proba, predict_quantiles
from model.quantiles import quantile_metrics
from model.registry import METADATA_FILE, METRICS_FILE, MODEL_FILE, PROMOTED_FILE
from model.report import Curves, write_report

REFERENCE = "baseline_sh"
"""The baseline every model's difference interval is taken against (the issue's baseline A)."""


def assess(
    ds: Dataset,
    probs: Mapping[str, npt.NDArray[np.float64]],
    thresholds: Mapping[str, float],
    matched: npt.NDArray[np.bool_],
    q_log10: npt.NDArray[np.float64],
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Natural-sample blocks per model at the top level, the matched sample under `matched`, and the
    play_range fit under `play_range`."""
    natural = compare(ds.y, probs, thresholds, n_boot=n_boot, seed=seed, reference=REFERENCE)
    matched_probs = {name: p[matched] for name, p in probs.items()}
    return {
        **natural,
        "matched": compare(
            ds.y[matched], matched_probs, thresholds, n_boot=n_boot, seed=seed, reference=REFERENCE
        ),
        "play_range": quantile_metrics(q_log10, ds.final_views),
        "excluded": ds.excluded,
    }


def evaluate(
    model_dir: Path, events: Iterable[Event], *, n_boot: int = 1000, seed: int = 0
) -> tuple[dict[str, Any], list[Curves]]:
    """Metrics of the promoted version (model, baselines, play_range) on every labelled video of
    `events`, with the label window and matching the version was trained with."""
    version = (model_dir / PROMOTED_FILE).read_text().strip()
    metas = {
        meta["horizon"]: (path.parent, meta)
        for path in sorted((model_dir / version).glob(f"*/{METADATA_FILE}"))
        for meta in [json.loads(path.read_text())]
    }
    if not metas:
        raise FileNotFoundError(f"{model_dir / version} holds no model: run `hotvideo train` first")
    labels = next(iter(metas.values()))[1]["labels"]
    obs = observe(events, labels["window_s"], hot_sources=labels["hot_sources"])
    datasets = datasets_from(obs, {h: meta["horizon_s"] for h, (_, meta) in metas.items()})
    horizons: dict[str, Any] = {}
    curves = []
    for h, (folder, meta) in metas.items():
        ds = datasets[h]
        probs = {"model": predict_proba(make_session(folder / MODEL_FILE), ds.X)}
        thresholds = {"model": float(meta["threshold"])}
        for name, base in meta["baselines"].items():
            X = ds.X[:, columns(base["features"])]
            probs[name] = predict_proba(make_session(folder / base["file"]), X)
            thresholds[name] = float(base["threshold"])
        q = predict_quantiles(make_session(folder / meta["play_range"]["file"]), ds.X)
        matching = meta["matching"]
        mask = matched_mask(ds, matching["ratio"], matching["window_s"], seed)
        horizons[h] = {
            **assess(ds, probs, thresholds, mask, q, n_boot=n_boot, seed=seed),
            "n_videos": len(ds),
            "chosen": meta["model"]["type"],
        }
        curves.append(Curves(h, ds.y, probs))
    summary = {"version": version, "evaluated_on": "event log", "horizons": horizons}
    return summary, curves


def write_metrics(out_dir: Path, summary: Mapping[str, Any]) -> Path:
    """`metrics.json` in out_dir, keys sorted so two runs diff cleanly."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / METRICS_FILE
    path.write_text(json.dumps(summary, sort_keys=True, ensure_ascii=False, indent=2))
    return path


EVALUATION_INTRO = (
    "Written by `hotvideo evaluate`: the promoted version's model, baselines and play_range scored on "
    "every labelled video of a new event log, with the thresholds, label window and matching of training."
)


def evaluate_log(
    model_dir: Path, events: Iterable[Event], name: str, out_dir: Path | None, *, n_boot: int = 1000
) -> Path:
    """`hotvideo evaluate`: metrics.json and a model card for the events of a log named `name`;
    returns metrics.json's path.

    The default folder is `<model_dir>/<version>/evaluations/<name>`, next to the training card.
    """
    summary, curves = evaluate(model_dir, events, n_boot=n_boot)
    out = out_dir or model_dir / summary["version"] / "evaluations" / name
    path = write_metrics(out, summary)
    write_report(out, summary, curves, EVALUATION_INTRO)
    return path
