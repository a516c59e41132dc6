"""The worker's own web pages: `/stats/` (its counters), `/health/` (the group's verdict), `/metrics`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust

from broker.health import BrokerUnreachable, Tracker, report_within
from core.settings import Settings
from stream.metrics import Exposition, model_in_use

WorkerView = Callable[[], dict[str, Any]]
"""This worker's counters, as the scoring loop keeps them."""


def web_options(settings: Settings) -> dict[str, Any]:
    """The Faust app's web server settings: where it listens, and which of Faust's own pages it serves.

    Faust listens on `web_bind` (default 0.0.0.0, every interface); `web_host` only names the server
    in URLs it builds. Both come from `WEB_HOST`, so a worker listens on loopback unless told
    otherwise. Faust's table and router pages (`/table/{name}/{key}/`, `/router/…`) show any key's
    state to whoever can reach the port, so they are off unless `WEB_TABLE_PAGES` asks for them.
    """
    return {
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "web_tables_enabled": settings.web_table_pages,
        "web_router_enabled": settings.web_table_pages,
    }


def add_pages(
    app: faust.App,
    settings: Settings,
    bootstrap: str,
    worker_view: WorkerView,
    model_version: Callable[[], str],
) -> None:
    """Register `/stats/`, `/health/` and `/metrics` on the app's web server."""
    tracker = Tracker(settings.health_stuck_after_s)
    exposition = Exposition(settings, bootstrap)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        """Prometheus metrics (stream/metrics.py)."""
        model_in_use(model_version())
        body = await asyncio.to_thread(exposition.render)
        return web.bytes(body, content_type=exposition.content_type.split(";")[0])

    @app.page("/stats/")
    async def stats_page(web: Any, request: Any) -> Any:
        """Counters for benchmarks and health checks: messages, checkpoints, watermarks, queue."""
        return web.json(worker_view())

    @app.page("/health/")
    async def health_page(web: Any, request: Any) -> Any:
        """The group's lag, offset progress, sink backlog and verdict (503 when stuck), and this worker."""
        try:
            body = await asyncio.to_thread(
                report_within, bootstrap, settings.worker_id, settings.topics, tracker
            )
        except BrokerUnreachable as exc:
            down = {"verdict": "unreachable", "error": str(exc), "worker": worker_view()}
            return web.json(down, status=503)
        body["worker"] = worker_view()
        return web.json(body, status=200 if body["verdict"] == "ok" else 503)
