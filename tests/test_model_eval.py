"""Issue #3: stream/training parity, leakage, UP profiles, calibrated exports, metrics, play_range,
SQL datasets and labels, and `hotvideo evaluate`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from core.events import Event, HotListEntry, Snapshot, UpProfile
from ingest.world import WorldConfig, generate
from model.classifiers import CANDIDATES, calibrate, check_parity, export_onnx
from model.dataset import build_datasets, datasets_from, matched_mask, observe
from model.evaluate import evaluate_log
from model.features import FEATURE_NAMES, UpStats
from model.history import UpHistory
from model.labels import DEFAULT_WINDOW_S
from model.metrics import compare, point_metrics
from model.onnx_io import make_session, predict_proba
from model.quantiles import (
    check_quantile_parity,
    export_quantiles,
    fit_quantiles,
    play_range,
    range_bounds,
)
from model.registry import load_promoted
from model.train import best_f1_threshold
from sink.datasets import read_datasets, write_labels
from sink.sql import SqlStore
from stream.checkpoint import Checkpointer, Records, StateCache
from stream.scoring import Scorer
from tests.harness.factories import T0, hot, snap

HOUR = 3600


@pytest.fixture(scope="module")
def world() -> list[Event]:
    """A small clean world (no duplicates or late snapshots): 400 videos over 40 h, 4 % hot so that
    enough positives are matched."""
    return list(generate(WorldConfig(videos=400, sim_hours=40.0, seed=5, hot_base_rate=0.04)))


def new_checkpointer() -> Checkpointer:
    """The worker's checkpoint logic over plain dicts instead of Faust tables."""
    return Checkpointer(StateCache(Records({}), Records({})), grace_s=600)


def stream_features(events: list[Event], scorer: Scorer) -> Iterator[tuple[str, str, list[float]]]:
    """Replay events through the worker's checkpoint logic and its Scorer, the way stream/app.py does,
    with a profile table fed by the same events."""
    profiles: dict[int, UpHistory] = {}
    scorer.profiles = lambda mid, as_of: profiles[mid].at(as_of) if mid in profiles else None
    checkpointer = new_checkpointer()
    due = []
    for event in events:
        if isinstance(event, Snapshot):
            due += checkpointer.on_snapshot(event, 0)
        elif isinstance(event, HotListEntry):
            due += checkpointer.on_hot(event, 0)
        elif isinstance(event, UpProfile):
            profiles.setdefault(event.mid, UpHistory()).add(event)
    for cp in due:
        if cp.status == "scored":
            yield cp.bvid, cp.horizon, scorer.features(cp)


@pytest.mark.slow
def test_stream_features_equal_training_features(world: list[Event], trained_model_dir: Path) -> None:
    datasets = build_datasets(world, DEFAULT_WINDOW_S)
    scorer = Scorer(load_promoted(trained_model_dir))
    online = {(bvid, h): vec for bvid, h, vec in stream_features(world, scorer)}
    compared = 0
    for h, ds in datasets.items():
        for bvid, row in zip(ds.bvids, ds.X, strict=True):
            np.testing.assert_array_equal(np.asarray(online[(str(bvid), h)], dtype=np.float32), row)
            compared += 1
        assert ds.X[:, FEATURE_NAMES.index("has_profile")].all()  # the world publishes every profile
    assert compared > 300


@pytest.mark.slow
def test_scorer_emits_level_confidence_and_play_range(world: list[Event], trained_model_dir: Path) -> None:
    checkpointer = new_checkpointer()
    due = [cp for e in world[:3000] if isinstance(e, Snapshot) for cp in checkpointer.on_snapshot(e, 0)]
    predictions = Scorer(load_promoted(trained_model_dir)).predict(due)
    scored = [p for p in predictions if p.status == "scored"]
    assert scored
    for p in scored:
        assert p.prob is not None and p.confidence == max(p.prob, 1 - p.prob)
        assert p.level in ("高热", "中热", "普通") and p.play_range is not None
        low, high = range_bounds(p.play_range)
        assert 0 <= low < high


def test_profiles_are_taken_as_of_the_checkpoint() -> None:
    history = UpHistory()
    for ts, follower in ((T0 + 100, 10), (T0 - 100, 5), (T0 + 100, 99)):
        history.add(UpProfile(mid=1, ts=ts, follower=follower, archive_count=3, total_view=30))
    assert history.at(T0 - 101) is None
    assert history.at(T0) == UpStats(follower=5, archive_count=3, total_view=30)
    stats = history.at(T0 + 100)
    assert stats is not None and stats.follower == 10  # same ts again: the first one wins
    assert UpHistory.from_dict(json.loads(json.dumps(history.to_dict()))) == history


