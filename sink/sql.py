"""The SQL sink: seed 001's tables, `hot_entry`, `prediction` and `danmaku`, by idempotent upserts.

One schema serves SQLite (the embedded default) and MySQL/MariaDB (production). Conventions:

- Epoch-second columns (`*_ts`, `as_of`, `scored_at`) keep the event contracts' units; the DATETIME
  columns seed 001 asks for (`pub_time`, `covered_until`) hold naive UTC, since MySQL's DATETIME has no
  time zone.
- MySQL tables use utf8mb4 (Chinese titles, emoji) with the binary collation: bvids are case-sensitive
  base58, so `BV1aa…` and `BV1AA…` must be different keys.
- Every write is an upsert whose conflict rule makes repeating it a no-op, so a consumer that is
  restarted and re-reads a batch cannot corrupt the tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    case,
    create_engine,
    event,
    func,
    literal_column,
    make_url,
    select,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement

from core.events import DanmakuLine, HotListEntry, Outcome, Prediction, UpProfile
from core.reference import HORIZONS

_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
_MYSQL_BACKENDS = ("mysql", "mariadb")


def _bvid() -> Column[str]:
    """`BV` + 10 characters; part of every video table's key."""
    return Column("bvid", String(12), primary_key=True)


metadata = MetaData()

video = Table(
    "video",
    metadata,
    _bvid(),
    Column("pub_time", DateTime, nullable=False),
    Column("duration", Integer),
    Column("category_id", Integer),
    Column("category_name", String(64)),
    Column("title", String(512)),
    Column("tags", Text, comment="comma-joined"),
    Column("up_mid", String(20)),
    **_MYSQL,
)

video_early_metrics = Table(
    "video_early_metrics",
    metadata,
    _bvid(),
    Column("delta_t", Integer, primary_key=True, comment="minutes after publication"),
    Column("view_cnt", BigInteger, nullable=False),
    Column("like_cnt", BigInteger, nullable=False),
    Column("coin_cnt", BigInteger, nullable=False),
    Column("fav_cnt", BigInteger, nullable=False),
    Column("reply_cnt", BigInteger, nullable=False),
    Column("danmaku_cnt", BigInteger, nullable=False),
    Column("share_cnt", BigInteger, nullable=False),
    Column("view_rate", Double, nullable=False),
    Column("engagement_ratio", Double, nullable=False),
    **_MYSQL,
)

up_profile = Table(
    "up_profile",
    metadata,
    Column("up_mid", String(20), primary_key=True),
    Column("follower_cnt", BigInteger, nullable=False),
    Column("total_video_cnt", BigInteger, nullable=False),
    Column("historical_avg_view", Double),
    Column("historical_popular_cnt", BigInteger),
    Column("account_age_days", Integer),
    Column("name", String(128)),
    Column("updated_ts", BigInteger, nullable=False, comment="epoch s of the profile observation"),
    **_MYSQL,
)

video_label = Table(
    "video_label",
    metadata,
    _bvid(),
    Column("label", SmallInteger, comment="1 hot, 0 not, NULL unknown (window not covered)"),
    Column("label_source", String(64)),
    Column("covered_until", DateTime, nullable=False),
    **_MYSQL,
)

hot_entry = Table(
    "hot_entry",
    metadata,
    _bvid(),
    Column("source", String(16), primary_key=True),
    Column("first_ts", BigInteger, nullable=False, comment="epoch s of the earliest sighting"),
    Column("best_rank", Integer, nullable=False),
    **_MYSQL,
)

prediction = Table(
    "prediction",
    metadata,
    _bvid(),
    Column("horizon", String(4), primary_key=True),
    Column("model_version", String(64), primary_key=True),
    Column("as_of", BigInteger, nullable=False),
    Column("status", String(24), nullable=False),
    Column("prob", Double),
    Column("label", SmallInteger),
    Column("confidence", Double),
    Column("level", String(16)),
    Column("play_range", String(32)),
    Column("scored_at", Double, nullable=False),
    Column("snapshots_used", Integer, nullable=False),
    **_MYSQL,
)


danmaku = Table(
    "danmaku",
    metadata,
    _bvid(),
    Column("line_id", String(40), primary_key=True, comment="d<dmid>, else h<hash of ts and text>"),
    Column("ts", BigInteger, nullable=False, comment="epoch s when the line was sent"),
    Column("text", Text, nullable=False),
    Index("ix_danmaku_ts", "ts"),
    **_MYSQL,
)
"""Danmaku text for the word cloud; a line delivered twice (at-least-once) is stored once."""


