"""The worker's web server: on loopback unless `WEB_HOST` says otherwise, and without Faust's table
and router pages (which show any key's state) unless `WEB_TABLE_PAGES` asks for them.

Real `hotvideo worker` processes on the session's embedded broker; the listening sockets are read
from the kernel's tables (/proc/net/tcp and tcp6), so an extra listener on another address shows.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from broker.embedded import EmbeddedBroker
from tests.harness.cluster import Cluster, wait_for
from tests.harness.servers import REDIS_DB, REDIS_HOST, REDIS_PORT

pytestmark = pytest.mark.slow


def listening_addresses(port: int) -> set[str]:
    """Every local address with a TCP socket listening on `port`, on this machine."""
    found: set[str] = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
                found.add(socket.inet_ntop(family, raw))
    return found


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_worker_listens_on_loopback_only_and_serves_no_table_pages_by_default(
    embedded_broker: EmbeddedBroker, trained_model_dir: Path, tmp_path: Path
) -> None:
    cluster = Cluster(
        bootstrap=embedded_broker.bootstrap,
        name=f"web{uuid.uuid4().hex[:8]}",
        model_dir=trained_model_dir,
        workdir=tmp_path,
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",  # nothing is published: never written
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
    )
    try:
        cluster.start("plain")
        cluster.wait_assigned(["plain"])
        base = f"http://127.0.0.1:{cluster.workers['plain'].web_port}"
        assert listening_addresses(cluster.workers["plain"].web_port) == {"127.0.0.1"}
        assert status(f"{base}/stats/") == 200
        for page in ("/table/", "/table/video_state/", "/table/video_state/BV1xx4y1a7Aa/", "/router/"):
            assert status(base + page) == 404, page

        cluster.extra_env["WEB_TABLE_PAGES"] = "true"
        cluster.start("pages")
        pages = f"http://127.0.0.1:{cluster.workers['pages'].web_port}"
        wait_for(
            "the second worker's web server", lambda: listening_addresses(cluster.workers["pages"].web_port)
        )
        wait_for("Faust's table pages", lambda: status(f"{pages}/table/") == 200, timeout_s=60)
        assert status(f"{pages}/router/") == 200
    finally:
        cluster.stop()
