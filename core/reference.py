"""Reference data every stage shares, each fact defined here once.

Horizons (seed 001's Δt), the counters a snapshot carries, Beijing time (Bilibili's clock: publish
hours, daily lists, the captures' dates) and Bilibili's zone (分区) taxonomy (bili-api.md §8).
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Literal, get_args

Horizon = Literal["1h", "3h", "6h"]
"""A prediction horizon: the checkpoint at pubdate + Δt."""

HORIZONS: dict[str, int] = dict(zip(get_args(Horizon), (3600, 3 * 3600, 6 * 3600), strict=True))
"""Prediction horizons of seed 001: name -> seconds after publication, shortest first."""

MAX_HORIZON_S = max(HORIZONS.values())
"""The last checkpoint: nothing observed later than pubdate + this is needed for a prediction."""

LABEL_WINDOW_S = 24 * 3600
"""Seed 001's observation window T: a video never seen hot within it counts as a negative (unless a
sighting comes later: any sighting makes a positive)."""

COUNT_FIELDS: tuple[str, ...] = ("view", "like", "coin", "favorite", "reply", "danmaku", "share")
"""The counters of a video (`stat` in the API, a snapshot's counts), views first."""

BEIJING_OFFSET_S = 8 * 3600
"""Beijing time is UTC+8 all year (no daylight saving)."""
BEIJING = timezone(timedelta(seconds=BEIJING_OFFSET_S))

MAIN_ZONE_NAMES: dict[int, str] = {
    1: "动画",
    3: "音乐",
    4: "游戏",
    5: "娱乐",
    36: "知识",
    119: "鬼畜",
    129: "舞蹈",
    155: "时尚",
    160: "生活",
    181: "影视",
    188: "科技",
    211: "美食",
    217: "动物圈",
    223: "汽车",
    234: "运动",
}
"""The main zones a model tells apart (their order is the one-hot's) and that collectors list; the
rest (bangumi, films, 资讯) is `other`."""

MAIN_ZONES: tuple[int, ...] = tuple(MAIN_ZONE_NAMES)

ZONE_NAMES: dict[int, str] = {**MAIN_ZONE_NAMES, 202: "资讯"}
"""Every legacy main zone the project names (资讯 is a main zone on the site, `other` for a model)."""

SUB_ZONES: dict[int, tuple[int, ...]] = {
    1: (24, 25, 47, 210, 86, 253, 27),
    3: (28, 31, 30, 59, 193, 29, 130, 243, 244, 194),
    4: (17, 171, 172, 65, 173, 121, 136, 19),
    5: (71, 241, 242, 137),
    36: (201, 124, 228, 207, 208, 209, 229, 122),
    119: (22, 26, 126, 216, 127),
    129: (20, 198, 199, 200, 154, 156),
    155: (157, 252, 158, 159),
    160: (138, 250, 251, 239, 161, 162, 21),
    181: (182, 183, 85, 184),
    188: (95, 230, 231, 232, 233, 189, 190, 191),
    211: (76, 212, 213, 214, 215),
    217: (218, 219, 220, 221, 222, 75),
    223: (245, 246, 247, 248, 240, 227, 176),
    234: (235, 249, 164, 236, 237, 238),
}
"""The legacy sub-zone tids of each main zone."""

ZONE_OF_TID: dict[int, int] = {
    **{sub: main for main, subs in SUB_ZONES.items() for sub in subs},
    **{main: main for main in MAIN_ZONES},
}
"""The video API reports the sub-zone tid (17 单机游戏), analyses want its main zone (4 游戏)."""


def zone_of(tid: int | None) -> int | None:
    """Main zone of a (sub-)zone tid, None when unknown or outside the main zones."""
    return None if tid is None else ZONE_OF_TID.get(tid)
