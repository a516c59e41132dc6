"""Dataset building, training, ONNX export and its parity gate, and the model registry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from core.events import Event, HotListEntry, UpProfile
from core.reference import MAIN_ZONES
from model.classifiers import ExportParityError, check_parity, export_onnx, snap_thresholds_to_float32
from model.dataset import Dataset, build_datasets
from model.features import FEATURE_NAMES, VideoStatic, feature_vector
from model.registry import ModelRegistryError, load_promoted, promote
from model.train import TrainingError, best_f1_threshold, train
from tests.harness.factories import T0, hot, snap

DAY = 86_400
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def bvid(i: int) -> str:
    """A valid, distinct BV id per integer."""
    chars = []
    for _ in range(10):
        i, r = divmod(i, 58)
        chars.append(BASE58[r])
    return "BV" + "".join(reversed(chars))


A, B, C, D = (bvid(i) for i in range(4))


def hand_made_events() -> list[Event]:
    """A: duplicate ts and a follower change; B: hot at 2 h; C: first seen at 90 min; D: too young."""
    return [
        snap(10, 100, bvid=A),
        snap(30, 300, bvid=A),
        snap(30, 999, bvid=A),  # same ts again: the first one received wins
        snap(50, 500, bvid=A),
        snap(120, 900, bvid=A, follower=5000),
        snap(20, 200, bvid=B),
        snap(90, 800, bvid=C),
        hot(120, bvid=B),
        snap(10, 50, bvid=D, pubdate=T0 + 36 * 3600),
        UpProfile(mid=42, ts=T0 + 2 * DAY, follower=1, archive_count=1, total_view=1),
    ]


def test_dataset_rows_are_the_stream_features_cut_at_each_horizon() -> None:
    ds = build_datasets(hand_made_events(), window_s=DAY)
    one, three = ds["1h"], ds["3h"]
    assert list(one.bvids) == [A, B]
    assert list(one.y) == [0, 1]
    assert one.excluded == {"unknown_label": 1, "already_hot": 0, "insufficient_data": 1}
    assert three.excluded == {"unknown_label": 1, "already_hot": 1, "insufficient_data": 0}
    assert list(three.bvids) == [A, C]

    rows_1h = [
        (T0 + 600, 100, 5, 1, 1, 0, 0, 0),
        (T0 + 1800, 300, 15, 3, 3, 1, 2, 1),
        (T0 + 3000, 500, 25, 5, 6, 2, 3, 1),
    ]
    expected = feature_vector(rows_1h, VideoStatic(T0, 300, 4, 1000), T0 + 3600)
    assert one.X.dtype == np.float32 and one.X.shape == (2, len(FEATURE_NAMES))
    np.testing.assert_array_equal(one.X[0], np.array(expected, dtype=np.float32))
    follower_3h = three.X[0, FEATURE_NAMES.index("log_follower")]
    assert follower_3h == pytest.approx(np.log10(5001), rel=1e-6)  # as of 3 h, not as of 1 h
    assert list(one.pubdates) == [T0, T0] and list(one.tids) == [4, 4]


def test_hot_sources_restrict_positives_not_the_already_hot_rule() -> None:
    ds = build_datasets(hand_made_events(), window_s=DAY, hot_sources={"weekly"})
    assert list(ds["1h"].y) == [0, 0]
    assert ds["3h"].excluded["already_hot"] == 1


def test_empty_log_gives_empty_datasets() -> None:
    ds = build_datasets([], window_s=DAY)
    assert set(ds) == {"1h", "3h", "6h"}
    assert ds["1h"].X.shape == (0, len(FEATURE_NAMES))


def test_best_f1_threshold_sits_between_scores() -> None:
    y = np.array([1, 1, 0, 1, 0])
    assert best_f1_threshold(y, np.array([0.9, 0.8, 0.7, 0.6, 0.1])) == pytest.approx(0.35)
    assert best_f1_threshold(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.2])) == pytest.approx(0.35)


def synthetic(horizon: str, n: int, seed: int) -> Dataset:
    """Random features where log_view and like_per_view drive P(hot); ~15 % positives."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    logit = 2.5 * X[:, FEATURE_NAMES.index("log_view")] + X[:, FEATURE_NAMES.index("like_per_view")]
    y = (rng.random(n) < 1 / (1 + np.exp(3 - logit))).astype(np.int64)
    return Dataset(
        horizon,
        X,
        y,
        np.array([bvid(i) for i in range(n)]),
        T0 + 120 * np.arange(n, dtype=np.int64),
        rng.choice(MAIN_ZONES, n).astype(np.int64),
        10 ** (3 + X[:, FEATURE_NAMES.index("log_view")].astype(np.float64) + 0.3 * rng.normal(size=n)),
    )


