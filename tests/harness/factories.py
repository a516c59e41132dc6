"""Small builders for hand-made events in tests."""

from __future__ import annotations

from typing import Any

from core.events import HotListEntry, Snapshot

T0 = 1_793_000_000
"""A fixed publish time (2026-10-25) used by hand-made videos."""
BVID = "BV1xx4y1a7Aa"


def snap(ts_min: float, view: int = 100, *, bvid: str = BVID, pubdate: int = T0, **extra: Any) -> Snapshot:
    """A snapshot `ts_min` minutes after `pubdate`, with engagement proportional to views."""
    fields: dict[str, Any] = {
        "bvid": bvid,
        "ts": pubdate + int(ts_min * 60),
        "pubdate": pubdate,
        "view": view,
        "like": view // 20,
        "coin": view // 100,
        "favorite": view // 80,
        "reply": view // 200,
        "danmaku": view // 150,
        "share": view // 300,
        "mid": 42,
        "tid": 4,
        "tname": "游戏",
        "duration": 300,
        "title": "测试视频",
        "follower": 1000,
    }
    fields.update(extra)
    return Snapshot(**fields)


def hot(ts_min: float, *, bvid: str = BVID, pubdate: int = T0, rank: int = 3) -> HotListEntry:
    """A hot-list sighting `ts_min` minutes after `pubdate`."""
    return HotListEntry(bvid=bvid, ts=pubdate + int(ts_min * 60), source="popular", rank=rank)
