"""Classification metrics with paired bootstrap confidence intervals, in plain numpy.

A thousand resamples of seven metrics for three models, two samples and three horizons would take
minutes through scikit-learn's validating metric functions; one sort per resample takes seconds. The
resamples are paired (the same rows for every model), so the interval of a difference between two
models is meaningful, not just the two separate intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

METRIC_NAMES: tuple[str, ...] = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "brier")
CONFIDENCE = 0.95

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _ranking(y: IntArray, prob: FloatArray) -> tuple[float, float]:
    """(ROC-AUC, average precision) exactly as scikit-learn computes them (ties included); NaN
    unless both classes are present."""
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return float("nan"), float("nan")
    order = np.argsort(-prob, kind="stable")
    scores, hits = prob[order], y[order]
    last = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]
    tps = np.cumsum(hits)[last].astype(np.float64)
    fps = last + 1 - tps
    tpr = np.r_[0.0, tps / positives]
    fpr = np.r_[0.0, fps / (len(y) - positives)]
    roc_auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    pr_auc = float(np.sum(np.diff(tpr) * tps / (tps + fps)))
    return roc_auc, pr_auc


def point_metrics(y: IntArray, prob: FloatArray, threshold: float) -> dict[str, float]:
    """The seven metrics of METRIC_NAMES; labels are prob >= threshold."""
    pred = prob >= threshold
    tp = float(np.sum(pred & (y == 1)))
    predicted, actual = float(pred.sum()), float(y.sum())
    roc_auc, pr_auc = _ranking(y, prob)
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "accuracy": float(np.mean(pred == (y == 1))) if len(y) else float("nan"),
        "precision": tp / predicted if predicted else 0.0,
        "recall": tp / actual if actual else 0.0,
        "f1": 2 * tp / (predicted + actual) if predicted + actual else 0.0,
        "brier": float(np.mean((prob - y) ** 2)) if len(y) else float("nan"),
    }


def _none_if_nan(x: float) -> float | None:
    return None if np.isnan(x) else x


def compare(
    y: IntArray,
    probs: Mapping[str, FloatArray],
    thresholds: Mapping[str, float],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str | None = None,
) -> dict[str, Any]:
    """Per model: n, positives, each metric and its 95 % percentile-bootstrap interval (`ci95`).

    With `reference`, every other model also gets `diff_vs_<reference>`: the interval of its metric
    minus the reference's on the same resamples.
    """
    n = len(y)
    rng = np.random.default_rng(seed)
    draws = {name: np.empty((n_boot, len(METRIC_NAMES))) for name in probs}
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for name, prob in probs.items():
            draws[name][b] = list(point_metrics(y[idx], prob[idx], thresholds[name]).values())
    lo_q, hi_q = 50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)

    def interval(samples: FloatArray) -> list[float | None]:
        finite = samples[np.isfinite(samples)]
        if not len(finite):
            return [None, None]
        return [float(np.percentile(finite, lo_q)), float(np.percentile(finite, hi_q))]

    out: dict[str, Any] = {}
    for name, prob in probs.items():
        block: dict[str, Any] = {"n": n, "positives": int(y.sum()), "threshold": thresholds[name]}
        block |= {k: _none_if_nan(v) for k, v in point_metrics(y, prob, thresholds[name]).items()}
        block["ci95"] = {m: interval(draws[name][:, i]) for i, m in enumerate(METRIC_NAMES)}
        if reference is not None and name != reference and n_boot:
            diff = draws[name] - draws[reference]
            block[f"diff_vs_{reference}"] = {m: interval(diff[:, i]) for i, m in enumerate(METRIC_NAMES)}
        out[name] = block
    return out
