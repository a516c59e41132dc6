"""Train one classifier per horizon, calibrate it, export it to ONNX, prove the export, version it.

The split is by publication time (train on earlier videos, validate on the next ones, test on the
latest) because the stream always scores videos newer than its training data. Candidates
(logistic regression, random forest, gradient boosting on the full features) and the two baselines
are fitted on seed 001's matched sample (negatives near each positive in time and zone); the
validation period, on the natural class balance, picks the candidate by PR-AUC, fits each model's
sigmoid calibration (so probabilities are frequencies of the live stream, not of the matched
sample) and picks each threshold by F1. The test period is only ever scored.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from core.events import Event
from core.logs import get_logger
from core.reference import HORIZONS
from model.classifiers import (
    BASELINE_PROTOTYPE,
    BASELINE_SH,
    CANDIDATE_PARAMS,
    CANDIDATES,
    TARGET_OPSET,
    Classifier,
    calibrate,
    check_parity,
    columns,
    export_onnx,
    fit_forest,
    fit_logistic,
)
from model.dataset import Dataset, build_datasets, matched_mask
from model.evaluate import assess, write_metrics
from model.features import FEATURE_NAMES
from model.labels import DEFAULT_WINDOW_S
from model.metrics import point_metrics
from model.onnx_io import INPUT_NAME, PROB_OUTPUT, QUANTILE_OUTPUT
from model.quantiles import (
    OPEN_FROM,
    QUANTILES,
    RANGE_EDGES,
    check_quantile_parity,
    export_quantiles,
    fit_quantiles,
    predict_log10,
)
from model.registry import METADATA_FILE, MODEL_FILE, PLAY_RANGE_FILE, promote
from model.report import Curves, write_report

log = get_logger(__name__)

MIN_POSITIVES = 5
IMPORTANCE_REPEATS = 3
BASELINES: dict[str, tuple[tuple[str, ...], Callable[..., Classifier]]] = {
    "baseline_sh": (BASELINE_SH, fit_logistic),
    "baseline_prototype": (BASELINE_PROTOTYPE, fit_forest),
}
"""Baseline A is a logistic regression on log views; seed 000 does not name its prototype's model,
so a random forest (the usual choice for such a prototype) stands in for baseline B."""


class TrainingError(RuntimeError):
    """Training cannot produce a trustworthy model; the message says what to change."""


@dataclass(frozen=True)
class _Trained:
    files: dict[str, bytes]
    """file name in the horizon folder -> bytes"""
    metadata: dict[str, Any]
    curves: Curves


def _check_classes(ds: Dataset, part: str, min_positives: int = 1) -> None:
    positives, n = ds.positives, len(ds)
    if positives < min_positives or positives == n:
        raise TrainingError(
            f"horizon {ds.horizon}: the {part} part has {positives} hot videos out of {n} "
            f"(need at least {min_positives} and some non-hot ones); generate a larger world "
            "(more videos or more simulated hours) or collect longer"
        )


def best_f1_threshold(y: npt.NDArray[np.int64], prob: npt.NDArray[np.float64]) -> float:
    """Threshold maximising F1, placed midway between distinct scores.

    Tree ensembles give many rows the very same score; a threshold equal to a score would let a
    1e-7 ONNX rounding flip those rows' labels, a midpoint cannot.
    """
    order = np.argsort(-prob, kind="stable")
    scores, hits = prob[order], y[order]
    last_of_score = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(hits)[last_of_score]
    predicted = np.flatnonzero(last_of_score) + 1
    distinct = scores[last_of_score]
    f1 = 2 * tp / (predicted + hits.sum())
    k = int(np.argmax(f1))
    below = distinct[k + 1] if k + 1 < len(distinct) else 0.0
    return float((distinct[k] + below) / 2)


def _span(ds: Dataset) -> dict[str, Any]:
    lo, hi = int(ds.pubdates.min()), int(ds.pubdates.max())
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "pubdate_min": lo,
        "pubdate_max": hi,
        "from": time.strftime(iso, time.gmtime(lo)),
        "to": time.strftime(iso, time.gmtime(hi)),
    }


def split_by_time(ds: Dataset, test_fraction: float, val_fraction: float) -> tuple[Dataset, Dataset, Dataset]:
    """(fit, validation, test) by publication time."""
    n = len(ds)
    n_test = math.ceil(n * test_fraction)
    n_val = math.ceil((n - n_test) * val_fraction)
    n_fit = n - n_test - n_val
    return (
        ds.subset(np.arange(n_fit)),
        ds.subset(np.arange(n_fit, n_fit + n_val)),
        ds.subset(np.arange(n_fit + n_val, n)),
    )


def _importances(model: Any, val: Dataset, seed: int) -> list[tuple[str, float]]:
    """Permutation importance on the validation period (PR-AUC drop), largest first: model-agnostic,
    so the three candidate families are explained alike."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(
        model,
        val.X,
        val.y,
        scoring="average_precision",
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
        n_jobs=1,
    )
    ranked = sorted(zip(FEATURE_NAMES, result.importances_mean, strict=True), key=lambda kv: -kv[1])
    return [(name, round(float(value), 5)) for name, value in ranked]