def _line_id(line: DanmakuLine) -> str:
    if line.dmid is not None:
        return f"d{line.dmid}"
    return "h" + hashlib.sha1(f"{line.ts}:{line.text}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class VideoLabel:
    """One `video_label` row: seed 001's label for a video and how far its observation reached."""

    bvid: str
    label: Literal[0, 1] | None
    label_source: str | None
    covered_until: int
    """epoch s"""


# Conflict rules: given the table (stored row) and the incoming row's columns, the ordered SET clause.
Incoming = ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]
"""The dialect's view of the incoming row: MySQL's `inserted`, SQLite's `excluded`."""
Rule = Callable[[Table, Incoming], list[tuple[str, ColumnElement[Any]]]]


def _values(table: Table) -> list[str]:
    return [c.name for c in table.columns if not c.primary_key]


def _replace(table: Table, new: Incoming) -> list[tuple[str, ColumnElement[Any]]]:
    """The incoming row wins: re-derived rows (predictions, metrics, labels)."""
    return [(name, new[name]) for name in _values(table)]


def _fill(table: Table, new: Incoming) -> list[tuple[str, ColumnElement[Any]]]:
    """Incoming values win, but a missing one never erases a known one (static video fields)."""
    return [(name, func.coalesce(new[name], table.c[name])) for name in _values(table)]


def _least(table: Table, new: Incoming) -> list[tuple[str, ColumnElement[Any]]]:
    """Each column keeps its smallest value seen (earliest sighting, best rank)."""
    return [
        (name, case((new[name] < table.c[name], new[name]), else_=table.c[name])) for name in _values(table)
    ]


def _newer(ts: str) -> Rule:
    """The row with the newer `ts` wins (ties: incoming); missing values keep the known ones."""

    def rule(table: Table, new: Incoming) -> list[tuple[str, ColumnElement[Any]]]:
        newer = new[ts] >= table.c[ts]
        keep = [
            (name, case((newer, func.coalesce(new[name], table.c[name])), else_=table.c[name]))
            for name in _values(table)
            if name != ts
        ]
        # MySQL evaluates ON DUPLICATE KEY assignments left to right, so the guard goes last.
        return [*keep, (ts, case((newer, new[ts]), else_=table.c[ts]))]

    return rule


def _outcome(table: Table, new: Incoming) -> list[tuple[str, ColumnElement[Any]]]:
    """Outcomes merge: a 1 is final (its first source kept), a known label beats an unknown one, and
    coverage only grows; so an outcome delivered twice, or late, changes nothing it should not."""
    label, stored = new["label"], table.c.label
    one: ColumnElement[Any] = literal_column(
        "1"
    )  # no bound parameters in ON DUPLICATE KEY: PyMySQL's executemany forbids them
    turns_hot = (label == one) & (func.coalesce(stored, literal_column("-1")) != one)
    # MySQL evaluates ON DUPLICATE KEY assignments left to right: `label` goes last.
    return [
        ("label_source", case((turns_hot, new["label_source"]), else_=table.c.label_source)),
        (
            "covered_until",
            case(
                (new["covered_until"] > table.c.covered_until, new["covered_until"]),
                else_=table.c.covered_until,
            ),
        ),
        ("label", case(((label == one) | (stored == one), one), (label.is_not(None), label), else_=stored)),
    ]


def _upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], rule: Rule = _replace) -> None:
    """Insert `rows` (one executemany), resolving key conflicts by `rule`, in the dialect's syntax."""
    if not rows:
        return
    if conn.dialect.name in _MYSQL_BACKENDS:
        my = mysql_insert(table)
        stmt: Any = my.on_duplicate_key_update(rule(table, my.inserted))
    else:
        lite = sqlite_insert(table)
        stmt = lite.on_conflict_do_update(
            index_elements=list(table.primary_key.columns), set_=dict(rule(table, lite.excluded))
        )
    conn.execute(stmt, list(rows))


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC).replace(tzinfo=None)


def _prediction_row(p: Prediction) -> dict[str, Any]:
    return {
        "bvid": p.bvid,
        "horizon": p.horizon,
        "model_version": p.model_version,
        "as_of": p.as_of,
        "status": p.status,
        "prob": p.prob,
        "label": p.label,
        "confidence": p.confidence,
        "level": p.level,
        "play_range": p.play_range,
        "scored_at": p.scored_at,
        "snapshots_used": p.snapshots_used,
    }


def _video_row(p: Prediction) -> dict[str, Any] | None:
    v = p.video
    if v is None:
        return None
    return {
        "bvid": p.bvid,
        "pub_time": _utc(v.pubdate),
        "duration": v.duration,
        "category_id": v.tid,
        "category_name": v.tname,
        "title": v.title,
        "tags": None if v.tags is None else ",".join(v.tags),
        "up_mid": None if v.mid is None else str(v.mid),
    }


