"""The collection loop: discovery, stat polling, UP profiles, hot lists and danmaku, all through one
rate-limited client, each step published to Kafka before its state change is committed.

Why one loop in one thread: bili-api.md §7 asks for about one request per second per IP and never in
parallel; a single scheduler shares that budget between jobs, most overdue first.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import prometheus_client

from broker.admin import ensure_topics
from broker.produce import publish
from core.events import DanmakuLine, Event, HotListEntry, Snapshot
from core.logs import get_logger
from core.settings import Settings, Topics
from ingest.collect import parse
from ingest.collect.client import BiliClient, BiliError, Gone, RawArchive, iter_raw
from ingest.collect.state import State

log = get_logger(__name__)

PUBLISHED = prometheus_client.Counter(
    "hotvideo_collector_published", "Events the collectors published, by topic", ["topic"]
)

BATCH = 20
"""Videos, uploaders or danmaku handled per job run, so that no job starves the others."""
POPULAR_MAX_PAGES = 30
"""Safety stop if `no_more` never comes (the real list has about 600 items, 12 pages of 50)."""
WEB_LOCATION = {"web_location": "333.934"}
"""What the web page adds before signing the popular and ranking calls (bilibili-api does the same)."""
DM_IMG = {
    "dm_img_list": "[]",
    "dm_img_inter": '{"ds":[],"wh":[0,0,0],"of":[0,0,0]}',
}


class Collector:
    """All collectors over one client, one state file and one Kafka producer helper."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        topics: Topics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = settings.collect
        self.root = settings.data_dir / "collect"
        self.bootstrap, self.kind = bootstrap, settings.broker_kind
        self.topics = topics or settings.topics
        self.clock = clock
        self.stop_event = threading.Event()
        self.state = State(self.root / "state.sqlite3", self.cfg)
        archive = RawArchive(self.root / "raw") if self.cfg.save_raw else None
        self.client = BiliClient(self.cfg, archive, sleep=self._sleep, clock=clock)
        self.published: dict[str, int] = {}
        self.jobs: list[tuple[str, float, Callable[[], list[Event]]]] = [
            ("hotlist", self.cfg.hotlist_interval_s, self.hotlists),
            ("weekly", self.cfg.weekly_interval_s, self.weekly),
            ("precious", self.cfg.precious_interval_s, self.precious),
            ("discover", self.cfg.discover_interval_s, self.discover),
            ("stats", 0.0, self.stats),
            ("profiles", 0.0, self.profiles),
            ("danmaku", 0.0, self.danmaku),
        ]

    def _sleep(self, seconds: float) -> None:
        """Waits (rate limit, backoff) that a stop request cuts short."""
        self.stop_event.wait(seconds)

    def close(self) -> None:
        self.client.close()
        self.state.close()

    def run(self, seconds: float | None = None) -> None:
        """Run every job when it is due until `stop()` (or for `seconds`)."""
        end = None if seconds is None else time.monotonic() + seconds
        spread = self.state.spread_overdue(self.clock())
        log.info("collector started", tracked=len(self.state.videos()), overdue_spread=spread)
        while not self.stop_event.is_set() and (end is None or time.monotonic() < end):
            ran = False
            for name, interval, job in self.jobs:
                if self.stop_event.is_set():
                    break
                if interval and not self.state.job_due(name, self.clock()):
                    continue
                ran = self._step(name, job) or ran
                if interval:
                    self.state.job_done(name, self.clock() + interval)
                    self.state.commit()
            if not ran:
                self.stop_event.wait(0.05)
        log.info("collector stopped", requests=self.client.requests, published=self.published)

    def stop(self) -> None:
        self.stop_event.set()

    def _step(self, name: str, job: Callable[[], list[Event]]) -> bool:
        """Run one job, publish its events, then commit its state; return whether it did anything."""
        try:
            events = job()
        except BiliError as exc:  # a whole list failed: try again at the job's next turn
            log.error("collector job failed", job=name, error=str(exc))
            self.state.commit()  # per-video outcomes recorded before the failure stay
            return False
        if events:
            publish(
                ((e.topic_field, e.key(), e.to_json()) for e in events),
                self.bootstrap,
                self.topics,
                progress=False,
                kind=self.kind,
            )
            for event in events:
                self.published[event.topic_field] = self.published.get(event.topic_field, 0) + 1
                PUBLISHED.labels(topic=getattr(self.topics, event.topic_field)).inc()
        self.state.commit()
        return bool(events)

    def _now(self) -> int:
        """The event time of the answer just fetched: when its request was sent, as the raw archive
        records it, so that `replay_raw` gives the same events even when an answer crosses a second."""
        return int(self.client.fetched_at)

    def _seen(self, snaps: Iterable[Event]) -> None:
        """Record observations of tracked videos, so their own poll waits (bulk lists beat `view`)."""
        now = self.clock()
        for snap in snaps:
            if isinstance(snap, Snapshot):
                self.state.observed(snap.bvid, now, snap.his_rank)

    # discovery

    def discover(self) -> list[Event]:
        """New uploads per zone from `newlist` (`dynamic/region` if newlist fails); young ones are tracked."""
        events: list[Event] = []
        for rid in self.cfg.zones:
            for path in parse.LIST_ENDPOINTS:
                try:
                    events += self._discover_zone(rid, path)
                    break
                except BiliError as exc:
                    if isinstance(exc, Gone) or path == parse.LIST_ENDPOINTS[-1]:
                        log.error("zone listing failed", rid=rid, error=str(exc))
                        break
                    log.warning("newlist failed, trying dynamic/region", rid=rid, error=str(exc))
        return events

    def _discover_zone(self, rid: int, path: str) -> list[Event]:
        events: list[Event] = []
        ps = self.cfg.discover_page_size
        for pn in range(1, self.cfg.discover_pages + 1):
            params = {"rid": rid, "pn": pn, "ps": ps}
            data = self.client.get(path, params)
            now = self._now()
            items = parse.items_of(data, path, "archives")
            if not items and pn == 1:
                raise BiliError(path, 0, f"zone {rid}: no archives on page 1")
            oldest = now
            for item in items:
                snap = parse.snapshot(item, now, path)
                if snap is None:
                    continue
                oldest = min(oldest, snap.pubdate)
                if now - snap.pubdate > self.cfg.discover_max_age_s:
                    continue
                cid = item.get("cid") if isinstance(item.get("cid"), int) else None
                if not self.state.track(snap.bvid, snap.pubdate, snap.mid, cid, self.clock()):
                    self._seen([snap])
                if self.state.is_tracked(snap.bvid):
                    events.append(snap)
            page = data.get("page") if isinstance(data, dict) else None
            total = page.get("count") if isinstance(page, dict) else None
            if not items or now - oldest > self.cfg.discover_max_age_s:
                break
            if isinstance(total, int) and pn * ps >= total:
                break
        return events

    # stats

    def stats(self) -> list[Event]:
        """`view` for tracked videos whose poll is due and that no list showed in the meantime."""
        events: list[Event] = []
        for video in self.state.due(self.clock(), BATCH):
            if self.stop_event.is_set():
                break
            try:
                data = self.client.get(parse.VIEW_ENDPOINT, {"bvid": video.bvid})
            except Gone as exc:
                log.warning("video gone, tracking stopped", bvid=video.bvid, code=exc.code, reason=str(exc))
                self.state.drop(video.bvid, f"code {exc.code}: {exc}")
                continue
            except BiliError as exc:
                log.warning("poll failed, retrying later", bvid=video.bvid, error=str(exc))
                self.state.defer(video.bvid, self.clock() + self.cfg.dense_interval_s)
                break  # the API is unhappy: let the other jobs and the backoff breathe
            now = self._now()
            snaps = parse.page_events(parse.VIEW_ENDPOINT, {}, data, now)
            self._seen(snaps)
            if not snaps:  # unparsable: keep the video, try at the normal cadence
                self.state.defer(video.bvid, now + self.cfg.dense_interval_s)
            events += snaps
        return events

    # uploaders

    def profiles(self) -> list[Event]:
        """UP profiles of the owners of tracked videos: `card`, `relation/stat` if card lacks followers,
        total views from `space/upstat` (login) or the first page of `space/wbi/arc/search`."""
        events: list[Event] = []
        for mid in self.state.due_ups(self.clock(), BATCH):
            if self.stop_event.is_set():
                break
            try:
                counts = parse.card_counts(
                    mid, self.client.get("/x/web-interface/card", {"mid": mid, "photo": "false"})
                )
                if counts.follower is None:
                    relation = self.client.get("/x/relation/stat", {"vmid": mid})
                    counts = replace(counts, follower=parse.count(relation.get("follower")))
                counts = self._views(counts)
            except BiliError as exc:
                log.warning("profile failed, retrying later", mid=mid, error=str(exc))
                self.state.up_done(mid, self.clock() + self.cfg.dense_interval_s)
                break
            profile = parse.up_profile(counts, self._now())
            if profile is not None:
                events.append(profile)
            self.state.up_done(mid, self.clock() + self.cfg.profile_interval_s)
        return events

    def _views(self, counts: parse.UpCounts) -> parse.UpCounts:
        """Total views: exact from upstat with a login, else a lower bound from the recent uploads."""
        if self.cfg.sessdata:
            data = self.client.get("/x/space/upstat", {"mid": counts.mid}, space=True, login=True)
            archive = data.get("archive") if isinstance(data, dict) else None
            return replace(counts, total_view=parse.count((archive or {}).get("view")))
        params: dict[str, str | int] = {"mid": counts.mid, "ps": 30, "pn": 1, "order": "pubdate", **DM_IMG}
        params |= {k: "".join(random.choices("ABCDEFGHIJK", k=2)) for k in ("dm_img_str", "dm_cover_img_str")}
        data = self.client.get("/x/space/wbi/arc/search", params, signed=True, space=True)
        lst = data.get("list") if isinstance(data, dict) else None
        vlist = parse.items_of(lst, "/x/space/wbi/arc/search", "vlist")
        plays = [p for v in vlist if (p := parse.count(v.get("play"))) is not None]
        return replace(
            counts,
            total_view=sum(plays),
            historical_avg_view=sum(plays) / len(plays) if plays else None,
        )

    # hot lists

    def hotlists(self) -> list[Event]:
        """`popular` (every page) and `ranking/v2` for each configured type."""
        events: list[Event] = []
        path = "/x/web-interface/popular"
        for pn in range(1, POPULAR_MAX_PAGES + 1):
            params: dict[str, str | int] = {"pn": pn, "ps": 50, **WEB_LOCATION}
            data = self.client.get(path, params, signed=True)
            events += self._hot_page(path, params, data)
            if not parse.items_of(data, path, "list") or data.get("no_more", True):
                break
        path = "/x/web-interface/ranking/v2"
        for kind in self.cfg.ranking_types:
            ranking: dict[str, str | int] = {"rid": 0, "type": kind, **WEB_LOCATION}
            events += self._hot_page(path, ranking, self.client.get(path, ranking, signed=True))
        return events

    def weekly(self) -> list[Event]:
        """The newest 每周必看 issue, once per issue number."""
        data = self.client.get("/x/web-interface/popular/series/list")
        issues = parse.items_of(data, "/x/web-interface/popular/series/list", "list")
        numbers = [n for i in issues if isinstance(n := i.get("number"), int)]
        if not numbers or str(max(numbers)) == self.state.get("weekly_number"):
            return []
        params = {"number": max(numbers)}
        path = "/x/web-interface/popular/series/one"
        events = self._hot_page(path, params, self.client.get(path, params))
        self.state.put("weekly_number", str(max(numbers)))
        return events

    def precious(self) -> list[Event]:
        """入站必刷: a mostly static list of classics."""
        params = {"page_size": 85, "page": 1}
        path = "/x/web-interface/popular/precious"
        return self._hot_page(path, params, self.client.get(path, params))

    def _hot_page(self, path: str, params: Mapping[str, str | int], data: Any) -> list[Event]:
        now = self._now()
        events = parse.page_events(path, {k: str(v) for k, v in params.items()}, data, now)
        self._seen(events)
        for item in parse.items_of(data, path, "list", parse.FieldWarnings()):
            cid, bvid = item.get("cid"), item.get("bvid")
            if isinstance(cid, int) and isinstance(bvid, str):
                self.state.add_danmaku(cid, bvid, now, now)
        ranked = sum(1 for e in events if isinstance(e, Snapshot) and e.his_rank)
        log.info(
            "hot list page",
            path=path,
            entries=sum(isinstance(e, HotListEntry) for e in events),
            his_rank=ranked,
        )
        return events

    # danmaku

    def danmaku(self) -> list[Event]:
        """Danmaku XML of hot-list and tracked videos onto `bili.danmaku` (the worker's sink stores
        them for the API's word cloud); a refetch publishes only lines sent after the newest one."""
        lines: list[Event] = []
        for cid, bvid, last_sent in self.state.due_danmaku(self.clock(), BATCH):
            if self.stop_event.is_set():
                break
            try:
                xml = self.client.get_xml("/x/v1/dm/list.so", {"oid": cid})
            except BiliError as exc:
                log.warning("danmaku failed, retrying later", cid=cid, error=str(exc))
                break
            now = self.clock()
            new = [d for d in parse.danmaku(xml) if d.sent > last_sent or not d.sent]
            lines += [
                DanmakuLine(bvid=bvid, ts=d.sent or int(now), text=d.text[:1000], dmid=d.dmid)
                for d in new
                if d.text
            ]
            self.state.danmaku_done(cid, now, max([last_sent, *(d.sent for d in new)]))
        return lines


def replay_raw(root: Path) -> list[Event]:
    """The events the archived list and `view` pages under `root` give, in fetch order."""
    events: list[Event] = []
    for page in iter_raw(root):
        if page.status != 200 or page.path.endswith(".so"):
            continue
        try:
            body = json.loads(page.body)
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("code") == 0:
            events += parse.page_events(page.path, page.params, body.get("data"), int(page.fetched_at))
    return events


def run_collect(settings: Settings, bootstrap: str, seconds: float | None = None) -> None:
    """`hotvideo collect`: ensure the topics, then collect into the broker at `bootstrap` until
    SIGINT/SIGTERM (or `seconds`)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request at INFO
    if settings.collect.metrics_port:
        prometheus_client.start_http_server(settings.collect.metrics_port, addr=settings.web_host)
    ensure_topics(bootstrap, settings.topics, settings.partitions)
    collector = Collector(settings, bootstrap)
    previous = signal.signal(signal.SIGTERM, lambda *_: collector.stop())
    try:
        collector.run(seconds)
    except KeyboardInterrupt:
        log.info("interrupted: state is committed after every step, a restart resumes it")
    finally:
        signal.signal(signal.SIGTERM, previous)
        collector.close()
