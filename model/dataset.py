"""Training sets from an event stream, one per horizon, built with the stream's own state code.

Each video's snapshots go through `model.history.VideoHistory` in log order, exactly as the Faust
worker feeds them (duplicates dropped, first static value wins, follower as of the checkpoint), each
uploader's profiles through `model.history.UpHistory` (the latest at or before the checkpoint), and
each checkpoint is cut at pubdate + h with the worker's already-hot / insufficient-data rules, so
the offline and online feature vectors of a video are identical.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from core.events import Event, HotListEntry, Snapshot, UpProfile
from core.logs import get_logger
from core.reference import HORIZONS, MAX_HORIZON_S
from model.features import FEATURE_NAMES, feature_vector
from model.history import UpHistory, VideoHistory
from model.labels import Label, VideoRef, label_videos, matched_negatives

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
    final_views: npt.NDArray[np.float64]
    """Views at the end of the label window T (the play_range target); NaN where T is not covered."""
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
            self.final_views[index],
            dict(self.excluded),
        )

    @classmethod
    def of_rows(
        cls, horizon: str, rows: list[tuple[list[float], int, str, int, int, float]], excluded: dict[str, int]
    ) -> Dataset:
        """From (features, label, bvid, pubdate, tid or NO_TID, final views) rows, in their order."""
        return cls(
            horizon=horizon,
            X=np.array([r[0] for r in rows], dtype=np.float32).reshape(-1, len(FEATURE_NAMES)),
            y=np.array([r[1] for r in rows], dtype=np.int64),
            bvids=np.array([r[2] for r in rows], dtype=np.str_),
            pubdates=np.array([r[3] for r in rows], dtype=np.int64),
            tids=np.array([r[4] for r in rows], dtype=np.int64),
            final_views=np.array([r[5] for r in rows], dtype=np.float64),
            excluded=excluded,
        )

    def refs(self) -> list[VideoRef]:
        """The rows as matching keys for `model.labels.matched_negatives`."""
        return [
            VideoRef(str(b), int(p), None if t == NO_TID else int(t))
            for b, p, t in zip(self.bvids, self.pubdates, self.tids, strict=True)
        ]


@dataclass
class Observed:
    """Everything an event log tells about its videos, before any horizon is cut."""

    window_s: int
    histories: dict[str, VideoHistory] = field(default_factory=dict)
    profiles: dict[int, UpHistory] = field(default_factory=dict)
    first_hot: dict[str, int] = field(default_factory=dict)
    """Earliest sighting on any hot list: decides `already_hot`."""
    hot_source: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Earliest sighting on a configured source: decides the label."""
    final_views: dict[str, int] = field(default_factory=dict)
    """Largest view count seen within the label window (snapshots past 6 h included)."""
    observed_until: int = 0
    snapshots_until: int = 0
    """The latest snapshot time: the stream's event time (its watermark moves with snapshots only)."""

    def labels(self, grace_s: int | None = None) -> dict[str, Label]:
        """Seed 001's label of every video seen in a snapshot.

        With `grace_s`, as the worker decides them at the end of the same events (`bili.outcome`): a
        window closes once the latest snapshot passes pubdate + T + grace.
        """
        pubdates = {bvid: hist.pubdate for bvid, hist in self.histories.items()}
        hot = {b: src for b, (_, src) in self.hot_source.items()}
        if grace_s is None:
            return label_videos(pubdates, hot, self.observed_until, self.window_s)
        return label_videos(pubdates, hot, self.snapshots_until, self.window_s, grace_s)


