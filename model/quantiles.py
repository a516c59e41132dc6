"""play_range: a quantile model of a video's final views, and the ranges it is reported in.

Three gradient-boosted regressors (pinball loss at 10, 50 and 90 %) learn log10(views at the end of
the label window T + 1) from the same features as the classifier; their ONNX graphs are merged into
one model with a single `quantiles` output (n, 3), so the stream makes one extra call per batch. The
10–90 % interval is then named the way seed 000's /predict does ("1w-10w", "10w+", "100w+").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from model.classifiers import TARGET_OPSET, ExportParityError, floor_float32
from model.onnx_io import INPUT_NAME, QUANTILE_OUTPUT, make_session, predict_quantiles

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
RANGE_EDGES: tuple[int, ...] = (0, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
"""Boundaries of the reported view ranges: 0, 1千, 1w, 10w, 100w, 1000w."""
OPEN_FROM = 100_000
"""From 10w views on a range is open-ended ("10w+", "100w+"): the upper end is where a quantile
model is least reliable and matters least."""
QUANTILE_PARAMS: dict[str, Any] = {
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "early_stopping": False,
}
PARITY_ATOL_LOG10 = 1e-4


def fit_quantiles(X: npt.NDArray[np.float32], final_views: npt.NDArray[np.float64], seed: int) -> list[Any]:
    """One HistGradientBoostingRegressor per quantile on log10(final views + 1)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    target = np.log10(final_views + 1.0)
    models = []
    for q in QUANTILES:
        reg = HistGradientBoostingRegressor(
            loss="quantile", quantile=q, **QUANTILE_PARAMS, random_state=seed
        ).fit(X, target)
        for stage in reg._predictors:  # float32 thresholds, as for the classifier (model.classifiers)
            for predictor in stage:
                predictor.nodes["num_threshold"] = floor_float32(predictor.nodes["num_threshold"])
        models.append(reg)
    return models


def predict_log10(models: list[Any], X: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """scikit-learn's (n, 3) log10 quantiles, sorted per row like the served ones."""
    return np.sort(np.column_stack([m.predict(X) for m in models]), axis=1)


def export_quantiles(models: list[Any], n_features: int) -> bytes:
    """The regressors as one ONNX graph: input `X`, output `quantiles` (n, 3) in log10 views."""
    from onnx import TensorProto, compose, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    nodes, inits, outputs = [], [], []
    opsets = None
    for i, reg in enumerate(models):
        onx = convert_sklearn(
            reg,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=TARGET_OPSET,
            name=f"q{i}",
        )
        onx = compose.add_prefix(onx, f"q{i}_", rename_inputs=False)
        nodes += list(onx.graph.node)
        inits += list(onx.graph.initializer)
        outputs.append(onx.graph.output[0].name)
        opsets = onx.opset_import
    nodes.append(helper.make_node("Concat", outputs, [QUANTILE_OUTPUT], axis=1, name="concat"))
    graph = helper.make_graph(
        nodes,
        "hotvideo_play_range",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(QUANTILE_OUTPUT, TensorProto.FLOAT, [None, len(models)])],
        initializer=inits,
    )
    merged = helper.make_model(graph, opset_imports=opsets, producer_name="hotvideo")
    return bytes(merged.SerializeToString())


def check_quantile_parity(models: list[Any], onnx: bytes, X: npt.NDArray[np.float32]) -> float:
    """Max |log10 quantile ONNX - scikit-learn| on X; raise above PARITY_ATOL_LOG10."""
    diff = float(np.max(np.abs(predict_quantiles(make_session(onnx), X) - predict_log10(models, X))))
    if diff > PARITY_ATOL_LOG10:
        raise ExportParityError(f"play_range ONNX differs from scikit-learn: max |Δlog10| = {diff:.3g}")
    return diff


def _name(views: int) -> str:
    if views >= 10_000:
        return f"{views // 10_000}w"
    return f"{views // 1_000}千" if views >= 1_000 else str(views)


def play_range(q10_log10: float, q90_log10: float) -> str:
    """The 10–90 % interval of final views as a range of RANGE_EDGES: "1千-10w", "10w+", "100w+"."""
    low_views, high_views = 10.0**q10_log10 - 1.0, 10.0**q90_log10 - 1.0
    low = max(edge for edge in RANGE_EDGES if edge <= max(low_views, 0.0))
    if low >= OPEN_FROM:
        return f"{_name(low)}+"
    high = next((edge for edge in RANGE_EDGES if edge > high_views), None)
    return f"{_name(low)}+" if high is None else f"{_name(low)}-{_name(high)}"


def range_bounds(name: str) -> tuple[float, float]:
    """Inverse of `play_range`: the [low, high) views a range name stands for."""
    by_name = {_name(edge): edge for edge in RANGE_EDGES}
    if name.endswith("+"):
        return float(by_name[name[:-1]]), float("inf")
    low, high = name.split("-")
    return float(by_name[low]), float(by_name[high])


def quantile_metrics(
    q_log10: npt.NDArray[np.float64], final_views: npt.NDArray[np.float64]
) -> dict[str, Any]:
    """How well the intervals and ranges fit held-out final views (NaN targets skipped)."""
    known = ~np.isnan(final_views)
    q, views = q_log10[known], final_views[known]
    if not len(views):
        return {"n": 0}
    target = np.log10(views + 1.0)
    pinball = [
        float(np.mean(np.maximum(tau * (target - q[:, i]), (tau - 1) * (target - q[:, i]))))
        for i, tau in enumerate(QUANTILES)
    ]
    hits = 0
    for (lo, _, hi), v in zip(q, views, strict=True):
        low, high = range_bounds(play_range(lo, hi))
        hits += int(low <= v < high)
    return {
        "n": len(views),
        "coverage_10_90": float(np.mean((q[:, 0] <= target) & (target <= q[:, 2]))),
        "median_abs_log10_error": float(np.median(np.abs(target - q[:, 1]))),
        "pinball_loss": pinball,
        "play_range_hit_rate": hits / len(views),
    }
