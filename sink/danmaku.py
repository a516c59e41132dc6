"""Danmaku (bullet-comment) text for the word cloud, read from the `danmaku` table the sink fills."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, func, select

from sink.sql import danmaku, metadata


class DanmakuStore:
    """Reads danmaku lines (the worker's danmaku sink writes them, `SqlStore.write_danmaku`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[danmaku])

    def texts(self, limit: int, bvids: Sequence[str] | None = None) -> list[str]:
        """The newest `limit` lines, optionally only of some videos."""
        stmt = select(danmaku.c.text).order_by(danmaku.c.ts.desc(), danmaku.c.line_id.desc()).limit(limit)
        if bvids is not None:
            stmt = stmt.where(danmaku.c.bvid.in_(list(bvids)))
        with self.engine.connect() as conn:
            return [str(t) for t in conn.execute(stmt).scalars()]

    def count(self) -> int:
        """Lines stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(danmaku)).scalar_one())
