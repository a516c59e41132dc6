"""A local fake of Bilibili's web API for the collector tests.

Serves the documented response shapes (bili-api.md), including the odd ones (`rcmd_reason` as an
object or a string, counts as strings or "--", renamed fields, code 0 with an empty payload), checks
what the real site checks (a browser User-Agent, buvid cookies, WBI signatures) and answers like it
when they are wrong, injects errors on demand, and logs every request so tests can count them.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from core.settings import CollectSettings
from ingest.collect import wbi
from tests.harness.predictions import bvid as make_bvid

IMG_KEY = "7cd084941338484aae1ad9425b84077c"
SUB_KEY = "4932caff0ff746eab6f01bf08b70ac45"
"""The keys of bili-api.md's test vector, served by `nav`."""
BIG_MID = 3_493_260_093_819_171
"""A 16-digit uploader id, as new accounts have (real hot lists are full of them)."""
NEEDS_BUVID = ("/popular/series/one", "/popular/series/list", "/ranking/v2", "/space/wbi/")
NEEDS_WBI = ("/space/wbi/arc/search",)
Fault = int | str
"""A Bilibili code to answer with, or "http412", "http500", "empty", "voucher"."""


@dataclass
class Video:
    """A fake video whose counts grow with time."""

    bvid: str
    aid: int
    cid: int
    mid: int
    tid: int
    pubdate: int
    views_per_s: float

    def archive(self, now: float, **odd: Any) -> dict[str, Any]:
        view = int(100 + self.views_per_s * max(now - self.pubdate, 0))
        stat: dict[str, Any] = {
            "aid": self.aid, "view": view, "danmaku": view // 50, "reply": view // 40, "favorite": view // 20,
            "coin": view // 30, "share": view // 60, "now_rank": 0, "his_rank": 0, "like": view // 10,
            "dislike": 0, "vt": 0, "vv": view,
        }  # fmt: skip
        stat |= odd.pop("stat", {})
        return {
            "aid": self.aid, "bvid": self.bvid, "videos": 1, "tid": self.tid, "tname": f"zone{self.tid}",
            "tid_v2": 2000 + self.tid, "copyright": 1, "title": f"video {self.bvid}", "pic": "http://i0.hdslb.com/x.jpg",
            "pubdate": self.pubdate, "ctime": self.pubdate, "duration": 180, "cid": self.cid,
            "owner": {"mid": self.mid, "name": f"up{self.mid}", "face": "https://i0.hdslb.com/f.jpg"},
            "stat": stat, "rcmd_reason": "", "short_link_v2": f"https://b23.tv/{self.bvid}",
        } | odd  # fmt: skip


@dataclass
class Request:
    """One request as the fake saw it."""

    at: float
    path: str
    params: dict[str, str]
    code: int


