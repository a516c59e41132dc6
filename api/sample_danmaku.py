"""Simulated danmaku for the videos in SQL, so the word cloud has text before the collector runs.

The simulated world (ingest/world.py) has no danmaku text. `hotvideo serve --sample-danmaku` and the
tests fill the `danmaku` table with lines built from each video's own tags and zone plus common
reactions, seeded per video: the cloud then shows what real danmaku shows (topics and reactions),
and the table is clearly not real collected data (documented in docs/platform.md).
"""

from __future__ import annotations

import random
from datetime import UTC

from sqlalchemy import select

from core.events import DanmakuLine
from sink.danmaku import DanmakuStore
from sink.sql import SqlStore, video

REACTIONS = (
    "太好看了吧",
    "前方高能预警",
    "这个视频必须火",
    "三连支持一下",
    "笑死我了",
    "讲得真清楚",
    "小编辛苦了",
    "下次一定投币",
    "这期质量好高",
    "名场面来了",
    "收藏从未停止",
    "学到了学到了",
    "泪目了家人们",
    "爷青回",
    "这剪辑绝了",
)
PER_VIDEO = 12


def fill_sample_danmaku(sql: SqlStore, seed: int = 0) -> int:
    """Write PER_VIDEO simulated lines per video in SQL if the table is empty; return lines written."""
    if DanmakuStore(sql.engine).count():
        return 0
    with sql.engine.connect() as conn:
        rows = conn.execute(select(video.c.bvid, video.c.pub_time, video.c.tags, video.c.category_name)).all()
    lines = []
    for bvid, pub_time, tags, zone in rows:
        rng = random.Random(f"{seed}:{bvid}")
        topics = [t for t in (tags or "").split(",") if t] + ([zone] if zone else [])
        start = int(pub_time.replace(tzinfo=UTC).timestamp())
        for i in range(PER_VIDEO):
            words = [rng.choice(topics)] if topics and rng.random() < 0.6 else []
            text = "".join([*words, rng.choice(REACTIONS)])
            lines.append(DanmakuLine(bvid=bvid, ts=start + 60 * (i + 1), text=text))
    sql.write_danmaku(lines)
    return len(lines)
