"""Versioned model artifacts on disk and the onnxruntime bundle the stream scores with.

Layout: `<model_dir>/<version>/<horizon>/{model.onnx,metadata.json}`, `<model_dir>/<version>/metrics.json`
and `<model_dir>/PROMOTED` holding the version to serve. Serving needs only onnxruntime (no
scikit-learn, no skl2onnx), and a worker picks up a newly promoted version without a restart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from core.logs import get_logger
from model.features import FEATURE_NAMES
from model.onnx_io import make_session, predict_proba, predict_quantiles
from model.quantiles import play_range

log = get_logger(__name__)

PROMOTED_FILE = "PROMOTED"
MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.json"
PLAY_RANGE_FILE = "play_range.onnx"


class ModelRegistryError(RuntimeError):
    """No usable promoted model: the message says what to do about it."""


def promote(model_dir: Path, version: str) -> None:
    """Point PROMOTED at `version`, atomically so a reader never sees half a name."""
    if not (model_dir / version).is_dir():
        raise ModelRegistryError(f"cannot promote {version}: {model_dir / version} does not exist")
    tmp = model_dir / f".{PROMOTED_FILE}.{os.getpid()}"
    tmp.write_text(version + "\n")
    os.replace(tmp, model_dir / PROMOTED_FILE)


@dataclass(frozen=True)
class _HorizonModel:
    session: ort.InferenceSession
    threshold: float
    levels: tuple[tuple[str, float], ...]
    """(level name, minimum probability), highest first; the last minimum is 0."""
    quantiles: ort.InferenceSession
    """log10 final-view quantiles 10/50/90 % (model.quantiles)"""
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _Loaded:
    version: str
    horizons: dict[str, _HorizonModel]
    stamp: tuple[int, int]


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _read_promoted(model_dir: Path) -> tuple[str, tuple[int, int]]:
    promoted = model_dir / PROMOTED_FILE
    try:
        stamp = _stamp(promoted)  # before reading: a later change makes the next stamp differ
        return promoted.read_text().strip(), stamp
    except FileNotFoundError:
        raise ModelRegistryError(f"no promoted model in {model_dir}: run `hotvideo train` first") from None


def _load(model_dir: Path, version: str, stamp: tuple[int, int]) -> _Loaded:
    version_dir = model_dir / version
    metas = sorted(version_dir.glob(f"*/{METADATA_FILE}")) if version else []
    if not metas:
        raise ModelRegistryError(
            f"{model_dir / PROMOTED_FILE} names version {version!r} but {version_dir} holds no "
            "model: run `hotvideo train` again"
        )
    horizons = {}
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        names = tuple(meta["feature_names"])
        if names != FEATURE_NAMES:
            raise ModelRegistryError(
                f"model {version} ({meta_path.parent.name}) was trained on features {list(names)} "
                f"but this code computes {list(FEATURE_NAMES)}: run `hotvideo train` to retrain"
            )
        horizons[meta["horizon"]] = _HorizonModel(
            session=make_session(meta_path.parent / MODEL_FILE),
            threshold=float(meta["threshold"]),
            levels=tuple((lv["level"], float(lv["min_prob"])) for lv in meta["levels"]),
            quantiles=make_session(meta_path.parent / PLAY_RANGE_FILE),
            metadata=meta,
        )
    return _Loaded(version, horizons, stamp)


class ModelBundle:
    """The promoted version's per-horizon ONNX models, thresholds and levels."""

    def __init__(self, model_dir: Path, loaded: _Loaded) -> None:
        self._dir = model_dir
        self._loaded = loaded  # replaced as a whole on reload, so a reader never mixes versions

    @property
    def version(self) -> str:
        return self._loaded.version

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES  # _load refused any model whose names differ

    @property
    def horizons(self) -> tuple[str, ...]:
        return tuple(self._loaded.horizons)

    def _horizon(self, horizon: str) -> _HorizonModel:
        try:
            return self._loaded.horizons[horizon]
        except KeyError:
            raise KeyError(f"model {self.version} has no horizon {horizon!r}") from None

    def score(self, horizon: str, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(hot) for each row of X (n, len(FEATURE_NAMES))."""
        return predict_proba(self._horizon(horizon).session, X)

    def threshold(self, horizon: str) -> float:
        """Probability at or above which the label is 1 (chosen for F1 at training)."""
        return self._horizon(horizon).threshold

    def level(self, horizon: str, prob: float) -> str:
        """高热 / 中热 / 普通 for a probability."""
        levels = self._horizon(horizon).levels
        return next((name for name, low in levels if prob >= low), levels[-1][0])

    def play_range(self, horizon: str, X: npt.ArrayLike) -> list[str]:
        """Predicted final views per row as a range name ("1w-10w", "10w+"), from the 10–90 % quantiles."""
        q = predict_quantiles(self._horizon(horizon).quantiles, X)
        return [play_range(lo, hi) for lo, _, hi in q]

    def metadata(self, horizon: str) -> dict[str, Any]:
        """The horizon's metadata.json (metrics, training span, parameters)."""
        return self._horizon(horizon).metadata

    def reload_if_changed(self) -> bool:
        """Switch to a newly promoted version; True if it did. Costs one stat() when nothing changed.

        A broken new version is logged and skipped; the current one keeps serving.
        """
        current = self._loaded
        try:
            stamp = _stamp(self._dir / PROMOTED_FILE)
        except OSError:
            return False
        if stamp == current.stamp:
            return False
        try:
            version = (self._dir / PROMOTED_FILE).read_text().strip()
            if version == current.version:
                self._loaded = replace(current, stamp=stamp)
                return False
            self._loaded = _load(self._dir, version, stamp)
        except Exception as exc:  # a worker must outlive a bad promotion
            log.error("promoted model not loaded", error=str(exc), serving=current.version)
            self._loaded = replace(current, stamp=stamp)  # retried once PROMOTED changes again
            return False
        log.info("model reloaded", old=current.version, new=version)
        return True


def load_promoted(model_dir: Path | str) -> ModelBundle:
    """The bundle of the version named in `<model_dir>/PROMOTED`."""
    model_dir = Path(model_dir)
    loaded = _load(model_dir, *_read_promoted(model_dir))
    log.info("model loaded", version=loaded.version, horizons=list(loaded.horizons))
    return ModelBundle(model_dir, loaded)
