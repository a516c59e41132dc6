"""Training sets from an event stream, one per horizon, built with the stream's own state code.

Each video's snapshots go through `model.history.VideoHistory` in log order, exactly as the Faust
worker feeds them (duplicates dropped, first static value wins, follower as of the checkpoint), and
each checkpoint is cut at pubdate + h with the worker's already-hot / insufficient-data rules, so
the offline and online feature vectors of a video are identical.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hotvideo.events import Event, HotListEntry, Snapshot, UpProfile
from hotvideo.logs import get_logger
from hotvideo.settings import HORIZONS
from model.features import FEATURE_NAMES, feature_vector
from model.history import MAX_HORIZON_S, VideoHistory
from model.labels import VideoRef, label_videos

log = get_logger(__name__)

NO_TID = -1
"""Stands for a missing tid in `Dataset.tids` (numpy ints cannot be None)."""


@dataclass(frozen=True)
class Dataset:
    """Labelled feature rows of one horizon, ordered by (pubdate, bvid) for time-based splits."""

    horizon: str
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]
    bvids: npt.NDArray[np.str_]
    pubdates: npt.NDArray[np.int64]
    tids: npt.NDArray[np.int64]
    excluded: dict[str, int] = field(default_factory=dict)
    """Videos left out and why: unknown_label, already_hot, insufficient_data."""

    def __len__(self) -> int:
        return len(self.y)

    @property
    def positives(self) -> int:
        return int(self.y.sum())

    def subset(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Dataset:
        """Rows selected by an index or mask, order kept."""
        return Dataset(
            self.horizon,
            self.X[index],
            self.y[index],
            self.bvids[index],
            self.pubdates[index],
            self.tids[index],
            dict(self.excluded),
        )

    def refs(self) -> list[VideoRef]:
        """The rows as matching keys for `model.labels.matched_negatives`."""
        return [
            VideoRef(str(b), int(p), None if t == NO_TID else int(t))
            for b, p, t in zip(self.bvids, self.pubdates, self.tids, strict=True)
        ]


def build_datasets(
    events: Iterable[Event],
    window_s: int,
    horizons: Mapping[str, int] = HORIZONS,
    *,
    hot_sources: Collection[str] | None = None,
) -> dict[str, Dataset]:
    """One Dataset per horizon from snapshots and hot-list entries (other events only date the log).

    `window_s` is the label window T of seed 001; `hot_sources` restricts which hot lists make a
    positive (None = all). The end of observation is the latest event ts in the log.
    """
    if max(horizons.values()) > MAX_HORIZON_S:
        raise ValueError(f"horizons beyond {MAX_HORIZON_S} s are not kept by VideoHistory")
    histories: dict[str, VideoHistory] = {}
    first_hot: dict[str, int] = {}
    hot_source: dict[str, tuple[int, str]] = {}
    observed_until = 0
    for event in events:
        if isinstance(event, Snapshot):
            if event.bvid not in histories:
                histories[event.bvid] = VideoHistory(pubdate=event.pubdate)
            histories[event.bvid].add(event)
        elif isinstance(event, HotListEntry):
            bvid, ts = event.bvid, event.ts
            first_hot[bvid] = min(ts, first_hot.get(bvid, ts))
            if hot_sources is None or event.source in hot_sources:
                hot_source[bvid] = min((ts, event.source), hot_source.get(bvid, (ts, event.source)))
        elif not isinstance(event, UpProfile):
            continue  # predictions and dead letters are outputs, not observations
        observed_until = max(observed_until, event.ts)

    pubdates = {bvid: hist.pubdate for bvid, hist in histories.items()}
    labels = label_videos(pubdates, {b: src for b, (_, src) in hot_source.items()}, observed_until, window_s)
    reasons = ("unknown_label", "already_hot", "insufficient_data")
    excluded = {h: dict.fromkeys(reasons, 0) for h in horizons}
    items: dict[str, list[tuple[list[float], int, str, int, int]]] = {h: [] for h in horizons}
    for bvid in tqdm(sorted(histories, key=lambda b: (pubdates[b], b)), desc="features", unit="video"):
        hist, pubdate, value = histories[bvid], pubdates[bvid], labels[bvid].value
        for h, seconds in horizons.items():
            as_of = pubdate + seconds
            rows, static = hist.cut(as_of)
            if value is None:
                excluded[h]["unknown_label"] += 1
            elif first_hot.get(bvid, as_of + 1) <= as_of:
                excluded[h]["already_hot"] += 1
            elif not rows:
                excluded[h]["insufficient_data"] += 1
            else:
                tid = NO_TID if static.tid is None else static.tid
                items[h].append((feature_vector(rows, static, as_of), value, bvid, pubdate, tid))

    out = {}
    for h in horizons:
        done = items[h]
        out[h] = Dataset(
            horizon=h,
            X=np.array([r[0] for r in done], dtype=np.float32).reshape(-1, len(FEATURE_NAMES)),
            y=np.array([r[1] for r in done], dtype=np.int64),
            bvids=np.array([r[2] for r in done], dtype=np.str_),
            pubdates=np.array([r[3] for r in done], dtype=np.int64),
            tids=np.array([r[4] for r in done], dtype=np.int64),
            excluded=excluded[h],
        )
        log.info(
            "dataset built",
            horizon=h,
            rows=len(done),
            positives=out[h].positives,
            observed_until=observed_until,
            **excluded[h],
        )
    return out
