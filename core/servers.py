"""Local servers run as child processes: the base of the embedded broker, Redis and object store.

Each runs in its own session, so a Ctrl-C on the terminal reaches only our process and a worker can
still commit its offsets to the broker before `stop()` takes the servers down. Every one binds
loopback (`HOST`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from core.logs import get_logger

log = get_logger(__name__)

HOST = "127.0.0.1"


class EmbeddedServiceError(RuntimeError):
    """An embedded server did not come up; the message quotes the tail of its log."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now (the OS picks it), for a server we are about to start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = HOST, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class LocalServer(ABC):
    """A server binary run as a child process, its output in `<directory>/<name>.log`.

    Subclasses give the command line and a protocol-level readiness probe; this class owns the
    process: start, wait until ready (or fail with the log tail), terminate, kill.
    """

    name = "server"

    def __init__(
        self, directory: Path, port: int | None = None, start_timeout_s: float = 15.0, host: str = HOST
    ) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self.log_path = self.directory / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id while we run it."""
        return None if self._process is None else self._process.pid

    def ports(self) -> list[int]:
        """Every port the server binds (it must find them free)."""
        return [self.port]

    @abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    @abstractmethod
    def probe(self) -> None:
        """Raise unless the server answers a real request (an open port is not enough)."""

    def start(self) -> Self:
        """Start the server and return once it answers requests."""
        if self._process is not None:
            return self
        taken = [port for port in self.ports() if port_open(port, self.host)]
        if taken:
            # Readiness is judged by connecting to the port: another server there would fool it.
            raise EmbeddedServiceError(
                f"cannot start {self.name}: {', '.join(f'{self.host}:{p}' for p in taken)} in use"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop() or detach()
        began = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
            self._wait_ready(self._process, began + self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info(
            "embedded service started",
            service=self.name,
            port=self.port,
            pid=self._process.pid,
            log=str(self.log_path),
            seconds=round(time.monotonic() - began, 3),
        )
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise EmbeddedServiceError(
                    f"{self.name} exited with code {code} during start; "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            if port_open(self.port, self.host):
                try:
                    self.probe()
                    return
                except Exception as exc:  # any failure means "not ready yet"; retried below
                    last_error = exc
            time.sleep(0.05)
        raise EmbeddedServiceError(
            f"{self.name} did not answer on {self.address} within {self.start_timeout_s} s "
            f"(last error: {last_error!r}); {self.log_path} ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(deque(fh, maxlen=lines))
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server (SIGTERM), kill it if it has not exited after timeout_s."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("embedded service killed", service=self.name, pid=process.pid)
                    process.kill()
                    process.wait()
            log.info("embedded service stopped", service=self.name, code=process.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def detach(self) -> int:
        """Leave the running server to outlive us (a stack); return its pid."""
        if self._process is None:
            raise EmbeddedServiceError(f"{self.name} is not running")
        pid, self._process = self._process.pid, None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return pid

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