def _metrics_row(p: Prediction) -> dict[str, Any] | None:
    m = p.early_metrics
    if m is None:
        return None
    return {
        "bvid": p.bvid,
        "delta_t": HORIZONS[p.horizon] // 60,
        "view_cnt": m.view,
        "like_cnt": m.like,
        "coin_cnt": m.coin,
        "fav_cnt": m.favorite,
        "reply_cnt": m.reply,
        "danmaku_cnt": m.danmaku,
        "share_cnt": m.share,
        "view_rate": m.view_rate,
        "engagement_ratio": m.engagement_ratio,
    }


def _present(rows: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [r for r in rows if r is not None]


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL, the embedded default: a small batch commits in ~3 ms instead of
    ~12 ms (no fsync per commit) and readers (the API) do not block the writer. A crash of the
    program loses nothing; a power cut may lose the last commits (production uses MySQL)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SqlStore:
    """Writes and reads the sink tables through SQLAlchemy Core; creates them if missing."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() not in (*_MYSQL_BACKENDS, "sqlite"):
            raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use MySQL or SQLite")
        if parsed.get_backend_name() in _MYSQL_BACKENDS:
            if "charset" not in parsed.query:  # some drivers (mysqlclient) default to latin1
                parsed = parsed.update_query_dict({"charset": "utf8mb4"})
            self.engine = create_engine(parsed, pool_pre_ping=True, pool_recycle=3600)
        else:
            self.engine = create_engine(parsed)
            event.listen(self.engine, "connect", _sqlite_wal)
        metadata.create_all(self.engine)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def write_predictions(self, batch: Sequence[Prediction]) -> None:
        """Predictions, plus the `video` and `video_early_metrics` rows they carry, in one transaction."""
        with self.engine.begin() as conn:
            _upsert(conn, prediction, [_prediction_row(p) for p in batch])
            _upsert(conn, video, _present(_video_row(p) for p in batch), _fill)
            _upsert(conn, video_early_metrics, _present(_metrics_row(p) for p in batch))

    def write_profiles(self, profiles: Sequence[UpProfile]) -> None:
        """UP profiles; an older observation never overwrites a newer one."""
        rows = [
            {
                "up_mid": str(u.mid),
                "follower_cnt": u.follower,
                "total_video_cnt": u.archive_count,
                "historical_avg_view": u.historical_avg_view,
                "historical_popular_cnt": u.historical_popular_count,
                "account_age_days": u.account_age_days,
                "name": u.name,
                "updated_ts": u.ts,
            }
            for u in profiles
        ]
        with self.engine.begin() as conn:
            _upsert(conn, up_profile, rows, _newer("updated_ts"))

    def write_hot_entries(self, entries: Sequence[HotListEntry]) -> None:
        """The collected hot-list set: per (bvid, source) the earliest sighting and the best rank."""
        rows = [{"bvid": e.bvid, "source": e.source, "first_ts": e.ts, "best_rank": e.rank} for e in entries]
        with self.engine.begin() as conn:
            _upsert(conn, hot_entry, rows, _least)

    def write_danmaku(self, lines: Sequence[DanmakuLine]) -> None:
        """Danmaku lines; one already stored (same video and line id) is left as it is."""
        rows = [{"bvid": d.bvid, "line_id": _line_id(d), "ts": d.ts, "text": d.text} for d in lines]
        with self.engine.begin() as conn:
            _upsert(conn, danmaku, rows, _fill)

    def write_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """The stream's labels (`bili.outcome`) into `video_label`, merged as `_outcome` says."""
        self.write_labels(
            [VideoLabel(o.bvid, o.label, o.source, o.covered_until) for o in outcomes], _outcome
        )

    def write_labels(self, labels: Sequence[VideoLabel], rule: Rule = _replace) -> None:
        """Seed 001's labels; by default a recomputed label replaces the stored one."""
        rows = [
            {
                "bvid": lb.bvid,
                "label": lb.label,
                "label_source": lb.label_source,
                "covered_until": _utc(lb.covered_until),
            }
            for lb in labels
        ]
        with self.engine.begin() as conn:
            _upsert(conn, video_label, rows, rule)

    def labels(self) -> list[dict[str, Any]]:
        """Every `video_label` row, ordered by bvid."""
        with self.engine.connect() as conn:
            return [
                dict(row) for row in conn.execute(select(video_label).order_by(video_label.c.bvid)).mappings()
            ]

    def count_predictions(self) -> int:
        """Number of stored predictions."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(prediction)).scalar_one())

    def predictions(self) -> list[dict[str, Any]]:
        """Every prediction row, ordered by key (bvid, horizon, model_version)."""
        return self._prediction_rows(None)

    def prediction_rows_for(self, bvid: str) -> list[dict[str, Any]]:
        """One video's prediction rows, ordered by horizon then model_version."""
        return self._prediction_rows(bvid)

    def _prediction_rows(self, bvid: str | None) -> list[dict[str, Any]]:
        stmt = select(prediction).order_by(*prediction.primary_key.columns)
        if bvid is not None:
            stmt = stmt.where(prediction.c.bvid == bvid)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]
