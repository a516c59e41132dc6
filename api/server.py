"""`hotvideo serve`: the API and dashboard on uvicorn, over the configured (or embedded) stores."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from types import FrameType

import redis
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.limits import head_deadline
from api.live import Feed
from api.prototype import ARTIFACT, build_artifact
from api.sample_danmaku import fill_sample_danmaku
from api.service import Platform
from core.logs import get_logger
from core.settings import Settings
from ingest.eventlog import read_events
from sink.redis_store import RedisStore
from sink.sql import SqlStore

log = get_logger(__name__)

SHUTDOWN_GRACE_S = 5
"""How long a stopping server waits for open responses (ApiServer ends the /stream ones first)."""


def serve(settings: Settings, redis_url: str, train_events: Path | None, sample_danmaku: bool) -> None:
    """Build the platform artifact if asked, then serve until interrupted."""
    store = RedisStore(
        redis.Redis.from_url(redis_url),
        settings.redis_prefix,
        settings.redis_ttl_s,
        settings.redis_hotlist_size,
        settings.redis_stream_maxlen,
    )
    platform = Platform(SqlStore(settings.database_url or settings.sqlite_url), store, settings.model_dir)
    if train_events is not None:
        bundle = platform.bundle()
        if not (settings.model_dir / bundle.version / ARTIFACT).exists():
            build_artifact(read_events(train_events), bundle, settings.model_dir, str(train_events))
    if sample_danmaku:
        log.info("sample danmaku written", lines=fill_sample_danmaku(platform.sql))
    log.info("serving", url=f"http://{settings.api_host}:{settings.api_port}/")
    # uvicorn re-raises SIGTERM after its graceful shutdown; as SystemExit it unwinds the caller's
    # stack, so an embedded Redis it started is stopped (and saved) instead of left running.
    signal.signal(signal.SIGTERM, _exit)
    server = api_server(create_app(platform, settings), settings)
    server.run()
    if not server.started:
        raise SystemExit(f"the API could not listen on {settings.api_host}:{settings.api_port}")


class ApiServer(uvicorn.Server):
    """uvicorn's server that ends the /stream responses first when it stops: they never end by
    themselves, so its graceful shutdown would wait SHUTDOWN_GRACE_S and then cancel them."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        feed: Feed | None = self.lifespan.state.get("feed")
        if feed is not None:
            feed.close()
        await super().shutdown(sockets)


def api_server(app: FastAPI, settings: Settings) -> ApiServer:
    """uvicorn with the API's connection limits (docs/platform.md): a deadline for each request head,
    the keep-alive timeout, a cap on open connections. The body limits live in the app."""
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        http=head_deadline(settings.api_header_timeout_s),
        timeout_keep_alive=settings.api_keep_alive_s,
        limit_concurrency=settings.api_max_connections,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        log_level="warning",
    )
    return ApiServer(config)


def _exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
