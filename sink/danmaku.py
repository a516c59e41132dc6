"""Danmaku (bullet-comment) text for the word cloud: one `danmaku` table the collector writes into.

The collector (ingest/collect/) is built separately; this table is the contract between it and the
API: one row per danmaku line with its video and the UTC epoch second it was observed. It lives in
the same database as the sink tables but on its own MetaData, so the stream's schema stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, MetaData, String, Table, Text, func, select

from sink.sql import _MYSQL

metadata = MetaData()

danmaku = Table(
    "danmaku",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bvid", String(12), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="epoch s when the line was observed"),
    Column("text", Text, nullable=False),
    Index("ix_danmaku_ts", "ts"),
    **_MYSQL,
)


@dataclass(frozen=True)
class DanmakuLine:
    """One bullet comment as the collector saw it."""

    bvid: str
    ts: int
    text: str


class DanmakuStore:
    """Appends and reads danmaku lines; creates the table on first use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def write(self, lines: Sequence[DanmakuLine]) -> None:
        """Append lines in one transaction (danmaku is a log: the same text may legitimately repeat)."""
        if not lines:
            return
        with self.engine.begin() as conn:
            conn.execute(danmaku.insert(), [{"bvid": d.bvid, "ts": d.ts, "text": d.text} for d in lines])

    def texts(self, limit: int, bvids: Sequence[str] | None = None) -> list[str]:
        """The newest `limit` lines, optionally only of some videos."""
        stmt = select(danmaku.c.text).order_by(danmaku.c.ts.desc(), danmaku.c.id.desc()).limit(limit)
        if bvids is not None:
            stmt = stmt.where(danmaku.c.bvid.in_(list(bvids)))
        with self.engine.connect() as conn:
            return [str(t) for t in conn.execute(stmt).scalars()]

    def count(self) -> int:
        """Lines stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(danmaku)).scalar_one())
