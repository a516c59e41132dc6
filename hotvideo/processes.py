"""`hotvideo` commands run as child processes: the one way the demo, the benchmark, `hotvideo live`
and the tests start a worker (or a collector, or the API) and stop it.

A child gets the parent's environment plus what the caller adds (service URLs, its own web port),
writes its output to a log file or to a pipe the caller reads, and is stopped with SIGTERM (its
clean shutdown commits offsets and closes the sinks), killed only if that takes too long.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

from core.logs import get_logger
from core.servers import free_port

log = get_logger(__name__)


def hotvideo_argv(*args: str, module: str = "hotvideo.cli") -> list[str]:
    """The command line of `hotvideo ARGS…` with this interpreter (no PATH lookup, same venv)."""
    return [sys.executable, "-m", module, *args]


class ChildProcess:
    """One child process: started with an environment of its own, output to a file or a pipe."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        own_session: bool = False,
    ) -> None:
        self.name, self.argv = name, list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.own_session = own_session
        """Start it in a session of its own: a Ctrl-C on the terminal reaches only the parent, which
        stops its children in its own order."""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> Self:
        """Start it; with no log file its output (stdout and stderr) is `self.process.stdout`."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log if self._log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )
        log.info("child started", child=self.name, pid=self.process.pid)
        return self

    def poll(self) -> int | None:
        """Its exit code, None while it runs (or before it started)."""
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap (a crash, for tests)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait up to timeout_s, then SIGKILL; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time: killed", child=self.name, pid=self.process.pid)
                self.process.kill()
                self.process.wait()
        self._close_log()
        return self.process.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def failure(self) -> str:
        """Why it is not running, for error messages."""
        where = f"; its log: {self.log_path}" if self.log_path is not None else ""
        return f"{self.name} exited with code {self.poll()}{where}"


class WorkerProcess(ChildProcess):
    """`hotvideo worker` (or another Faust app module) with a web port of its own for its pages."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        web_port: int | None = None,
        module: str = "hotvideo.cli",
        own_session: bool = False,
    ) -> None:
        self.web_port = web_port or free_port()
        argv = hotvideo_argv(*(("worker",) if module == "hotvideo.cli" else ()), module=module)
        env = {**(env or {}), "WEB_PORT": str(self.web_port)}
        super().__init__(name, argv, env, log_path, own_session)

    def page(self, path: str = "stats", timeout_s: float = 20.0) -> dict[str, Any]:
        """A JSON page of the worker's web server (a 503 health answer is returned, not raised)."""
        url = f"http://127.0.0.1:{self.web_port}/{path}/"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body

    def wait_for_stats(self, done: Any, timeout_s: float = 300.0) -> dict[str, Any]:
        """Poll `/stats/` until `done(stats)`; fail fast if the worker exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.poll() is not None:
                raise RuntimeError(self.failure())
            try:
                stats = self.page("stats", timeout_s=2)
                if done(stats):
                    return stats
            except OSError:
                pass  # not listening yet
            time.sleep(0.3)
        raise TimeoutError(f"{self.name}: /stats/ did not reach the expected state within {timeout_s} s")
