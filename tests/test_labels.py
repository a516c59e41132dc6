"""Seed 001's label rules and matched negative sampling."""

from __future__ import annotations

import random

import pytest

from model.labels import Label, VideoRef, label_videos, matched_negatives

T0 = 1_793_000_000
DAY = 86_400


def test_positive_negative_unknown() -> None:
    pubdates = {
        "hot_young": T0,
        "old": T0 - DAY,
        "just_covered": T0 - DAY + 1,
        "edge": T0 - DAY + 2,
        "young": T0,
    }
    labels = label_videos(pubdates, {"hot_young": "weekly"}, observed_until=T0 + 1, window_s=DAY)
    assert labels == {
        "hot_young": Label(1, "weekly", T0 + 1),  # hot counts before its window is over
        "old": Label(0, None, T0),  # window fully observed: provably not hot
        "just_covered": Label(0, None, T0 + 1),
        "edge": Label(None, None, T0 + 1),  # one second of the window still missing
        "young": Label(None, None, T0 + 1),
    }


def test_hot_videos_without_pubdate_are_not_labelled() -> None:
    assert label_videos({}, {"BVnever_seen": "popular"}, T0, DAY) == {}


def refs(n: int, *, start: int, step: int, tid: int | None, prefix: str) -> list[VideoRef]:
    return [VideoRef(f"{prefix}{i:03d}", start + i * step, tid) for i in range(n)]


POSITIVES = [VideoRef("P1", T0, 17), VideoRef("P2", T0 + 7200, 4)]
CANDIDATES = (
    refs(60, start=T0 - 5400, step=300, tid=4, prefix="game")  # T0 - 1.5 h … T0 + 3.4 h
    + refs(60, start=T0 - 5400, step=300, tid=3, prefix="music")
    + refs(5, start=T0, step=0, tid=13, prefix="bangumi")
)


@pytest.mark.parametrize("window_s", [1800, 3600])
@pytest.mark.parametrize("ratio", [5, 10])
def test_matching_respects_window_zone_ratio(window_s: int, ratio: int) -> None:
    picked = matched_negatives(POSITIVES, CANDIDATES, window_s=window_s, ratio=ratio, seed=7)
    by_bvid = {c.bvid: c for c in CANDIDATES}
    assert len(picked) == len(set(picked)) == 2 * ratio  # enough candidates: exactly ratio each
    first, second = picked[:ratio], picked[ratio:]
    for pos, group in ((POSITIVES[0], first), (POSITIVES[1], second)):
        for bvid in group:
            assert by_bvid[bvid].tid == 4  # same main zone: sub-zone 17 matches 4
            assert abs(by_bvid[bvid].pubdate - pos.pubdate) <= window_s


def test_matching_runs_out_gracefully_and_never_reuses() -> None:
    few = refs(3, start=T0, step=60, tid=4, prefix="g")
    crowded = [VideoRef(f"P{i}", T0 + i, 4) for i in range(3)]
    picked = matched_negatives(crowded, few, ratio=5)
    assert sorted(picked) == ["g000", "g001", "g002"]


def test_matching_without_zone_constraint() -> None:
    picked = matched_negatives(POSITIVES[:1], CANDIDATES, window_s=60, ratio=10, same_zone=False)
    assert {b[:4] for b in picked} == {"game", "musi", "bang"}


def test_matching_outside_main_zones_uses_the_tid() -> None:
    picked = matched_negatives([VideoRef("P", T0, 13)], CANDIDATES, ratio=10)
    assert sorted(picked) == [f"bangumi{i:03d}" for i in range(5)]


def test_matching_is_deterministic_and_order_free() -> None:
    once = matched_negatives(POSITIVES, CANDIDATES, ratio=5, seed=3)
    shuffled = CANDIDATES.copy()
    random.Random(1).shuffle(shuffled)
    assert matched_negatives(POSITIVES[::-1], shuffled, ratio=5, seed=3) == once
    others = {tuple(matched_negatives(POSITIVES, CANDIDATES, ratio=5, seed=s)) for s in range(5)}
    assert len(others) > 1  # the seed does drive the draw


def test_positives_are_never_drawn_as_negatives() -> None:
    assert matched_negatives(POSITIVES, POSITIVES, window_s=DAY, same_zone=False) == []


@pytest.mark.parametrize(("window_s", "ratio"), [(0, 5), (3600, 0)])
def test_matching_rejects_bad_arguments(window_s: int, ratio: int) -> None:
    with pytest.raises(ValueError):
        matched_negatives(POSITIVES, CANDIDATES, window_s=window_s, ratio=ratio)
