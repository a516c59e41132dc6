"""Event-time checkpoints (DESIGN.md): which (video, horizon) is due, decided by event time only.

Pure logic over a mapping bvid -> JSON state (through `StateCache`), so the Faust table serves in the
worker and a plain dict in tests. No wall clock anywhere: replaying the same partition order gives the
same checkpoints.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Collection, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, get_args

from core.events import HotListEntry, HotSource, Outcome, Snapshot
from core.reference import HORIZONS, LABEL_WINDOW_S, MAX_HORIZON_S
from model.features import Row, VideoStatic
from model.history import VideoHistory, row_of
from model.labels import label_of


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A (video, horizon) that is due, with everything the scorer may use: nothing after as_of."""

    bvid: str
    horizon: str
    as_of: int
    status: str
    """scored (features go to the model), already_hot or insufficient_data."""
    rows: list[Row]
    static: VideoStatic
    history: VideoHistory | None


@dataclass(slots=True)
class VideoState:
    """What the table holds per bvid: the history, which horizons fired, the first hot sightings and
    the label decided so far."""

    history: VideoHistory | None = None
    fired: list[str] = field(default_factory=list)
    hot_ts: int | None = None
    """The first sighting on any hot list: checkpoints at or after it are `already_hot`."""
    done: bool = False
    """All horizons fired: only a marker is kept (so late snapshots cannot re-fire) until expiry."""
    label_hot: tuple[int, str] | None = None
    """The first sighting on a hot list that makes a positive (`LABEL_SOURCES`): (ts, source)."""
    decided: int | None = None
    """The label emitted on `bili.outcome` once the window closed (None: not yet decided)."""

    def header(self) -> dict[str, Any]:
        """The video's record in the state table, without its snapshot rows (they have their own keys).

        It changes a few times in a video's life (first snapshot, each horizon, a hot sighting, its
        label), so it is written rarely; a finished video keeps only its pubdate and its label.
        """
        label = {
            "label_hot": None if self.label_hot is None else list(self.label_hot),
            "decided": self.decided,
        }
        if self.done and self.history is not None:
            return {"done": True, "pubdate": self.history.pubdate, "hot_ts": self.hot_ts, **label}
        h = self.history
        return {
            "video": None
            if h is None
            else {f: getattr(h, f) for f in ("pubdate", "mid", "tid", "tname", "duration", "title", "tags")},
            "fired": list(self.fired),  # a copy: callers compare headers before and after a change
            "hot_ts": self.hot_ts,
            **label,
        }

    @classmethod
    def from_records(cls, header: dict[str, Any], rows: list[list[Any]]) -> VideoState:
        """Rebuild from the header and the row records `[ts, view, …, share, follower]` of one video."""
        hot = header.get("label_hot")
        label_hot = None if hot is None else (int(hot[0]), str(hot[1]))
        decided, hot_ts = header.get("decided"), header.get("hot_ts")
        if header.get("done"):
            marker = VideoHistory(pubdate=header["pubdate"])
            return cls(history=marker, done=True, hot_ts=hot_ts, label_hot=label_hot, decided=decided)
        video = header.get("video")
        history = None
        if video is not None:
            rows = sorted({r[0]: r for r in rows}.values())  # a chunk written twice repeats rows
            history = VideoHistory(
                rows=[tuple(r[:8]) for r in rows],
                followers=[(r[0], r[8]) for r in rows if r[8] is not None],
                **video,
            )
        fired = list(header.get("fired", []))
        return cls(history=history, fired=fired, hot_ts=hot_ts, label_hot=label_hot, decided=decided)

    def as_of(self, horizon: str) -> int:
        assert self.history is not None
        return self.history.pubdate + HORIZONS[horizon]

    def unfired(self) -> list[str]:
        return [h for h in HORIZONS if h not in self.fired]


def watermark_key(partition: int) -> bytes:
    """The header-table key of a partition's watermark (never a bvid, so no video can collide)."""
    return f"~watermark:{partition}".encode()


Changelog = Callable[[int, bytes, Any], None]
"""Records a state change for partition p (a Faust table's `send_changelog`); value None deletes."""


