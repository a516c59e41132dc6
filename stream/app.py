"""The Faust worker: snapshots and hot-list sightings in, predictions out, sinks fed.

`create_app` only wires the parts: the scoring lane (stream/lane.py) hands fetches of
`bili.video.snapshot` and `bili.hotlist` (co-partitioned by bvid, so a video's events and its state
live on one worker) to the scoring loop (stream/loop.py); the sink agents (stream/sinks.py) write the
prediction, profile, hot-list and danmaku topics into Redis and SQL; stream/pages.py serves the
worker's pages.
"""

from __future__ import annotations

from typing import Any

import faust

from broker.quirks import QUIRKS
from core.settings import Settings
from model.registry import ModelBundle, load_promoted
from sink.writer import PredictionSink
from stream.checkpoint import Checkpointer, Records, StateCache
from stream.commit import BatchCommit, ChangelogWrites, Emitter
from stream.faust_internals import table_store
from stream.lane import Lane, install_lane
from stream.loop import ScoringLoop, TopicEmitter
from stream.pages import add_pages, web_options
from stream.profiles import ProfileReader
from stream.recovery import Restorer
from stream.scoring import Scorer
from stream.sinks import add_sink_agents


def create_app(
    settings: Settings,
    bootstrap: str,
    *,
    bundle: ModelBundle | None = None,
    sink: PredictionSink | None = None,
    with_sinks: bool = True,
    emitter: Emitter | None = None,
) -> faust.App:
    """Build the worker app. `bundle` and `sink` default to the promoted model and configured stores;
    an `emitter` replaces the output topics and the broker (unit tests feed `app.score` directly)."""
    topics, quirks = settings.topics, QUIRKS[settings.broker_kind]
    app = faust.App(
        settings.worker_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        **web_options(settings),
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.worker_session_timeout_s / 3),
        broker_commit_interval=1.0,
        producer_linger=0.001,  # batch produce requests: a millisecond of latency for far fewer requests
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=16384,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        table_standby_replicas=0,
        recovery_consistency_check=quirks.recovery_consistency_check,
    )
    lane = Lane(topics.snapshot, topics.hotlist)
    install_lane(app, lane, quirks.fetch_wait_ms)
    headers = app.Table("video_state", default=None, key_type=bytes, partitions=settings.partitions)
    rows = app.Table("video_rows", default=None, key_type=bytes, partitions=settings.partitions)
    # The cache writes the tables' stores and changelogs itself, once per batch and to the partition
    # each video's events came from (`table[key] = value` only works one event at a time).
    writes = ChangelogWrites()
    checkpointer = Checkpointer(
        StateCache(
            Records(table_store(headers), writes.of(headers)), Records(table_store(rows), writes.of(rows))
        ),
        grace_s=settings.checkpoint_grace_s,
        window_s=settings.label_window_s,
        label_sources=frozenset(settings.label_sources),
        outcome_retention_s=settings.outcome_retention_s,
    )
    model = bundle if bundle is not None else load_promoted(settings.model_dir)
    on_broker = emitter is None
    uploaders = ProfileReader(bootstrap if on_broker else None, topics.profile)
    restorer = Restorer(
        app, bootstrap, topics.snapshot, checkpointer, headers, rows, quirks.read_changelogs_to_end
    )
    out = (
        emitter
        if emitter is not None
        else TopicEmitter(
            app.topic(topics.prediction, key_type=bytes, value_type=bytes),
            app.topic(topics.outcome, key_type=bytes, value_type=bytes),
            app.topic(topics.deadletter, key_type=bytes, value_type=bytes),
        )
    )
    commit = BatchCommit(out, checkpointer, writes, lane, topics.snapshot)
    scorer = Scorer(model, uploaders.at)
    loop = ScoringLoop(topics, checkpointer, scorer, uploaders, out, commit, restorer if on_broker else None)
    app.checkpointer = checkpointer  # type: ignore[attr-defined]
    app.uploaders = uploaders  # type: ignore[attr-defined]
    app.restorer = restorer  # type: ignore[attr-defined]
    app.score = loop.score  # type: ignore[attr-defined]  # unit tests feed batches to it directly

    @app.task
    async def score_lane() -> None:
        """The scoring loop: every fetch of the lane's topics, as soon as it arrives (stream/lane.py).

        It goes on to the next batch while the last one's state records are on their way.
        """
        while True:
            batches = await lane.take()
            async with lane.busy:
                records = [r for b in batches for r in b.records()]
                await loop.score(records, max(b.fetched_at for b in batches), batches)

    if on_broker:

        @app.task
        async def read_profiles() -> None:
            """Every uploader profile, from the whole profile topic (stream/profiles.py)."""
            await uploaders.run()

    async def forget_cached_state(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions may move to another worker: hand the state over, restore before the next batch."""
        await commit.hand_over()
        restorer.invalidate()

    app.on_partitions_revoked.connect(forget_cached_state)  # type: ignore[arg-type]
    add_pages(app, settings, bootstrap, loop.view, lambda: model.version)
    if with_sinks:
        add_sink_agents(app, settings, sink, loop.dead)
    return app
