"""Train one classifier per horizon, export it to ONNX, prove the export, version and promote it.

The split is by publication time (train on earlier videos, test on later ones) because the stream
always scores videos newer than its training data. Within the earlier part, the last `val_fraction`
picks the threshold on the natural class balance, since the model itself is fitted on seed 001's
matched sample (negatives near each positive in time and zone) with balanced class weights: its
probabilities are ranking scores, not calibrated frequencies, and only a threshold chosen on the
natural balance makes its labels fit the live stream.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from tqdm import tqdm

from hotvideo.events import Event
from hotvideo.logs import get_logger
from hotvideo.settings import HORIZONS
from model.dataset import Dataset, build_datasets
from model.features import FEATURE_NAMES
from model.labels import DEFAULT_WINDOW_S, matched_negatives
from model.registry import (
    INPUT_NAME,
    METADATA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PROB_OUTPUT,
    make_session,
    predict_proba,
    promote,
)

log = get_logger(__name__)

MIN_POSITIVES = 5
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PARITY_ATOL = 1e-4
HGB_PARAMS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "early_stopping": False,  # its internal split is random: off keeps a seed's model exact
    "class_weight": "balanced",
}
BASELINE_FEATURE = "log_view_rate"
"""Ranking by early view velocity alone: the model has to beat it to be worth serving."""


class TrainingError(RuntimeError):
    """Training cannot produce a trustworthy model; the message says what to change."""


class ExportParityError(TrainingError):
    """The ONNX model does not score like the scikit-learn model it was converted from."""


@dataclass(frozen=True)
class _Trained:
    onnx: bytes
    metadata: dict[str, Any]


def _check_classes(ds: Dataset, part: str, min_positives: int = 1) -> None:
    positives, n = ds.positives, len(ds)
    if positives < min_positives or positives == n:
        raise TrainingError(
            f"horizon {ds.horizon}: the {part} part has {positives} hot videos out of {n} "
            f"(need at least {min_positives} and some non-hot ones); generate a larger world "
            "(more videos or more simulated hours) or collect longer"
        )


def _matched(ds: Dataset, ratio: int | None, window_s: int, seed: int) -> Dataset:
    """Positives plus their matched negatives; the natural sample when ratio is None."""
    if ratio is None:
        return ds
    refs = ds.refs()
    pos = [r for r, y in zip(refs, ds.y, strict=True) if y == 1]
    neg = [r for r, y in zip(refs, ds.y, strict=True) if y == 0]
    picked = matched_negatives(pos, neg, window_s=window_s, ratio=ratio, seed=seed)
    return ds.subset((ds.y == 1) | np.isin(ds.bvids, picked))


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


def _metrics(y: npt.NDArray[np.int64], prob: npt.NDArray[np.float64], threshold: float) -> dict[str, Any]:
    pred = (prob >= threshold).astype(np.int64)
    both = 0 < y.sum() < len(y)
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, prob)) if both else None,
        "pr_auc": float(average_precision_score(y, prob)) if both else None,
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "brier": float(brier_score_loss(y, prob, labels=[0, 1])),
    }


def _span(ds: Dataset) -> dict[str, Any]:
    lo, hi = int(ds.pubdates.min()), int(ds.pubdates.max())
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "pubdate_min": lo,
        "pubdate_max": hi,
        "from": time.strftime(iso, time.gmtime(lo)),
        "to": time.strftime(iso, time.gmtime(hi)),
    }


def snap_thresholds_to_float32(clf: HistGradientBoostingClassifier) -> None:
    """Lower every split threshold to the largest float32 at or below it, in place.

    scikit-learn splits at float64 midpoints between training values; ONNX stores thresholds as
    float32, rounded to nearest. When two float32 feature values are neighbours (discrete features
    such as hours_since_last do this) the midpoint can round up onto the upper value and send it the
    other way: a 0.016 probability gap was seen on a simulated world. Features are float32, and for a
    float32 x, x <= t exactly when x <= floor32(t), so this changes no scikit-learn prediction and
    makes the ONNX comparisons identical.
    """
    for stage in clf._predictors:
        for predictor in stage:
            t = predictor.nodes["num_threshold"]
            t32 = t.astype(np.float32)
            t32 = np.where(t32 > t, np.nextafter(t32, np.float32(-np.inf)), t32)
            predictor.nodes["num_threshold"] = t32.astype(np.float64)


def export_onnx(clf: HistGradientBoostingClassifier) -> bytes:
    """The classifier as ONNX: one float input `X`, a plain `probabilities` tensor (no zipmap)."""
    from skl2onnx import convert_sklearn  # export-time only: serving never imports skl2onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        clf,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(FEATURE_NAMES)]))],
        options={id(clf): {"zipmap": False}},
        target_opset=TARGET_OPSET,
        name="hotvideo",  # skl2onnx would draw a random graph name: the artifact hash must not move
    )
    return bytes(onx.SerializeToString())


def check_parity(
    clf: HistGradientBoostingClassifier, onnx: bytes, X: npt.NDArray[np.float32], threshold: float
) -> float:
    """Max |P_onnx - P_sklearn| on X; raise unless ≤ PARITY_ATOL with identical labels."""
    expected = clf.predict_proba(X)[:, 1]
    got = predict_proba(make_session(onnx), X)
    diff = float(np.max(np.abs(got - expected))) if len(X) else 0.0
    flips = int(np.sum((got >= threshold) != (expected >= threshold)))
    if diff > PARITY_ATOL or flips:
        raise ExportParityError(
            f"ONNX export differs from scikit-learn on {len(X)} held-out rows: "
            f"max |Δp| = {diff:.3g} (limit {PARITY_ATOL}), {flips} labels flipped at {threshold:.4f}"
        )
    return diff


def _train_horizon(
    ds: Dataset,
    horizon_s: int,
    *,
    seed: int,
    match_ratio: int | None,
    match_window_s: int,
    test_fraction: float,
    val_fraction: float,
) -> _Trained:
    """Fit, threshold, evaluate, export and gate one horizon."""
    n = len(ds)
    n_test = math.ceil(n * test_fraction)
    n_val = math.ceil((n - n_test) * val_fraction)
    n_fit = n - n_test - n_val
    natural_fit = ds.subset(np.arange(n_fit))
    val = ds.subset(np.arange(n_fit, n_fit + n_val))
    test = ds.subset(np.arange(n_fit + n_val, n))
    _check_classes(natural_fit, "training", MIN_POSITIVES)
    _check_classes(val, "validation")
    _check_classes(test, "test")
    fit = _matched(natural_fit, match_ratio, match_window_s, seed)
    _check_classes(fit, "matched training", MIN_POSITIVES)

    clf = HistGradientBoostingClassifier(**HGB_PARAMS, random_state=seed)
    clf.fit(fit.X, fit.y)
    snap_thresholds_to_float32(clf)
    threshold = best_f1_threshold(val.y, clf.predict_proba(val.X)[:, 1])
    test_prob = clf.predict_proba(test.X)[:, 1]
    matched_test = _matched(test, match_ratio, match_window_s, seed)
    baseline = test.X[:, FEATURE_NAMES.index(BASELINE_FEATURE)].astype(np.float64)

    onnx = export_onnx(clf)
    held_out = np.concatenate([val.X, test.X])
    parity = check_parity(clf, onnx, held_out, threshold)

    metrics = {
        **_metrics(test.y, test_prob, threshold),
        "n_train": len(fit),
        "n_val": len(val),
        "n_test": len(test),
        "positives_train": fit.positives,
        "matched_test": _metrics(matched_test.y, clf.predict_proba(matched_test.X)[:, 1], threshold),
        "baseline_view_rate_roc_auc": float(roc_auc_score(test.y, baseline)),
        "onnx_max_abs_diff": parity,
        "train_span": _span(fit),
        "test_span": _span(test),
        "excluded": ds.excluded,
    }
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
        "model": {"type": type(clf).__name__, "params": HGB_PARAMS, "random_state": seed},
        "matching": {"ratio": match_ratio, "window_s": match_window_s, "same_zone": True},
        "onnx": {"input": INPUT_NAME, "output": PROB_OUTPUT, "target_opset": TARGET_OPSET},
    }
    log.info(
        "horizon trained",
        horizon=ds.horizon,
        threshold=round(threshold, 4),
        roc_auc=metrics["roc_auc"],
        pr_auc=metrics["pr_auc"],
        f1=metrics["f1"],
        baseline_roc_auc=metrics["baseline_view_rate_roc_auc"],
        onnx_max_abs_diff=parity,
    )
    return _Trained(onnx, metadata)


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
) -> str:
    """Train every horizon, write `out_dir/<version>/…`, promote it, return the version.

    The version is `<UTC training time>-<hash of the artifacts>`: the same data and seed give the
    same hash, so two runs are comparable at a glance.
    """
    out = Path(out_dir)
    datasets = (
        events_or_datasets
        if isinstance(events_or_datasets, Mapping)
        else build_datasets(events_or_datasets, window_s, horizons)
    )
    trained = {
        h: _train_horizon(
            datasets[h],
            horizons[h],
            seed=seed,
            match_ratio=match_ratio,
            match_window_s=match_window_s,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
        )
        for h in tqdm(datasets, desc="train", unit="horizon")
    }
    digest = hashlib.sha256()
    for h, t in trained.items():
        digest.update(h.encode() + t.onnx + _canonical(t.metadata))
    version = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest.hexdigest()[:10]}"

    for h, t in trained.items():
        horizon_dir = out / version / h
        horizon_dir.mkdir(parents=True, exist_ok=True)
        (horizon_dir / MODEL_FILE).write_bytes(t.onnx)
        (horizon_dir / METADATA_FILE).write_bytes(_canonical({"version": version, **t.metadata}))
    summary = {"version": version, "horizons": {h: t.metadata["metrics"] for h, t in trained.items()}}
    (out / version / METRICS_FILE).write_bytes(_canonical(summary))
    promote(out, version)
    log.info("model promoted", version=version, out_dir=str(out))
    return version