@dataclass
class Records:
    """One table's store plus its changelog: where `StateCache` writes."""

    data: MutableMapping[bytes, Any]
    changelog: Changelog | None = None

    def write(self, partition: int, key: bytes, value: Any) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        if self.changelog is not None:
            self.changelog(partition, key, value)


def _records(given: Records | MutableMapping[bytes, Any] | None) -> Records:
    if isinstance(given, Records):
        return given
    return Records({} if given is None else given)


class StateCache:
    """Write-back cache of `VideoState` objects over two tables: video headers and row chunks.

    A video's header changes a few times in its life and is written then. Its snapshot rows are
    written as chunks: at each flush, the rows that arrived in the batch become one record per
    partition, keyed `partition:first offset of the batch` (unique, and the same again if a batch
    is processed twice after a crash). So the changelog gains a few records per batch, not one per
    event, and log compaction keeps every chunk. A chunk is tombstoned once every video in it has
    finished. Changes go to the partition the video's events came from, so the tables stay
    co-partitioned with the input topics.
    """

    def __init__(
        self,
        headers: Records | MutableMapping[bytes, Any] | None = None,
        rows: Records | MutableMapping[bytes, Any] | None = None,
    ) -> None:
        """Plain mappings (or nothing: fresh dicts) give an in-memory cache without a changelog."""
        self.headers, self.rows = _records(headers), _records(rows)
        self.live: dict[str, VideoState] = {}
        self.dirty: dict[str, int] = {}
        """bvid -> partition of every header changed since the last flush."""
        self.deleted: dict[str, int] = {}
        self.pending: dict[int, list[list[Any]]] = {}
        """partition -> rows `[bvid, ts, view, …, share, follower]` not yet written."""
        self.members: dict[bytes, set[str]] = {}
        """chunk key -> unfinished videos with rows in it."""
        self.chunks_of: dict[str, set[bytes]] = {}
        self.dead_chunks: list[bytes] = []
        self._index: dict[str, list[list[Any]]] | None = None
        self._seq = 0

    def get(self, bvid: str) -> VideoState | None:
        state = self.live.get(bvid)
        if state is None and bvid not in self.deleted:
            header = self.headers.data.get(bvid.encode())
            if header is not None:
                rows = self._rows_by_video().pop(bvid, [])
                state = self.live[bvid] = VideoState.from_records(header, rows)
        return state

    def _rows_by_video(self) -> dict[str, list[list[Any]]]:
        """Stored rows grouped by video, built once after a (re)start: misses are rare after that."""
        if self._index is None:
            self._index = {}
            for key, chunk in self.rows.data.items():
                for bvid, *row in chunk:
                    self._index.setdefault(bvid, []).append(row)
                    self._join(key, bvid)
            for bvid in list(self._index):
                header = self.headers.data.get(bvid.encode())
                if header is None or header.get("done"):  # rows nobody will read: let them go
                    del self._index[bvid]
                    self._release(bvid)
        return self._index

    def _join(self, key: bytes, bvid: str) -> None:
        self.members.setdefault(key, set()).add(bvid)
        self.chunks_of.setdefault(bvid, set()).add(key)

    def _release(self, bvid: str) -> None:
        """The video needs its rows no more: chunks left with no unfinished video are dropped."""
        for key in self.chunks_of.pop(bvid, ()):
            left = self.members.get(key)
            if left is not None:
                left.discard(bvid)
                if not left:
                    del self.members[key]
                    self.dead_chunks.append(key)

    def put(self, bvid: str, state: VideoState, partition: int) -> None:
        """The header changed. A finished video lets go of its rows: nothing will read them again."""
        if state.done and state.history is not None and state.history.rows:
            self._release(bvid)
            state.history = VideoHistory(pubdate=state.history.pubdate)
        self.live[bvid] = state
        self.dirty[bvid] = partition
        self.deleted.pop(bvid, None)

    def add_row(self, bvid: str, row: Row, follower: int | None, partition: int) -> None:
        """A snapshot row joined the video's history."""
        self.pending.setdefault(partition, []).append([bvid, *row, follower])

    def delete(self, bvid: str, partition: int) -> None:
        """Drop an expired header (a finished marker or a hot-only sighting)."""
        self._release(bvid)
        self.live.pop(bvid, None)
        self.dirty.pop(bvid, None)
        self.deleted[bvid] = partition

    def flush(self, first_offsets: Mapping[int, int] | None = None) -> int:
        """Write what changed since the last flush; returns the number of records written.

        `first_offsets` (partition -> offset of the batch's first message there) names the chunks;
        without it a counter does (tests, and stores without a changelog).
        """
        writes = 0
        for partition, pending in self.pending.items():
            rows = [r for r in pending if r[0] in self.live and not self.live[r[0]].done]
            if not rows:
                continue
            self._seq += 1
            first = first_offsets.get(partition) if first_offsets else None
            key = f"{partition}:{self._seq if first is None else first}".encode()
            self.rows.write(partition, key, rows)
            for row in rows:
                self._join(key, row[0])
            writes += 1
        for key in self.dead_chunks:
            self.rows.write(int(key.split(b":", 1)[0]), key, None)
        writes += len(self.dead_chunks)
        for bvid, partition in self.dirty.items():
            self.headers.write(partition, bvid.encode(), self.live[bvid].header())
        writes += len(self.dirty)
        for bvid, partition in self.deleted.items():
            self.headers.write(partition, bvid.encode(), None)
        writes += len(self.deleted)
        self.pending.clear()
        self.dead_chunks.clear()
        self.dirty.clear()
        self.deleted.clear()
        return writes

    def clear(self) -> None:
        """Forget cached objects (after a rebalance the tables, not the cache, are the truth)."""
        self.flush()
        self.live.clear()
        self.members.clear()
        self.chunks_of.clear()
        self._index = None


