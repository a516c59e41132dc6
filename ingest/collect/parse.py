"""Bilibili payloads → events, tolerant of drift.

The API changes without notice (bili-api.md: nothing was tested live), so a missing or renamed field
gives a warning naming the endpoint and the field, and the item is kept whenever the contract's
required fields can still be filled. Only an item without a usable bvid, pubdate or counts is skipped,
and that is a warning too.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.events import Event, HotListEntry, HotSource, Snapshot, UpProfile
from core.logs import get_logger
from core.reference import COUNT_FIELDS

log = get_logger(__name__)

RENAMED: dict[str, tuple[str, ...]] = {
    "view": ("vv", "play"),
    "favorite": ("favorites", "collect"),
    "danmaku": ("video_review", "dm"),
    "reply": ("review", "comment"),
}
"""Where a count turns up when its usual name is missing (other endpoints, older API versions)."""
OPTIONAL_BOUNDS = ("mid", "tid", "tname", "tid_v2", "duration", "title", "follower", "his_rank")
_UNITS = {"万": 10_000, "亿": 100_000_000}
_ABBREVIATED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([万亿]?)\+?\s*$")

ENDPOINT_SOURCE: dict[str, HotSource] = {
    "/x/web-interface/popular": "popular",
    "/x/web-interface/popular/series/one": "weekly",
    "/x/web-interface/popular/precious": "precious",
    "/x/web-interface/ranking/v2": "ranking",
}
LIST_ENDPOINTS = ("/x/web-interface/newlist", "/x/web-interface/dynamic/region")
VIEW_ENDPOINT = "/x/web-interface/view"


class FieldWarnings:
    """Counts drift per (endpoint, field, problem) and logs the first of each, not every item."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, endpoint: str, field: str, problem: str, example: Any = None) -> None:
        key = (endpoint, field, problem)
        if not self.counts[key]:
            log.warning(
                "bilibili field drift", endpoint=endpoint, field=field, problem=problem, example=example
            )
        self.counts[key] += 1


WARN = FieldWarnings()
"""The process-wide drift report."""


