"""Persistent collector state in SQLite: what is tracked and when each thing is next due.

Why a file: a restarted collector must neither forget the videos it was following (their early
snapshots are the model's input) nor poll them all at once (that invites -412). Changes are committed
only after the events they produced are on the broker, so a crash repeats work instead of losing it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from core.settings import CollectSettings

SCHEMA = """
CREATE TABLE IF NOT EXISTS video (
    bvid TEXT PRIMARY KEY, pubdate INTEGER NOT NULL, mid INTEGER, cid INTEGER,
    next_due REAL NOT NULL, polls INTEGER NOT NULL DEFAULT 0, his_rank INTEGER,
    status TEXT NOT NULL DEFAULT 'tracked', reason TEXT);
CREATE INDEX IF NOT EXISTS video_due ON video (status, next_due);
CREATE TABLE IF NOT EXISTS up (mid INTEGER PRIMARY KEY, next_due REAL NOT NULL);
CREATE TABLE IF NOT EXISTS danmaku (
    cid INTEGER PRIMARY KEY, bvid TEXT NOT NULL, next_due REAL NOT NULL, until REAL NOT NULL,
    last_sent INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS job (name TEXT PRIMARY KEY, next_due REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Tracked:
    """A tracked video that is due for a stat poll."""

    bvid: str
    pubdate: int
    mid: int | None
    cid: int | None


class State:
    """The collector's memory; call `commit` once the events of a step are published."""

    def __init__(self, path: Path, cfg: CollectSettings) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        # one thread at a time, but not always the one that opened it (tests run the loop in a thread)
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def interval(self, pubdate: int, now: float) -> float | None:
        """Seconds to the next poll at this age: dense first, sparse later, None past the window T."""
        age = now - pubdate
        if age >= self.cfg.track_window_s:
            return None
        if age < self.cfg.dense_window_s:
            return float(self.cfg.dense_interval_s)
        return float(self.cfg.sparse_interval_s)

    # videos

    def track(self, bvid: str, pubdate: int, mid: int | None, cid: int | None, now: float) -> bool:
        """Start following a new video (its first snapshot was just taken); False if already known.

        Its uploader and danmaku are scheduled too.
        """
        step = self.interval(pubdate, now)
        if step is None:
            return False
        cur = self.db.execute(
            "INSERT OR IGNORE INTO video (bvid, pubdate, mid, cid, next_due, polls) VALUES (?,?,?,?,?,1)",
            (bvid, pubdate, mid, cid, now + step),
        )
        if not cur.rowcount:
            return False
        if mid is not None:
            self.db.execute("INSERT OR IGNORE INTO up (mid, next_due) VALUES (?, ?)", (mid, now))
        if cid is not None:
            self.add_danmaku(cid, bvid, pubdate + self.cfg.dense_window_s, pubdate + self.cfg.track_window_s)
        return True

    def is_tracked(self, bvid: str) -> bool:
        row = self.db.execute("SELECT 1 FROM video WHERE bvid = ? AND status = 'tracked'", (bvid,)).fetchone()
        return row is not None

    def observed(self, bvid: str, now: float, his_rank: int | None = None) -> None:
        """A snapshot of a tracked video was taken: schedule the next one, or end tracking after T."""
        row = self.db.execute(
            "SELECT pubdate FROM video WHERE bvid = ? AND status = 'tracked'", (bvid,)
        ).fetchone()
        if row is None:
            return
        step = self.interval(row[0], now)
        if step is None:
            self.db.execute(
                "UPDATE video SET status = 'done', reason = 'window T over' WHERE bvid = ?", (bvid,)
            )
            return
        self.db.execute(
            "UPDATE video SET next_due = ?, polls = polls + 1, his_rank = MAX(COALESCE(his_rank, 0), ?)"
            " WHERE bvid = ?",
            (now + step, his_rank or 0, bvid),
        )

    def due(self, now: float, limit: int) -> list[Tracked]:
        """Tracked videos whose poll is due, most overdue first."""
        rows = self.db.execute(
            "SELECT bvid, pubdate, mid, cid FROM video WHERE status = 'tracked' AND next_due <= ?"
            " ORDER BY next_due LIMIT ?",
            (now, limit),
        ).fetchall()
        return [Tracked(*row) for row in rows]

    def defer(self, bvid: str, until: float) -> None:
        """Try this video again later (its poll failed for a reason that may pass)."""
        self.db.execute("UPDATE video SET next_due = ? WHERE bvid = ?", (until, bvid))

    def drop(self, bvid: str, reason: str) -> None:
        """Stop tracking a video that became invisible; the reason stays for the record."""
        self.db.execute("UPDATE video SET status = 'gone', reason = ? WHERE bvid = ?", (reason, bvid))
        self.db.execute("DELETE FROM danmaku WHERE bvid = ?", (bvid,))

    def spread_overdue(self, now: float) -> int:
        """After downtime, spread the overdue polls over one dense interval instead of a burst."""
        rows = self.db.execute(
            "SELECT bvid FROM video WHERE status = 'tracked' AND next_due < ? ORDER BY next_due", (now,)
        ).fetchall()
        step = self.cfg.dense_interval_s / max(len(rows), 1)
        self.db.executemany(
            "UPDATE video SET next_due = ? WHERE bvid = ?",
            [(now + i * step, b) for i, (b,) in enumerate(rows)],
        )
        self.commit()
        return len(rows)

    def videos(self, status: str = "tracked") -> dict[str, float]:
        """bvid → next due time of the videos in `status`."""
        rows = self.db.execute("SELECT bvid, next_due FROM video WHERE status = ?", (status,)).fetchall()
        return dict(rows)

    # uploaders, danmaku, jobs

    def due_ups(self, now: float, limit: int) -> list[int]:
        rows = self.db.execute(
            "SELECT mid FROM up WHERE next_due <= ? ORDER BY next_due LIMIT ?", (now, limit)
        ).fetchall()
        return [mid for (mid,) in rows]

    def up_done(self, mid: int, next_due: float) -> None:
        self.db.execute("UPDATE up SET next_due = ? WHERE mid = ?", (next_due, mid))

    def add_danmaku(self, cid: int, bvid: str, due: float, until: float) -> None:
        """Fetch this video's danmaku at `due` and again every interval until `until`."""
        self.db.execute(
            "INSERT OR IGNORE INTO danmaku (cid, bvid, next_due, until) VALUES (?,?,?,?)",
            (cid, bvid, due, until),
        )

    def due_danmaku(self, now: float, limit: int) -> list[tuple[int, str, int]]:
        """(cid, bvid, send time of the newest line already stored) of the danmaku pools due."""
        rows = self.db.execute(
            "SELECT cid, bvid, last_sent FROM danmaku WHERE next_due <= ? ORDER BY next_due LIMIT ?",
            (now, limit),
        ).fetchall()
        return [(cid, bvid, last_sent) for cid, bvid, last_sent in rows]

    def danmaku_done(self, cid: int, now: float, last_sent: int) -> None:
        """Schedule the refetch, or forget the video once its window is over."""
        nxt = now + self.cfg.danmaku_interval_s
        self.db.execute("UPDATE danmaku SET next_due = ?, last_sent = ? WHERE cid = ?", (nxt, last_sent, cid))
        self.db.execute("DELETE FROM danmaku WHERE cid = ? AND until < ?", (cid, nxt))

    def job_due(self, name: str, now: float) -> bool:
        row = self.db.execute("SELECT next_due FROM job WHERE name = ?", (name,)).fetchone()
        return row is None or row[0] <= now

    def job_done(self, name: str, next_due: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO job (name, next_due) VALUES (?, ?)", (name, next_due))

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))