PUB = T0
VIDEO = "BV1xx4y1a7Aa"


def base_events() -> list[Event]:
    """One video snapshotted every 10 min for 24 h, its uploader's profile at publication, and an
    event a day later so the label window is covered."""
    events: list[Event] = [UpProfile(mid=42, ts=PUB - 60, follower=1000, archive_count=20, total_view=10**5)]
    events += [snap(m, 50 * m) for m in range(10, 24 * 60 + 1, 10)]
    events.append(UpProfile(mid=7, ts=PUB + 2 * 86400, follower=1, archive_count=1, total_view=1))
    return events


after = st.integers(min_value=1, max_value=20 * HOUR)
counts = st.integers(min_value=0, max_value=10**9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    horizon=st.sampled_from(["1h", "3h", "6h"]),
    new_snaps=st.lists(st.tuples(after, counts), max_size=6),
    changed=st.lists(st.tuples(st.integers(0, 10**6), counts), max_size=6),
    profiles=st.lists(st.tuples(after, counts), max_size=3),
    hot_after=st.none() | after,
)
def test_nothing_after_the_horizon_changes_its_features(
    horizon: str,
    new_snaps: list[tuple[int, int]],
    changed: list[tuple[int, int]],
    profiles: list[tuple[int, int]],
    hot_after: int | None,
) -> None:
    """Add or change any snapshot, profile or hot-list sighting after pubdate + Δt: the Δt row stays."""
    seconds = {"1h": HOUR, "3h": 3 * HOUR, "6h": 6 * HOUR}[horizon]
    as_of = PUB + seconds
    original = base_events()
    later = [i for i, e in enumerate(original) if isinstance(e, Snapshot) and e.ts > as_of]
    edited = list(original)
    for pick, view in changed:  # rewrite existing snapshots after as_of
        i = later[pick % len(later)]
        edited[i] = snap((cast(Snapshot, edited[i]).ts - PUB) / 60, view)
    edited += [snap((seconds + dt) / 60, view) for dt, view in new_snaps]
    edited += [
        UpProfile(mid=42, ts=as_of + dt, follower=f, archive_count=1, total_view=f) for dt, f in profiles
    ]
    if hot_after is not None:
        edited.append(hot((seconds + hot_after) / 60))
    edited.sort(key=lambda e: e.ts)  # type: ignore[attr-defined]
    before = build_datasets(original, DEFAULT_WINDOW_S)[horizon]
    now = build_datasets(edited, DEFAULT_WINDOW_S)[horizon]
    np.testing.assert_array_equal(now.X, before.X)
    assert now.X[0, FEATURE_NAMES.index("has_profile")] == 1.0


def test_already_hot_videos_are_reported_apart() -> None:
    events = [*base_events(), hot(90)]
    events.sort(key=lambda e: e.ts)  # type: ignore[attr-defined]
    ds = build_datasets(events, DEFAULT_WINDOW_S)
    assert len(ds["1h"]) == 1 and ds["1h"].y[0] == 1  # hot later: a positive to predict at 1 h
    assert len(ds["3h"]) == 0 and ds["3h"].excluded["already_hot"] == 1


@pytest.mark.parametrize(("ratio", "window_s"), [(1, 3600), (5, 7200)])
def test_matched_mask_keeps_positives_and_their_matched_negatives(
    world: list[Event], ratio: int, window_s: int
) -> None:
    ds = build_datasets(world, DEFAULT_WINDOW_S)["1h"]
    mask = matched_mask(ds, ratio, window_s, seed=0)
    assert mask[ds.y == 1].all()
    negatives = np.flatnonzero(mask & (ds.y == 0))
    assert 0 < len(negatives) <= ratio * ds.positives
    positive_times = ds.pubdates[ds.y == 1]
    for i in negatives:
        assert np.min(np.abs(positive_times - ds.pubdates[i])) <= window_s
    assert matched_mask(ds, None, window_s, seed=0).all()


