"""The SQL sink on SQLite and MariaDB: idempotent upserts, conflict rules, text round trips."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.events import DanmakuLine, HotListEntry, Outcome, UpProfile
from sink.sql import SqlStore, VideoLabel, metadata
from tests.harness.predictions import ALL_HORIZONS, T0, bvid, make_prediction


@pytest.fixture
def store(sql_url: str) -> Iterator[SqlStore]:
    s = SqlStore(sql_url)
    yield s
    s.close()


def dump(store: SqlStore) -> dict[str, list[dict[str, Any]]]:
    """Every sink table, rows in key order."""
    with store.engine.connect() as conn:
        return {
            t.name: [dict(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns)).mappings()]
            for t in metadata.sorted_tables
        }


def profile(mid: int, ts: int, follower: int, name: str | None) -> UpProfile:
    return UpProfile(mid=mid, ts=ts, follower=follower, archive_count=10, total_view=10_000, name=name)


def test_prediction_writes_are_idempotent(store: SqlStore) -> None:
    batch = [make_prediction(i, h) for i in range(5) for h in ALL_HORIZONS]
    batch.append(make_prediction(0, "1h", model_version="m2", prob=0.9))
    store.write_predictions(batch)
    first = dump(store)
    store.write_predictions(batch)
    store.write_predictions(batch[::-1])
    assert dump(store) == first
    assert store.count_predictions() == 16
    assert len(first["video"]) == 5
    assert len(first["video_early_metrics"]) == 15


def test_rescoring_replaces_the_prediction(store: SqlStore) -> None:
    store.write_predictions([make_prediction(1, prob=0.2)])
    store.write_predictions([make_prediction(1, prob=None, status="already_hot")])
    [row] = store.predictions()
    assert (row["status"], row["prob"], row["label"], row["level"]) == ("already_hot", None, None, None)


def test_video_and_early_metrics_rows(store: SqlStore) -> None:
    store.write_predictions([make_prediction(2, h) for h in ALL_HORIZONS])
    # a later prediction that lacks the title (or the whole video info) does not erase it
    store.write_predictions([make_prediction(2, "6h", title=None)])
    store.write_predictions([make_prediction(2, "6h").model_copy(update={"video": None})])
    tables = dump(store)
    assert tables["video"] == [
        {
            "bvid": bvid(2),
            "pub_time": datetime(2023, 11, 14, 22, 13, 22),
            "duration": 300,
            "category_id": 17,
            "category_name": "单机游戏",
            "title": "title",
            "tags": "游戏,攻略",
            "up_mid": "1002",
        }
    ]
    metrics = tables["video_early_metrics"]
    assert [m["delta_t"] for m in metrics] == [60, 180, 360]
    assert metrics[0] | {"delta_t": 0} == {
        "bvid": bvid(2),
        "delta_t": 0,
        "view_cnt": 300,
        "like_cnt": 10,
        "coin_cnt": 5,
        "fav_cnt": 3,
        "reply_cnt": 2,
        "danmaku_cnt": 1,
        "share_cnt": 1,
        "view_rate": 12.5,
        "engagement_ratio": 0.27,
    }


HOSTILE_TEXT = [
    "【原神】4.2版本PV——「芙宁娜」🎉 it's \"hot\"'); DROP TABLE video; --",
    "'; DROP TABLE prediction; --",
    "Robert'); DELETE FROM up_profile WHERE ('1'='1",
    "\\'; SELECT SLEEP(5); -- \\",  # backslash escapes, which MySQL honours inside literals
    "%s %(bvid)s ? :title {0} $1",  # every DB-API paramstyle's placeholder
    "* : hv:video:* KEYS *\r\nFLUSHALL\r\n",
    "多行\n标题\t制表 𠜎 😀👍🏻",
    "nul\x00byte",
]
"""Text that would break, or rewrite, SQL built from strings; through bound parameters it is just text."""


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=range(len(HOSTILE_TEXT)))
def test_hostile_text_round_trips_verbatim(store: SqlStore, text: str) -> None:
    pred = make_prediction(3, title=text, level="高热", play_range="100w+")
    assert pred.video is not None
    pred = pred.model_copy(
        update={"video": pred.video.model_copy(update={"tname": text, "tags": [text, "游戏"]})}
    )
    store.write_predictions([pred, make_prediction(4)])
    store.write_profiles([profile(42, T0, 100, text), profile(43, T0, 100, "老番茄🍅")])
    store.write_hot_entries([HotListEntry(bvid=bvid(3), ts=T0, source="popular", rank=1)])
    store.write_danmaku(
        [DanmakuLine(bvid=bvid(3), ts=T0, text=text), DanmakuLine(bvid=bvid(3), ts=T0, text="好")]
    )
    tables = dump(store)
    assert {name: len(rows) for name, rows in tables.items()} == {
        "danmaku": 2,
        "video": 2,
        "video_early_metrics": 2,
        "up_profile": 2,
        "video_label": 0,
        "hot_entry": 1,
        "prediction": 2,
    }, "every table is still there, with exactly the rows written"
    video = tables["video"][0]
    assert (video["title"], video["category_name"], video["tags"]) == (text, text, f"{text},游戏")
    assert (tables["prediction"][0]["level"], tables["prediction"][0]["play_range"]) == ("高热", "100w+")
    assert [p["name"] for p in tables["up_profile"]] == [text, "老番茄🍅"]
    assert {d["text"] for d in tables["danmaku"]} == {text, "好"}
    assert [r["bvid"] for r in store.prediction_rows_for(bvid(3))] == [bvid(3)]


def test_bvids_differing_only_in_case_are_distinct(store: SqlStore) -> None:
    lower, upper = "BV1aaaaaaaaa", "BV1AAAAAAAAA"
    store.write_predictions([make_prediction(0).model_copy(update={"bvid": b}) for b in (lower, upper)])
    assert [r["bvid"] for r in store.predictions()] == sorted([lower, upper])


def test_newer_profile_wins(store: SqlStore) -> None:
    new, old = profile(7, T0 + 100, 2000, None), profile(7, T0, 1000, "旧名")
    store.write_profiles([old])
    store.write_profiles([new])  # newer, without a name: the known name stays
    store.write_profiles([old])  # late arrival of the older observation: ignored
    store.write_profiles([profile(8, T0 + 5, 50, "b"), profile(8, T0, 10, "a")])  # within a batch
    first = dump(store)["up_profile"]
    assert [(r["up_mid"], r["follower_cnt"], r["name"], r["updated_ts"]) for r in first] == [
        ("7", 2000, "旧名", T0 + 100),
        ("8", 50, "b", T0 + 5),
    ]
    store.write_profiles([new, old])
    assert dump(store)["up_profile"] == first


def test_earliest_hot_entry_and_best_rank_kept(store: SqlStore) -> None:
    b = bvid(4)
    store.write_hot_entries([HotListEntry(bvid=b, ts=T0 + 300, source="popular", rank=5)])
    store.write_hot_entries(
        [
            HotListEntry(bvid=b, ts=T0 + 100, source="popular", rank=20),
            HotListEntry(bvid=b, ts=T0 + 200, source="popular", rank=2),
            HotListEntry(bvid=b, ts=T0 + 900, source="weekly", rank=1),
        ]
    )
    first = dump(store)["hot_entry"]
    assert first == [
        {"bvid": b, "source": "popular", "first_ts": T0 + 100, "best_rank": 2},
        {"bvid": b, "source": "weekly", "first_ts": T0 + 900, "best_rank": 1},
    ]
    store.write_hot_entries([HotListEntry(bvid=b, ts=T0 + 300, source="popular", rank=5)])
    assert dump(store)["hot_entry"] == first


def test_labels_upsert(store: SqlStore) -> None:
    unknown = VideoLabel(bvid(5), None, None, T0 + 3600)
    known = VideoLabel(bvid(5), 1, "popular", T0 + 7 * 86400)
    store.write_labels([unknown])
    store.write_labels([known])
    store.write_labels([known])
    assert dump(store)["video_label"] == [
        {
            "bvid": bvid(5),
            "label": 1,
            "label_source": "popular",
            "covered_until": datetime(2023, 11, 21, 22, 13, 20),
        }
    ]


def test_danmaku_delivered_twice_is_stored_once(store: SqlStore) -> None:
    lines = [
        DanmakuLine(bvid=bvid(6), ts=T0, text="好耶", dmid=7),
        DanmakuLine(bvid=bvid(6), ts=T0 + 1, text="好耶", dmid=8),  # same text, another line
        DanmakuLine(bvid=bvid(6), ts=T0 + 2, text="无编号"),  # no id: keyed by time and text
    ]
    store.write_danmaku(lines)
    store.write_danmaku(lines)
    stored = sorted((d["ts"], d["text"]) for d in dump(store)["danmaku"])
    assert stored == [(T0, "好耶"), (T0 + 1, "好耶"), (T0 + 2, "无编号")]


def test_prediction_readers(store: SqlStore) -> None:
    store.write_predictions(
        [make_prediction(i, h, model_version=v) for v in ("m2", "m1") for h in ("6h", "1h") for i in (9, 6)]
    )
    assert store.count_predictions() == 8
    keys = [(r["bvid"], r["horizon"], r["model_version"]) for r in store.predictions()]
    assert keys == sorted(keys)
    rows = store.prediction_rows_for(bvid(6))
    assert [(r["horizon"], r["model_version"]) for r in rows] == [
        ("1h", "m1"),
        ("1h", "m2"),
        ("6h", "m1"),
        ("6h", "m2"),
    ]
    assert rows[0] == {
        "bvid": bvid(6),
        "horizon": "1h",
        "model_version": "m1",
        "as_of": T0 + 6 + 3600,
        "status": "scored",
        "prob": 0.5,
        "label": 1,
        "confidence": 0.5,
        "level": "普通",
        "play_range": "1w+",
        "scored_at": T0 + 86400.5,
        "snapshots_used": 3,
    }
    assert store.prediction_rows_for(bvid(7)) == []


SOURCE_DIRS = ("api", "hotvideo", "ingest", "model", "sink", "stream")
SQL_CALLS = {"execute", "executemany", "executescript", "exec_driver_sql", "text"}


def _built_from_strings(node: ast.expr) -> bool:
    """An f-string, a concatenation or %-format, or a .format() call: text spliced into a statement."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def test_no_sql_statement_is_built_from_strings() -> None:
    """SQL goes through SQLAlchemy Core or `?` placeholders: no statement text is assembled at run time."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in SQL_CALLS and _built_from_strings(node.args[0]):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []


def test_outcomes_merge_and_a_repeat_changes_nothing(store: SqlStore) -> None:
    def outcome(i: int, label: int | None, covered: int, source: str | None = None) -> Outcome:
        return Outcome(bvid=bvid(i), pubdate=T0, label=label, source=source, covered_until=covered)  # type: ignore[arg-type]

    day = 86400
    store.write_outcomes([outcome(1, None, T0 + 60), outcome(2, None, T0 + 60), outcome(3, None, T0 + 60)])
    decided = [outcome(1, 0, T0 + day), outcome(2, 1, T0 + day, "weekly"), outcome(3, None, T0 + 3600)]
    store.write_outcomes(decided)
    store.write_outcomes(decided)  # delivered twice
    store.write_outcomes([outcome(1, None, T0 + 60), outcome(2, 0, T0 + day)])  # old news, late
    store.write_outcomes([outcome(2, 1, T0 + day, "popular")])  # a positive's first source stays
    rows = {
        r["bvid"]: (r["label"], r["label_source"], r["covered_until"]) for r in dump(store)["video_label"]
    }

    def at(ts: int) -> datetime:
        return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)  # the sink's naive UTC

    assert rows == {
        bvid(1): (0, None, at(T0 + day)),
        bvid(2): (1, "weekly", at(T0 + day)),
        bvid(3): (None, None, at(T0 + 3600)),
    }
    store.write_outcomes([outcome(1, 1, T0 + day, "popular")])  # a late sighting turns 0 into 1
    assert {r["bvid"]: r["label"] for r in dump(store)["video_label"]}[bvid(1)] == 1