@dataclass
class FakeBilibili:
    """The fake site. `start()` serves it on 127.0.0.1 at a free port (`base_url`)."""

    zones: tuple[int, ...] = (17, 21)
    young_per_zone: int = 4
    gone: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.now0 = time.time()
        self.videos: dict[str, Video] = {}
        self.by_zone: dict[int, list[Video]] = defaultdict(list)
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.newlist_broken: set[int] = set()
        self._lock = threading.Lock()
        n = 0
        for tid in self.zones:
            # young ones (minutes old, trackable) and old ones (hours old, not tracked)
            ages = [120 + 300 * i for i in range(self.young_per_zone)] + [20_000 + 600 * i for i in range(6)]
            for age in ages:
                n += 1
                self._add(n, tid, self.now0 - age, mid=BIG_MID if n == 2 else 5000 + n % 5)
        self.hot = [self._add(1000 + i, 160, self.now0 - 86_400 - 600 * i, mid=7000 + i) for i in range(110)]
        self.young = [v for vs in self.by_zone.values() for v in vs if self.now0 - v.pubdate < 3600]

    def _add(self, n: int, tid: int, pubdate: float, mid: int) -> Video:
        video = Video(make_bvid(10_000 + n), 900_000 + n, 40_000 + n, mid, tid, int(pubdate), 0.5 + n % 7)
        self.videos[video.bvid] = video
        if tid in self.zones:
            self.by_zone[tid].append(video)
        return video

    # control

    def inject(self, path: str, *faults: Fault) -> None:
        """The next requests to `path` get these answers, one each."""
        with self._lock:
            self.faults[path].extend(faults)

    def calls(self, path: str, since: float = 0.0) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path and r.at >= since]

    def start(self) -> FakeBilibili:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # a short poll: stop() waits up to one poll interval, and each collector test stops a server
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # serving

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        path, params = url.path, dict(parse_qsl(url.query))
        cookies = dict(
            part.strip().split("=", 1) for part in (h.headers.get("Cookie") or "").split(";") if "=" in part
        )
        status, body, ctype = self._answer(path, params, h.headers.get("User-Agent") or "", cookies)
        code = json.loads(body).get("code", 0) if ctype == "application/json" and status == 200 else status
        with self._lock:
            self.requests.append(Request(time.monotonic(), path, params, code))
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _answer(
        self, path: str, params: dict[str, str], ua: str, cookies: dict[str, str]
    ) -> tuple[int, bytes, str]:
        def reply(code: int, data: Any = None, message: str = "0") -> tuple[int, bytes, str]:
            body = {"code": code, "message": message, "ttl": 1, "data": data}
            return 200, json.dumps(body, ensure_ascii=False).encode(), "application/json"

        if "python" in ua.lower() or "Mozilla" not in ua:
            self.violations.append(f"{path}: user agent {ua!r}")
            return reply(-412, message="请求被拦截")
        if path != "/x/frontend/finger/spi" and not {"buvid3", "buvid4"} <= set(cookies):
            self.violations.append(f"{path}: no buvid cookies")
            if any(p in path for p in NEEDS_BUVID):
                return reply(-352, {"v_voucher": "voucher_x"}, "风控校验失败")
        if "w_rid" in params:
            signed = {k: v for k, v in params.items() if k != "w_rid"}
            expected = wbi.w_rid(signed, int(params.get("wts", "0")), wbi.mixin_key(IMG_KEY, SUB_KEY))
            if params["w_rid"] != expected:
                self.violations.append(f"{path}: bad w_rid")
                return reply(-352, {"v_voucher": "voucher_x"}, "风控校验失败")
        elif any(p in path for p in NEEDS_WBI):
            self.violations.append(f"{path}: unsigned")
            return reply(-352, {"v_voucher": "voucher_x"}, "风控校验失败")
        with self._lock:
            fault = self.faults[path].popleft() if self.faults[path] else None
        if fault == "http412":
            return 412, b"<html><body>412 Precondition Failed</body></html>", "text/html"
        if fault == "http500":
            return 500, b"<html>500</html>", "text/html"
        if fault == "empty":
            return reply(0, {})
        if fault == "voucher":
            return reply(0, {"v_voucher": "voucher_x"})
        if isinstance(fault, int):
            return reply(fault, message=f"injected {fault}")
        return self._route(path, params, reply)

    def _route(self, path: str, params: dict[str, str], reply: Any) -> tuple[int, bytes, str]:
        now = time.time()
        if path == "/x/frontend/finger/spi":
            return reply(0, {"b_3": "FAKE-BUVID3-infoc", "b_4": "FAKE-BUVID4"})
        if path == "/x/web-interface/nav":
            img = {
                "img_url": f"https://i0.hdslb.com/bfs/wbi/{IMG_KEY}.png",
                "sub_url": f"https://i0.hdslb.com/bfs/wbi/{SUB_KEY}.png",
            }
            return reply(-101, {"isLogin": False, "wbi_img": img}, "账号未登录")
        if path in ("/x/web-interface/newlist", "/x/web-interface/dynamic/region"):
            rid, pn, ps = int(params["rid"]), int(params.get("pn", 1)), int(params.get("ps", 20))
            if path.endswith("newlist") and rid in self.newlist_broken:
                return reply(0, {"archives": [], "page": {"count": 0, "num": pn, "size": ps}})
            zone = sorted(self.by_zone.get(rid, []), key=lambda v: -v.pubdate)
            items = [self._odd(v, now) for v in zone[(pn - 1) * ps : pn * ps]]
            return reply(0, {"archives": items, "page": {"count": len(zone), "num": pn, "size": ps}})
        if path == "/x/web-interface/view":
            video = self.videos.get(params.get("bvid", ""))
            if video is None:
                return reply(-404, message="啥都木有")
            if video.bvid in self.gone:
                return reply(62002, message="稿件不可见")
            pages = [{"cid": video.cid, "page": 1, "part": "P1", "duration": 180}]
            return reply(0, video.archive(now, pages=pages, state=0, rights={}))
        if path == "/x/web-interface/popular":
            pn, ps = int(params.get("pn", 1)), int(params.get("ps", 20))
            chosen = self.young[:2] + self.hot
            items = []
            for i, v in enumerate(chosen[(pn - 1) * ps : pn * ps]):
                odd: dict[str, Any] = {"rcmd_reason": {"content": "百万播放", "corner_mark": 4}}
                if i == 3:
                    odd["stat"] = {"his_rank": 12}
                if i == 7 and pn == 2:
                    odd["stat"] = {"view": "--"}
                odd["owner"] = {"mid": v.mid, "name": "up", "face": "", "follower": 12_345}
                items.append(v.archive(now, **odd))
            return reply(0, {"list": items, "no_more": pn * ps >= len(chosen)})
        if path == "/x/web-interface/ranking/v2":
            items = [v.archive(now, score=1000 - i) for i, v in enumerate(self.hot[:30])]
            for item in items[:5]:
                item["stat"]["favorites"] = item["stat"].pop("favorite")
            return reply(0, {"note": "根据稿件内容质量等综合评分", "list": items})
        if path == "/x/web-interface/popular/series/list":
            issues = [{"number": n, "subject": "s", "status": 2, "name": f"2024第{n}期"} for n in (279, 278)]
            return reply(0, {"list": issues})
        if path == "/x/web-interface/popular/series/one":
            if params.get("number") != "279":
                return reply(-404, message="啥都木有")
            config = {"id": 1, "type": "weekly_selected", "number": 279, "subject": "s", "status": 2}
            return reply(
                0,
                {
                    "config": config,
                    "reminder": "每周五18:00更新",
                    "list": [v.archive(now) for v in self.hot[:10]],
                },
            )
        if path == "/x/web-interface/popular/precious":
            items = [v.archive(now, achievement="全站必刷") for v in self.hot[-5:]]
            return reply(0, {"title": "入站必刷", "media_id": 1, "explain": "", "list": items})
        if path == "/x/web-interface/card":
            mid = int(params["mid"])
            card: dict[str, Any] = {"mid": str(mid), "name": f"up{mid}", "fans": 52_000, "attention": 80}
            data: dict[str, Any] = {
                "card": card,
                "archive_count": 140,
                "like_num": 910_000,
                "following": False,
            }
            if mid % 2 == 0:  # the top-level follower is there for some uploaders only
                data["follower"] = 52_000
            else:
                del card["fans"]
            return reply(0, data)
        if path == "/x/relation/stat":
            return reply(
                0, {"mid": int(params["vmid"]), "following": 80, "whisper": 0, "black": 0, "follower": 52_001}
            )
        if path == "/x/space/wbi/arc/search":
            if not {"dm_img_list", "dm_img_str", "dm_cover_img_str", "dm_img_inter"} <= set(params):
                self.violations.append(f"{path}: no dm_img params")
                return reply(-352, {"v_voucher": "voucher_x"})
            vlist = [
                {"bvid": v.bvid, "play": 1000 + i, "length": "03:00"} for i, v in enumerate(self.hot[:3])
            ]
            vlist.append({"bvid": "BV1xx", "play": "--", "length": "01:00"})
            return reply(0, {"list": {"vlist": vlist}, "page": {"count": 140, "pn": 1, "ps": 30}})
        if path == "/x/v1/dm/list.so":
            return self._danmaku(int(params["oid"]))
        return 404, b"not found", "text/plain"

    def _odd(self, video: Video, now: float) -> dict[str, Any]:
        """List items with the quirks of real lists: string counts on some, `rcmd_reason` a string."""
        item = video.archive(now, rcmd_reason="")
        if video.aid % 3 == 0:
            item["stat"] = {k: str(v) for k, v in item["stat"].items()}
        return item

    @staticmethod
    def _danmaku(cid: int) -> tuple[int, bytes, str]:
        rows = [
            f'<d p="{i * 1.5},1,25,16777215,{1_700_000_000 + i},0,abc{i},{cid}{i},10">弹幕{i} 好耶</d>'
            for i in range(5)
        ]
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?><i><chatserver>chat.bilibili.com</chatserver>'
            f"<chatid>{cid}</chatid><maxlimit>1500</maxlimit><state>0</state>{''.join(rows)}"
            f'<d p="bad">odd one</d></i>'
        )
        deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return 200, deflate.compress(xml.encode()) + deflate.flush(), "text/xml"


RATE = 20.0
"""Requests per second the collector tests allow: fast, and still a limit to hold."""


def collect_settings(fake: FakeBilibili, **changes: object) -> CollectSettings:
    """Fast cadences for tests: dense every 1.5 s up to age 600 s, sparse every 3 s up to T = 2 h."""
    values: dict[str, object] = {
        "base_url": fake.base_url, "rate": RATE, "burst": 2, "timeout_s": 5, "max_retries": 4,
        "backoff_base_s": 0.02, "backoff_max_s": 0.2, "zones": list(fake.zones), "discover_interval_s": 4,
        "discover_page_size": 5, "discover_max_age_s": 3600, "dense_interval_s": 1.5, "dense_window_s": 600,
        "sparse_interval_s": 3, "track_window_s": 7200, "hotlist_interval_s": 60, "weekly_interval_s": 60,
        "precious_interval_s": 60, "profile_interval_s": 60, "danmaku_interval_s": 60,
    }  # fmt: skip
    return CollectSettings(**(values | changes))
