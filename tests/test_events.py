"""Every event contract accepts good input, rejects bad input with a reason, and matches its schema file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.events import (
    BVID_PATTERN,
    EVENT_TYPES,
    BadEvent,
    DanmakuLine,
    DeadLetter,
    Event,
    HotListEntry,
    Outcome,
    Prediction,
    Snapshot,
    UpProfile,
    parse_event,
)
from core.schemas import SCHEMA_DIR, file_name, render

TS = 1_793_000_000
GOOD: dict[type[Event], dict[str, Any]] = {
    Snapshot: {
        "bvid": "BV1xx4y1a7Aa",
        "ts": TS + 600,
        "pubdate": TS,
        "view": 1200,
        "like": 80,
        "coin": 9,
        "favorite": 12,
        "reply": 4,
        "danmaku": 7,
        "share": 2,
        "tid": 4,
        "tname": "游戏",
        "title": "【原创】测试",
        "tags": ["游戏", "实况"],
        "follower": 52000,
    },
    UpProfile: {"mid": 341532844, "ts": TS, "follower": 52000, "archive_count": 140, "total_view": 9_100_000},
    HotListEntry: {"bvid": "BV1xx4y1a7Aa", "ts": TS, "source": "popular", "rank": 12},
    Outcome: {
        "bvid": "BV1xx4y1a7Aa",
        "pubdate": TS,
        "label": 1,
        "hot_ts": TS + 7200,
        "source": "popular",
        "covered_until": TS + 7200,
    },
    DanmakuLine: {"bvid": "BV1xx4y1a7Aa", "ts": TS, "text": "前方高能", "dmid": 1_491_000_000_000_000_000},
    Prediction: {
        "bvid": "BV1xx4y1a7Aa",
        "horizon": "1h",
        "as_of": TS + 3600,
        "status": "scored",
        "prob": 0.84,
        "label": 1,
        "level": "高热",
        "model_version": "v1",
        "scored_at": 1_800_000_000.5,
    },
    DeadLetter: {"topic": "bili.video.snapshot", "reason": "not JSON", "payload_b64": "/w==", "at": 1.0},
}

BAD: list[tuple[type[Event], dict[str, Any], str]] = [
    (Snapshot, {"bvid": "av170001"}, "bvid"),
    (Snapshot, {"bvid": "BV1xx4y1a7A0"}, "bvid"),  # 0 is not base58
    (Snapshot, {"view": -1}, "view"),
    (Snapshot, {"like": 10**13}, "like"),
    (Snapshot, {"view": "1200"}, "view"),  # strict: no strings for counts
    (Snapshot, {"ts": TS - 60}, "before pubdate"),
    (Snapshot, {"pubdate": 100}, "pubdate"),
    (Snapshot, {"ts": 5_000_000_000}, "ts"),
    (Snapshot, {"view": None}, "view"),
    (Snapshot, {"title": "x" * 600}, "title"),
    (UpProfile, {"follower": -3}, "follower"),
    (UpProfile, {"mid": 0}, "mid"),
    (UpProfile, {"mid": 10**17}, "mid"),
    (HotListEntry, {"source": "weibo"}, "source"),
    (HotListEntry, {"rank": 0}, "rank"),
    (Outcome, {"label": 2}, "label"),
    (Outcome, {"source": "weibo"}, "source"),
    (Outcome, {"covered_until": 100}, "covered_until"),
    (DanmakuLine, {"text": ""}, "text"),
    (DanmakuLine, {"text": "x" * 1001}, "text"),
    (DanmakuLine, {"dmid": 0}, "dmid"),
    (Prediction, {"horizon": "2h"}, "horizon"),
    (Prediction, {"prob": 1.5}, "prob"),
    (Prediction, {"status": "maybe"}, "status"),
]


@pytest.mark.parametrize("model", EVENT_TYPES, ids=lambda m: m.__name__)
def test_good_event_round_trips(model: type[Event]) -> None:
    event = parse_event(model, json.dumps(GOOD[model]).encode())
    assert parse_event(model, event.to_json()) == event


@pytest.mark.parametrize(("model", "change", "needle"), BAD, ids=[f"{m.__name__}-{n}" for m, _, n in BAD])
def test_bad_event_is_rejected_with_a_reason(model: type[Event], change: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadEvent, match=needle):
        parse_event(model, json.dumps({**GOOD[model], **change}).encode())


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty message"),
        (b"{", "Invalid JSON"),
        (b"\xff\xfe\x00", "Invalid JSON"),
        (b"[1, 2]", "object"),
        (b"null", "object"),
        (b"[" * 50_000, "Invalid JSON"),
        (b'{"bvid": "BV1xx4y1a7Aa"}', "Field required"),
    ],
)
def test_garbage_bytes_are_rejected(raw: bytes, needle: str) -> None:
    with pytest.raises(BadEvent, match=needle):
        parse_event(Snapshot, raw)


def test_real_sixteen_digit_uploader_ids_are_accepted() -> None:
    assert parse_event(UpProfile, json.dumps({**GOOD[UpProfile], "mid": 3_546_000_000_000_000})).mid > 10**15


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    snap = parse_event(Snapshot, json.dumps({**GOOD[Snapshot], "vt": 0, "new_field": [1]}).encode())
    assert snap.view == 1200


def test_keys_follow_design() -> None:
    assert parse_event(Snapshot, json.dumps(GOOD[Snapshot])).key() == b"BV1xx4y1a7Aa"
    assert parse_event(UpProfile, json.dumps(GOOD[UpProfile])).key() == b"341532844"


def test_digest_line_has_nine_decimals_and_empty_prob_when_unscored() -> None:
    pred = parse_event(Prediction, json.dumps(GOOD[Prediction]))
    assert pred.digest_line() == "BV1xx4y1a7Aa,1h,scored,0.840000000"
    unscored = pred.model_copy(update={"status": "already_hot", "prob": None})
    assert unscored.digest_line() == "BV1xx4y1a7Aa,1h,already_hot,"


def test_dead_letter_keeps_the_original_bytes() -> None:
    raw = b"\xff not json \x00"
    letter = DeadLetter.of(topic="t", payload=raw, reason="not JSON", at=1.0, key=b"k", offset=7)
    assert parse_event(DeadLetter, letter.to_json()).payload() == raw


@pytest.mark.parametrize("model", EVENT_TYPES, ids=lambda m: m.__name__)
def test_schema_file_matches_model(model: type[Event]) -> None:
    path = Path(SCHEMA_DIR) / file_name(model)
    assert path.read_text(encoding="utf-8") == render(model), "run `hotvideo schemas` to refresh"


@pytest.mark.parametrize("model", EVENT_TYPES, ids=lambda m: m.__name__)
def test_schema_accepts_what_the_model_accepts(model: type[Event]) -> None:
    schema = json.loads((Path(SCHEMA_DIR) / file_name(model)).read_text(encoding="utf-8"))
    jsonschema.validate(GOOD[model], schema)


@pytest.mark.parametrize(("model", "change", "needle"), [b for b in BAD if b[2] != "before pubdate"])
def test_schema_rejects_what_the_model_rejects(
    model: type[Event], change: dict[str, Any], needle: str
) -> None:
    schema = json.loads((Path(SCHEMA_DIR) / file_name(model)).read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**GOOD[model], **change}, schema)


HOSTILE_BVIDS = [
    "BV1xx4y1a7Aa*",
    "BV1*",
    "BV1xx4y1a7Aa\n",
    "BV1xx4y1a7Aa\r\nFLUSHALL",
    "BV1xx4y1a7Aa:hot:1h",
    "hv:video:*",
    "BV1xx4y1a7Aa' OR '1'='1",
    "BV1xx4y1a7A\u0430",  # Cyrillic а
    "ＢＶ1xx4y1a7Aa",  # full-width letters
    "BV１xx4y1a7Aa",  # a full-width digit
    " BV1xx4y1a7Aa",
    "BV1xx4y1a7Aa\x00",
    "bv1xx4y1a7Aa",
    "",
]
"""Ids that must not pass: the Redis sink builds keys from bvids (tests/test_sink_redis.py checks them)."""


@pytest.mark.parametrize("model", [Snapshot, HotListEntry, Prediction], ids=lambda m: m.__name__)
@pytest.mark.parametrize("hostile", HOSTILE_BVIDS, ids=range(len(HOSTILE_BVIDS)))
def test_every_bvid_contract_rejects_hostile_ids(model: type[Event], hostile: str) -> None:
    with pytest.raises(BadEvent, match="bvid"):
        parse_event(model, json.dumps({**GOOD[model], "bvid": hostile}).encode())


def test_the_schema_pattern_is_anchored_for_ecma_regex_but_python_dollar_is_looser() -> None:
    """Why Python code must use `re.fullmatch` with BVID_PATTERN, never `re.match`/`re.search`."""
    assert re.search(BVID_PATTERN, "BV1xx4y1a7Aa\n") is not None  # `$` matches before a final newline
    assert re.fullmatch(BVID_PATTERN, "BV1xx4y1a7Aa\n") is None
