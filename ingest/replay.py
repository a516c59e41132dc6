"""Replay history onto the topics: event logs, SQL tables, legacy tables and raw captured pages.

Every source becomes one stream of records `(topic field, key, value bytes)` in event-time order,
which `replay` filters to a time range, paces (real time, N×, or as fast as possible) and hands to
`broker.produce.publish`. Nothing here reads the wall clock into an event, so replaying a source twice
publishes the same bytes in the same order, and the worker gives the same predictions (docs/replay.md).

Order: event logs (JSONL, Parquet) are replayed in their recorded order, which is the order they were
published in (delayed copies of the simulator's noise included). SQL tables and raw pages have no
recorded order and are sorted by event time, streaming: rows come ordered from SQL, and project
metrics (at most 6 h after publication) pass a bounded reordering buffer.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import MetaData, Select, Table, create_engine, select
from sqlalchemy.engine import Engine, RowMapping
from tqdm import tqdm

from broker.produce import event_time_ms, publish
from core.events import Event, HotListEntry, Snapshot, UpProfile
from core.logs import get_logger
from core.reference import BEIJING
from core.settings import BrokerKind, Topics
from ingest.captures import captures, is_capture_folder
from ingest.collect import parse
from ingest.collect.collectors import replay_raw
from ingest.eventlog import is_log, read_log

log = get_logger(__name__)

Record = tuple[str, bytes | None, bytes]
TableSet = Literal["project", "legacy"]
LEGACY_TZ = BEIJING
"""Naive DATETIME values of the legacy tables are Beijing wall time (what a crawler in China stores)."""
_KIND_ORDER = {UpProfile.topic_field: 0, HotListEntry.topic_field: 1, Snapshot.topic_field: 2}
"""At equal event time: profiles, then hot-list entries (labels before the counts seen with them)."""


def record(event: Event) -> Record:
    return event.topic_field, event.key(), event.to_json()


def event_ts(rec: Record) -> int:
    """A record's event time in epoch s (0 when the value has none)."""
    ms = event_time_ms(rec[2])
    return 0 if ms is None else ms // 1000


def _sorted_events(events: Iterable[Event]) -> Iterator[Record]:
    """Events sorted by (ts, kind), stable: for sources small enough to hold (raw pages)."""
    keyed = sorted(events, key=lambda e: (getattr(e, "ts", 0), _KIND_ORDER.get(e.topic_field, 3)))
    return (record(e) for e in keyed)


# raw captured pages


def popular_captures(folder: Path) -> Iterator[Record]:
    """Each day's popular list as hot-list entries and snapshots at its capture time (manifest.csv)."""
    for capture in captures(folder):
        items = parse.items_of(capture.payload(), "/x/web-interface/popular", "list")
        events = parse.hot_events(items, int(capture.at), "popular", "/x/web-interface/popular")
        yield from _sorted_events(events)


def raw_pages(root: Path) -> Iterator[Record]:
    """The collectors' archived pages (ingest/collect), parsed again, in event-time order."""
    return _sorted_events(replay_raw(root))


# SQL tables


def _epoch(value: Any, tz: timezone = UTC) -> int:
    """Epoch s from an int/float column or a naive DATETIME in `tz`."""
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=tz)).timestamp())
    return int(value)


@dataclass(frozen=True)
class LegacyMapping:
    """Which legacy column fills which event field; the first present alias wins (docs/replay.md)."""

    video: Mapping[str, tuple[str, ...]]
    profile: Mapping[str, tuple[str, ...]]


LEGACY = LegacyMapping(
    video={
        "bvid": ("bvid",),
        "ts": ("crawl_time", "update_time", "fetch_time", "created_at"),
        "pubdate": ("pubdate", "pub_time", "publish_time", "ctime"),
        "view": ("stat_view", "view"),
        "like": ("stat_like", "like"),
        "coin": ("stat_coin", "coin"),
        "favorite": ("stat_favorite", "favorite"),
        "reply": ("stat_reply", "reply"),
        "danmaku": ("stat_danmaku", "danmaku"),
        "share": ("stat_share", "share"),
        "mid": ("owner_mid", "mid", "uid"),
        "tid": ("tid",),
        "tname": ("tname",),
        "duration": ("duration",),
        "title": ("title",),
        "tags": ("tags",),
        "follower": ("owner_follower", "follower", "followers"),
        "rank": ("rank", "hot_rank", "his_rank"),
    },
    profile={
        "mid": ("uid", "mid"),
        "ts": ("crawl_time", "update_time", "fetch_time", "created_at"),
        "follower": ("followers", "follower"),
        "archive_count": ("total_videos", "total_videos_count", "archive_count"),
        "total_view": ("total_view",),
        "total_like": ("total_like",),
        "name": ("name", "uname"),
    },
)


