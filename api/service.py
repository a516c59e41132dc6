"""What the routes call: the stores, the promoted model and its platform artifact, behind one object.

The model is loaded on first use and follows promotions (`ModelBundle.reload_if_changed`), so a
server started before `hotvideo train` serves the new model without a restart, like the worker.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from api.facts import Facts
from api.prototype import (
    ARTIFACT,
    SHORT_FEATURES,
    SHORT_HORIZON,
    SHORT_MODEL,
    PlatformArtifactError,
    ShortModel,
    level_of,
    load_artifact,
    short_row,
)
from api.schemas import HistoryPayload, PredictOut, ShortPayload
from model.features import UpStats, VideoStatic, feature_vector
from model.registry import METRICS_FILE, PROMOTED_FILE, ModelBundle, load_promoted
from sink.danmaku import DanmakuStore
from sink.redis_store import RedisStore
from sink.sql import SqlStore, video, video_early_metrics


@dataclass
class Platform:
    """The API's dependencies; `hotvideo serve` builds one from the settings, tests from fixtures."""

    sql: SqlStore
    redis: RedisStore
    model_dir: Path
    facts: Facts = field(init=False)
    danmaku: DanmakuStore = field(init=False)
    _bundle: ModelBundle | None = field(default=None, init=False)
    _short: ShortModel | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.facts = Facts(self.sql.engine)
        self.danmaku = DanmakuStore(self.sql.engine)

    def bundle(self) -> ModelBundle:
        """The promoted model, loaded once and reloaded when PROMOTED changes."""
        with self._lock:
            if self._bundle is None:
                self._bundle = load_promoted(self.model_dir)
            else:
                self._bundle.reload_if_changed()
            return self._bundle

    def short_model(self) -> ShortModel:
        """The promoted version's seed-000 prototype, reloaded with the bundle."""
        bundle = self.bundle()
        with self._lock:
            if self._short is None or self._short.version != bundle.version:
                self._short = ShortModel(bundle, self.model_dir)
            return self._short

    def predict_short(self, body: ShortPayload) -> PredictOut:
        """Seed 000's short payload, scored by the promoted version's prototype baseline."""
        model = self.short_model()
        row = short_row(
            body.like_rate,
            body.danmaku_rate,
            body.reply_rate,
            body.coin_rate,
            body.hour,
            body.weekday,
            body.duration,
        )
        prob = float(model.prob([row])[0])
        level = level_of(prob, model.threshold)
        try:
            ranges = load_artifact(self.model_dir, model.version)["short_play_range"]
        except PlatformArtifactError:
            ranges = {}
        return PredictOut(
            prediction=1 if prob >= model.threshold else 0,
            confidence=max(prob, 1 - prob),
            level=level,
            play_range=ranges.get(level),
            prob=prob,
            horizon=SHORT_HORIZON,
            model="short-prototype",
            model_version=model.version,
        )

    def predict_history(self, body: HistoryPayload) -> PredictOut:
        """A snapshot history at one horizon, through model.features and the promoted ONNX model."""
        bundle = self.bundle()
        h = body.horizon
        as_of = body.pubdate + int(bundle.metadata(h)["horizon_s"])
        rows = sorted(
            (s.ts, s.view, s.like, s.coin, s.favorite, s.reply, s.danmaku, s.share) for s in body.snapshots
        )
        static = VideoStatic(
            pubdate=body.pubdate, duration=body.duration, tid=body.tid, follower=body.follower
        )
        up = None if body.up is None else UpStats(**body.up.model_dump())
        x = np.asarray([feature_vector(rows, static, as_of, up)], dtype=np.float32)
        prob = float(bundle.score(h, x)[0])
        return PredictOut(
            prediction=1 if prob >= bundle.threshold(h) else 0,
            confidence=max(prob, 1 - prob),
            level=bundle.level(h, prob),
            play_range=bundle.play_range(h, x)[0],
            prob=prob,
            horizon=h,
            model="onnx",
            model_version=bundle.version,
        )

    def model_metrics(self) -> dict[str, Any]:
        """metrics.json of every version under MODEL_DIR, with curves and the short model when built."""
        promoted_file = self.model_dir / PROMOTED_FILE
        promoted = promoted_file.read_text().strip() if promoted_file.exists() else None
        versions = []
        for path in sorted(self.model_dir.glob(f"*/{METRICS_FILE}"), reverse=True):
            version = path.parent.name
            art_path = path.parent / ARTIFACT
            art = json.loads(art_path.read_text()) if art_path.exists() else None
            horizons = json.loads(path.read_text())["horizons"]
            versions.append(
                {
                    "version": version,
                    "promoted": version == promoted,
                    "horizons": horizons,
                    "curves": None if art is None else art["curves"],
                    "short_model": {
                        "name": SHORT_MODEL,
                        "horizon": SHORT_HORIZON,
                        "features": list(SHORT_FEATURES),
                        "metrics": horizons.get(SHORT_HORIZON, {}).get(SHORT_MODEL),
                    },
                }
            )
        return {"promoted": promoted, "versions": versions}

    def video(self, bvid: str) -> dict[str, Any] | None:
        """The video row, its early metrics per checkpoint, its stored predictions and the live hash."""
        with self.sql.engine.connect() as conn:
            row = conn.execute(select(video).where(video.c.bvid == bvid)).mappings().first()
            metrics = (
                conn.execute(
                    select(video_early_metrics)
                    .where(video_early_metrics.c.bvid == bvid)
                    .order_by(video_early_metrics.c.delta_t)
                )
                .mappings()
                .all()
            )
        live = self.redis.video(bvid)
        predictions = self.sql.prediction_rows_for(bvid)
        if row is None and not live and not predictions:
            return None
        info = None if row is None else {**row, "pub_time": row["pub_time"].isoformat() + "Z"}
        return {
            "bvid": bvid,
            "video": info,
            "early_metrics": [dict(m) for m in metrics],
            "predictions": predictions,
            "live": live,
        }

    def titles(self, bvids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """bvid -> (title, zone) for the hot list."""
        if not bvids:
            return {}
        stmt = select(video.c.bvid, video.c.title, video.c.category_name).where(video.c.bvid.in_(bvids))
        with self.sql.engine.connect() as conn:
            return {b: (t, z) for b, t, z in conn.execute(stmt).all()}