def observe(
    events: Iterable[Event], window_s: int, *, hot_sources: Collection[str] | None = None
) -> Observed:
    """Fold an event log into per-video histories, profiles and hot-list sightings.

    `window_s` is the label window T of seed 001; `hot_sources` restricts which hot lists make a
    positive (None = all). The end of observation is the latest event ts in the log.
    """
    obs = Observed(window_s)
    histories, final_views = obs.histories, obs.final_views
    for event in events:
        if isinstance(event, Snapshot):
            bvid = event.bvid
            if bvid not in histories:
                histories[bvid] = VideoHistory(pubdate=event.pubdate)
            hist = histories[bvid]
            hist.add(event)
            if event.ts <= hist.pubdate + window_s:
                final_views[bvid] = max(event.view, final_views.get(bvid, 0))
            obs.snapshots_until = max(obs.snapshots_until, event.ts)
        elif isinstance(event, HotListEntry):
            bvid, ts = event.bvid, event.ts
            obs.first_hot[bvid] = min(ts, obs.first_hot.get(bvid, ts))
            if hot_sources is None or event.source in hot_sources:
                obs.hot_source[bvid] = min((ts, event.source), obs.hot_source.get(bvid, (ts, event.source)))
        elif isinstance(event, UpProfile):
            obs.profiles.setdefault(event.mid, UpHistory()).add(event)
        else:
            continue  # predictions and dead letters are outputs, not observations
        obs.observed_until = max(obs.observed_until, event.ts)
    return obs


def datasets_from(obs: Observed, horizons: Mapping[str, int] = HORIZONS) -> dict[str, Dataset]:
    """One Dataset per horizon: each labelled video cut at pubdate + h, as the stream cuts it."""
    if max(horizons.values()) > MAX_HORIZON_S:
        raise ValueError(f"horizons beyond {MAX_HORIZON_S} s are not kept by VideoHistory")
    labels = obs.labels()
    histories = obs.histories
    reasons = ("unknown_label", "already_hot", "insufficient_data")
    excluded = {h: dict.fromkeys(reasons, 0) for h in horizons}
    items: dict[str, list[tuple[list[float], int, str, int, int, float]]] = {h: [] for h in horizons}
    order = sorted(histories, key=lambda b: (histories[b].pubdate, b))
    for bvid in tqdm(order, desc="features", unit="video"):
        hist, label = histories[bvid], labels[bvid]
        pubdate, value = hist.pubdate, label.value
        covered = label.covered_until >= pubdate + obs.window_s
        final = float(obs.final_views.get(bvid, 0)) if covered else float("nan")
        profiles = None if hist.mid is None else obs.profiles.get(hist.mid)
        for h, seconds in horizons.items():
            as_of = pubdate + seconds
            rows, static = hist.cut(as_of)
            if value is None:
                excluded[h]["unknown_label"] += 1
            elif obs.first_hot.get(bvid, as_of + 1) <= as_of:
                excluded[h]["already_hot"] += 1
            elif not rows:
                excluded[h]["insufficient_data"] += 1
            else:
                up = None if profiles is None else profiles.at(as_of)
                tid = NO_TID if static.tid is None else static.tid
                vec = feature_vector(rows, static, as_of, up)
                items[h].append((vec, value, bvid, pubdate, tid, final))

    out = {}
    for h in horizons:
        out[h] = Dataset.of_rows(h, items[h], excluded[h])
        log.info(
            "dataset built",
            horizon=h,
            rows=len(items[h]),
            positives=out[h].positives,
            observed_until=obs.observed_until,
            **excluded[h],
        )
    return out


def build_datasets(
    events: Iterable[Event],
    window_s: int,
    horizons: Mapping[str, int] = HORIZONS,
    *,
    hot_sources: Collection[str] | None = None,
) -> dict[str, Dataset]:
    """One Dataset per horizon from an event log (see `observe` for the arguments)."""
    return datasets_from(observe(events, window_s, hot_sources=hot_sources), horizons)


def matched_mask(ds: Dataset, ratio: int | None, window_s: int, seed: int) -> npt.NDArray[np.bool_]:
    """Rows of seed 001's matched sample: every positive plus up to `ratio` negatives published within
    ±window_s in the same zone; every row when ratio is None (the natural sample)."""
    if ratio is None:
        return np.ones(len(ds), dtype=np.bool_)
    refs = ds.refs()
    pos = [r for r, y in zip(refs, ds.y, strict=True) if y == 1]
    neg = [r for r, y in zip(refs, ds.y, strict=True) if y == 0]
    picked = matched_negatives(pos, neg, window_s=window_s, ratio=ratio, seed=seed)
    return np.asarray((ds.y == 1) | np.isin(ds.bvids, picked), dtype=np.bool_)
