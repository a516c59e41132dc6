"""Bilibili's zones and publishing rhythm as the simulator uses them.

Numbers come from the 12,190 real 综合热门 items in the captured popular lists (2023-08-25 …
2023-09-14): main-zone shares, sub-zone shares inside each main zone, duration median and spread per
main zone, publish hour and weekday (Beijing time). Ids and names are Bilibili's (bili-api.md §8); a
snapshot carries the sub-zone `tid`/`tname`, as the real `view` API does, and the main zone's `tid_v2`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.reference import ZONE_NAMES


@dataclass(frozen=True)
class SubZone:
    """A sub-zone (分区) and its share of the main zone's uploads."""

    tid: int
    tname: str
    share: float


@dataclass(frozen=True)
class Zone:
    """A main zone and how its videos differ from the site average."""

    tid: int
    tid_v2: int
    share: float
    """share of uploads"""
    view_bias: float
    """log10 offset of the recommendation wave"""
    duration_median_s: int
    duration_sigma: float
    """spread of ln(duration)"""
    coin_mult: float
    danmaku_mult: float
    topics: tuple[str, ...]
    """title and tag words"""
    subzones: tuple[SubZone, ...]

    @property
    def tname(self) -> str:
        return ZONE_NAMES[self.tid]


def _subs(*items: tuple[int, str, float]) -> tuple[SubZone, ...]:
    return tuple(SubZone(*item) for item in items)


