"""The collectors' pure parts: WBI signing against bili-api.md's test vector, and the parser over every
item of the real `popular` captures and over the odd shapes the API is known to produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.events import HotListEntry, Snapshot
from ingest.captures import captures
from ingest.collect import parse, wbi

POPULAR = "/x/web-interface/popular"


def test_wbi_test_vector() -> None:
    mixin = wbi.mixin_key("7cd084941338484aae1ad9425b84077c", "4932caff0ff746eab6f01bf08b70ac45")
    assert mixin == "ea1db124af3c7062474693fa704f4ff8"
    params = {"foo": 114, "bar": 514, "zab": 1919810}
    assert wbi.signed_query(params, 1702204169) == "bar=514&foo=114&wts=1702204169&zab=1919810"
    signed = wbi.sign(params, 1702204169, mixin)
    assert signed["w_rid"] == "8f6f2b5b3d485fe1886cec6a0be8c5d4"
    assert signed["wts"] == "1702204169" and signed["foo"] == "114"


def test_wbi_encodes_spaces_and_strips_forbidden_characters() -> None:
    assert wbi.signed_query({"q": "a b!'()*c"}, 1) == "q=a%20bc&wts=1"
    assert wbi.key_of("https://i0.hdslb.com/bfs/wbi/7cd084941338484aae1ad9425b84077c.png") == (
        "7cd084941338484aae1ad9425b84077c"
    )
    with pytest.raises(ValueError, match="32 characters"):
        wbi.mixin_key("short", "keys")


def test_every_item_of_every_real_capture_parses(real_captures: Path) -> None:
    days = captures(real_captures)
    assert len(days) == 21 and (days[0].day, days[-1].day) == ("2023-08-25", "2023-09-14")
    warn = parse.FieldWarnings()
    items = snaps = entries = ranked = max_mid = 0
    for capture in days:
        payload = capture.payload()
        query = {"pn": "1", "ps": str(len(payload["list"]))}
        events = parse.page_events(POPULAR, query, payload, int(capture.at), warn)
        day_snaps = [e for e in events if isinstance(e, Snapshot)]
        day_entries = [e for e in events if isinstance(e, HotListEntry)]
        assert len(day_snaps) == len(day_entries) == len(payload["list"]) == payload["number"], capture.day
        assert [e.rank for e in day_entries] == list(range(1, len(day_entries) + 1))
        assert {e.bvid for e in day_snaps} == {e.bvid for e in day_entries}
        assert all(s.follower is not None and s.tid is not None and s.mid is not None for s in day_snaps)
        items += len(payload["list"])
        snaps += len(day_snaps)
        entries += len(day_entries)
        ranked += sum(1 for s in day_snaps if s.his_rank)
        max_mid = max(max_mid, *(s.mid or 0 for s in day_snaps))
    assert items == snaps == entries == 12190
    assert ranked > 0  # his_rank > 0 is kept as a ranking signal
    assert max_mid > 10**15  # 16-digit uploader ids fit the contract's Mid (MAX_MID)
    assert not warn.counts


def _item(**changes: object) -> dict[str, object]:
    item: dict[str, object] = {
        "bvid": "BV1xx4y1a7Aa",
        "pubdate": 1719687153,
        "tid": 136,
        "owner": {"mid": 341532844, "name": "up"},
        "stat": {"view": 39479, "danmaku": 303, "reply": 169, "favorite": 1650, "coin": 473, "share": 653,
                 "like": 5843, "his_rank": 0},
    }  # fmt: skip
    return item | changes


def test_odd_shapes_are_handled_and_named() -> None:
    warn = parse.FieldWarnings()
    ts = 1719690000
    string_counts = _item(stat={k: str(v) for k, v in _item()["stat"].items()})  # type: ignore[attr-defined]
    snap = parse.snapshot(string_counts, ts, "/x/web-interface/newlist", warn)
    assert snap is not None and snap.view == 39479 and not warn.counts

    renamed = _item(
        stat={"vv": 10, "danmaku": 1, "reply": 1, "favorites": 2, "coin": 1, "share": 1, "like": 3}
    )
    snap = parse.snapshot(renamed, ts, "/x/web-interface/ranking/v2", warn)
    assert snap is not None and (snap.view, snap.favorite) == (10, 2)
    assert warn.counts[("/x/web-interface/ranking/v2", "stat.view", "missing, used 'vv'")] == 1
    assert warn.counts[("/x/web-interface/ranking/v2", "stat.favorite", "missing, used 'favorites'")] == 1

    hidden = _item(stat=_item()["stat"] | {"view": "--"})  # type: ignore[operator]
    assert parse.snapshot(hidden, ts, POPULAR, warn) is None
    assert warn.counts[(POPULAR, "stat.view", "hidden or unusable count: no snapshot")] == 1
    assert parse.count("1.2万") == 12000 and parse.count("3亿") == 300_000_000 and parse.count(-1) is None

    assert parse.rcmd_reason({"rcmd_reason": {"content": "百万播放", "corner_mark": 4}}) == "百万播放"
    assert parse.rcmd_reason({"rcmd_reason": "up主推荐"}) == "up主推荐"
    assert parse.rcmd_reason({}) is None

    no_bvid = parse.page_events(
        POPULAR, {"pn": "2", "ps": "20"}, {"list": [_item(bvid=None), _item()]}, ts, warn
    )
    assert [e.rank for e in no_bvid if isinstance(e, HotListEntry)] == [22]
    assert parse.page_events(POPULAR, {}, {"no_more": True}, ts, warn) == []
    assert warn.counts[(POPULAR, "list", "missing")] == 1


def test_profile_needs_followers_and_views() -> None:
    warn = parse.FieldWarnings()
    counts = parse.card_counts(
        7, {"card": {"mid": "7", "name": "某UP", "fans": 52000}, "archive_count": 140}, warn
    )
    assert counts.follower == 52000 and counts.archive_count == 140
    assert parse.up_profile(counts, 1719690000, warn=warn) is None  # no total views yet
    assert warn.counts[("/x/web-interface/card", "total_view", "missing: profile not published")] == 1
    profile = parse.up_profile(parse.UpCounts(7, "某UP", 52000, 140, 9, 123456), 1719690000, warn=warn)
    assert profile is not None and profile.total_view == 123456 and profile.name == "某UP"


def test_danmaku_xml() -> None:
    xml = '<i><chatid>1</chatid><d p="1.5,1,25,16777215,1700000000,0,ab,1,10">好耶</d><d p="x">odd</d></i>'
    warn = parse.FieldWarnings()
    items = parse.danmaku(xml, warn=warn)
    assert [(d.t, d.mode, d.sent, d.text) for d in items] == [
        (1.5, 1, 1700000000, "好耶"),
        (0.0, 0, 0, "odd"),
    ]
    assert parse.danmaku("<i><d", warn=warn) == []
    assert {field for _, field, _ in warn.counts} == {"d@p", "xml"}
