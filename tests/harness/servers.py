"""The real servers the tests use (MariaDB, Redis), how a missing one is reported, and a cuttable proxy."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import NoReturn

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
"""The test database (CI's contract); TEST_MARIADB_URL points parallel runs at databases of their own."""
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15"))
"""The Redis database the tests flush; TEST_REDIS_DB gives parallel runs one each."""


def unavailable(what: str, exc: BaseException) -> NoReturn:
    """Skip locally, fail in CI."""
    message = f"{what} unavailable: {exc}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class TcpProxy:
    """Forwards a local port to a server; `cut()` starts an outage, `restore()` ends it.

    During an outage, open connections are closed and new ones are accepted and closed at once, so
    clients fail fast with connection errors, as when a server restarts.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._up = True
        self._closed = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            self._drop_all()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_all()
        self._listener.close()

    def _drop_all(self) -> None:
        for sock in self._open:
            _hang_up(sock)
        self._open.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with self._lock:
                if not self._up or self._closed:
                    _hang_up(client)
                    continue
                try:
                    upstream = socket.create_connection(self._target, timeout=5)
                except OSError:
                    _hang_up(client)
                    continue
                upstream.settimeout(None)
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the proxy cut the pair, or a side hung up
            while data := src.recv(65536):
                dst.sendall(data)
        with self._lock:
            self._open -= {src, dst}
        _hang_up(src)
        _hang_up(dst)


def _hang_up(sock: socket.socket) -> None:
    """Close a socket and wake any thread blocked reading it."""
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def redis_client_at(port: int) -> redis.Redis:
    """A client of database 15 that reports connection errors at once instead of retrying for seconds
    (the sink under test does its own retrying)."""
    return redis.Redis(host=REDIS_HOST, port=port, db=REDIS_DB, retry=Retry(NoBackoff(), 0))
