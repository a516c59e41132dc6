"""The collectors end to end against the local fake Bilibili (tests/fake_bilibili.py) and the embedded
broker: rate limit, every injected error, cadence, UP profiles, hot lists, danmaku, raw archive, restart."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from broker.admin import ensure_topics, read_all
from broker.embedded import EmbeddedBroker
from core.events import DanmakuLine, HotListEntry, Snapshot, UpProfile
from core.settings import Settings, Topics
from ingest.collect.client import BiliClient, GaveUp, Gone, RawArchive
from ingest.collect.collectors import Collector, replay_raw
from tests.harness.fake_bilibili import BIG_MID, RATE, FakeBilibili, collect_settings

VIEW = "/x/web-interface/view"


@pytest.fixture
def fake() -> Iterator[FakeBilibili]:
    server = FakeBilibili().start()
    yield server
    server.stop()
    assert not server.violations, server.violations  # UA, buvid and signatures were right throughout


def requests(code: str) -> float:
    """`hotvideo_collector_requests_total` of the view endpoint with this code, so far."""
    return (
        REGISTRY.get_sample_value("hotvideo_collector_requests_total", {"endpoint": VIEW, "code": code}) or 0
    )


def per_second(times: list[float]) -> int:
    """The most requests inside any one-second window."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.slow  # 60 requests at the configured rate: 3 s of waiting by design
def test_rate_limit_holds(fake: FakeBilibili) -> None:
    client = BiliClient(collect_settings(fake, burst=1))
    bvids = list(fake.videos)[:60]
    for bvid in bvids:
        client.get(VIEW, {"bvid": bvid})
    client.close()
    times = [r.at for r in fake.calls(VIEW)]
    measured = (len(times) - 1) / (times[-1] - times[0])
    assert len(times) == 60
    assert RATE * 0.8 < measured <= RATE * 1.05, measured
    assert per_second(times) <= RATE + 1


@pytest.mark.parametrize("fault", [-412, -352, -509, -799, -500, -503, -504, "http412", "http500", "voucher"])
def test_transient_errors_are_retried(fake: FakeBilibili, fault: int | str) -> None:
    client = BiliClient(collect_settings(fake))
    bvid = fake.young[0].bvid
    fake.inject(VIEW, fault, fault)
    counted = {code: requests(code) for code in ("0", "-412", "http 412", "http 500")}
    assert client.get(VIEW, {"bvid": bvid})["bvid"] == bvid
    assert [r.code for r in fake.calls(VIEW)][-1] == 0 and len(fake.calls(VIEW)) == 3
    assert requests("0") == counted["0"] + 1 + (fault == "voucher") * 2  # a voucher answer is code 0
    if fault in (-412, "http412", "http500"):
        code = {-412: "-412", "http412": "http 412", "http500": "http 500"}[fault]
        assert requests(code) == counted[code] + 2
    fake.inject(VIEW, *[fault] * 10)
    with pytest.raises(GaveUp, match="after 4 retries"):
        client.get(VIEW, {"bvid": bvid})
    client.close()


@pytest.mark.parametrize("code", [-404, 62002, 62004, 62012])
def test_invisible_videos_are_gone(fake: FakeBilibili, code: int) -> None:
    client = BiliClient(collect_settings(fake))
    fake.inject(VIEW, code)
    with pytest.raises(Gone) as raised:
        client.get(VIEW, {"bvid": fake.young[0].bvid})
    assert raised.value.code == code and len(fake.calls(VIEW)) == 1  # not retried
    client.close()


