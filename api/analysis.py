"""Seed 000's analyses as plain functions of the SQL frames (`api.facts`), returning JSON-ready dicts.

Kept apart from the routes so each one is a small pandas computation that the tests can call on a
known frame and the HTTP layer only validates input and serialises.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from api.facts import Frames

GOAL = (
    "在视频发布后 1/3/6 小时内，根据早期播放与互动数据预测其能否进入B站热门，"
    "帮助运营提前发现潜力视频与潜力UP主。"
)
"""The project's goal statement shown on the overview (seed 000 asks for one)."""

CLUSTER_FEATURES = ("log_followers", "log_view", "like_rate", "engagement_rate", "avg_duration")
"""Seed 000's clustering features, in its order."""
FEATURE_LABELS = {
    "log_followers": "粉丝",
    "log_view": "播放",
    "like_rate": "点赞率",
    "engagement_rate": "互动率",
    "avg_duration": "时长",
}
FOLLOWER_TIERS = ((0, "<1千"), (1e3, "1千–1万"), (1e4, "1万–10万"), (1e5, "10万–100万"), (1e6, "100万+"))
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def _num(x: Any) -> float:
    """A finite float for JSON (NaN and inf have no JSON form)."""
    v = float(x)
    return v if np.isfinite(v) else 0.0


def overview(f: Frames) -> dict[str, Any]:
    """Daily active UPs, average daily views and the watch-duration proxy, with their daily series."""
    v = f.videos
    day = v["pub_local"].dt.strftime("%Y-%m-%d")
    daily = pd.DataFrame({"day": day, "up": v["up_mid"], "view": v["view"]}).groupby("day")
    dau = daily["up"].nunique()
    views = daily["view"].sum()
    total_view = float(v["view"].sum())
    watch = float((v["view"] * v["duration"].fillna(0)).sum() / total_view) if total_view > 0 else 0.0
    return {
        "goal": GOAL,
        "videos": len(v),
        "ups": int(v["up_mid"].nunique()),
        "days": len(dau),
        "dau_up": _num(dau.mean()) if len(dau) else 0.0,
        "avg_daily_views": _num(views.mean()) if len(views) else 0.0,
        "avg_watch_seconds": _num(watch),
        "watch_proxy": "播放量加权的平均视频时长（秒）：假设每次播放看完全片，是人均观看时长的上界",
        "daily": [
            {"day": d, "dau_up": int(dau[d]), "views": _num(views[d])} for d in sorted(dau.index.tolist())
        ],
    }


def _up_row(r: pd.Series) -> dict[str, Any]:
    return {
        "mid": str(r["mid"]),
        "name": None if pd.isna(r["name"]) else str(r["name"]),
        "followers": int(r["follower_cnt"]),
        "videos": int(r["videos"]),
        "total_view": _num(r["total_view"]),
        "like_rate": _num(r["like_rate"]),
        "engagement_rate": _num(r["engagement_rate"]),
        "avg_duration": _num(r["avg_duration"]),
    }


def find_ups(
    f: Frames,
    uid: str | None,
    name: str | None,
    min_followers: int | None,
    max_followers: int | None,
    limit: int,
) -> dict[str, Any]:
    """UPs matching every filter given (UID exact, name substring, follower range), most followed first."""
    s = f.up_stats
    mask = pd.Series(True, index=s.index)
    if uid is not None:
        mask &= s["mid"] == uid
    if name:
        mask &= s["name"].fillna("").str.contains(name, regex=False)
    if min_followers is not None:
        mask &= s["follower_cnt"] >= min_followers
    if max_followers is not None:
        mask &= s["follower_cnt"] <= max_followers
    hits = s[mask].sort_values(["follower_cnt", "mid"], ascending=[False, True])
    return {"total": len(hits), "items": [_up_row(r) for _, r in hits.head(limit).iterrows()]}


def _tier(followers: float) -> str:
    return next(label for low, label in reversed(FOLLOWER_TIERS) if followers >= low)


def _box(values: pd.Series) -> list[float]:
    """ECharts boxplot five numbers: whiskers at the furthest points within 1.5 IQR of the quartiles."""
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
    return [_num(inside.min()), _num(q1), _num(med), _num(q3), _num(inside.max())]