def _column(table: Table, aliases: tuple[str, ...]) -> str | None:
    return next((a for a in aliases if a in table.c), None)


def _fields(row: RowMapping, table: Table, mapping: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Event fields from a legacy row: times to epoch s (Beijing DATETIMEs), tags split on commas."""
    out: dict[str, Any] = {}
    for name, aliases in mapping.items():
        col = _column(table, aliases)
        value = None if col is None else row[col]
        if value is None:
            continue
        if name in ("ts", "pubdate"):
            value = _epoch(value, LEGACY_TZ)
        elif name == "tags":
            value = [t.strip() for t in str(value).split(",") if t.strip()]
        out[name] = value
    return out


def _legacy_video_events(fields: dict[str, Any], hot: bool) -> list[Event]:
    rank = fields.pop("rank", None)
    events: list[Event] = []
    if hot:
        events.append(
            HotListEntry(bvid=fields["bvid"], ts=fields["ts"], source="popular", rank=int(rank or 1))
        )
    events.append(Snapshot(**fields))
    return events


def _streamed(engine: Engine, query: Select[Any]) -> Iterator[RowMapping]:
    """Rows of `query` streamed on a connection of their own (MySQL cannot interleave two open
    unbuffered results on one connection, and the merge reads several tables at once)."""
    with engine.connect() as conn:
        for row in conn.execution_options(stream_results=True, yield_per=2000).execute(query):
            yield row._mapping


def _ordered_rows(engine: Engine, table: Table, ts_col: str) -> Iterator[RowMapping]:
    return _streamed(engine, select(table).order_by(table.c[ts_col]))


def _legacy_streams(engine: Engine, meta: MetaData) -> list[Iterator[tuple[int, int, Event]]]:
    """One time-ordered (ts, kind, event) stream per legacy table present."""
    streams: list[Iterator[tuple[int, int, Event]]] = []

    def videos(table: Table, hot: bool) -> Iterator[tuple[int, int, Event]]:
        ts_col = _column(table, LEGACY.video["ts"])
        if ts_col is None:
            raise ValueError(f"legacy table {table.name} has no time column ({LEGACY.video['ts']})")
        for row in _ordered_rows(engine, table, ts_col):
            for event in _legacy_video_events(_fields(row, table, LEGACY.video), hot):
                yield event.ts, _KIND_ORDER[event.topic_field], event  # type: ignore[attr-defined]

    def profiles(table: Table) -> Iterator[tuple[int, int, Event]]:
        ts_col = _column(table, LEGACY.profile["ts"])
        if ts_col is None:
            raise ValueError(f"legacy table up_profile has no time column ({LEGACY.profile['ts']})")
        for row in _ordered_rows(engine, table, ts_col):
            profile = UpProfile(**_fields(row, table, LEGACY.profile))
            yield profile.ts, 0, profile

    if "bilibili_videos" in meta.tables:
        streams.append(videos(meta.tables["bilibili_videos"], hot=False))
    if "hot_videos" in meta.tables:
        streams.append(videos(meta.tables["hot_videos"], hot=True))
    if "up_profile" in meta.tables:
        streams.append(profiles(meta.tables["up_profile"]))
    return streams


_SIX_HOURS_S = 6 * 3600


def _project_streams(engine: Engine, meta: MetaData) -> list[Iterator[tuple[int, int, Event]]]:
    """video ⋈ video_early_metrics as snapshots at pubdate + delta_t, hot_entry, up_profile."""
    video, metrics = meta.tables["video"], meta.tables["video_early_metrics"]

    def snapshots() -> Iterator[tuple[int, int, Event]]:
        query = (
            select(video, metrics)
            .join(metrics, metrics.c.bvid == video.c.bvid)
            .order_by(video.c.pub_time, video.c.bvid, metrics.c.delta_t)
        )
        pending: list[tuple[int, str, int, Snapshot]] = []
        for r in _streamed(engine, query):
            pub = _epoch(r["pub_time"])
            while pending and pending[0][0] <= pub:  # rows after this one are at pub or later
                ts, _, _, snap = heapq.heappop(pending)
                yield ts, 2, snap
            snap = Snapshot(
                bvid=r["bvid"],
                ts=pub + 60 * int(r["delta_t"]),
                pubdate=pub,
                view=r["view_cnt"],
                like=r["like_cnt"],
                coin=r["coin_cnt"],
                favorite=r["fav_cnt"],
                reply=r["reply_cnt"],
                danmaku=r["danmaku_cnt"],
                share=r["share_cnt"],
                mid=int(r["up_mid"]) if r["up_mid"] else None,
                tid=r["category_id"],
                tname=r["category_name"],
                duration=r["duration"],
                title=r["title"],
                tags=[t for t in (r["tags"] or "").split(",") if t],
            )
            heapq.heappush(pending, (snap.ts, snap.bvid, int(r["delta_t"]), snap))
        while pending:
            ts, _, _, snap = heapq.heappop(pending)
            yield ts, 2, snap

    def hot() -> Iterator[tuple[int, int, Event]]:
        table = meta.tables["hot_entry"]
        for r in _ordered_rows(engine, table, "first_ts"):
            entry = HotListEntry(
                bvid=r["bvid"], ts=int(r["first_ts"]), source=r["source"], rank=r["best_rank"]
            )
            yield entry.ts, 1, entry

    def profiles() -> Iterator[tuple[int, int, Event]]:
        table = meta.tables["up_profile"]
        for r in _ordered_rows(engine, table, "updated_ts"):
            profile = UpProfile(
                mid=int(r["up_mid"]),
                ts=int(r["updated_ts"]),
                follower=r["follower_cnt"],
                archive_count=r["total_video_cnt"],
                total_view=round((r["historical_avg_view"] or 0) * r["total_video_cnt"]),
                name=r["name"],
                historical_avg_view=r["historical_avg_view"],
                historical_popular_count=r["historical_popular_cnt"],
                account_age_days=r["account_age_days"],
            )
            yield profile.ts, 0, profile

    return [snapshots(), hot(), profiles()]


def sql_tables(url: str, tables: TableSet) -> Iterator[Record]:
    """The project's tables (video, video_early_metrics, hot_entry, up_profile) or seed 000's legacy
    ones (bilibili_videos, hot_videos, up_profile), merged in event-time order."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        streams = _project_streams(engine, meta) if tables == "project" else _legacy_streams(engine, meta)
        for _, _, event in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            yield record(event)
    finally:
        engine.dispose()


# the replay itself


def records_of(source: str, tables: TableSet = "project") -> Iterator[Record]:
    """The records of a source: an SQLAlchemy URL, an event log, a bili-popular folder or a raw archive."""
    if "://" in source:
        return sql_tables(source, tables)
    path = Path(source)
    if is_log(path):
        return read_log(path)
    if is_capture_folder(path):
        return popular_captures(path)
    if path.is_dir():
        return raw_pages(path)
    raise ValueError(f"{source}: not an event log (.jsonl, .jsonl.gz, .parquet), folder or SQL URL")


def in_range(records: Iterable[Record], since: int | None, until: int | None) -> Iterator[Record]:
    """Records with since <= ts < until (either bound optional)."""
    for rec in records:
        ts = event_ts(rec)
        if (since is None or ts >= since) and (until is None or ts < until):
            yield rec


def paced(
    records: Iterable[Record],
    speed: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Record]:
    """Release each record when `(ts - first ts) / speed` seconds have passed; None: no waiting."""
    start: tuple[int, float] | None = None
    for rec in records:
        if speed is not None:
            ts = event_ts(rec)
            if start is None:
                start = (ts, clock())
            wait = start[1] + (ts - start[0]) / speed - clock()
            if wait > 0:
                sleep(wait)
        yield rec


def with_progress(records: Iterable[Record], total: int | None, enabled: bool) -> Iterator[Record]:
    """A progress bar that also shows how far in event time the replay is."""
    bar = tqdm(total=total, disable=not enabled, unit="msg", desc="replay")
    try:
        for n, rec in enumerate(records):
            if enabled and n % 1000 == 0 and (ts := event_ts(rec)):
                bar.set_postfix_str(datetime.fromtimestamp(ts, BEIJING).strftime("event time %Y-%m-%d %H:%M"))
            bar.update()
            yield rec
    finally:
        bar.close()


def replay(
    records: Iterable[Record],
    bootstrap: str,
    topics: Topics,
    *,
    speed: float | None = None,
    since: int | None = None,
    until: int | None = None,
    progress: bool = True,
    kind: BrokerKind = "tansu",
) -> int:
    """Publish records in order, within [since, until), paced at `speed` × real time; return the count."""
    stream = with_progress(paced(in_range(records, since, until), speed), None, progress)
    count = publish(stream, bootstrap, topics, progress=False, kind=kind)
    log.info("replayed", records=count, speed=speed or "max")
    return count
