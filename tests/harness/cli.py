"""`hotvideo` commands run as a user runs them: subprocesses with only DATA_DIR and MODEL_DIR set.

No service URL reaches them (the runner's own KAFKA_BOOTSTRAP, REDIS_URL, DATABASE_URL are
removed), so they must find the stack of their DATA_DIR by themselves. Each test's stack gets free
ports of its own (`stack_env`), so stacks of parallel runs and of a developer never meet.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psutil

from core.servers import port_open
from hotvideo.embedded import GRPC_OFFSET
from hotvideo.processes import hotvideo_argv

SERVICE_VARIABLES = ("KAFKA_BOOTSTRAP", "REDIS_URL", "DATABASE_URL")


def free_block(size: int, low: int = 20_000, high: int = 40_000) -> int:
    """A port p with p … p+size-1 and their gRPC twins (+10000) all free right now."""
    for _ in range(200):
        base = random.randrange(low, high - size)
        ports = [*range(base, base + size), *range(base + GRPC_OFFSET, base + GRPC_OFFSET + size)]
        if not any(port_open(port) for port in ports):
            return base
    raise RuntimeError("no free block of ports")


def stack_env(data_dir: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's terminal: DATA_DIR, MODEL_DIR and the stack's ports, no service URL."""
    base = free_block(7)
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    return {
        **env,
        "DATA_DIR": str(data_dir),
        "MODEL_DIR": str(model_dir),
        "STACK_S3_PORT": str(base),
        "STACK_KAFKA_PORT": str(base + 5),
        "STACK_REDIS_PORT": str(base + 6),
        "WEB_PORT": str(free_block(3, 40_000, 50_000)),
        "API_PORT": str(free_block(1, 50_000, 55_000)),
        "WORKER_SESSION_TIMEOUT_S": "3",  # a killed worker's partitions move on in seconds
        **extra,
    }


def kill_leftovers(data_dir: Path) -> list[int]:
    """Kill what a failed test left running for this DATA_DIR (children of a `hotvideo live` that was
    killed run in sessions of their own); returns their pids."""
    killed = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("DATA_DIR") == str(data_dir) and process.pid != os.getpid():
                process.kill()
                killed.append(process.pid)
        except psutil.Error:
            continue  # gone, or not ours to read
    return killed


def run(env: Mapping[str, str], *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`hotvideo ARGS…` to its end; output captured."""
    return subprocess.run(
        hotvideo_argv(*args), env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
    )