def engagement(f: Frames) -> dict[str, Any]:
    """Potential-UP analysis: followers vs engagement rate (scatter) and engagement per follower tier (box).

    A potential UP has an engagement rate in the top quarter while its followers are below the median:
    its audience reacts far more than its size suggests.
    """
    s = f.up_stats[f.up_stats["videos"] > 0]
    if s.empty:
        return {"points": [], "tiers": [], "boxes": [], "thresholds": None}
    eng_q3 = float(s["engagement_rate"].quantile(0.75))
    follower_median = float(s["follower_cnt"].median())
    points = [
        {
            **_up_row(r),
            "log_followers": _num(r["log_followers"]),
            "potential": bool(r["engagement_rate"] >= eng_q3 and r["follower_cnt"] < follower_median),
        }
        for _, r in s.iterrows()
    ]
    tiers = s["follower_cnt"].map(_tier)
    present = [label for _, label in FOLLOWER_TIERS if (tiers == label).any()]
    return {
        "points": points,
        "tiers": present,
        "boxes": [_box(s["engagement_rate"][tiers == label]) for label in present],
        "counts": [int((tiers == label).sum()) for label in present],
        "thresholds": {"engagement_q3": eng_q3, "follower_median": follower_median},
    }


def _describe(z: pd.Series, centre: pd.Series) -> tuple[str, str]:
    """A name and a one-line description of a cluster from its standardised centre."""

    def level(feature: str) -> str:
        value = z[feature]
        return "高" if value > 0.5 else "低" if value < -0.5 else "中"

    fans, views, engage = level("log_followers"), level("log_view"), level("engagement_rate")
    if fans == "高" and views == "高":
        name = "头部UP主"
    elif fans != "高" and engage == "高":
        name = "高互动潜力UP主"
    elif views == "高":
        name = "流量型UP主"
    elif fans == "低" and views == "低":
        name = "新人/长尾UP主"
    else:
        name = "稳定腰部UP主"
    parts = "，".join(f"{FEATURE_LABELS[c]}{level(c)}" for c in CLUSTER_FEATURES)
    detail = (
        f"{parts}（平均粉丝 {10 ** centre['log_followers'] - 1:,.0f}，"
        f"平均播放 {10 ** centre['log_view'] - 1:,.0f}，"
        f"互动率 {centre['engagement_rate']:.1%}，平均时长 {centre['avg_duration'] / 60:.1f} 分钟）"
    )
    return name, detail


def clusters(f: Frames, k: int) -> dict[str, Any]:
    """KMeans on seed 000's five UP features (standardised, so no feature dominates by its unit)."""
    s = f.up_stats[f.up_stats["videos"] > 0].reset_index(drop=True)
    k = min(k, len(s))
    if k < 1:
        return {"k": 0, "features": list(CLUSTER_FEATURES), "clusters": [], "points": []}
    X = s[list(CLUSTER_FEATURES)].to_numpy(dtype=np.float64)
    scaler = StandardScaler().fit(X)
    scaler.scale_[scaler.scale_ == 0] = 1.0
    km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(scaler.transform(X))
    out = []
    for c in range(k):
        z = pd.Series(km.cluster_centers_[c], index=CLUSTER_FEATURES)
        centre = pd.Series(
            scaler.inverse_transform(km.cluster_centers_[c : c + 1])[0], index=CLUSTER_FEATURES
        )
        name, detail = _describe(z, centre)
        out.append(
            {
                "cluster": c,
                "name": name,
                "description": detail,
                "size": int((km.labels_ == c).sum()),
                "centre": {feat: _num(centre[feat]) for feat in CLUSTER_FEATURES},
            }
        )
    points = [
        {
            "mid": str(r["mid"]),
            "name": None if pd.isna(r["name"]) else str(r["name"]),
            "cluster": int(label),
            "log_followers": _num(r["log_followers"]),
            "log_view": _num(r["log_view"]),
        }
        for (_, r), label in zip(s.iterrows(), km.labels_, strict=True)
    ]
    return {"k": k, "features": list(CLUSTER_FEATURES), "clusters": out, "points": points}


