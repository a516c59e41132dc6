"""onnxruntime sessions and the two model outputs the project serves: P(hot) and view quantiles.

Serving needs only this module and onnxruntime (no scikit-learn, no skl2onnx).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

INPUT_NAME = "X"
PROB_OUTPUT = "probabilities"
QUANTILE_OUTPUT = "quantiles"


def make_session(model: bytes | Path) -> ort.InferenceSession:
    """One single-threaded, sequential CPU session: several workers share the cores (NOTES.md)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def _input(session: ort.InferenceSession, X: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """X as the contiguous float32 matrix the session's input declares (width checked here: onnxruntime's
    own message names no feature list)."""
    x = np.ascontiguousarray(X, dtype=np.float32)
    width = session.get_inputs()[0].shape[1]
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"expected shape (n, {width}), got {x.shape}")
    return x


def predict_proba(session: ort.InferenceSession, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """P(hot) per row; rows follow the model's feature list (FEATURE_NAMES for the served model)."""
    (probs,) = session.run([PROB_OUTPUT], {INPUT_NAME: _input(session, X)})
    return np.asarray(probs[:, 1], dtype=np.float64)


def predict_quantiles(session: ort.InferenceSession, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(n, 3) log10 final-view quantiles, sorted per row (quantile regressors can cross)."""
    (q,) = session.run([QUANTILE_OUTPUT], {INPUT_NAME: _input(session, X)})
    return np.sort(np.asarray(q, dtype=np.float64), axis=1)
