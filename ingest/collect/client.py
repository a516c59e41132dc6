"""One polite HTTP session to Bilibili: buvid cookies, browser headers, WBI signing, a global token
bucket, retries with exponential backoff and jitter, and a gzip archive of every page fetched.

Why so careful: the API answers fast anonymous polling with IP bans (-412) that last hours
(bili-api.md §7), and a banned collector loses the early snapshots the model needs.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import Counter

from core.logs import get_logger
from core.settings import CollectSettings
from ingest.collect import wbi

log = get_logger(__name__)

REQUESTS = Counter(
    "hotvideo_collector_requests",
    "Requests to the Bilibili API, by endpoint and answer code: Bilibili's (0 is success), or "
    "`http <status>`, `not json`, `transport`",
    ["endpoint", "code"],
)

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
"""A current desktop browser: a UA naming python gets -412."""
REFERER = "https://www.bilibili.com/"
SPACE_REFERER = "https://space.bilibili.com/"
GONE_CODES = frozenset({-404, 62002, 62004, 62012})
"""The video is deleted, invisible, under review or uploader-only: stop tracking it."""
RISK_CODES = frozenset({-412, -352, -509, -799})
SERVER_CODES = frozenset({-500, -503, -504})
SPI_PATH = "/x/frontend/finger/spi"
NAV_PATH = "/x/web-interface/nav"
WBI_KEY_TTL_S = 3600.0
"""The keys rotate about daily; an hour keeps them fresh without asking `nav` often."""


class BiliError(Exception):
    """A request that did not give usable data; `code` is Bilibili's (or the HTTP status)."""

    def __init__(self, endpoint: str, code: int, message: str) -> None:
        super().__init__(f"{endpoint}: code {code}: {message}")
        self.endpoint = endpoint
        self.code = code


class Gone(BiliError):
    """The video cannot be seen any more (-404, 62002, 62004, 62012): drop it from tracking."""


class GaveUp(BiliError):
    """Risk control or server errors outlasted every retry: slow down (COLLECT_RATE) or wait it out."""


class TokenBucket:
    """At most `burst` requests back to back, `rate` per second on average, across all threads."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.burst = rate, float(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = 1.0  # a fresh process starts nearly empty, so a restart cannot burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one request may go out."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


@dataclass(frozen=True)
class RawPage:
    """One archived fetch: enough to parse it again later."""

    fetched_at: float
    path: str
    params: dict[str, str]
    status: int
    body: str


class RawArchive:
    """`root/YYYY-MM-DD/<epoch ms>-<n>-<endpoint>.json.gz`, one gzip file per fetch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._n = 0

    def save(self, page: RawPage) -> Path:
        when = datetime.fromtimestamp(page.fetched_at, UTC)
        self._n += 1
        slug = page.path.strip("/").replace("/", "_").replace(".", "_")
        path = self.root / f"{when:%Y-%m-%d}" / f"{int(page.fetched_at * 1000)}-{self._n:06d}-{slug}.json.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "fetched_at": page.fetched_at,
            "path": page.path,
            "params": page.params,
            "status": page.status,
            "body": page.body,
        }
        path.write_bytes(gzip.compress(json.dumps(record, ensure_ascii=False).encode()))
        return path


def iter_raw(root: Path) -> Iterator[RawPage]:
    """Every archived page under `root`, in fetch order."""
    pages = []
    for path in root.rglob("*.json.gz"):
        record = json.loads(gzip.decompress(path.read_bytes()))
        pages.append(RawPage(**record))
    yield from sorted(pages, key=lambda p: p.fetched_at)