def _train_horizon(
    ds: Dataset,
    horizon_s: int,
    *,
    seed: int,
    match_ratio: int | None,
    match_window_s: int,
    test_fraction: float,
    val_fraction: float,
    n_boot: int,
) -> _Trained:
    """Fit, choose, calibrate, threshold, export, gate and evaluate one horizon."""
    natural_fit, val, test = split_by_time(ds, test_fraction, val_fraction)
    _check_classes(natural_fit, "training", MIN_POSITIVES)
    _check_classes(val, "validation")
    _check_classes(test, "test")
    fit = natural_fit.subset(matched_mask(natural_fit, match_ratio, match_window_s, seed))
    _check_classes(fit, "matched training", MIN_POSITIVES)

    fitted = {name: make(fit.X, fit.y, seed) for name, make in CANDIDATES.items()}
    val_pr_auc = {
        name: point_metrics(val.y, clf.predict_proba(val.X)[:, 1], 0.5)["pr_auc"]
        for name, clf in fitted.items()
    }
    chosen = max(val_pr_auc, key=val_pr_auc.__getitem__)
    models: dict[str, tuple[Sequence[str], Any]] = {
        "model": (FEATURE_NAMES, calibrate(fitted[chosen], val.X, val.y))
    }
    for name, (inputs, make) in BASELINES.items():
        idx = columns(inputs)
        models[name] = (inputs, calibrate(make(fit.X[:, idx], fit.y, seed), val.X[:, idx], val.y))

    held_out = np.concatenate([val.X, test.X])
    files: dict[str, bytes] = {}
    thresholds: dict[str, float] = {}
    parity: dict[str, float] = {}
    probs: dict[str, npt.NDArray[np.float64]] = {}
    for name, (names, model) in models.items():
        idx = columns(names)
        thresholds[name] = best_f1_threshold(val.y, model.predict_proba(val.X[:, idx])[:, 1])
        onnx = export_onnx(model, len(idx))
        parity[name] = check_parity(model, onnx, held_out[:, idx], thresholds[name])
        files[MODEL_FILE if name == "model" else f"{name}.onnx"] = onnx
        probs[name] = model.predict_proba(test.X[:, idx])[:, 1]

    covered = ~np.isnan(natural_fit.final_views)
    quantile_models = fit_quantiles(natural_fit.X[covered], natural_fit.final_views[covered], seed)
    files[PLAY_RANGE_FILE] = export_quantiles(quantile_models, len(FEATURE_NAMES))
    parity["play_range"] = check_quantile_parity(quantile_models, files[PLAY_RANGE_FILE], held_out)

    matched_test = matched_mask(test, match_ratio, match_window_s, seed)
    q_test = predict_log10(quantile_models, test.X)
    importances = _importances(models["model"][1], val, seed)
    metrics = {
        **assess(test, probs, thresholds, matched_test, q_test, n_boot=n_boot, seed=seed),
        "chosen": chosen,
        "candidates_val_pr_auc": val_pr_auc,
        "n_train": len(fit),
        "n_val": len(val),
        "n_test": len(test),
        "positives_train": fit.positives,
        "onnx_max_abs_diff": parity,
        "train_span": _span(fit),
        "val_span": _span(val),
        "test_span": _span(test),
        "feature_importance": importances[:20],
    }
    threshold = thresholds["model"]
    metadata = {
        "horizon": ds.horizon,
        "horizon_s": horizon_s,
        "feature_names": list(FEATURE_NAMES),
        "threshold": threshold,
        "levels": [
            {"level": "高热", "min_prob": threshold},
            {"level": "中热", "min_prob": threshold / 2},
            {"level": "普通", "min_prob": 0.0},
        ],
        "metrics": metrics,
        "model": {
            "type": chosen,
            "params": CANDIDATE_PARAMS[chosen],
            "calibration": "sigmoid, fitted on the validation period",
            "random_state": seed,
        },
        "baselines": {
            name: {"file": f"{name}.onnx", "features": list(names), "threshold": thresholds[name]}
            for name, (names, _) in models.items()
            if name != "model"
        },
        "play_range": {
            "file": PLAY_RANGE_FILE,
            "output": QUANTILE_OUTPUT,
            "quantiles": list(QUANTILES),
            "target": "log10(views at pubdate + T, + 1)",
            "range_edges": list(RANGE_EDGES),
            "open_from": OPEN_FROM,
        },
        "matching": {"ratio": match_ratio, "window_s": match_window_s, "same_zone": True},
        "onnx": {"input": INPUT_NAME, "output": PROB_OUTPUT, "target_opset": TARGET_OPSET},
    }
    log.info(
        "horizon trained",
        horizon=ds.horizon,
        chosen=chosen,
        threshold=round(threshold, 4),
        pr_auc=metrics["model"]["pr_auc"],
        baseline_sh_pr_auc=metrics["baseline_sh"]["pr_auc"],
        onnx_max_abs_diff=max(parity.values()),
    )
    return _Trained(files, metadata, Curves(ds.horizon, test.y, probs, importances))