ZONES: tuple[Zone, ...] = (
    Zone(
        160,
        1030,
        0.245,
        0.00,
        184,
        1.10,
        0.8,
        0.8,
        ("日常vlog", "出租屋", "搞笑", "小城生活"),
        _subs(
            (138, "搞笑", 0.48),
            (21, "日常", 0.25),
            (250, "出行", 0.10),
            (251, "三农", 0.06),
            (161, "手工", 0.05),
            (162, "绘画", 0.035),
            (239, "家居房产", 0.025),
        ),
    ),
    Zone(
        4,
        1008,
        0.175,
        0.00,
        355,
        1.10,
        0.9,
        1.4,
        ("原神", "我的世界", "单机实况", "王者荣耀"),
        _subs(
            (17, "单机游戏", 0.34),
            (172, "手机游戏", 0.31),
            (171, "电子竞技", 0.21),
            (65, "网络游戏", 0.09),
            (121, "GMV", 0.03),
            (173, "桌游棋牌", 0.02),
        ),
    ),
    Zone(
        211,
        1020,
        0.10,
        0.00,
        370,
        0.85,
        0.8,
        0.7,
        ("探店", "家常菜", "烘焙", "夜宵"),
        _subs(
            (212, "美食侦探", 0.40),
            (76, "美食制作", 0.29),
            (215, "美食记录", 0.19),
            (213, "美食测评", 0.09),
            (214, "田园美食", 0.03),
        ),
    ),
    Zone(
        181,
        1001,
        0.085,
        0.00,
        618,
        1.15,
        0.8,
        1.0,
        ("电影解说", "影视杂谈", "混剪", "剧集"),
        _subs(
            (182, "影视杂谈", 0.60), (85, "小剧场", 0.21), (183, "影视剪辑", 0.18), (184, "预告·资讯", 0.01)
        ),
    ),
    Zone(
        36,
        1010,
        0.085,
        0.00,
        449,
        1.10,
        1.6,
        0.9,
        ("历史", "心理学", "经济学", "冷知识"),
        _subs(
            (201, "科学科普", 0.30),
            (228, "人文历史", 0.29),
            (208, "校园学习", 0.13),
            (124, "社科·法律·心理", 0.11),
            (207, "财经商业", 0.09),
            (209, "职业职场", 0.03),
            (122, "野生技能协会", 0.03),
            (229, "设计·创意", 0.02),
        ),
    ),
    Zone(
        1,
        1005,
        0.057,
        0.00,
        214,
        1.05,
        1.2,
        1.6,
        ("MAD", "手书", "动漫杂谈", "新番"),
        _subs(
            (47, "短片·手书", 0.42),
            (27, "综合", 0.24),
            (253, "动漫杂谈", 0.18),
            (86, "特摄", 0.07),
            (24, "MAD·AMV", 0.05),
            (210, "手办·模玩", 0.04),
        ),
    ),
    Zone(
        3,
        1003,
        0.042,
        0.00,
        221,
        1.10,
        1.5,
        1.2,
        ("翻唱", "原创", "钢琴", "乐评"),
        _subs(
            (31, "翻唱", 0.24),
            (243, "乐评盘点", 0.15),
            (59, "演奏", 0.14),
            (130, "音乐综合", 0.12),
            (28, "原创音乐", 0.11),
            (29, "音乐现场", 0.10),
            (193, "MV", 0.07),
            (30, "VOCALOID·UTAU", 0.07),
        ),
    ),
    Zone(
        188,
        1012,
        0.037,
        0.00,
        551,
        1.05,
        1.3,
        0.7,
        ("手机测评", "显卡", "电脑装机", "数码"),
        _subs(
            (95, "数码", 0.85),
            (232, "科工机械", 0.05),
            (233, "极客DIY", 0.035),
            (230, "软件应用", 0.035),
            (231, "计算机技术", 0.03),
        ),
    ),
    Zone(
        217,
        1024,
        0.035,
        0.00,
        145,
        0.95,
        0.7,
        0.8,
        ("猫", "狗", "萌宠", "鹦鹉"),
        _subs(
            (218, "喵星人", 0.37),
            (219, "汪星人", 0.30),
            (220, "动物二创", 0.23),
            (221, "野生动物", 0.06),
            (75, "动物综合", 0.04),
        ),
    ),
    Zone(
        202,
        1009,
        0.031,
        0.00,
        188,
        1.20,
        0.6,
        0.8,
        ("热点", "社会", "环球", "评论"),
        _subs((205, "社会", 0.45), (203, "热点", 0.30), (206, "综合", 0.15), (204, "环球", 0.10)),
    ),
    Zone(
        119,
        1007,
        0.027,
        0.00,
        124,
        0.55,
        1.3,
        2.0,
        ("鬼畜调教", "音MAD", "名场面", "人力"),
        _subs(
            (216, "鬼畜剧场", 0.40), (126, "人力VOCALOID", 0.37), (22, "鬼畜调教", 0.19), (26, "音MAD", 0.04)
        ),
    ),
    Zone(
        234,
        1018,
        0.024,
        0.00,
        208,
        1.25,
        0.9,
        0.8,
        ("健身", "篮球", "足球", "骑行"),
        _subs(
            (164, "健身", 0.38),
            (238, "运动综合", 0.23),
            (235, "篮球", 0.18),
            (249, "足球", 0.14),
            (236, "竞技体育", 0.04),
            (237, "运动文化", 0.03),
        ),
    ),
    Zone(
        155,
        1014,
        0.019,
        0.00,
        224,
        1.15,
        0.9,
        0.6,
        ("穿搭", "美妆", "护肤", "发型"),
        _subs((157, "美妆护肤", 0.33), (252, "仿妆cos", 0.29), (159, "时尚潮流", 0.19), (158, "穿搭", 0.19)),
    ),
    Zone(
        5,
        1002,
        0.016,
        0.00,
        545,
        1.25,
        0.6,
        1.0,
        ("综艺", "明星", "舞台", "访谈"),
        _subs((137, "明星综合", 0.48), (241, "娱乐杂谈", 0.22), (242, "粉丝创作", 0.18), (71, "综艺", 0.12)),
    ),
    Zone(
        223,
        1013,
        0.013,
        0.00,
        426,
        0.90,
        0.8,
        0.6,
        ("新车", "试驾", "改装", "自驾"),
        _subs(
            (176, "汽车生活", 0.55),
            (247, "新能源车", 0.17),
            (246, "改装玩车", 0.08),
            (248, "房车", 0.07),
            (227, "购车攻略", 0.05),
            (240, "摩托车", 0.04),
            (245, "赛车", 0.04),
        ),
    ),
    Zone(
        129,
        1004,
        0.009,
        0.00,
        108,
        0.75,
        1.4,
        1.1,
        ("宅舞", "街舞", "翻跳", "中国舞"),
        _subs(
            (199, "明星舞蹈", 0.46),
            (20, "宅舞", 0.26),
            (154, "舞蹈综合", 0.16),
            (198, "街舞", 0.07),
            (200, "国风舞蹈", 0.05),
        ),
    ),
)
"""Shares of the real hot list per main zone; 资讯 (202) stands for the 3 % the model calls `other`."""

HOUR_WEIGHTS: tuple[float, ...] = (
    160, 80, 35, 30, 25, 40, 45, 65, 150, 250, 550, 1040,
    970, 400, 360, 390, 700, 1940, 2030, 1120, 790, 500, 330, 210,
)  # fmt: skip
"""Relative uploads per Beijing hour, 0–23: the publish hours of the real hot videos (noon bump at
11–12 h, the evening peak at 17–18 h, quiet small hours)."""

WEEKDAY_WEIGHTS: tuple[float, ...] = (0.88, 0.97, 0.99, 0.93, 1.17, 1.21, 1.03)
"""Relative uploads Monday … Sunday (Beijing): more on Friday and Saturday, as in the real list."""