def test_metrics_match_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.1).astype(np.int64)
    prob = np.round(rng.random(500) * 0.5 + 0.4 * y, 1).astype(np.float64)  # heavy ties
    got = point_metrics(y, prob, 0.5)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, prob))
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, prob))
    other = rng.random(500).astype(np.float64)
    blocks = compare(y, {"a": prob, "b": other}, {"a": 0.5, "b": 0.5}, n_boot=200, reference="b")
    lo, hi = blocks["a"]["ci95"]["pr_auc"]
    assert lo < blocks["a"]["pr_auc"] < hi
    assert blocks["a"]["diff_vs_b"]["pr_auc"][0] > 0  # a is better on every resample's bulk


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_calibrated_candidates_export_with_parity(name: str) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1200, len(FEATURE_NAMES))).astype(np.float32)
    X[:, 3] = np.round(X[:, 3], 1)  # a discrete feature: tree thresholds between float32 neighbours
    y = (X[:, 0] + X[:, 3] + rng.normal(size=1200) > 2).astype(np.int64)
    clf = CANDIDATES[name](X[:600], y[:600], 0)
    model = calibrate(clf, X[600:900], y[600:900])
    threshold = best_f1_threshold(y[600:900], model.predict_proba(X[600:900])[:, 1])
    onnx = export_onnx(model)
    assert check_parity(model, onnx, X[900:], threshold) <= 1e-4
    session = make_session(onnx)
    batched = predict_proba(session, X[900:])
    one_by_one = np.array([predict_proba(session, X[i : i + 1])[0] for i in range(900, 1200)])
    # a replay may batch checkpoints differently: the digest's 9 decimals must not move (float32
    # matrix products moved by 3.6e-7; double precision leaves an ulp)
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-12)
    assert np.ptp(model.predict_proba(X[900:])[:, 1]) > 0.5  # calibrated, not squashed


def test_play_range_names_and_export() -> None:
    assert play_range(2.0, 4.0) == "0-1w"
    assert play_range(3.5, 4.5) == "1千-10w"
    assert play_range(5.1, 6.2) == "10w+"
    assert play_range(6.3, 7.5) == "100w+"
    assert range_bounds("1千-10w") == (1_000, 100_000) and range_bounds("10w+")[1] == float("inf")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(800, 6)).astype(np.float32)
    views = 10 ** (3 + X[:, 0] + 0.2 * rng.normal(size=800))
    models = fit_quantiles(X, views, seed=0)
    assert check_quantile_parity(models, export_quantiles(models, 6), X) <= 1e-4


@pytest.mark.slow
def test_labels_and_datasets_through_sql(
    world: list[Event], trained_model_dir: Path, sqlite_url: str
) -> None:
    """Labels go to `video_label`; the sink's tables, filled as the worker fills them, read back as
    datasets with the event-log labels and the same counts at each horizon."""
    obs = observe(world, DEFAULT_WINDOW_S)
    checkpointer = new_checkpointer()
    due = [cp for e in world if isinstance(e, Snapshot) for cp in checkpointer.on_snapshot(e, 0)]
    store = SqlStore(sqlite_url)
    try:
        assert write_labels(store, obs.labels()) == len(obs.histories)
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT label, label_source, covered_until FROM video_label").all()
        assert {r[0] for r in rows} == {0, 1, None}
        assert {r[1] for r in rows if r[0] == 1} == {"popular"}
        store.write_predictions(Scorer(load_promoted(trained_model_dir)).predict(due))
        store.write_hot_entries([e for e in world if isinstance(e, HotListEntry)])
        store.write_profiles([e for e in world if isinstance(e, UpProfile)])
        from_sql = read_datasets(store)
    finally:
        store.close()
    from_log = datasets_from(obs)
    for h in ("1h", "3h", "6h"):
        sql, log = from_sql[h], from_log[h]
        assert list(sql.bvids) == list(log.bvids) and list(sql.y) == list(log.y)
        same = [
            FEATURE_NAMES.index(n)
            for n in ("log_view", "log_like", "engagement_rate", "zone_4", "has_profile")
        ]
        np.testing.assert_allclose(sql.X[:, same], log.X[:, same], rtol=1e-6)


@pytest.mark.slow
def test_evaluate_writes_the_training_metrics(
    world: list[Event], trained_model_dir: Path, tmp_path: Path
) -> None:
    path = evaluate_log(trained_model_dir, world, "new", tmp_path / "eval", n_boot=20)
    summary = json.loads(path.read_text())
    assert summary["version"] == (trained_model_dir / "PROMOTED").read_text().strip()
    for metrics in summary["horizons"].values():
        for block in ("model", "baseline_sh", "baseline_prototype"):
            assert set(metrics[block]) >= {
                "roc_auc",
                "pr_auc",
                "accuracy",
                "precision",
                "recall",
                "f1",
                "brier",
            }
            assert metrics["matched"][block]["n"] <= metrics[block]["n"]
        assert metrics["play_range"]["n"] > 0
    assert (tmp_path / "eval" / "model_card.md").read_text().startswith("# Model card")
    assert datasets_from(observe(world, DEFAULT_WINDOW_S))["1h"].positives > 0
