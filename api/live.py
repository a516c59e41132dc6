"""The live prediction feed behind `/stream`: one Redis reader fanned out to every SSE client.

Each client used to run its own blocking XREAD on asyncio's default thread pool (six threads on two
cores), so the 51st client waited seconds to connect. Here one task reads the stream with
redis.asyncio and offers each entry, framed once as an SSE event, to a bounded queue per client.
A client whose queue fills (it reads slower than predictions arrive) holds no more memory and loses
nothing: its queue is cleared and it catches up from the Redis stream itself (XRANGE after the last
id it sent), the same path a replay (`from_beginning`, `Last-Event-ID`) takes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from core.logs import get_logger

log = get_logger(__name__)

StreamId = tuple[int, int]
"""A Redis stream id `ms-seq` as numbers, so ids compare in stream order."""
READ_BLOCK_MS = 5000
"""How long the reader's XREAD waits for new entries before asking again."""
RETRY_S = 1.0
"""Pause of the reader after a Redis error."""
PAGE = 500
"""Entries per XRANGE when a client catches up."""
QUEUE_SIZE = 1000
"""Entries a client may have pending before it falls back to catching up from Redis."""
KEEPALIVE_S = 1.0
"""A comment line after this long without an event, so proxies and clients see a live connection."""


def parse_id(text: str | bytes) -> StreamId:
    """`1700000000000-3` -> (1700000000000, 3)."""
    ms, _, seq = (text.decode() if isinstance(text, bytes) else text).partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class Entry:
    """One prediction of the stream, with what clients filter on and its SSE event text."""

    id: StreamId
    horizon: str
    prob: float
    frame: str

    @classmethod
    def of(cls, raw_id: str | bytes, fields: dict[Any, Any]) -> Entry:
        entry_id = parse_id(raw_id)
        pred = json.loads(fields.get(b"prediction") or fields["prediction"])
        data = json.dumps(pred, ensure_ascii=False)
        frame = f"id: {entry_id[0]}-{entry_id[1]}\nevent: prediction\ndata: {data}\n\n"
        return cls(entry_id, pred["horizon"], pred.get("prob") or 0.0, frame)


class FeedFull(Exception):
    """All client slots are taken."""


class Subscriber:
    """One client's queue; `lagged` once it overflowed, until the client has caught up from Redis."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Entry] = asyncio.Queue(size)
        self.lagged = False

    def offer(self, entry: Entry) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.lagged = True

    def restart(self) -> None:
        """Forget what is queued: the caller is about to read it from Redis."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.lagged = False


class FeedUnavailable(Exception):
    """The reader has not yet reached Redis."""


class Feed:
    """The reader task and the clients it serves (at most `max_clients`).

    `position` is the last entry the reader has seen; a live client starts there, so connecting
    costs no Redis round trip (None until the reader first reached Redis).
    """

    def __init__(
        self, client: redis.asyncio.Redis, key: str, max_clients: int, queue_size: int = QUEUE_SIZE
    ) -> None:
        self.client = client
        self.key = key
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.position: StreamId | None = None
        self.closing = False

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The reader task for the lifetime of the app; it starts after the newest entry (the app
        starts anyway when Redis is down, and the reader keeps trying)."""
        with suppress(redis.RedisError):
            self.position = await self.newest()
        task = asyncio.create_task(self._read(), name="prediction-feed")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await self.client.connection_pool.disconnect()

    def close(self) -> None:
        """End every client's events within KEEPALIVE_S (the server is stopping) and refuse new ones."""
        self.closing = True

    def subscribe(self) -> Subscriber:
        if self.closing:
            raise FeedUnavailable("the server is stopping")
        if len(self.subscribers) >= self.max_clients:
            raise FeedFull(f"{self.max_clients} clients are already following the stream")
        if self.position is None:
            raise FeedUnavailable("the prediction stream in Redis is not readable yet")
        sub = Subscriber(self.queue_size)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def newest(self) -> StreamId:
        """The newest entry's id ((0, 0) when empty)."""
        newest = await self.client.xrevrange(self.key, count=1)
        return parse_id(newest[0][0]) if newest else (0, 0)

    async def follow(
        self,
        sub: Subscriber,
        after: StreamId,
        catch_up: bool,
        keep: Callable[[Entry], bool],
        limit: int | None,
    ) -> AsyncIterator[str]:
        """SSE text for one client: the entries after `after` it keeps, keep-alive comments while
        nothing arrives; ends after `limit` events. `catch_up` reads what is already stored first."""
        sent = 0
        yield ": connected\n\n"
        async for entry in self._after(sub, after, catch_up):
            if entry is None:
                yield ": keep-alive\n\n"
            elif keep(entry):
                yield entry.frame
                sent += 1
                if limit is not None and sent >= limit:
                    return

    async def _after(self, sub: Subscriber, last: StreamId, catch_up: bool) -> AsyncIterator[Entry | None]:
        """The entries after `last` in stream order, each once: from Redis while catching up, then
        from the client's queue; None after KEEPALIVE_S without one. Ends when the feed closes."""
        while not self.closing:
            if catch_up or sub.lagged:
                catch_up = False
                sub.restart()  # before reading Redis: what arrives meanwhile is queued again
                async for entry in self._since(last):
                    last = entry.id
                    yield entry
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    entry = await sub.queue.get()
            except TimeoutError:
                yield None
                continue
            if not sub.lagged and entry.id > last:
                last = entry.id
                yield entry

    async def _since(self, after: StreamId) -> AsyncIterator[Entry]:
        """Stored entries after `after`, oldest first, a page at a time."""
        while True:
            page = await self.client.xrange(self.key, min=f"({after[0]}-{after[1]}", count=PAGE)
            for entry in _entries(page):
                yield entry
            if len(page) < PAGE:
                return
            after = parse_id(page[-1][0])

    async def _read(self) -> None:
        """Read every new entry once and offer it to each client."""
        while True:
            try:
                if self.position is None:
                    self.position = await self.newest()
                last = self.position
                batch = await self.client.xread(
                    {self.key: f"{last[0]}-{last[1]}"}, count=PAGE, block=READ_BLOCK_MS
                )
            except redis.RedisError as exc:
                log.warning("prediction feed: redis read failed", error=str(exc))
                await asyncio.sleep(RETRY_S)
                continue
            rows = batch[0][1] if batch else []
            for entry in _entries(rows):
                for sub in self.subscribers:
                    sub.offer(entry)
            if rows:
                self.position = parse_id(rows[-1][0])


def _entries(rows: list[Any]) -> Iterator[Entry]:
    """The rows as entries; one that is not a prediction is logged and skipped, not fatal to the reader."""
    for raw_id, fields in rows:
        try:
            yield Entry.of(raw_id, fields)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("prediction feed: unreadable entry skipped", id=str(raw_id), error=str(exc))