def _video_row(r: pd.Series) -> dict[str, Any]:
    return {
        "bvid": str(r["bvid"]),
        "title": None if pd.isna(r["title"]) else str(r["title"]),
        "category": None if pd.isna(r["category_name"]) else str(r["category_name"]),
        "pub_time": r["pub_local"].isoformat(),
        "duration": None if pd.isna(r["duration"]) else int(r["duration"]),
        "view": int(r["view"]),
        "engagement_rate": _num(r["interactions"] / r["view"]) if r["view"] > 0 else 0.0,
        "metrics_at_min": None if pd.isna(r["delta_t"]) else int(r["delta_t"]),
    }


def up_detail(f: Frames, mid: str, latest: int) -> dict[str, Any] | None:
    """One UP's card (profile + seed 000 features) and its latest videos; None if unknown."""
    s = f.up_stats[f.up_stats["mid"] == mid]
    if s.empty:
        return None
    r = s.iloc[0]
    vids = f.videos[f.videos["up_mid"] == mid].sort_values("pub_time", ascending=False).head(latest)
    return {
        **_up_row(r),
        "log_followers": _num(r["log_followers"]),
        "log_view": _num(r["log_view"]),
        "profile_updated_ts": None if pd.isna(r["updated_ts"]) else int(r["updated_ts"]),
        "archive_count": None if pd.isna(r["total_video_cnt"]) else int(r["total_video_cnt"]),
        "latest_videos": [_video_row(v) for _, v in vids.iterrows()],
    }


def up_history(f: Frames, mid: str) -> dict[str, Any] | None:
    """Per Beijing day: the UP's new videos, their views and engagement rate, and the follower count.

    `up_profile` keeps the latest observation only, so followers are one point per stored observation
    (today: one); views and engagement are per publication day of the UP's videos.
    """
    s = f.up_stats[f.up_stats["mid"] == mid]
    if s.empty:
        return None
    vids = f.videos[f.videos["up_mid"] == mid]
    day = vids["pub_local"].dt.strftime("%Y-%m-%d")
    g = vids.assign(day=day).groupby("day")
    views, inter, count = g["view"].sum(), g["interactions"].sum(), g.size()
    r = s.iloc[0]
    followers = []
    if not pd.isna(r["updated_ts"]):
        stamp = pd.Timestamp(int(r["updated_ts"]), unit="s", tz="UTC").tz_convert("Asia/Shanghai")
        followers.append({"day": stamp.strftime("%Y-%m-%d"), "followers": int(r["follower_cnt"])})
    return {
        "mid": mid,
        "days": [
            {
                "day": d,
                "videos": int(count[d]),
                "views": _num(views[d]),
                "cumulative_views": _num(views.loc[:d].sum()),
                "engagement_rate": _num(inter[d] / views[d]) if views[d] > 0 else 0.0,
            }
            for d in sorted(count.index.tolist())
        ],
        "followers": followers,
    }


def heatmap(f: Frames) -> dict[str, Any]:
    """Average views by publish hour × weekday (Beijing time), with the video count per cell."""
    v = f.videos
    g = pd.DataFrame(
        {"w": v["pub_local"].dt.day_of_week, "h": v["pub_local"].dt.hour, "view": v["view"]}
    ).groupby(["w", "h"])["view"]
    mean, count = g.mean(), g.size()
    cells = [[int(h), int(w), _num(mean[(w, h)]), int(count[(w, h)])] for (w, h) in mean.index]
    return {
        "hours": list(range(24)),
        "weekdays": list(WEEKDAYS),
        "cells": cells,
        "max": _num(mean.max()) if len(mean) else 0.0,
    }


def zones(f: Frames) -> dict[str, Any]:
    """Zone (分区) ranking by video count, with average views."""
    v = f.videos.assign(zone=f.videos["category_name"].fillna("未知"))
    g = v.groupby("zone")["view"]
    table = pd.DataFrame({"videos": g.size(), "avg_view": g.mean()}).sort_values(
        ["videos", "avg_view"], ascending=False
    )
    return {
        "zones": [
            {"zone": str(z), "videos": int(r["videos"]), "avg_view": _num(r["avg_view"])}
            for z, r in table.iterrows()
        ]
    }