def test_signed_space_call_and_raw_archive(fake: FakeBilibili, tmp_path: Path) -> None:
    client = BiliClient(collect_settings(fake), RawArchive(tmp_path))
    params = {"mid": 1, "pn": 1, "ps": 30, "dm_img_list": "[]", "dm_img_str": "AB", "dm_cover_img_str": "CD",
              "dm_img_inter": '{"ds":[],"wh":[0,0,0],"of":[0,0,0]}'}  # fmt: skip
    fake.inject("/x/space/wbi/arc/search", -352)  # stale keys: refreshed, signed again
    assert client.get("/x/space/wbi/arc/search", params, signed=True, space=True)["page"]["count"] == 140
    client.close()
    assert len(fake.calls("/x/web-interface/nav")) == 2
    archived = sorted(tmp_path.rglob("*.json.gz"))
    assert len(archived) == len(fake.requests)  # spi, nav, search (-352), nav, search


def test_hot_list_times_match_the_raw_archive_for_slow_answers(fake: FakeBilibili, tmp_path: Path) -> None:
    """An answer that arrives in a later second than its request was sent keeps the request's time,
    the one the raw archive records: live events and `replay_raw` must agree (they once differed)."""
    ticks = itertools.count(time.time(), 0.7)  # every reading of the clock is 0.7 s later
    settings = Settings(data_dir=tmp_path, collect=collect_settings(fake))
    collector = Collector(settings, "127.0.0.1:9", clock=lambda: next(ticks))
    live = [e for e in collector.hotlists() if isinstance(e, HotListEntry)]
    collector.close()
    replayed = [e for e in replay_raw(tmp_path / "collect" / "raw") if isinstance(e, HotListEntry)]
    assert len({e.ts for e in live}) > 1
    assert sorted(e.to_json() for e in live) == sorted(e.to_json() for e in replayed)


