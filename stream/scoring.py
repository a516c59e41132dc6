"""Turn due checkpoints into predictions: features from model/, probabilities from the ONNX model."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from hotvideo.events import Prediction, VideoInfo
from model.features import early_metrics, feature_vector
from model.registry import ModelBundle
from stream.checkpoint import Checkpoint


class Scorer:
    """Scores checkpoints in batches, one ONNX call per horizon."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    def predict(self, checkpoints: list[Checkpoint]) -> list[Prediction]:
        """Predictions in the order of `checkpoints`; only `scored` ones reach the model."""
        probs: dict[int, float] = {}
        by_horizon: dict[str, list[int]] = defaultdict(list)
        for i, cp in enumerate(checkpoints):
            if cp.status == "scored":
                by_horizon[cp.horizon].append(i)
        for horizon, idx in by_horizon.items():
            x = np.asarray(
                [
                    feature_vector(checkpoints[i].rows, checkpoints[i].static, checkpoints[i].as_of)
                    for i in idx
                ],
                dtype=np.float32,
            )
            for i, p in zip(idx, self.bundle.score(horizon, x), strict=True):
                probs[i] = float(p)
        now = time.time()
        return [self._prediction(cp, probs.get(i), now) for i, cp in enumerate(checkpoints)]

    def _prediction(self, cp: Checkpoint, prob: float | None, now: float) -> Prediction:
        label = None if prob is None else int(prob >= self.bundle.threshold(cp.horizon))
        hist = cp.history
        return Prediction(
            bvid=cp.bvid,
            horizon=cp.horizon,  # type: ignore[arg-type]
            as_of=cp.as_of,
            status=cp.status,  # type: ignore[arg-type]
            prob=prob,
            label=label,  # type: ignore[arg-type]
            confidence=None if prob is None else max(prob, 1.0 - prob),
            level=None if prob is None else self.bundle.level(cp.horizon, prob),
            model_version=self.bundle.version,
            scored_at=now,
            snapshots_used=len(cp.rows),
            video=None
            if hist is None
            else VideoInfo(
                pubdate=hist.pubdate,
                mid=hist.mid,
                tid=hist.tid,
                tname=hist.tname,
                duration=hist.duration,
                title=hist.title,
                tags=hist.tags,
            ),
            early_metrics=early_metrics(cp.rows, cp.static, cp.as_of) if cp.rows else None,
        )