@dataclass
class Checkpointer:
    """Per-partition event-time watermarks and the queue of videos waiting for their next checkpoint.

    A checkpoint for horizon h fires once per video: when a snapshot with ts > pubdate + h arrives, or
    when the partition's watermark (the largest snapshot ts seen) passes pubdate + h + grace.

    Outcomes (seed 001's label, `bili.outcome`) follow the same clock: a video is unknown when first
    seen, a positive as soon as it is seen on a hot list of `label_sources` (seed 001 counts any
    sighting), and a negative once the watermark reaches pubdate + T + grace unseen; a 0 still turns
    into a 1 if a sighting comes within `outcome_retention_s`. The rule is `model.labels.label_of`,
    the one offline labels use.
    """

    states: StateCache
    grace_s: int = 600
    retention_s: int = 86400
    """Event time a finished video's marker (or a hot-only sighting) is kept before it is dropped."""
    window_s: int = LABEL_WINDOW_S
    label_sources: frozenset[str] = frozenset(get_args(HotSource))
    outcome_retention_s: int = 7 * 86400
    """How long after its window closed a video's marker waits for a sighting that makes it a 1."""
    watermarks: dict[int, int] = field(default_factory=dict)
    queues: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)
    moved: set[int] = field(default_factory=set)
    """Partitions whose watermark changed since the last `flush`."""
    outcomes: list[Outcome] = field(default_factory=list)
    """Outcomes decided since the last `take_outcomes`, in the order they were decided."""

    def take_outcomes(self) -> list[Outcome]:
        taken, self.outcomes = self.outcomes, []
        return taken

    def flush(self, first_offsets: Mapping[int, int] | None = None) -> int:
        """Write the states (`StateCache.flush`) and each moved watermark, so a new owner resumes them."""
        for partition in sorted(self.moved):
            key = watermark_key(partition)
            self.states.headers.write(partition, key, {"watermark": self.watermarks[partition]})
        writes = len(self.moved) + self.states.flush(first_offsets)
        self.moved.clear()
        return writes

    def restore(self, partitions: Collection[int], owner: Mapping[bytes, int]) -> None:
        """Rebuild watermarks and wake-up queues for the assigned `partitions` from the tables.

        `owner` maps every header key of those partitions to its partition (the changelog says).
        Entries of other partitions are dropped from the stores (not from the changelogs): they belong
        to another worker now, and reading them later could only mislead.
        """
        self.states.clear()
        headers, rows = self.states.headers.data, self.states.rows.data
        for key in [k for k in headers if owner.get(k) not in partitions]:
            del headers[key]
        for key in [k for k in rows if int(k.split(b":", 1)[0]) not in partitions]:
            del rows[key]
        self.watermarks = {}
        self.queues = {}
        self.moved.clear()
        for key, header in headers.items():
            partition = owner[key]
            if key == watermark_key(partition):
                self.watermarks[partition] = header["watermark"]
                continue
            wake = self._wakeup(VideoState.from_records(header, []))
            if wake is not None:
                self.queues.setdefault(partition, []).append((wake, key.decode()))
        for queue in self.queues.values():
            heapq.heapify(queue)

    def on_snapshot(self, snap: Snapshot, partition: int) -> list[Checkpoint]:
        """Absorb one valid snapshot; return every checkpoint it makes due, in a fixed order."""
        state = self.states.get(snap.bvid) or VideoState()
        before = self._wakeup(state)
        fired: list[Checkpoint] = []
        new = state.history is None
        tracked = self._track(state, snap, partition)
        if new and state.history is not None:  # first seen (tracked, or a marker for its label only)
            mark = max(self.watermarks.get(partition, 0), snap.ts)
            self._decide(snap.bvid, state, mark)
        if tracked:
            assert state.history is not None
            header = None if new else state.header()
            outcome = state.history.add(snap)
            self.stats[outcome] += 1
            if outcome == "added":
                self.states.add_row(snap.bvid, row_of(snap), snap.follower, partition)
                if any(snap.ts <= state.as_of(h) for h in state.fired):
                    self.stats["late"] += 1
            fired = self._fire(snap.bvid, state, before=snap.ts)
            if state.header() != header:
                self._save(snap.bvid, state, partition, before)
        elif new and state.history is not None:
            self._save(snap.bvid, state, partition, before)
        return fired + self._advance(partition, snap.ts)

    def on_hot(self, entry: HotListEntry, partition: int) -> list[Checkpoint]:
        """Remember the first hot-list sightings; checkpoints at or after the first are `already_hot`,
        and one on a labelling list makes the video a positive (turning a decided 0 into a 1)."""
        state = self.states.get(entry.bvid) or VideoState()
        before = self._wakeup(state)
        header = state.header()
        if state.hot_ts is None or entry.ts < state.hot_ts:
            state.hot_ts = entry.ts
        sighting = (entry.ts, entry.source)
        if entry.source in self.label_sources and (state.label_hot is None or sighting < state.label_hot):
            state.label_hot = sighting  # the earliest, ties by source name: as offline labels pick it
            if state.history is not None:  # a known video: a positive is final at once
                self._decide(entry.bvid, state, self.watermarks.get(partition, 0))
        if state.header() != header:
            self._save(entry.bvid, state, partition, before)
        return []

    def _close_at(self, state: VideoState) -> int:
        """Event time at which the video's label window closes (its outcome is decided)."""
        assert state.history is not None
        return state.history.pubdate + self.window_s + self.grace_s

    def _decide(self, bvid: str, state: VideoState, mark: int) -> None:
        """Emit the video's outcome as of watermark `mark` (`label_of`); remember a decided one."""
        assert state.history is not None
        pubdate = state.history.pubdate
        hot_ts, source = state.label_hot if state.label_hot is not None else (None, None)
        label = label_of(source, pubdate, mark, self.window_s, self.grace_s)
        if label.value is not None:
            state.decided = label.value
        self.stats[f"outcome_{label.value}"] += 1
        self.outcomes.append(
            Outcome(
                bvid=bvid,
                pubdate=pubdate,
                label=label.value,  # type: ignore[arg-type]  # 0, 1 or None
                hot_ts=hot_ts,
                source=source,  # type: ignore[arg-type]  # one of label_sources
                covered_until=label.covered_until,
            )
        )

    def _track(self, state: VideoState, snap: Snapshot, partition: int) -> bool:
        """Decide whether this snapshot belongs to a video we score; count the ones we do not.

        A video first seen too late to score gets a finished marker all the same: its outcome is
        still decided when its label window closes.
        """
        if state.done:
            self.stats["after_done"] += 1
            return False
        if state.history is None:
            last_due = snap.pubdate + MAX_HORIZON_S
            if snap.ts > last_due or self.watermarks.get(partition, 0) > last_due + self.grace_s:
                self.stats["untracked_old"] += 1
                state.history, state.done = VideoHistory(pubdate=snap.pubdate), True
                return False
            state.history = VideoHistory(pubdate=snap.pubdate)
        elif snap.pubdate != state.history.pubdate:
            self.stats["pubdate_mismatch"] += 1
        return True

    def _fire(self, bvid: str, state: VideoState, *, before: int) -> list[Checkpoint]:
        """Fire, in horizon order, every unfired checkpoint whose as_of lies before `before`."""
        out: list[Checkpoint] = []
        for horizon in state.unfired():
            if state.as_of(horizon) >= before:
                break
            out.append(self._checkpoint(bvid, state, horizon))
            state.fired.append(horizon)
        if not state.unfired():
            state.done = True
        return out

    def _checkpoint(self, bvid: str, state: VideoState, horizon: str) -> Checkpoint:
        assert state.history is not None
        as_of = state.as_of(horizon)
        rows, static = state.history.cut(as_of)
        if state.hot_ts is not None and state.hot_ts <= as_of:
            status = "already_hot"
        elif not rows:
            status = "insufficient_data"
        else:
            status = "scored"
        self.stats[f"fired_{status}"] += 1
        return Checkpoint(bvid, horizon, as_of, status, rows, static, state.history)

    def _wakeup(self, state: VideoState) -> int | None:
        """Event time after which this video next needs attention without new input of its own: its
        next checkpoint, its label window's close, or (finished and decided) its marker's expiry."""
        if state.history is None:
            return None if state.hot_ts is None else state.hot_ts + self.retention_s
        due = []
        if not state.done:
            due.append(state.as_of(state.unfired()[0]) + self.grace_s)
        if state.decided is None:
            due.append(self._close_at(state) - 1)  # popped once the watermark reaches the close
        if due:
            return min(due)
        return max(
            state.history.pubdate + MAX_HORIZON_S + self.retention_s,
            self._close_at(state) + self.outcome_retention_s,
        )

    def _save(self, bvid: str, state: VideoState, partition: int, before: int | None) -> None:
        """Write the state; queue its wake-up only when it moved (one queue entry per change)."""
        self.states.put(bvid, state, partition)
        wake = self._wakeup(state)
        if wake is not None and wake != before:
            heapq.heappush(self.queues.setdefault(partition, []), (wake, bvid))

    def _advance(self, partition: int, ts: int) -> list[Checkpoint]:
        """Move the partition's watermark and fire every video whose wake-up time it passed."""
        mark = max(self.watermarks.get(partition, 0), ts)
        if mark != self.watermarks.get(partition):
            self.watermarks[partition] = mark
            self.moved.add(partition)
        queue = self.queues.get(partition, [])
        fired: list[Checkpoint] = []
        while queue and queue[0][0] < mark:
            wake, bvid = heapq.heappop(queue)
            state = self.states.get(bvid)
            if state is None:
                continue
            current = self._wakeup(state)
            if current != wake:
                continue  # stale entry: the video moved on; its current wake-up is queued too
            if state.history is None or (state.done and state.decided is not None):
                self.states.delete(bvid, partition)
                self.stats["expired"] += 1
                continue
            if not state.done:
                fired += self._fire(bvid, state, before=mark - self.grace_s)
            if state.decided is None and mark >= self._close_at(state):
                self._decide(bvid, state, mark)
            self._save(bvid, state, partition, wake)
        return fired

    def pending(self) -> int:
        """Queue entries not yet due (stale ones included): a size for health reports."""
        return sum(len(q) for q in self.queues.values())
