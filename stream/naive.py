"""The floor of the benchmark: a minimal Faust agent, one JSON Record per event, one table write each.

It is what a first Faust app looks like (NOTES.md measured it at about 4,100 events/s); `hotvideo bench`
runs it beside the real worker so the speed-up is measured on the same machine in the same run.
"""

from __future__ import annotations

from typing import Any

import faust

from core.settings import Settings, get_settings
from stream.loop import Progress
from stream.pages import web_options


class NaiveSnapshot(faust.Record, serializer="json"):
    """The snapshot fields, decoded by Faust's own JSON Record machinery."""

    bvid: str
    ts: int
    pubdate: int
    view: int
    like: int
    coin: int
    favorite: int
    reply: int
    danmaku: int
    share: int


def create_naive_app(settings: Settings, bootstrap: str) -> faust.App:
    app = faust.App(
        f"{settings.worker_id}-naive",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        **web_options(settings),
        broker_session_timeout=10.0,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
    )
    snapshots = app.topic(settings.topics.snapshot, value_type=NaiveSnapshot)
    latest = app.Table("naive_latest", default=int, partitions=settings.partitions)
    progress = Progress()

    @app.agent(snapshots)
    async def count(stream: Any) -> None:
        async for snap in stream:
            progress.begin()
            latest[snap.bvid] = snap.view
            progress.update(1)

    @app.page("/stats/")
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json(progress.as_dict())

    return app


def main() -> None:
    """Entry point of the benchmark's naive worker process (settings from the environment)."""
    settings = get_settings()
    assert settings.kafka_bootstrap, "the benchmark sets KAFKA_BOOTSTRAP"
    faust.Worker(
        create_naive_app(settings, settings.kafka_bootstrap), loglevel="WARNING"
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