def count(value: Any) -> int | None:
    """A count as the API writes it: int, numeric string, "1.2万"; None when hidden ("--", "")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value >= 0 else None
    if isinstance(value, str) and (match := _ABBREVIATED.match(value)):
        return round(float(match.group(1)) * _UNITS.get(match.group(2), 1))
    return None


def rcmd_reason(item: Mapping[str, Any]) -> str | None:
    """`rcmd_reason` is an object {content, corner_mark} in popular and a string elsewhere."""
    value = item.get("rcmd_reason")
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _stat(item: Mapping[str, Any], name: str, endpoint: str, warn: FieldWarnings) -> int | None:
    stat = item.get("stat")
    stat = stat if isinstance(stat, Mapping) else {}
    for where in (stat, item):
        if name in where:
            value = count(where[name])
            if value is None:
                warn(endpoint, f"stat.{name}", "hidden or unusable count: no snapshot", where[name])
            return value
    for alias in RENAMED.get(name, ()):
        for where in (stat, item):
            if alias in where:
                warn(endpoint, f"stat.{name}", f"missing, used {alias!r}")
                return count(where[alias])
    warn(endpoint, f"stat.{name}", "missing")
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def snapshot(item: Mapping[str, Any], ts: int, endpoint: str, warn: FieldWarnings = WARN) -> Snapshot | None:
    """The archive object (or `view` data) as a Snapshot observed at `ts`, or None with a warning."""
    bvid = item.get("bvid")
    pubdate = _int(item.get("pubdate", item.get("ctime")))
    if not isinstance(bvid, str) or pubdate is None:
        warn(endpoint, "bvid" if not isinstance(bvid, str) else "pubdate", "missing: item skipped")
        return None
    counts = {name: _stat(item, name, endpoint, warn) for name in COUNT_FIELDS}
    if any(v is None for v in counts.values()):
        return None
    owner = item.get("owner")
    owner = owner if isinstance(owner, Mapping) else {}
    stat = item.get("stat")
    optional: dict[str, Any] = {
        "mid": _int(owner.get("mid", item.get("mid"))),
        "tid": _int(item.get("tid")),
        "tname": item.get("tname") if isinstance(item.get("tname"), str) else None,
        "tid_v2": _int(item.get("tid_v2")),
        "duration": _int(item.get("duration")),
        "title": str(item["title"])[:512] if isinstance(item.get("title"), str) else None,
        "follower": count(owner.get("follower")) if "follower" in owner else None,
        "his_rank": count(stat.get("his_rank")) if isinstance(stat, Mapping) else None,
    }
    fields = {"bvid": bvid, "ts": ts, "pubdate": pubdate, **counts, **optional}
    try:
        return Snapshot(**fields)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        if not bad or not bad <= set(OPTIONAL_BOUNDS):
            warn(
                endpoint, ",".join(sorted(bad)) or "item", f"invalid, item skipped: {exc.errors()[0]['msg']}"
            )
            return None
        for name in bad:
            warn(endpoint, name, "out of the contract's range: field left out", fields[name])
            fields[name] = None
        return Snapshot(**fields)


def items_of(data: Any, endpoint: str, key: str, warn: FieldWarnings = WARN) -> list[Mapping[str, Any]]:
    """`data[key]` as a list of objects; a missing or odd list is a warning and no items."""
    items = data.get(key) if isinstance(data, Mapping) else None
    if items is None:
        warn(endpoint, key, "missing")
        return []
    if not isinstance(items, list):
        warn(endpoint, key, f"not a list but {type(items).__name__}")
        return []
    return [item for item in items if isinstance(item, Mapping)]


def hot_events(
    items: Sequence[Mapping[str, Any]],
    ts: int,
    source: HotSource,
    endpoint: str,
    first_rank: int = 1,
    warn: FieldWarnings = WARN,
) -> list[Event]:
    """For each hot-list item: a HotListEntry (rank = position in the list) and, if it parses, a
    Snapshot. Entries come first, so labels reach the broker before the counts seen with them."""
    entries: list[Event] = []
    snaps: list[Event] = []
    for rank, item in enumerate(items, start=first_rank):
        bvid = item.get("bvid")
        try:
            entries.append(HotListEntry(bvid=str(bvid), ts=ts, source=source, rank=rank))
        except ValidationError:
            warn(endpoint, "bvid", "invalid: hot-list item skipped", bvid)
            continue
        snap = snapshot(item, ts, endpoint, warn)
        if snap is not None:
            snaps.append(snap)
    return entries + snaps


def page_events(
    path: str, params: Mapping[str, str], data: Any, ts: int, warn: FieldWarnings = WARN
) -> list[Event]:
    """The events one successful page yields; used live and when replaying the raw archive."""
    if path in LIST_ENDPOINTS:
        return [s for item in items_of(data, path, "archives", warn) if (s := snapshot(item, ts, path, warn))]
    if path == VIEW_ENDPOINT:
        snap = snapshot(data, ts, path, warn) if isinstance(data, Mapping) else None
        return [snap] if snap else []
    if path in ENDPOINT_SOURCE:
        first = 1
        if path.endswith("/popular"):
            first = (int(params.get("pn", 1)) - 1) * int(params.get("ps", 20)) + 1
        return hot_events(items_of(data, path, "list", warn), ts, ENDPOINT_SOURCE[path], path, first, warn)
    return []


@dataclass(frozen=True)
class UpCounts:
    """What `card`, `relation/stat` and the upload list say about an uploader."""

    mid: int
    name: str | None = None
    follower: int | None = None
    archive_count: int | None = None
    total_like: int | None = None
    total_view: int | None = None
    historical_avg_view: float | None = None


def card_counts(mid: int, data: Any, warn: FieldWarnings = WARN) -> UpCounts:
    """`x/web-interface/card` → name, followers, archive count, likes (fields may be missing)."""
    endpoint = "/x/web-interface/card"
    data = data if isinstance(data, Mapping) else {}
    card = data.get("card") if isinstance(data.get("card"), Mapping) else {}
    follower = count(data.get("follower", card.get("fans")))
    for name, value in (("follower", follower), ("archive_count", count(data.get("archive_count")))):
        if value is None:
            warn(endpoint, name, "missing")
    return UpCounts(
        mid=mid,
        name=card.get("name") if isinstance(card.get("name"), str) else None,
        follower=follower,
        archive_count=count(data.get("archive_count")),
        total_like=count(data.get("like_num")),
    )


def up_profile(
    counts: UpCounts, ts: int, endpoint: str = "/x/web-interface/card", warn: FieldWarnings = WARN
) -> UpProfile | None:
    """An UpProfile once followers, archive count and total views are known; else None, warned."""
    follower, archive_count, total_view = counts.follower, counts.archive_count, counts.total_view
    if follower is None or archive_count is None or total_view is None:
        missing = [n for n in ("follower", "archive_count", "total_view") if getattr(counts, n) is None]
        warn(endpoint, ",".join(missing), "missing: profile not published")
        return None
    try:
        return UpProfile(
            mid=counts.mid,
            ts=ts,
            follower=follower,
            archive_count=archive_count,
            total_view=total_view,
            name=counts.name[:128] if counts.name else None,
            total_like=counts.total_like,
            historical_avg_view=counts.historical_avg_view,
        )
    except ValidationError as exc:
        warn(endpoint, "profile", f"invalid: {exc.errors()[0]['msg']}")
        return None


@dataclass(frozen=True)
class Danmaku:
    """One bullet comment: when in the video, display mode, when sent, the text, the site's line id."""

    t: float
    mode: int
    sent: int
    text: str
    dmid: int | None = None


def danmaku(xml: str, endpoint: str = "/x/v1/dm/list.so", warn: FieldWarnings = WARN) -> list[Danmaku]:
    """The `<d p="…">text</d>` elements of a danmaku document; odd `p` attributes are kept as zeros."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        warn(endpoint, "xml", f"unparsable: {exc}")
        return []
    out = []
    for d in root.iter("d"):
        p = (d.get("p") or "").split(",")
        try:
            t, mode, sent = float(p[0]), int(p[1]), int(p[4])
        except (IndexError, ValueError):
            warn(endpoint, "d@p", f"odd attribute {d.get('p')!r}")
            t, mode, sent = 0.0, 0, 0
        dmid = p[7] if len(p) > 7 and p[7].isdigit() and int(p[7]) > 0 else None
        out.append(Danmaku(t, mode, sent, d.text or "", None if dmid is None else int(dmid)))
    return out
