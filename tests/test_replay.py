"""`hotvideo replay`: every source in event-time order, time range, pacing, and through the worker the
same predictions twice, and the same predictions as live collection."""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
)

from broker.admin import ensure_topics
from core.events import Event, HotListEntry, Snapshot, UpProfile, parse_event
from core.reference import BEIJING
from core.settings import Settings, Topics
from hotvideo.demo import start_worker, summarize, wait_for_worker
from hotvideo.stack import services
from ingest import replay as replay_module
from ingest.captures import captures
from ingest.collect import collectors
from ingest.collect.client import RawArchive, RawPage
from ingest.collect.collectors import Collector
from ingest.eventlog import MODELS, Record, write_log, write_records
from ingest.replay import in_range, paced, records_of, replay, sql_tables
from ingest.world import WorldConfig, generate
from sink.sql import metadata as sink_metadata
from tests.harness.fake_bilibili import FakeBilibili, collect_settings


def events_of(records: Iterator[Record]) -> list[Event]:
    return [parse_event(MODELS[topic], value) for topic, _, value in records]


def stamp(event: Event) -> int:
    return int(getattr(event, "ts"))  # noqa: B009 - every replayed event type has ts


@pytest.fixture(scope="module")
def world() -> list[Event]:
    return list(generate(WorldConfig(videos=60, sim_hours=10, seed=21, noise=0.1, malformed=0.02)))


def test_jsonl_gzip_and_parquet_replay_the_same_bytes(tmp_path: Path, world: list[Event]) -> None:
    logs = [tmp_path / name for name in ("w.jsonl", "w.jsonl.gz", "w.parquet")]
    for path in logs:
        write_log(path, world, progress=False)
    first, *others = (list(records_of(str(path))) for path in logs)
    assert len(first) == len(world)
    assert all(other == first for other in others)
    assert [value for _, _, value in first] == [e.to_json() for e in world]  # malformed copies too


def test_raw_records_keep_bad_bytes(tmp_path: Path) -> None:
    records: list[Record] = [("snapshot", b"BV1xx4y1a7Aa", b"{not json"), ("snapshot", None, b"\xff\xfe")]
    for name in ("bad.jsonl", "bad.parquet"):
        write_records(tmp_path / name, records)
    assert list(records_of(str(tmp_path / "bad.parquet"))) == records
    assert next(iter(records_of(str(tmp_path / "bad.jsonl")))) == records[0]  # JSONL keeps valid UTF-8 only


def test_time_range_and_pacing(world: list[Event]) -> None:
    records = [(e.topic_field, e.key(), e.to_json()) for e in world]
    start = stamp(world[0])
    since, until = start + 3600, start + 2 * 3600
    kept = list(in_range(records, since, until))
    assert kept and all(since <= replay_module.event_ts(r) < until for r in kept)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    out = list(paced(kept, 60.0, clock=lambda: now[0], sleep=sleep))
    assert out == kept
    span = max(map(replay_module.event_ts, kept)) - replay_module.event_ts(kept[0])  # delayed copies wait not
    assert now[0] == pytest.approx(span / 60.0, abs=1.0)  # one event hour in one minute
    assert list(paced(kept, None, clock=lambda: 0.0, sleep=sleep)) == kept


def test_bili_popular_captures_replay_every_item_at_capture_time(real_captures: Path) -> None:
    events = events_of(records_of(str(real_captures)))
    items = sum(len(c.payload()["list"]) for c in captures(real_captures))
    hot = [e for e in events if isinstance(e, HotListEntry)]
    assert len(hot) == items and sum(isinstance(e, Snapshot) for e in events) == items
    stamps = [stamp(e) for e in events]
    assert stamps == sorted(stamps)
    first = datetime.fromtimestamp(hot[0].ts, BEIJING)
    assert first.isoformat() == "2023-08-26T23:52:41+08:00"  # manifest.csv, days 1 and 2 committed together


