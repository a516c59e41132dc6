"""The classifiers: candidates on the full features, the two baselines, calibration, ONNX export.

Every classifier here ends as a scikit-learn model that skl2onnx converts and onnxruntime scores
within 1e-4 of scikit-learn: logistic regression has its scaler folded into the coefficients (the
calibration converter mishandles a Pipeline), tree thresholds are snapped to float32, and the
sigmoid calibrator wraps the fitted model itself (skl2onnx has no converter for FrozenEstimator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from model.features import FEATURE_NAMES
from model.onnx_io import INPUT_NAME, make_session, predict_proba

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
RF_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "min_samples_leaf": 5,
    "max_features": "sqrt",
    "class_weight": "balanced",
    "n_jobs": 1,
}
LR_PARAMS: dict[str, Any] = {"C": 1.0, "class_weight": "balanced", "max_iter": 5000}

BASELINE_SH = ("log_view",)
"""Baseline A (Szabo–Huberman): early popularity predicts later popularity, log views at Δt alone."""
BASELINE_PROTOTYPE = (
    "like_per_view",
    "danmaku_per_view",
    "reply_per_view",
    "coin_per_view",
    "pub_hour_sin",
    "pub_hour_cos",
    "pub_weekday_sin",
    "pub_weekday_cos",
    "log_duration",
)
"""Baseline B: the inputs of seed 000's /predict (点赞率, 弹幕率, 评论率, 投币率, hour, weekday, duration)."""

Classifier: TypeAlias = LogisticRegression | RandomForestClassifier | HistGradientBoostingClassifier


class ExportParityError(RuntimeError):
    """The ONNX model does not score like the scikit-learn model it was converted from."""


def columns(names: Sequence[str]) -> list[int]:
    """Positions of feature names in FEATURE_NAMES."""
    return [FEATURE_NAMES.index(name) for name in names]


def fit_logistic(X: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int) -> LogisticRegression:
    """Logistic regression on standardised features, returned with the scaling folded in so that it
    takes raw features (one estimator: what skl2onnx's calibration converter handles)."""
    scaler = StandardScaler().fit(X)
    lr = LogisticRegression(**LR_PARAMS, random_state=seed).fit(scaler.transform(X), y)
    lr.coef_ = lr.coef_ / scaler.scale_
    lr.intercept_ = lr.intercept_ - lr.coef_ @ scaler.mean_
    return lr


def fit_forest(X: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int) -> RandomForestClassifier:
    clf = RandomForestClassifier(**RF_PARAMS, random_state=seed).fit(X, y)
    for tree in clf.estimators_:
        thresholds = tree.tree_.threshold  # a view of the tree's nodes: assigning writes through
        thresholds[:] = floor_float32(thresholds)
    return clf


def fit_boosting(
    X: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int
) -> HistGradientBoostingClassifier:
    clf = HistGradientBoostingClassifier(**HGB_PARAMS, random_state=seed).fit(X, y)
    snap_thresholds_to_float32(clf)
    return clf


CANDIDATES: dict[str, Callable[[npt.NDArray[np.float32], npt.NDArray[np.int64], int], Classifier]] = {
    "logistic_regression": fit_logistic,
    "random_forest": fit_forest,
    "hist_gradient_boosting": fit_boosting,
}
"""Model families tried on the full features; the best PR-AUC on the validation period wins."""
CANDIDATE_PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": LR_PARAMS,
    "random_forest": RF_PARAMS,
    "hist_gradient_boosting": HGB_PARAMS,
}


def floor_float32(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each value lowered to the largest float32 at or below it.

    scikit-learn splits at float64 midpoints between training values; ONNX stores thresholds as
    float32, rounded to nearest. When two float32 feature values are neighbours (discrete features
    such as hours_since_last do this) the midpoint can round up onto the upper value and send it the
    other way: a 0.016 probability gap was seen on a simulated world. Features are float32, and for a
    float32 x, x <= t exactly when x <= floor32(t), so this changes no scikit-learn prediction and
    makes the ONNX comparisons identical.
    """
    t32 = t.astype(np.float32)
    t32 = np.where(t32 > t, np.nextafter(t32, np.float32(-np.inf)), t32)
    return t32.astype(np.float64)


def snap_thresholds_to_float32(clf: HistGradientBoostingClassifier) -> None:
    """`floor_float32` on every split of a fitted HistGradientBoosting model, in place."""
    for stage in clf._predictors:
        for predictor in stage:
            predictor.nodes["num_threshold"] = floor_float32(predictor.nodes["num_threshold"])


def calibrate(
    clf: Classifier, X: npt.NDArray[np.float32], y: npt.NDArray[np.int64]
) -> CalibratedClassifierCV:
    """Platt (sigmoid) calibration of a fitted model on natural-distribution rows.

    The models are fitted on seed 001's matched sample with balanced class weights, so their raw
    scores over-state P(hot) many times; the sigmoid maps them back to frequencies of the natural
    stream. It is monotone, so ranking metrics (ROC-AUC, PR-AUC) do not move.
    """
    everything = np.arange(len(y))
    one_fold = [(everything, everything)]  # the model is frozen: no folds, the sigmoid sees every row
    cal = CalibratedClassifierCV(FrozenEstimator(clf), method="sigmoid", cv=one_fold).fit(X, y)
    cal.estimator = clf  # skl2onnx knows no FrozenEstimator; the fitted model predicts the same
    for fitted in cal.calibrated_classifiers_:
        fitted.estimator = clf
    return cal


def export_onnx(model: Any, n_features: int = len(FEATURE_NAMES)) -> bytes:
    """A classifier as ONNX: one float input `X`, a plain `probabilities` tensor (no zipmap).

    Linear models are computed in double precision behind a Cast: float32 matrix products round
    differently with the batch size (3.6e-7 was seen), and a replay that batches checkpoints
    differently must give the very same probabilities. Trees compare float32 values either way.
    """
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn  # export-time only: serving never imports skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    linear = isinstance(getattr(model, "estimator", model), LogisticRegression)
    inner = f"{INPUT_NAME}_double" if linear else INPUT_NAME
    tensor = DoubleTensorType if linear else FloatTensorType
    onx = convert_sklearn(
        model,
        initial_types=[(inner, tensor([None, n_features]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
        name="hotvideo",  # skl2onnx would draw a random graph name: the artifact hash must not move
    )
    if linear:
        graph = onx.graph
        graph.node.insert(0, helper.make_node("Cast", [INPUT_NAME], [inner], to=TensorProto.DOUBLE))
        del graph.input[:]
        graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features]))
    return bytes(onx.SerializeToString())


def check_parity(model: Any, onnx: bytes, X: npt.NDArray[np.float32], threshold: float) -> float:
    """Max |P_onnx - P_sklearn| on X; raise unless ≤ PARITY_ATOL with identical labels."""
    expected = model.predict_proba(X)[:, 1]
    got = predict_proba(make_session(onnx), X)
    diff = float(np.max(np.abs(got - expected))) if len(X) else 0.0
    flips = int(np.sum((got >= threshold) != (expected >= threshold)))
    if diff > PARITY_ATOL or flips:
        raise ExportParityError(
            f"ONNX export differs from scikit-learn on {len(X)} held-out rows: "
            f"max |Δp| = {diff:.3g} (limit {PARITY_ATOL}), {flips} labels flipped at {threshold:.4f}"
        )
    return diff