def run_for(collector: Collector, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=collector.run, kwargs={"seconds": seconds}, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def topics(embedded_broker: EmbeddedBroker) -> Topics:
    prefix = f"collect-{uuid.uuid4().hex[:8]}"
    names = Topics.under(prefix)
    ensure_topics(embedded_broker.bootstrap, names, partitions=2)
    return names


@pytest.mark.slow
def test_collect_end_to_end(
    fake: FakeBilibili, embedded_broker: EmbeddedBroker, topics: Topics, tmp_path: Path
) -> None:
    fake.newlist_broken.add(fake.zones[1])  # code 0, no archives: dynamic/region takes over
    fake.gone.add(fake.young[-1].bvid)
    for path, faults in {
        VIEW: [-412, "http500", -799],
        "/x/web-interface/popular": [-352, -509],
        "/x/web-interface/card": [-503],
        "/x/web-interface/ranking/v2": ["http412"],
        "/x/v1/dm/list.so": ["http500"],
    }.items():
        fake.inject(path, *faults)
    settings = Settings(data_dir=tmp_path, collect=collect_settings(fake))
    collector = Collector(settings, embedded_broker.bootstrap, topics)
    run_for(collector, 9.0).join(timeout=30)
    state = collector.state
    tracked, gone = state.videos(), state.videos("gone")
    collector.close()

    young = {v.bvid for v in fake.young}
    assert set(tracked) | set(gone) == young  # discovered in both zones, nothing lost to errors
    assert set(gone) == set(fake.gone)
    gone_calls = fake.calls(VIEW)
    assert sum(1 for r in gone_calls if r.params["bvid"] in fake.gone) == 1  # dropped after one 62002
    fallback = {r.params["rid"] for r in fake.calls("/x/web-interface/dynamic/region")}
    assert fallback == {str(fake.zones[1])}  # only the zone whose newlist came back empty

    snaps = [
        Snapshot.model_validate_json(r.value or b"")
        for r in read_all(embedded_broker.bootstrap, topics.snapshot)
    ]
    hot = [
        HotListEntry.model_validate_json(r.value or b"")
        for r in read_all(embedded_broker.bootstrap, topics.hotlist)
    ]
    profiles = [
        UpProfile.model_validate_json(r.value or b"")
        for r in read_all(embedded_broker.bootstrap, topics.profile)
    ]

    # cadence: dense videos (younger than 600 s) polled about every 1.5 s, sparse ones every 3 s
    for video in fake.young:
        if video.bvid in fake.gone:
            continue
        times = sorted({s.ts for s in snaps if s.bvid == video.bvid})
        assert len(times) >= 2, video.bvid
        views = sorted(r.at for r in fake.calls(VIEW) if r.params["bvid"] == video.bvid and r.code == 0)
        gaps = [b - a for a, b in itertools.pairwise(views)]
        dense = fake.now0 - video.pubdate < 600
        assert all(g >= (1.4 if dense else 2.9) for g in gaps), (video.bvid, gaps)
    # hot lists: every page of popular, tagged by source; his_rank recorded on the snapshot
    sources = {e.source for e in hot}
    assert sources == {"popular", "weekly", "precious", "ranking"}
    popular = [e for e in hot if e.source == "popular"]
    assert sorted(e.rank for e in popular) == list(range(1, 113))
    assert any(s.his_rank == 12 for s in snaps)
    assert len(fake.calls("/x/web-interface/popular/series/one")) == 1
    # profiles of the uploaders of tracked videos, followers from card or relation/stat
    owners = {v.mid for v in fake.young if v.mid != BIG_MID}
    assert owners <= {p.mid for p in profiles}
    assert fake.calls("/x/relation/stat")
    # danmaku on its topic (one fetch per pool here, each line with its id), raw pages replayable
    lines = [
        DanmakuLine.model_validate_json(r.value or b"")
        for r in read_all(embedded_broker.bootstrap, topics.danmaku)
    ]
    fetched = {r.params["oid"] for r in fake.calls("/x/v1/dm/list.so") if r.code == 200}
    assert fetched and len(lines) == 6 * len(fetched) and "弹幕0 好耶" in {d.text for d in lines}
    with_id = [(d.bvid, d.dmid) for d in lines if d.dmid is not None]
    assert len(set(with_id)) == len(with_id) == 5 * len(fetched)  # the odd line has no usable id
    replayed = [e for e in replay_raw(tmp_path / "collect" / "raw") if isinstance(e, HotListEntry)]
    assert sorted(e.to_json() for e in replayed) == sorted(e.to_json() for e in hot)
    # the global rate limit held through all of it
    assert per_second([r.at for r in fake.requests]) <= RATE + 2


@pytest.mark.slow
def test_restart_keeps_videos_and_does_not_burst(
    fake: FakeBilibili, embedded_broker: EmbeddedBroker, topics: Topics, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, collect=collect_settings(fake, dense_interval_s=3, sparse_interval_s=6)
    )
    first = Collector(settings, embedded_broker.bootstrap, topics)
    run_for(first, 3.0).join(timeout=30)
    before = first.state.videos()
    first.close()
    assert set(before) == {v.bvid for v in fake.young}

    restarted_at, restarted_wall = time.monotonic(), time.time()
    second = Collector(settings, embedded_broker.bootstrap, topics)
    run_for(second, 4.0).join(timeout=30)
    after = second.state.videos()
    second.close()
    assert set(after) == set(before)  # nothing lost
    # no burst: in the first second only the videos that were due by then are polled
    due_in_first_second = sum(1 for due in before.values() if due <= restarted_wall + 1.0)
    first_second = fake.calls(VIEW, since=restarted_at)
    assert sum(1 for r in first_second if r.at < restarted_at + 1.0) <= due_in_first_second
    for path in ("/x/web-interface/popular", "/x/web-interface/popular/series/list", "/x/web-interface/card"):
        assert not fake.calls(path, since=restarted_at), path  # not due again yet: no re-fetch
    # and every tracked video is observed again after the restart (by `view` or in a zone list)
    snaps = [
        Snapshot.model_validate_json(r.value or b"")
        for r in read_all(embedded_broker.bootstrap, topics.snapshot)
    ]
    assert {s.bvid for s in snaps if s.ts >= int(restarted_wall)} == set(before)
