"""Seed 001's label protocol: who is hot, who is provably not, and matched negative sampling."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from core.reference import zone_of

DEFAULT_WINDOW_S = 24 * 3600
"""Observation window T: a video never seen hot within it counts as a negative."""


@dataclass(frozen=True, slots=True)
class Label:
    """One `video_label` row: value 1, 0 or None (unknown, excluded from training)."""

    value: int | None
    source: str | None
    covered_until: int
    """How far the observation window was covered: min(observed_until, pubdate + window)."""


def label_videos(
    pubdates: Mapping[str, int],
    hot_bvids: Mapping[str, str],
    observed_until: int,
    window_s: int,
) -> dict[str, Label]:
    """Label every video of `pubdates`; `hot_bvids` maps a hot bvid to the source it was seen on.

    Positive whenever the video is in the hot set, whatever the timing (seed 001 ignores the entry
    time); negative only once the whole window after publication was observed, since a younger
    video may still become hot.
    """
    labels: dict[str, Label] = {}
    for bvid, pubdate in pubdates.items():
        covered = min(observed_until, pubdate + window_s)
        source = hot_bvids.get(bvid)
        if source is not None:
            labels[bvid] = Label(1, source, covered)
        elif observed_until >= pubdate + window_s:
            labels[bvid] = Label(0, None, covered)
        else:
            labels[bvid] = Label(None, None, covered)
    return labels


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
