"""The SQL reads behind the analysis endpoints: one row per video and one row per uploader.

Every analysis of seed 000 (overview, UP analysis, heat map, zone ranking) is a group-by over the
same joined view: the `video` row, its metrics at the latest checkpoint stored (the largest
`delta_t`, i.e. 6 h once the video reached it) and its uploader's profile. Reading that view once
into pandas and aggregating in memory keeps each analysis a few lines and identical on SQLite and
MariaDB; `Facts` caches it for a few seconds so one dashboard refresh costs one query per table.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from core.reference import BEIJING
from sink.sql import prediction, up_profile, video, video_early_metrics

"""Bilibili's audience clock: days, publish hours and weekdays are read in Beijing time."""


def read_videos(engine: Engine) -> pd.DataFrame:
    """One row per video with its latest stored early metrics and engagement; Beijing `pub_local`."""
    m = video_early_metrics
    latest = select(m.c.bvid, func.max(m.c.delta_t).label("delta_t")).group_by(m.c.bvid).subquery()
    stmt = (
        select(
            video.c.bvid,
            video.c.pub_time,
            video.c.duration,
            video.c.category_name,
            video.c.title,
            video.c.up_mid,
            m.c.delta_t,
            m.c.view_cnt.label("view"),
            m.c.like_cnt.label("like"),
            m.c.coin_cnt.label("coin"),
            m.c.fav_cnt.label("favorite"),
            m.c.reply_cnt.label("reply"),
            m.c.danmaku_cnt.label("danmaku"),
            m.c.share_cnt.label("share"),
        )
        .select_from(video)
        .join(latest, latest.c.bvid == video.c.bvid, isouter=True)
        .join(m, (m.c.bvid == latest.c.bvid) & (m.c.delta_t == latest.c.delta_t), isouter=True)
    )
    with engine.connect() as conn:
        df = pd.DataFrame(conn.execute(stmt).mappings().all(), columns=list(stmt.selected_columns.keys()))
    counts = ["view", "like", "coin", "favorite", "reply", "danmaku", "share"]
    df[counts] = df[counts].astype("float64").fillna(0.0)
    df["duration"] = df["duration"].astype("float64")
    df["interactions"] = (
        df["like"] + 2 * df["coin"] + df["favorite"] + df["share"] + df["reply"] + df["danmaku"]
    )
    df["pub_local"] = pd.to_datetime(df["pub_time"]).dt.tz_localize("UTC").dt.tz_convert(BEIJING)
    return df


def read_ups(engine: Engine) -> pd.DataFrame:
    """The `up_profile` table as stored (the latest observation per uploader)."""
    with engine.connect() as conn:
        rows = conn.execute(select(up_profile)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in up_profile.columns])


def read_latest_probs(engine: Engine) -> pd.DataFrame:
    """Scored predictions (bvid, horizon, prob), the newest model version's when several scored a video."""
    stmt = select(prediction.c.bvid, prediction.c.horizon, prediction.c.prob, prediction.c.scored_at).where(
        prediction.c.status == "scored"
    )
    with engine.connect() as conn:
        df = pd.DataFrame(
            conn.execute(stmt).mappings().all(), columns=["bvid", "horizon", "prob", "scored_at"]
        )
    return df.sort_values("scored_at").drop_duplicates(["bvid", "horizon"], keep="last")


def up_features(videos: pd.DataFrame, ups: pd.DataFrame) -> pd.DataFrame:
    """Seed 000's UP features per uploader, from its videos in SQL and its stored profile.

    Seed 000 reads totals from the UP's space page; the stream stores each video's counts at its
    latest checkpoint, so totals here are sums over the uploader's videos we observed. Followers come
    from `up_profile` (0 when no profile was seen yet).
    """
    per = videos.dropna(subset=["up_mid"]).groupby("up_mid")
    agg = pd.DataFrame(
        {
            "videos": per.size(),
            "total_view": per["view"].sum(),
            "total_like": per["like"].sum(),
            "interactions": per["interactions"].sum(),
            "total_duration": per["duration"].sum(),
            "latest_pub": per["pub_time"].max(),
        }
    )
    profiles = ups.set_index("up_mid")[["name", "follower_cnt", "total_video_cnt", "updated_ts"]]
    df = agg.join(profiles, how="outer")
    df["videos"] = df["videos"].fillna(0).astype(int)
    for col in ("total_view", "total_like", "interactions", "total_duration", "follower_cnt"):
        df[col] = df[col].astype("float64").fillna(0.0)
    views = df["total_view"].replace(0, np.nan)
    df["log_followers"] = np.log10(df["follower_cnt"] + 1)
    df["log_view"] = np.log10(df["total_view"] + 1)
    df["like_rate"] = (df["total_like"] / views).fillna(0.0)
    df["engagement_rate"] = (df["interactions"] / views).fillna(0.0)
    df["avg_duration"] = (df["total_duration"] / df["videos"].replace(0, np.nan)).fillna(0.0)
    df.index.name = "mid"
    return df.reset_index()


@dataclass(frozen=True)
class Frames:
    """The frames one analysis request works on, read together."""

    videos: pd.DataFrame
    ups: pd.DataFrame
    up_stats: pd.DataFrame


class Facts:
    """Reads the frames at most once per `ttl_s`: a dashboard refresh makes a dozen calls."""

    def __init__(self, engine: Engine, ttl_s: float = 5.0) -> None:
        self.engine, self.ttl_s = engine, ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, Frames] | None = None

    def get(self) -> Frames:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl_s:
                videos, ups = read_videos(self.engine), read_ups(self.engine)
                self._cached = (now, Frames(videos, ups, up_features(videos, ups)))
            return self._cached[1]