class BiliClient:
    """GET JSON (or danmaku XML) from the API with every courtesy it expects."""

    def __init__(
        self,
        cfg: CollectSettings,
        archive: RawArchive | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.fetched_at = 0.0
        """When the request behind the latest answer was sent: the raw archive's time for that page."""
        self.base = cfg.base_url.rstrip("/")
        self.archive = archive
        self.bucket = TokenBucket(cfg.rate, cfg.burst, sleep=sleep)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            timeout=cfg.timeout_s,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json, text/plain, */*"},
        )
        self._cookies: dict[str, str] = {}
        self._mixin: str | None = None
        self._mixin_at = 0.0
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def get(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        signed: bool = False,
        space: bool = False,
        login: bool = False,
        allow_empty: bool = False,
    ) -> Any:
        """`data` of a successful answer; raises Gone, GaveUp or BiliError.

        signed: add WBI `wts`/`w_rid`; space: the space.bilibili.com referer; login: send SESSDATA
        (only where a login is needed: it personalises the hot lists); allow_empty: an empty `data`
        is an answer, not a refusal.
        """
        params = dict(params or {})
        last: BiliError | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self._backoff(attempt, last)
            try:
                status, text = self._fetch(path, params, signed=signed, space=space, login=login)
            except httpx.TransportError as exc:
                REQUESTS.labels(endpoint=path, code="transport").inc()
                last = BiliError(path, -1, f"transport error {type(exc).__name__}: {exc}")
                continue
            if status != 200:
                REQUESTS.labels(endpoint=path, code=f"http {status}").inc()
            if status == 412 or status >= 500:
                last = BiliError(path, -412 if status == 412 else status, f"HTTP {status}")
                continue
            if status != 200:
                raise BiliError(path, status, f"HTTP {status}: {text[:200]}")
            try:
                body = json.loads(text)
            except ValueError:
                REQUESTS.labels(endpoint=path, code="not json").inc()
                raise BiliError(path, -2, f"not JSON: {text[:200]!r}") from None
            code = int(body.get("code", -2)) if isinstance(body, dict) else -2
            REQUESTS.labels(endpoint=path, code=str(code)).inc()
            data = body.get("data") if isinstance(body, dict) else None
            message = str(body.get("message", "")) if isinstance(body, dict) else ""
            if code == 0 and isinstance(data, dict) and set(data) == {"v_voucher"}:
                code, message = -352, "risk check (v_voucher only)"
            if code == 0:
                if data in (None, {}, []) and not allow_empty:
                    raise BiliError(path, 0, "empty payload with code 0: refused (login needed?)")
                return data
            if code in GONE_CODES:
                raise Gone(path, code, message)
            if code == -352 or (code == -403 and signed):
                self._mixin = None  # fresh keys (and cookies on -352) before the retry
                if code == -352:
                    self._cookies.pop("buvid3", None)
            elif code not in RISK_CODES | SERVER_CODES:
                raise BiliError(path, code, message)
            last = BiliError(path, code, message)
        assert last is not None
        raise GaveUp(path, last.code, f"{last} after {self.cfg.max_retries} retries")

    def get_xml(self, path: str, params: Mapping[str, str | int]) -> str:
        """A danmaku XML document (deflate-compressed on the wire), decoded."""
        last: BiliError | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self._backoff(attempt, last)
            try:
                status, text = self._fetch(path, dict(params), xml=True)
            except httpx.TransportError as exc:
                REQUESTS.labels(endpoint=path, code="transport").inc()
                last = BiliError(path, -1, f"transport error {type(exc).__name__}: {exc}")
                continue
            REQUESTS.labels(endpoint=path, code=f"http {status}").inc()
            if status == 200:
                return text
            last = BiliError(path, status, f"HTTP {status}")
            if status != 412 and status < 500:
                raise last
        raise GaveUp(path, -1, f"danmaku {dict(params)} failed after {self.cfg.max_retries} retries")

    def _backoff(self, attempt: int, error: BiliError | None) -> None:
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempt - 1))
        delay *= self._rng.uniform(0.5, 1.5)
        log.warning("backing off", error=str(error), attempt=attempt, seconds=round(delay, 3))
        self._sleep(delay)

    def _fetch(
        self,
        path: str,
        params: dict[str, str | int],
        *,
        signed: bool = False,
        space: bool = False,
        login: bool = False,
        xml: bool = False,
    ) -> tuple[int, str]:
        """One rate-limited request; returns (HTTP status, body text) and archives it."""
        if "buvid3" not in self._cookies and path != SPI_PATH:
            self._fetch_buvid()
        query: Mapping[str, str | int] = params
        if signed:
            query = wbi.sign(params, int(time.time()), self._wbi_mixin())
        cookies = dict(self._cookies)
        if login and self.cfg.sessdata:
            cookies["SESSDATA"] = self.cfg.sessdata
        headers = {
            "Referer": SPACE_REFERER if space else REFERER,
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        }
        self.bucket.acquire()
        self.requests += 1
        fetched_at = self.fetched_at = self.clock()
        response = self._http.get(self.base + path, params=query, headers=headers)
        text = _inflate(response.content) if xml and response.status_code == 200 else response.text
        if self.archive is not None:
            self.archive.save(
                RawPage(fetched_at, path, {k: str(v) for k, v in params.items()}, response.status_code, text)
            )
        return response.status_code, text

    def _fetch_buvid(self) -> None:
        """Anonymous device cookies (`x/frontend/finger/spi`): without them several lists say -352."""
        data = self.get(SPI_PATH)
        self._cookies["buvid3"] = str(data["b_3"])
        self._cookies["buvid4"] = str(data["b_4"])

    def _wbi_mixin(self) -> str:
        """The WBI salt, from `nav` (which answers -101 anonymously but still carries the keys)."""
        if self._mixin is None or time.time() - self._mixin_at > WBI_KEY_TTL_S:
            status, text = self._fetch(NAV_PATH, {})
            try:
                img = json.loads(text)["data"]["wbi_img"]
                self._mixin = wbi.mixin_key(wbi.key_of(img["img_url"]), wbi.key_of(img["sub_url"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise BiliError(NAV_PATH, status, f"no data.wbi_img in nav: {exc!r}") from None
            self._mixin_at = time.time()
        return self._mixin


def _inflate(body: bytes) -> str:
    """Danmaku bodies are raw deflate unless the transport already decoded them."""
    try:
        return zlib.decompress(body, -zlib.MAX_WBITS).decode("utf-8", "replace")
    except zlib.error:
        return body.decode("utf-8", "replace")