TRAINING_INTRO = (
    "Trained by `hotvideo train`. Per horizon: time-based split (train, validation, test by "
    "publication time); candidates fitted on seed 001's matched sample, chosen by PR-AUC on the "
    "validation period, sigmoid-calibrated and thresholded (best F1) on it; metrics on the test period."
)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=2).encode()


def train(
    events_or_datasets: Iterable[Event] | Mapping[str, Dataset],
    out_dir: Path | str,
    seed: int = 0,
    *,
    horizons: Mapping[str, int] = HORIZONS,
    window_s: int = DEFAULT_WINDOW_S,
    match_ratio: int | None = 10,
    match_window_s: int = 3600,
    test_fraction: float = 0.25,
    val_fraction: float = 0.2,
    n_boot: int = 1000,
) -> str:
    """Train every horizon, write `out_dir/<version>/…`, promote it, return the version.

    The version is `<UTC training time>-<hash of the artifacts>`: the same data and seed give the
    same hash, so two runs are comparable at a glance. `n_boot` resamples give the metrics' 95 %
    intervals. Besides the models, the version folder gets metrics.json and the model card.
    """
    out = Path(out_dir)
    datasets = (
        events_or_datasets
        if isinstance(events_or_datasets, Mapping)
        else build_datasets(events_or_datasets, window_s, horizons)
    )
    with threadpool_limits(limits=1):  # OpenMP threads on small fits cost 3× more than they give
        trained = {
            h: _train_horizon(
                datasets[h],
                horizons[h],
                seed=seed,
                match_ratio=match_ratio,
                match_window_s=match_window_s,
                test_fraction=test_fraction,
                val_fraction=val_fraction,
                n_boot=n_boot,
            )
            for h in tqdm(datasets, desc="train", unit="horizon")
        }
    digest = hashlib.sha256()
    labels = {"window_s": window_s, "hot_sources": None}
    for h, t in trained.items():
        t.metadata["labels"] = labels
        digest.update(h.encode() + b"".join(t.files.values()) + _canonical(t.metadata))
    version = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest.hexdigest()[:10]}"

    for h, t in trained.items():
        horizon_dir = out / version / h
        horizon_dir.mkdir(parents=True, exist_ok=True)
        for name, data in t.files.items():
            (horizon_dir / name).write_bytes(data)
        (horizon_dir / METADATA_FILE).write_bytes(_canonical({"version": version, **t.metadata}))
    summary = {"version": version, "horizons": {h: t.metadata["metrics"] for h, t in trained.items()}}
    write_metrics(out / version, summary)
    write_report(out / version, summary, [t.curves for t in trained.values()], TRAINING_INTRO)
    promote(out, version)
    log.info("model promoted", version=version, out_dir=str(out))
    return version
