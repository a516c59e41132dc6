"""Run the Faust worker against the configured (or embedded) services."""

from __future__ import annotations

import faust

from hotvideo.embedded import services
from hotvideo.kafka_admin import ensure_topics
from hotvideo.logs import get_logger
from hotvideo.settings import Settings
from stream.app import create_app

log = get_logger(__name__)


def run_worker(settings: Settings) -> None:
    """Start the worker and block until it is stopped (SIGINT/SIGTERM)."""
    with services(settings) as svc:
        ensure_topics(svc.kafka_bootstrap, settings.topics, settings.partitions)
        app = create_app(svc.apply(settings), svc.kafka_bootstrap)
        log.info("worker starting", broker=svc.kafka_bootstrap, app_id=settings.worker_id)
        worker = faust.Worker(app, loglevel=settings.log_level)
        worker.execute_from_commandline()
