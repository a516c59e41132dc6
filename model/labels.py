"""Seed 001's label protocol: who is hot, who is provably not, and matched negative sampling."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from core.reference import LABEL_WINDOW_S, zone_of

DEFAULT_WINDOW_S = LABEL_WINDOW_S
"""Observation window T of training and evaluation, unless they are given another."""


@dataclass(frozen=True, slots=True)
class Label:
    """One `video_label` row: value 1, 0 or None (unknown, excluded from training)."""

    value: int | None
    source: str | None
    covered_until: int
    """How far the observation window was covered: min(observed_until, pubdate + window)."""


def label_of(source: str | None, pubdate: int, observed_until: int, window_s: int, grace_s: int = 0) -> Label:
    """One video's label as of event time `observed_until`: the rule training and the stream share.

    Positive whenever the video was seen on a hot list (`source`), whatever the timing (seed 001
    ignores the entry time); negative only once the window after publication, and `grace_s` past it,
    was observed, since a younger video may still become hot; otherwise unknown.
    """
    covered = min(observed_until, pubdate + window_s)
    if source is not None:
        return Label(1, source, covered)
    if observed_until >= pubdate + window_s + grace_s:
        return Label(0, None, covered)
    return Label(None, None, covered)


def label_videos(
    pubdates: Mapping[str, int],
    hot_bvids: Mapping[str, str],
    observed_until: int,
    window_s: int,
    grace_s: int = 0,
) -> dict[str, Label]:
    """Label every video of `pubdates`; `hot_bvids` maps a hot bvid to the source it was seen on."""
    return {
        bvid: label_of(hot_bvids.get(bvid), pubdate, observed_until, window_s, grace_s)
        for bvid, pubdate in pubdates.items()
    }


class VideoRef(NamedTuple):
    """What matching needs to know about a video."""

    bvid: str
    pubdate: int
    tid: int | None


def _match_zone(tid: int | None) -> int | None:
    """Main zone, or the tid itself outside the main zones (a film only matches films)."""
    zone = zone_of(tid)
    return tid if zone is None else zone


def matched_negatives(
    positives: Sequence[VideoRef],
    candidates: Sequence[VideoRef],
    *,
    window_s: int = 3600,
    ratio: int = 10,
    same_zone: bool = True,
    seed: int = 0,
) -> list[str]:
    """Up to `ratio` negatives per positive, published within ±window_s and (optionally) in the same
    main zone, each used once; bvids in draw order.

    Matching removes the time-of-day and zone imbalance between hot and ordinary videos (seed 001).
    The result depends only on the inputs' contents and the seed, not on their order.
    """
    if window_s <= 0 or ratio < 1:
        raise ValueError(f"need window_s > 0 and ratio >= 1, got {window_s=} {ratio=}")
    pool = sorted(candidates, key=lambda v: (v.pubdate, v.bvid))
    pool_times = [v.pubdate for v in pool]
    used = {v.bvid for v in positives}
    rng = random.Random(seed)
    chosen: list[str] = []
    for pos in sorted(positives, key=lambda v: (v.pubdate, v.bvid)):
        lo = bisect_left(pool_times, pos.pubdate - window_s)
        hi = bisect_right(pool_times, pos.pubdate + window_s)
        zone = _match_zone(pos.tid)
        eligible = [
            v.bvid
            for v in pool[lo:hi]
            if v.bvid not in used and (not same_zone or _match_zone(v.tid) == zone)
        ]
        picks = rng.sample(eligible, min(ratio, len(eligible)))
        used.update(picks)
        chosen += picks
    return chosen
