"""A video's observed history, cut at a checkpoint: the one place snapshots become feature inputs.

The stream keeps a `VideoHistory` per video in its state table and training rebuilds the same objects
from an event log, so both paths hand `feature_vector` identical rows (zero training/serving skew).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.events import Snapshot, UpProfile
from core.reference import MAX_HORIZON_S
from model.features import Row, UpStats, VideoStatic

"""Snapshots later than pubdate + the longest horizon never feed a feature: they are not kept."""

AddOutcome = Literal["added", "duplicate", "beyond"]

ProfileLookup = Callable[[int, int], UpStats | None]
"""(mid, as_of) -> the uploader's profile as of as_of, None when none was observed by then."""


def row_of(snap: Snapshot) -> Row:
    """The snapshot's counters as a feature row: (ts, view, like, coin, favorite, reply, danmaku, share)."""
    return (snap.ts, snap.view, snap.like, snap.coin, snap.favorite, snap.reply, snap.danmaku, snap.share)


@dataclass(slots=True)
class VideoHistory:
    """Snapshots up to pubdate + 6 h in time order, plus the static fields the features need."""

    pubdate: int
    rows: list[Row] = field(default_factory=list)
    followers: list[tuple[int, int]] = field(default_factory=list)
    """(ts, owner followers) as observed: a checkpoint uses the last value at or before it."""
    mid: int | None = None
    tid: int | None = None
    tname: str | None = None
    duration: int | None = None
    title: str | None = None
    tags: list[str] | None = None

    def add(self, snap: Snapshot) -> AddOutcome:
        """Place a snapshot in time order; drop duplicates (same ts) and anything past 6 h."""
        if snap.ts > self.pubdate + MAX_HORIZON_S:
            return "beyond"
        row = row_of(snap)
        pos = bisect_right(self.rows, (snap.ts, 2**63))
        if pos and self.rows[pos - 1][0] == snap.ts:
            return "duplicate"
        self.rows.insert(pos, row)
        if snap.follower is not None:
            self.followers.insert(bisect_right(self.followers, (snap.ts, 2**63)), (snap.ts, snap.follower))
        self._absorb_static(snap)
        return "added"

    def _absorb_static(self, snap: Snapshot) -> None:
        """Static fields: the first observed value wins, so arrival order cannot change features."""
        self.mid = self.mid if self.mid is not None else snap.mid
        self.tid = self.tid if self.tid is not None else snap.tid
        self.tname = self.tname if self.tname is not None else snap.tname
        self.duration = self.duration if self.duration is not None else snap.duration
        self.title = self.title if self.title is not None else snap.title
        self.tags = self.tags if self.tags is not None else snap.tags

    def cut(self, as_of: int) -> tuple[list[Row], VideoStatic]:
        """Rows and static fields as they were known at `as_of` (seed 001's leakage rule)."""
        rows = self.rows[: bisect_right(self.rows, (as_of, 2**63))]
        upto = bisect_right(self.followers, (as_of, 2**63))
        follower = self.followers[upto - 1][1] if upto else None
        return rows, VideoStatic(
            pubdate=self.pubdate, duration=self.duration, tid=self.tid, follower=follower
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the state table."""
        return {
            "pubdate": self.pubdate,
            "rows": self.rows,
            "followers": self.followers,
            "mid": self.mid,
            "tid": self.tid,
            "tname": self.tname,
            "duration": self.duration,
            "title": self.title,
            "tags": self.tags,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoHistory:
        """Inverse of `to_dict` (JSON turns tuples into lists; restore them so bisect compares)."""
        return cls(
            pubdate=d["pubdate"],
            rows=[tuple(r) for r in d["rows"]],
            followers=[(t, f) for t, f in d["followers"]],
            mid=d.get("mid"),
            tid=d.get("tid"),
            tname=d.get("tname"),
            duration=d.get("duration"),
            title=d.get("title"),
            tags=d.get("tags"),
        )


@dataclass(slots=True)
class UpHistory:
    """One uploader's profile observations in time order, for the stream's profile table and training.

    A checkpoint at as_of uses the latest observation with ts <= as_of: a later profile may already
    count the video being scored among the uploader's hot videos (seed 001's leakage rule).
    """

    seen: list[tuple[int, UpStats]] = field(default_factory=list)

    def add(self, profile: UpProfile) -> bool:
        """Place an observation in time order; a second one with the same ts is dropped (first wins)."""
        pos = bisect_right(self.seen, profile.ts, key=lambda item: item[0])
        if pos and self.seen[pos - 1][0] == profile.ts:
            return False
        self.seen.insert(pos, (profile.ts, UpStats.of(profile)))
        return True

    def at(self, as_of: int) -> UpStats | None:
        """The profile as known at as_of."""
        pos = bisect_right(self.seen, as_of, key=lambda item: item[0])
        return self.seen[pos - 1][1] if pos else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for a table keyed by mid."""
        return {"seen": [[ts, asdict(stats)] for ts, stats in self.seen]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UpHistory:
        """Inverse of `to_dict`."""
        return cls(seen=[(ts, UpStats(**stats)) for ts, stats in d["seen"]])
