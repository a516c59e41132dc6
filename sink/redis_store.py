"""The Redis sink: the latest predictions per video, a live hot list per horizon, and a live stream.

Keys (all under one prefix):

- `{prefix}video:{bvid}` — hash with `{h}:prob`, `{h}:status`, `{h}:level`, `{h}:play_range`,
  `{h}:label`, `{h}:model_version`, `{h}:as_of` per horizon `h`; expires `ttl_s` after its last write.
- `{prefix}hot:{h}` — sorted set, member bvid, score prob, only `scored` predictions: the live hot list.
  `{prefix}hot:{h}:asof` holds the same members scored by `as_of`. Both stay bounded: members whose
  as_of is more than `hotlist_max_age_s` older than the newest one are dropped, then all but the
  `hotlist_size` most probable.
- `{prefix}predictions` — stream of `{"prediction": <event JSON>}` for live subscribers, capped near
  `stream_maxlen` (approximate trimming, so it may hold up to one stream node more).

Rewriting a batch leaves the hashes and sorted sets unchanged (only TTLs are refreshed). The stream is a
log, so a rewritten batch is appended again: subscribers dedupe by (bvid, horizon, model_version).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from core.events import BVID_PATTERN, Prediction
from core.reference import HORIZONS, Horizon

HOTLIST_MAX_AGE_S = 48 * 3600
"""Hot-list members older than this before the newest as_of are stale: the list follows recent videos."""

_FIELDS = ("prob", "status", "level", "play_range", "label", "model_version", "as_of")

# Atomic trim of one horizon's hot list. KEYS: hot (score prob), asof (score as_of).
# ARGV: max age in seconds, size. ZINTERSTORE with weights 1,0 keeps the first set's scores and only
# the members present in both, which re-syncs the pair after each removal.
_TRIM = """
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
if newest then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(newest) - tonumber(ARGV[1])))
end
redis.call('ZINTERSTORE', KEYS[1], 2, KEYS[1], KEYS[2], 'WEIGHTS', 1, 0)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('ZINTERSTORE', KEYS[2], 2, KEYS[2], KEYS[1], 'WEIGHTS', 1, 0)
"""


def _text(value: bytes | str) -> str:
    """Works whether or not the client was built with decode_responses."""
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    """Writes predictions to Redis and reads what the API serves live."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        ttl_s: int,
        hotlist_size: int,
        stream_maxlen: int,
        hotlist_max_age_s: int = HOTLIST_MAX_AGE_S,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hotlist_size = hotlist_size
        self.stream_maxlen = stream_maxlen
        self.hotlist_max_age_s = hotlist_max_age_s
        self.stream_key = f"{prefix}predictions"
        self._trim = client.register_script(_TRIM)

    def async_client(self, socket_timeout: int, max_connections: int) -> redis.asyncio.Redis:
        """An asyncio client of the same server and database (TCP, TLS or unix socket), for readers
        that wait on the server (a blocking XREAD) without holding a thread. Its pool blocks when all
        `max_connections` are busy instead of failing, so a burst of readers queues."""
        pool = self.client.connection_pool
        kw = pool.connection_kwargs
        target: dict[str, Any]
        if "path" in kw:
            target = {"connection_class": redis.asyncio.UnixDomainSocketConnection, "path": kw["path"]}
        else:
            target = {"host": kw["host"], "port": kw["port"]}
            if issubclass(pool.connection_class, redis.SSLConnection):
                ssl = {k: v for k, v in kw.items() if k.startswith("ssl_")}
                target |= {"connection_class": redis.asyncio.SSLConnection, **ssl}
        return redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool(
                max_connections=max_connections,
                timeout=socket_timeout,
                socket_timeout=socket_timeout,
                db=kw.get("db", 0),
                username=kw.get("username"),
                password=kw.get("password"),
                **target,
            )
        )

    def video_key(self, bvid: str) -> str:
        """The per-video hash; refuses anything that is not a bvid, so no input can pick a key."""
        if not re.fullmatch(BVID_PATTERN, bvid):
            raise ValueError(f"not a bvid: {bvid!r}")
        return f"{self.prefix}video:{bvid}"

    def hot_key(self, horizon: str) -> str:
        """The live hot list of one horizon (its as_of companion adds `:asof`)."""
        if horizon not in HORIZONS:
            raise ValueError(f"not a horizon: {horizon!r}")
        return f"{self.prefix}hot:{horizon}"

    def write_predictions(self, batch: Sequence[Prediction]) -> None:
        """Write a batch in one MULTI/EXEC pipeline, so readers never see half of it."""
        if not batch:
            return
        pipe = self.client.pipeline(transaction=True)
        for p in batch:
            key = self.video_key(p.bvid)
            values = {name: getattr(p, name) for name in _FIELDS}
            present: dict[str | bytes, str] = {
                f"{p.horizon}:{k}": str(v) for k, v in values.items() if v is not None
            }
            absent = [f"{p.horizon}:{k}" for k, v in values.items() if v is None]
            pipe.hset(key, mapping=present)
            if absent:
                pipe.hdel(key, *absent)
            pipe.expire(key, self.ttl_s)
            hot = self.hot_key(p.horizon)
            if p.status == "scored" and p.prob is not None:
                pipe.zadd(hot, {p.bvid: p.prob})
                pipe.zadd(f"{hot}:asof", {p.bvid: p.as_of})
            else:
                pipe.zrem(hot, p.bvid)
                pipe.zrem(f"{hot}:asof", p.bvid)
            pipe.xadd(
                self.stream_key,
                {"prediction": p.to_json()},
                maxlen=self.stream_maxlen,
                approximate=True,
            )
        for horizon in sorted({p.horizon for p in batch}):
            hot = self.hot_key(horizon)
            self._trim(
                keys=[hot, f"{hot}:asof"],
                args=[self.hotlist_max_age_s, self.hotlist_size],
                client=pipe,
            )
        pipe.execute()

    def hot_list(self, horizon: Horizon, n: int) -> list[tuple[str, float]]:
        """The `n` most probable videos of the live hot list, best first."""
        if n <= 0:
            return []
        rows = self.client.zrevrange(self.hot_key(horizon), 0, n - 1, withscores=True)
        return [(_text(member), float(score)) for member, score in rows]

    def hot_list_size(self, horizon: Horizon) -> int:
        """Members in the live hot list."""
        return int(self.client.zcard(self.hot_key(horizon)))

    def video(self, bvid: str) -> dict[str, str]:
        """The video's latest predictions, `{h}:{field}` -> value; empty if unknown or expired."""
        raw = self.client.hgetall(self.video_key(bvid))
        return {_text(k): _text(v) for k, v in raw.items()}
