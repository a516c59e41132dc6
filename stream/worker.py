"""Run the Faust worker against the services the settings name (the caller resolves them)."""

from __future__ import annotations

import gc
import sys

import faust

from broker.admin import ensure_topics
from core.logs import get_logger
from core.settings import Settings
from stream.app import create_app

log = get_logger(__name__)

GIL_SWITCH_S = 0.0005
"""How long a thread may hold the GIL while another waits (Python's default is 5 ms).

The worker runs its event loop, Faust's consumer thread and the sink writes' threads; with the
default, the event loop waited up to 5 ms each time a thread had the GIL. Measured at a steady 2,000
snapshots/s (`hotvideo bench`): p99 produce-to-Redis about 280 ms with the default, 210-245 ms with this.
"""

GC_THRESHOLDS = (50_000, 20, 100)
"""Python's cyclic garbage collector runs after this many allocations (the default is 700).

The worker holds every active video's history: hundreds of thousands of long-lived objects that each
full collection walks, stopping the event loop meanwhile. With the default, latency grew as the
state grew (after 50,000 replayed snapshots, p99 produce-to-Redis 560-580 ms at 2,000/s); with
these thresholds it stayed at 185 ms. The state has no reference cycles, so reference counting
frees it as before; only cyclic garbage waits longer.
"""


def run_worker(settings: Settings, bootstrap: str) -> None:
    """Start the worker on the broker at `bootstrap` and block until it is stopped (SIGINT/SIGTERM)."""
    sys.setswitchinterval(GIL_SWITCH_S)
    gc.set_threshold(*GC_THRESHOLDS)
    ensure_topics(bootstrap, settings.topics, settings.partitions)
    app = create_app(settings, bootstrap)
    log.info("worker starting", broker=bootstrap, app_id=settings.worker_id)
    worker = faust.Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()