@pytest.fixture(scope="module")
def datasets() -> dict[str, Dataset]:
    return {h: synthetic(h, 800, seed) for seed, h in enumerate(("1h", "3h", "6h"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, datasets: dict[str, Dataset]) -> Path:
    out = tmp_path_factory.mktemp("models")
    train(datasets, out, seed=0, n_boot=50)
    return out


@pytest.mark.slow
def test_train_writes_a_promoted_version(trained: Path) -> None:
    version = (trained / "PROMOTED").read_text().strip()
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{10}", version)
    summary = json.loads((trained / version / "metrics.json").read_text())
    assert summary["version"] == version and set(summary["horizons"]) == {"1h", "3h", "6h"}
    for h in ("1h", "3h", "6h"):
        assert (trained / version / h / "model.onnx").stat().st_size > 0
        meta = json.loads((trained / version / h / "metadata.json").read_text())
        assert meta["feature_names"] == list(FEATURE_NAMES)
        assert (meta["version"], meta["horizon"]) == (version, h)
        thr = meta["threshold"]
        assert [lv["min_prob"] for lv in meta["levels"]] == [thr, thr / 2, 0.0]
        m = meta["metrics"]
        assert m["model"]["roc_auc"] > 0.75  # the signal is learnable
        assert max(m["onnx_max_abs_diff"].values()) <= 1e-4
        for block in ("model", "baseline_sh", "baseline_prototype"):
            for key in ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "brier"):
                assert m[block][key] is not None and m["matched"][block][key] is not None
                lo, hi = m[block]["ci95"][key]
                assert lo <= m[block][key] <= hi or key == "brier"
        assert m["chosen"] in m["candidates_val_pr_auc"]
        assert m["n_test"] == 200 and m["model"]["positives"] > 0
        assert m["train_span"]["pubdate_max"] < m["val_span"]["pubdate_min"]  # time-based split
        assert m["val_span"]["pubdate_max"] < m["test_span"]["pubdate_min"]
        assert set(meta["baselines"]) == {"baseline_sh", "baseline_prototype"}
        for name in ("model.onnx", "baseline_sh.onnx", "baseline_prototype.onnx", "play_range.onnx"):
            assert (trained / version / h / name).stat().st_size > 0
    for name in ("model_card.md", "roc.png", "pr.png", "calibration.png", "importance.png"):
        assert (trained / version / name).stat().st_size > 0


@pytest.mark.slow
def test_same_data_and_seed_give_the_same_artifacts(
    trained: Path, datasets: dict[str, Dataset], tmp_path: Path
) -> None:
    first = (trained / "PROMOTED").read_text().strip()
    again = train(datasets, tmp_path, seed=0, n_boot=50)
    assert again.split("-")[1] == first.split("-")[1]
    for h in ("1h", "3h", "6h"):
        onnx = f"{h}/model.onnx"
        assert (tmp_path / again / onnx).read_bytes() == (trained / first / onnx).read_bytes()


@pytest.mark.slow
def test_registry_scores_and_levels(trained: Path, datasets: dict[str, Dataset]) -> None:
    bundle = load_promoted(trained)
    assert bundle.version == (trained / "PROMOTED").read_text().strip()
    assert bundle.feature_names == FEATURE_NAMES
    assert bundle.horizons == ("1h", "3h", "6h")
    probs = bundle.score("1h", datasets["1h"].X[:50])
    assert probs.shape == (50,) and np.all((probs >= 0) & (probs <= 1))
    ranges = bundle.play_range("1h", datasets["1h"].X[:50])
    assert len(ranges) == 50 and all(re.fullmatch(r"[0-9千w]+(-[0-9千w]+|\+)", r) for r in ranges)
    one_row = bundle.score("1h", datasets["1h"].X[:1].astype(np.float64))  # cast, not refused
    assert one_row[0] == pytest.approx(probs[0])
    thr = bundle.threshold("3h")
    assert 0 < thr < 1
    assert bundle.level("3h", thr) == "高热"
    assert bundle.level("3h", thr / 2) == "中热"
    assert bundle.level("3h", thr / 2 - 1e-9) == "普通"
    with pytest.raises(ValueError, match="shape"):
        bundle.score("1h", np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(KeyError, match="12h"):
        bundle.score("12h", datasets["1h"].X[:1])


@pytest.mark.slow
def test_registry_reloads_a_new_promotion(trained: Path, datasets: dict[str, Dataset]) -> None:
    bundle = load_promoted(trained)
    old = bundle.version
    assert bundle.reload_if_changed() is False  # nothing changed: one stat()
    new = train({"1h": datasets["1h"]}, trained, seed=1, n_boot=0)  # one horizon is enough to switch
    assert new != old
    assert bundle.reload_if_changed() is True and bundle.version == new
    (trained / "PROMOTED").write_text("no-such-version\n")
    assert bundle.reload_if_changed() is False and bundle.version == new  # keeps serving
    promote(trained, old)
    assert bundle.reload_if_changed() is True and bundle.version == old


@pytest.mark.slow
def test_registry_errors(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelRegistryError, match="hotvideo train"):
        load_promoted(tmp_path)
    (tmp_path / "PROMOTED").write_text("missing\n")
    with pytest.raises(ModelRegistryError, match="holds no model"):
        load_promoted(tmp_path)
    with pytest.raises(ModelRegistryError, match="does not exist"):
        promote(tmp_path, "missing")

    version = (trained / "PROMOTED").read_text().strip()
    shutil.copytree(trained / version, tmp_path / version)
    meta_path = tmp_path / version / "1h" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_names"] = meta["feature_names"][::-1]
    meta_path.write_text(json.dumps(meta))
    promote(tmp_path, version)
    with pytest.raises(ModelRegistryError, match="retrain"):
        load_promoted(tmp_path)


def test_too_few_positives_fail_clearly(tmp_path: Path) -> None:
    ds = synthetic("1h", 300, 0)
    ds.y[:] = 0
    ds.y[:3] = 1
    with pytest.raises(TrainingError, match="larger world"):
        train({"1h": ds}, tmp_path, n_boot=0)
    assert not (tmp_path / "PROMOTED").exists()


def test_parity_gate(datasets: dict[str, Dataset]) -> None:
    ds = datasets["1h"]
    params = {"max_iter": 20, "early_stopping": False, "random_state": 0}
    clf = HistGradientBoostingClassifier(**params).fit(ds.X[:500], ds.y[:500])
    onnx = export_onnx(clf)
    assert check_parity(clf, onnx, ds.X[500:], 0.5) <= 1e-4
    other = HistGradientBoostingClassifier(**params).fit(ds.X[300:], ds.y[300:])
    with pytest.raises(ExportParityError, match="differs"):
        check_parity(other, onnx, ds.X[500:], 0.5)


def test_thresholds_between_float32_neighbours_export_exactly() -> None:
    """Two adjacent float32 values whose float64 midpoint rounds up onto the upper one in float32."""
    low = np.nextafter(np.float32(1), np.float32(2))  # odd mantissa: the tie rounds to the even `high`
    high = np.nextafter(low, np.float32(2))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
    X[:, 0] = np.where(np.arange(400) % 2 == 0, low, high)
    y = ((X[:, 0] == high) ^ (rng.random(400) < 0.1)).astype(np.int64)
    clf = HistGradientBoostingClassifier(max_iter=5, early_stopping=False, random_state=0).fit(X, y)
    with pytest.raises(ExportParityError):
        check_parity(clf, export_onnx(clf), X, 0.5)
    before = clf.predict_proba(X)
    snap_thresholds_to_float32(clf)
    np.testing.assert_array_equal(clf.predict_proba(X), before)  # no scikit-learn prediction moves
    assert check_parity(clf, export_onnx(clf), X, 0.5) <= 1e-6


def generated_world(videos: int, seed: int) -> list[Event]:
    """Videos every 4 min with snapshots every 20 min for 6 h; the best ~15 % turn hot at 8 h."""
    rng = np.random.default_rng(seed)
    quality = rng.lognormal(0, 1, videos)
    cut = np.quantile(quality, 0.85)
    events: list[Event] = []
    for i in range(videos):
        pub = T0 + 240 * i
        tid = int(rng.choice(MAIN_ZONES))
        for minute in range(10, 361, 20):
            view = int(quality[i] * 40 * (minute / 10) ** 1.2 * rng.uniform(0.8, 1.2))
            events.append(snap(minute, view, bvid=bvid(i), pubdate=pub, tid=tid))
        if quality[i] >= cut:
            events.append(HotListEntry(bvid=bvid(i), ts=pub + 8 * 3600, source="popular", rank=5))
    end = T0 + 240 * videos + 2 * DAY
    events.append(UpProfile(mid=42, ts=end, follower=1, archive_count=1, total_view=1))
    return sorted(events, key=lambda e: e.ts)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_train_from_events_end_to_end(tmp_path: Path) -> None:
    version = train(generated_world(300, 0), tmp_path, seed=0, match_ratio=5, n_boot=20)
    bundle = load_promoted(tmp_path)
    assert bundle.version == version
    for h in ("1h", "3h", "6h"):
        metrics = bundle.metadata(h)["metrics"]
        assert metrics["model"]["roc_auc"] > 0.9  # quality drives both early views and hotness
        assert metrics["excluded"] == {"unknown_label": 0, "already_hot": 0, "insufficient_data": 0}
