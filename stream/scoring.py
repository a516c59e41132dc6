"""Turn due checkpoints into predictions: features from model/, probabilities from the ONNX model."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from core.events import Prediction, VideoInfo
from model.features import early_metrics, feature_vector
from model.history import ProfileLookup
from model.registry import ModelBundle
from stream.checkpoint import Checkpoint


class Scorer:
    """Scores checkpoints in batches, one ONNX call per horizon (and one for play_range).

    `profiles(mid, as_of)` gives the uploader's profile as of the checkpoint (the stream's profile
    table, through `model.history.UpHistory.at`); without it every video scores with has_profile 0.
    """

    def __init__(self, bundle: ModelBundle, profiles: ProfileLookup | None = None) -> None:
        self.bundle = bundle
        self.profiles = profiles

    def features(self, cp: Checkpoint) -> list[float]:
        """The checkpoint's feature vector: the very function and inputs training uses."""
        mid = None if cp.history is None else cp.history.mid
        up = None if self.profiles is None or mid is None else self.profiles(mid, cp.as_of)
        return feature_vector(cp.rows, cp.static, cp.as_of, up)

    def predict(self, checkpoints: list[Checkpoint]) -> list[Prediction]:
        """Predictions in the order of `checkpoints`; only `scored` ones reach the model."""
        probs: dict[int, float] = {}
        ranges: dict[int, str] = {}
        by_horizon: dict[str, list[int]] = defaultdict(list)
        for i, cp in enumerate(checkpoints):
            if cp.status == "scored":
                by_horizon[cp.horizon].append(i)
        for horizon, idx in by_horizon.items():
            x = np.asarray([self.features(checkpoints[i]) for i in idx], dtype=np.float32)
            scores = self.bundle.score(horizon, x)
            names = self.bundle.play_range(horizon, x)
            for i, p, name in zip(idx, scores, names, strict=True):
                probs[i] = float(p)
                ranges[i] = name
        now = time.time()
        return [self._prediction(cp, probs.get(i), ranges.get(i), now) for i, cp in enumerate(checkpoints)]

    def _prediction(
        self, cp: Checkpoint, prob: float | None, play_range: str | None, now: float
    ) -> Prediction:
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
            play_range=play_range,
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
