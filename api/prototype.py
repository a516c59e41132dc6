"""Seed 000's short payload and the platform artifact (ROC/PR curves, short-payload play ranges).

Seed 000's example body carries only per-view rates, the publish hour and weekday and the duration: no
view counts and no snapshot history, so the promoted model (which needs both) cannot score it.
`hotvideo train` already fits seed 000's prototype on exactly those fields as its second baseline
(`baseline_prototype.onnx`, a calibrated random forest, shipped with every version and evaluated in
metrics.json); the API serves the promoted version's 1 h copy of it, so the short answer always
comes from the same training run as the stream's.

What training does not keep is what the dashboard draws: ROC/PR curves need held-out predictions,
and a play range for the short payload needs final views. `build_artifact` recomputes both from the
training event log, with training's own time-based split, into `<version>/platform.json`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import precision_recall_curve, roc_curve

from core.events import Event
from core.logs import get_logger
from model.classifiers import BASELINE_PROTOTYPE, columns
from model.dataset import build_datasets
from model.labels import DEFAULT_WINDOW_S
from model.onnx_io import make_session, predict_proba
from model.quantiles import play_range
from model.registry import ModelBundle, ModelRegistryError
from model.train import split_by_time

log = get_logger(__name__)

ARTIFACT = "platform.json"
SHORT_MODEL = "baseline_prototype"
SHORT_HORIZON = "1h"
"""The short payload's rates are read as the rates one hour after publication."""
SHORT_FEATURES = BASELINE_PROTOTYPE
"""Seed 000's /predict fields as features, in the order `short_row` encodes them."""
TEST_FRACTION, VAL_FRACTION = 0.25, 0.2
"""model.train's defaults, so the curves are drawn on the videos its metrics.json was measured on."""
CURVE_POINTS = 80


class PlatformArtifactError(RuntimeError):
    """No platform artifact for the promoted version: the message says how to build it."""


def short_row(
    like: float, danmaku: float, reply: float, coin: float, hour: int, weekday: int, duration: int
) -> list[float]:
    """Seed 000's fields encoded as `model.features` encodes them (cyclic hour/weekday, log10 duration)."""
    h, w = 2 * math.pi * hour / 24, 2 * math.pi * weekday / 7
    return [
        like,
        danmaku,
        reply,
        coin,
        math.sin(h),
        math.cos(h),
        math.sin(w),
        math.cos(w),
        math.log10(duration + 1),
    ]


def level_of(prob: float, threshold: float) -> str:
    """The level rule of `model.train`: 高热 from the threshold, 中热 from half of it."""
    return "高热" if prob >= threshold else "中热" if prob >= threshold / 2 else "普通"


class ShortModel:
    """The promoted version's seed-000 prototype (ONNX) with its threshold."""

    def __init__(self, bundle: ModelBundle, model_dir: Path) -> None:
        meta = bundle.metadata(SHORT_HORIZON).get("baselines", {}).get(SHORT_MODEL)
        if meta is None or tuple(meta["features"]) != SHORT_FEATURES:
            raise ModelRegistryError(
                f"model {bundle.version} has no {SHORT_MODEL} on seed 000's fields: "
                "retrain with `hotvideo train`"
            )
        self.version = bundle.version
        self.threshold = float(meta["threshold"])
        self.session = make_session(model_dir / bundle.version / SHORT_HORIZON / meta["file"])

    def prob(self, rows: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(hot) per row of SHORT_FEATURES values."""
        return predict_proba(self.session, rows)


def _thin(xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]) -> list[list[float]]:
    """At most CURVE_POINTS points of a curve, both ends kept: enough to draw it."""
    idx = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), CURVE_POINTS)).round().astype(int))
    return [[round(float(xs[i]), 4), round(float(ys[i]), 4)] for i in idx]


def _play_ranges(levels: list[str], final_views: npt.NDArray[np.float64]) -> dict[str, str]:
    """Per level, the middle half (25–75 %) of the final views of held-out videos at that level,
    named like the stream's play_range (model.quantiles): the short payload has no views to regress on."""
    out = {}
    for level in ("高热", "中热", "普通"):
        views = final_views[(np.asarray(levels) == level) & ~np.isnan(final_views)]
        if len(views):
            q25, q75 = np.log10(np.percentile(views, [25, 75]) + 1.0)
            out[level] = play_range(float(q25), float(q75))
    return out


def build_artifact(events: Iterable[Event], bundle: ModelBundle, model_dir: Path, source: str) -> Path:
    """Score the promoted version on the held-out videos of its training log; write `platform.json`."""
    datasets = build_datasets(events, DEFAULT_WINDOW_S)
    curves: dict[str, Any] = {}
    for h in bundle.horizons:
        held = split_by_time(datasets[h], TEST_FRACTION, VAL_FRACTION)[2]
        prob = bundle.score(h, held.X)
        fpr, tpr, _ = roc_curve(held.y, prob)
        precision, recall, _ = precision_recall_curve(held.y, prob)
        curves[h] = {"roc": _thin(fpr, tpr), "pr": _thin(recall[::-1], precision[::-1]), "n_test": len(held)}
    short = ShortModel(bundle, model_dir)
    held = split_by_time(datasets[SHORT_HORIZON], TEST_FRACTION, VAL_FRACTION)[2]
    levels = [level_of(float(p), short.threshold) for p in short.prob(held.X[:, columns(SHORT_FEATURES)])]
    artifact = {
        "model_version": bundle.version,
        "source": source,
        "curves": curves,
        "short_play_range": _play_ranges(levels, held.final_views),
    }
    path = model_dir / bundle.version / ARTIFACT
    path.write_text(json.dumps(artifact, ensure_ascii=False, indent=1))
    log.info("platform artifact written", path=str(path))
    return path


def load_artifact(model_dir: Path, version: str) -> dict[str, Any]:
    """The version's platform artifact."""
    path = model_dir / version / ARTIFACT
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlatformArtifactError(
            f"no {ARTIFACT} for model {version}: run `hotvideo serve --train-events LOG` with the event "
            "log the model was trained on"
        ) from None
    return data