def test_plain_and_gzipped_captures_replay_the_same(real_captures: Path, tmp_path: Path) -> None:
    days = captures(real_captures)[:2]
    gzipped, plain = tmp_path / "gzipped", tmp_path / "plain"
    for folder in (gzipped, plain):
        folder.mkdir()
        shutil.copy(real_captures / "manifest.csv", folder)
    for capture in days:
        shutil.copy(capture.path, gzipped)
        (plain / f"{capture.day}.json").write_bytes(gzip.decompress(capture.path.read_bytes()))
    records = list(records_of(str(gzipped)))
    assert len(records) == 2 * sum(len(c.payload()["list"]) for c in days)
    assert list(records_of(str(plain))) == records
    shutil.copy(days[0].path, plain)  # the same day plain and gzipped
    with pytest.raises(ValueError, match="2023-08-25 is given twice"):
        list(records_of(str(plain)))


def test_raw_page_archive(tmp_path: Path, real_captures: Path) -> None:
    archive = RawArchive(tmp_path)
    day = next(c for c in captures(real_captures) if c.day == "2023-09-01")
    body = {"code": 0, "data": {"list": day.payload()["list"][:5]}}
    archive.save(
        RawPage(1_700_000_100.5, "/x/web-interface/popular", {"pn": "1", "ps": "50"}, 200, json.dumps(body))
    )
    archive.save(
        RawPage(1_700_000_000.0, "/x/web-interface/popular", {"pn": "1", "ps": "50"}, 200, json.dumps(body))
    )
    events = events_of(records_of(str(tmp_path)))
    assert [stamp(e) for e in events] == [1_700_000_000] * 10 + [1_700_000_100] * 10
    assert [type(e).__name__ for e in events[:10]] == ["HotListEntry"] * 5 + ["Snapshot"] * 5


def legacy_tables(url: str) -> None:
    """Seed 000's tables with plausible columns (its field list: stat_view, stat_like, …, tags)."""
    meta = MetaData()

    def video_cols() -> list[Column[Any]]:
        return [
            Column("bvid", String(12), primary_key=True),
            Column("title", String(256)),
            Column("owner_mid", BigInteger),
            Column("tid", Integer),
            Column("tname", String(32)),
            Column("duration", Integer),
            Column("tags", Text),
            Column("pubdate", DateTime),
            *(
                Column(f"stat_{n}", BigInteger)
                for n in ("view", "like", "coin", "favorite", "reply", "danmaku", "share")
            ),
        ]

    Table("bilibili_videos", meta, *video_cols(), Column("crawl_time", DateTime, primary_key=True))
    Table(
        "hot_videos",
        meta,
        *video_cols(),
        Column("rank", Integer),
        Column("crawl_time", DateTime),
    )
    Table(
        "up_profile",
        meta,
        Column("uid", BigInteger, primary_key=True),
        Column("followers", BigInteger),
        Column("total_videos", Integer),
        Column("total_view", BigInteger),
        Column("total_like", BigInteger),
        Column("total_coin", BigInteger),
        Column("crawl_time", DateTime),
    )
    engine = create_engine(url)
    meta.create_all(engine)
    video: dict[str, Any] = {
        "bvid": "BV1xx4y1a7Aa", "title": "【搞笑】测试", "owner_mid": 400482416, "tid": 138, "tname": "搞笑",
        "duration": 300, "tags": "搞笑, 日常", "pubdate": datetime(2023, 9, 1, 18, 0),
        "stat_view": 1000, "stat_like": 80, "stat_coin": 9, "stat_favorite": 9, "stat_reply": 2,
        "stat_danmaku": 2, "stat_share": 3,
    }  # fmt: skip
    with engine.begin() as conn:
        t = meta.tables
        conn.execute(insert(t["up_profile"]), [
            {"uid": 400482416, "followers": 32, "total_videos": 2, "total_view": 15954, "total_like": 101,
             "total_coin": 25, "crawl_time": datetime(2023, 9, 1, 18, 30)},
        ])  # fmt: skip
        conn.execute(insert(t["bilibili_videos"]), [
            video | {"crawl_time": datetime(2023, 9, 1, 19, 0)},
            video | {"crawl_time": datetime(2023, 9, 1, 18, 30), "stat_view": 400},
        ])  # fmt: skip
        conn.execute(
            insert(t["hot_videos"]), [video | {"crawl_time": datetime(2023, 9, 1, 19, 0), "rank": 7}]
        )
    engine.dispose()


