"""Hand-made predictions (with their video info and early metrics) for the sink and API tests."""

from __future__ import annotations

from typing import Any, get_args

from core.events import EarlyMetrics, Prediction, VideoInfo
from core.reference import HORIZONS, Horizon

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ALL_HORIZONS: tuple[Horizon, ...] = get_args(Horizon)
T0 = 1_700_000_000
"""A publication time for test videos (2023-11-14 22:13:20 UTC)."""


def bvid(i: int) -> str:
    """The i-th valid test bvid."""
    chars = ""
    for _ in range(10):
        i, r = divmod(i, 58)
        chars = B58[r] + chars
    return "BV" + chars


def make_prediction(
    i: int,
    horizon: Horizon = "1h",
    *,
    prob: float | None = 0.5,
    as_of: int | None = None,
    model_version: str = "m1",
    title: str | None = "title",
    **changes: Any,
) -> Prediction:
    """A prediction for video `i` published at T0 + i, with its video info and early metrics."""
    fields: dict[str, Any] = {
        "bvid": bvid(i),
        "horizon": horizon,
        "as_of": T0 + i + HORIZONS[horizon] if as_of is None else as_of,
        "status": "scored" if prob is not None else "insufficient_data",
        "prob": prob,
        "label": None if prob is None else int(prob >= 0.5),
        "confidence": None if prob is None else max(prob, 1 - prob),
        "level": None if prob is None else "普通",
        "play_range": None if prob is None else "1w+",
        "model_version": model_version,
        "scored_at": T0 + 86400.5,
        "snapshots_used": 3,
        "video": VideoInfo(
            pubdate=T0 + i,
            mid=1000 + i,
            tid=17,
            tname="单机游戏",
            duration=300,
            title=title,
            tags=["游戏", "攻略"],
        ),
        "early_metrics": EarlyMetrics(
            view=100 * (i + 1),
            like=10,
            coin=5,
            favorite=3,
            reply=2,
            danmaku=1,
            share=1,
            view_rate=12.5,
            engagement_ratio=0.27,
        ),
    }
    return Prediction(**(fields | changes))
