"""Seed 001's SQL tables as a model's input and output: `video_label` written, datasets read.

The SQL sink keeps, per video and horizon, only the checkpoint's counts (`video_early_metrics`), not
every snapshot. A dataset read from SQL therefore rebuilds, per horizon, the rows the tables hold:
one per stored checkpoint at or before it, timed from its view rate (views·3600 / view_rate after
publication). Counts, rates, engagement, zone, duration, publish time and the UP profile come out
as from the event log; the growth shape (views at Δt/2, acceleration, last-interval rate, snapshot
count) is coarser. Train on event logs; use SQL datasets to evaluate or to inspect stored videos.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import select

from core.reference import HORIZONS
from model.dataset import NO_TID, Dataset
from model.features import Row, UpStats, VideoStatic, feature_vector
from model.labels import Label
from sink.sql import SqlStore, VideoLabel, hot_entry, up_profile, video, video_early_metrics, video_label


def write_labels(store: SqlStore, labels: Mapping[str, Label]) -> int:
    """Every label (unknown ones too, with label NULL) as `video_label` rows; returns the count."""
    rows = [
        VideoLabel(bvid, lb.value, lb.source, lb.covered_until)  # type: ignore[arg-type]
        for bvid, lb in sorted(labels.items())
    ]
    store.write_labels(rows)
    return len(rows)


def _epoch(dt: datetime) -> int:
    """Naive-UTC DATETIME (the sink's convention) to epoch seconds."""
    return int(dt.replace(tzinfo=UTC).timestamp())


def read_datasets(store: SqlStore, horizons: Mapping[str, int] = HORIZONS) -> dict[str, Dataset]:
    """One Dataset per horizon from `video` ⋈ `video_label` (known labels), with the checkpoints of
    `video_early_metrics` at or before each horizon and the `up_profile` row if it was observed by
    then (the table keeps only the newest profile: a later one is not used)."""
    with store.engine.connect() as conn:
        videos = conn.execute(
            select(video, video_label.c.label)
            .join(video_label, video_label.c.bvid == video.c.bvid)
            .where(video_label.c.label.is_not(None))
        ).all()
        metrics: dict[str, list[tuple[int, float, tuple[int, ...]]]] = defaultdict(list)
        for m in conn.execute(select(video_early_metrics).order_by(video_early_metrics.c.delta_t)):
            counts = (m.view_cnt, m.like_cnt, m.coin_cnt, m.fav_cnt, m.reply_cnt, m.danmaku_cnt, m.share_cnt)
            metrics[m.bvid].append((m.delta_t * 60, m.view_rate, counts))
        profiles = {p.up_mid: p for p in conn.execute(select(up_profile))}
        first_hot: dict[str, int] = {}
        for e in conn.execute(select(hot_entry)):
            first_hot[e.bvid] = min(e.first_ts, first_hot.get(e.bvid, e.first_ts))

    out = {}
    for h, seconds in horizons.items():
        items = []
        excluded = {"unknown_label": 0, "already_hot": 0, "insufficient_data": 0}
        for v in sorted(videos, key=lambda v: (v.pub_time, v.bvid)):
            pubdate = _epoch(v.pub_time)
            as_of = pubdate + seconds
            if first_hot.get(v.bvid, as_of + 1) <= as_of:
                excluded["already_hot"] += 1
                continue
            rows: list[Row] = []
            for delta_s, rate, stored in metrics.get(v.bvid, []):
                if delta_s <= seconds:
                    view = stored[0]
                    elapsed = round(view * 3600 / rate) if view > 0 and rate > 0 else delta_s
                    rows.append(cast(Row, (pubdate + min(elapsed, delta_s), *stored)))
            if not rows:
                excluded["insufficient_data"] += 1
                continue
            p = profiles.get(v.up_mid)
            known = p is not None and p.updated_ts <= as_of
            up = (
                UpStats(
                    follower=p.follower_cnt,
                    archive_count=p.total_video_cnt,
                    total_view=0,
                    historical_avg_view=p.historical_avg_view,
                    historical_popular_count=p.historical_popular_cnt,
                    account_age_days=p.account_age_days,
                )
                if known and p is not None
                else None
            )
            static = VideoStatic(pubdate, v.duration, v.category_id, None if up is None else up.follower)
            rows.sort()
            tid = NO_TID if v.category_id is None else v.category_id
            vec = feature_vector(rows, static, as_of, up)
            items.append((vec, v.label, v.bvid, pubdate, tid, float("nan")))  # final views: not in SQL
        out[h] = Dataset.of_rows(h, items, excluded)
    return out