def check_legacy(url: str) -> None:
    legacy_tables(url)
    events = events_of(sql_tables(url, "legacy"))
    at_1830 = int(datetime(2023, 9, 1, 18, 30, tzinfo=BEIJING).timestamp())
    assert [(type(e).__name__, stamp(e) - at_1830) for e in events] == [
        ("UpProfile", 0), ("Snapshot", 0), ("HotListEntry", 1800), ("Snapshot", 1800), ("Snapshot", 1800),
    ]  # fmt: skip
    profile, early = events[0], events[1]
    assert isinstance(profile, UpProfile) and isinstance(early, Snapshot)
    assert (profile.mid, profile.follower, profile.archive_count, profile.total_view) == (
        400482416,
        32,
        2,
        15954,
    )
    assert early.pubdate == at_1830 - 1800 and early.view == 400 and early.tags == ["搞笑", "日常"]
    assert (early.mid, early.tid, early.tname, early.share) == (400482416, 138, "搞笑", 3)
    assert isinstance(events[2], HotListEntry) and events[2].rank == 7


def test_legacy_tables_on_mariadb(mariadb_url: str) -> None:
    for table in ("bilibili_videos", "hot_videos", "up_profile"):
        engine = create_engine(mariadb_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()
    check_legacy(mariadb_url)


def test_legacy_tables_on_sqlite(sqlite_url: str) -> None:
    check_legacy(sqlite_url)


def test_project_tables_in_event_time_order(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    sink_metadata.create_all(engine)
    t = sink_metadata.tables
    base = datetime(2026, 11, 2, 10, 0)
    videos = [
        {"bvid": f"BV1xx4y1a7A{c}", "pub_time": base.replace(minute=m), "duration": 60, "category_id": 17,
         "category_name": "单机游戏", "title": "t", "tags": "a,b", "up_mid": "42"}
        for c, m in (("a", 0), ("b", 30))
    ]  # fmt: skip
    zero = dict.fromkeys(("coin_cnt", "fav_cnt", "reply_cnt", "danmaku_cnt", "share_cnt"), 0)
    metrics = [
        {"bvid": f"BV1xx4y1a7A{c}", "delta_t": d, "view_cnt": d * 10, "like_cnt": 1, **zero,
         "view_rate": 1.0, "engagement_ratio": 0.1}
        for c in "ab" for d in (60, 180, 360)
    ]  # fmt: skip
    hot = {"bvid": "BV1xx4y1a7Aa", "source": "popular", "first_ts": 1_793_600_000, "best_rank": 3}
    profile = {"up_mid": "42", "follower_cnt": 10, "total_video_cnt": 3, "historical_avg_view": 100.0}
    with engine.begin() as conn:
        conn.execute(insert(t["video"]), videos)
        conn.execute(insert(t["video_early_metrics"]), metrics)
        conn.execute(insert(t["hot_entry"]), [hot])
        conn.execute(insert(t["up_profile"]), [profile | {"updated_ts": 1_793_500_000}])
    engine.dispose()
    events = events_of(records_of(sqlite_url))
    stamps = [stamp(e) for e in events]
    assert stamps == sorted(stamps) and len(events) == 8
    snaps = [e for e in events if isinstance(e, Snapshot)]
    assert [(s.bvid[-1], s.ts - s.pubdate) for s in snaps] == [
        ("a", 3600), ("b", 3600), ("a", 10800), ("b", 10800), ("a", 21600), ("b", 21600),
    ]  # fmt: skip
    assert snaps[0].tags == ["a", "b"] and snaps[0].mid == 42


def test_unknown_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an event log"):
        records_of(str(tmp_path / "x.csv"))


# through the worker


def run_stack(folder: Path, model_dir: Path, feed: Callable[[str, Topics, Settings], None]) -> dict[str, Any]:
    """A fresh embedded stack and worker; `feed` publishes; the demo's summary of what came out."""
    settings = Settings(data_dir=folder, model_dir=model_dir)
    with services(settings) as svc:
        ensure_topics(svc.kafka_bootstrap, settings.topics, settings.partitions)
        worker = start_worker(settings, svc, folder / "worker.log")
        try:
            feed(svc.kafka_bootstrap, settings.topics, settings)
            wait_for_worker(settings, svc, worker, 300.0)
            return summarize(settings, svc, 0)
        finally:
            worker.stop()


@pytest.fixture
def embedded_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.slow
@pytest.mark.usefixtures("embedded_only")
def test_replaying_a_log_twice_gives_the_same_digest(tmp_path: Path, trained_model_dir: Path) -> None:
    log = tmp_path / "world.parquet"
    write_log(log, generate(WorldConfig(videos=150, sim_hours=8.0, seed=12, noise=0.05, malformed=0.01)))

    def feed(bootstrap: str, topics: Topics, _: Settings) -> None:
        replay(records_of(str(log)), bootstrap, topics, progress=False)

    first = run_stack(tmp_path / "one", trained_model_dir, feed)
    second = run_stack(tmp_path / "two", trained_model_dir, feed)
    assert first["predictions"]["1h"]["scored"] > 0 and first["deadletter"] > 0
    assert second["predictions_sha256"] == first["predictions_sha256"]
    assert second["predictions"] == first["predictions"]


@pytest.mark.slow
@pytest.mark.usefixtures("embedded_only")
def test_replay_after_live_collection_gives_the_live_predictions(
    tmp_path: Path, trained_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collect from the fake Bilibili with a clock 400× fast (an hour of event time in 9 s), capture
    what the collector published, replay the capture into a fresh stack: same predictions."""
    captured: list[Record] = []
    real_publish = collectors.publish

    def tee(records: Any, bootstrap: str, topics: Topics, **options: Any) -> int:
        batch = list(records)
        captured.extend(batch)
        return real_publish(batch, bootstrap, topics, **options)

    monkeypatch.setattr(collectors, "publish", tee)
    fake = FakeBilibili().start()
    start = time.time()

    def live(bootstrap: str, topics: Topics, settings: Settings) -> None:
        collecting = settings.model_copy(update={"collect": collect_settings(fake)})
        collector = Collector(
            collecting, bootstrap, topics, clock=lambda: start + 400 * (time.time() - start)
        )
        thread = threading.Thread(target=collector.run, kwargs={"seconds": 9.0}, daemon=True)
        thread.start()
        thread.join(timeout=60)
        collector.close()

    try:
        live_summary = run_stack(tmp_path / "live", trained_model_dir, live)
    finally:
        fake.stop()
    assert captured and live_summary["predictions"]["1h"]["scored"] > 0
    log = tmp_path / "captured.jsonl.gz"
    write_records(log, captured)

    def feed(bootstrap: str, topics: Topics, _: Settings) -> None:
        replay(records_of(str(log)), bootstrap, topics, progress=False)

    replayed = run_stack(tmp_path / "replayed", trained_model_dir, feed)
    assert replayed["predictions_sha256"] == live_summary["predictions_sha256"]
    assert replayed["predictions"] == live_summary["predictions"]


def test_cli_replay_writes_a_log_from_legacy_tables(sqlite_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hotvideo.cli import app

    legacy_tables(sqlite_url)
    out = tmp_path / "legacy.jsonl"
    result = CliRunner().invoke(
        app, ["replay", sqlite_url, "--tables", "legacy", "--since", "2023-09-01T18:45", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3  # the 19:00 rows only (naive times are Beijing)
