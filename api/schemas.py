"""Request and response bodies of the API, validated by pydantic and published in the OpenAPI spec.

Counts, timestamps and bvids reuse the event contracts' constrained types (core.events), and the
bodies are strict like the contracts: a bool or a string is not a number, NaN and infinities are not
numbers either. The rest is rejected with a 422 naming the field. A history must also be possible
(`HistoryPayload._possible`): the API is where untrusted input enters, while the stream takes what
our own collectors observed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from core.events import Bvid, Count, EpochS
from core.reference import COUNT_FIELDS, HORIZONS, Horizon

Rate = Annotated[float, Field(ge=0.0, le=100.0)]
"""A count per view; above 1 is possible (danmaku) but not above 100."""
PER_VIEWER = ("like", "coin", "favorite")
"""Counters a viewer adds to at most twice (two coins; one like, one favourite)."""
VIEW_LAG_SLACK = 1000
"""Bilibili's view counter lags the others by minutes: a new video can show likes before views."""
DROP_SHARE = 0.2
"""How far a counter may fall below its earlier maximum: withdrawn likes, deleted comments and
stale cached answers take off a few percent, view corrections rarely more."""
DROP_SLACK = 100
"""Absolute slack of that fall, for small counters."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True, strict=True)


class ShortPayload(_Body):
    """Seed 000's example body: per-view rates, publish hour and weekday (Beijing), duration in seconds."""

    like_rate: Rate = Field(alias="点赞率", description="likes per view")
    danmaku_rate: Rate = Field(alias="弹幕率", description="danmaku per view")
    reply_rate: Rate = Field(alias="评论率", description="comments per view")
    coin_rate: Rate = Field(alias="投币率", description="coins per view")
    hour: int = Field(ge=0, le=23, description="publish hour, Beijing time")
    weekday: int = Field(ge=0, le=6, description="publish weekday, 0 = Monday")
    duration: int = Field(ge=0, le=10 * 86400, description="seconds")


class SnapshotIn(_Body):
    """The video's counters observed at `ts` (the stream's snapshot without the static fields)."""

    ts: EpochS
    view: Count
    like: Count
    coin: Count
    favorite: Count
    reply: Count
    danmaku: Count
    share: Count


class UpIn(_Body):
    """The uploader's profile as known at the checkpoint (optional: features then say 'unknown')."""

    follower: Count
    archive_count: Count
    total_view: Count
    total_like: Count | None = None
    historical_avg_view: Annotated[float, Field(ge=0, le=1e12)] | None = None
    historical_popular_count: Count | None = None
    account_age_days: Annotated[int, Field(ge=0, le=100_000)] | None = None


class HistoryPayload(_Body):
    """A video's snapshots for one horizon: scored by the promoted ONNX model exactly like the stream."""

    horizon: Horizon
    pubdate: EpochS
    snapshots: list[SnapshotIn] = Field(min_length=1, max_length=1000)
    duration: Annotated[int, Field(ge=0, le=10 * 86400)] | None = None
    tid: Annotated[int, Field(ge=0, le=100_000)] | None = None
    follower: Count | None = Field(default=None, description="owner's followers at the checkpoint")
    up: UpIn | None = None

    @model_validator(mode="after")
    def _usable(self) -> HistoryPayload:
        times = [s.ts for s in self.snapshots]
        if len(set(times)) != len(times):
            raise ValueError("two snapshots have the same ts")
        if min(times) < self.pubdate:
            raise ValueError("a snapshot is older than pubdate")
        if min(times) > self.pubdate + HORIZONS[self.horizon]:
            raise ValueError(f"no snapshot at or before pubdate + {self.horizon}: nothing to score")
        self._possible()
        return self

    def _possible(self) -> None:
        """Refuse what no video shows: more likes, coins or favourites than twice the views (plus the
        view counter's lag), or a counter falling well below a value it already had."""
        peak = dict.fromkeys(COUNT_FIELDS, 0)
        for snap in sorted(self.snapshots, key=lambda s: s.ts):
            for name in PER_VIEWER:
                if getattr(snap, name) > 2 * snap.view + VIEW_LAG_SLACK:
                    raise ValueError(f"{name} {getattr(snap, name)} at ts {snap.ts} is over twice the views")
            for name in COUNT_FIELDS:
                value = getattr(snap, name)
                if value < peak[name] * (1 - DROP_SHARE) - DROP_SLACK:
                    raise ValueError(f"{name} falls from {peak[name]} to {value} at ts {snap.ts}")
                peak[name] = max(peak[name], value)


def _payload_kind(body: Any) -> str:
    return "history" if isinstance(body, dict) and "snapshots" in body else "short"


PredictPayload = Annotated[
    Annotated[ShortPayload, Tag("short")] | Annotated[HistoryPayload, Tag("history")],
    Discriminator(_payload_kind),
]
"""A body with `snapshots` is a history payload; anything else must be seed 000's short payload."""


class PredictOut(BaseModel):
    """Seed 000's four answer fields, plus what produced them."""

    prediction: Literal[0, 1] = Field(description="1 if predicted to enter the hot list")
    confidence: float = Field(description="max(p, 1 - p)")
    level: str = Field(description="高热 / 中热 / 普通")
    play_range: str | None = Field(description="final views of held-out videos at this level (quartiles)")
    prob: float
    horizon: str
    model: Literal["short-prototype", "onnx"]
    model_version: str


class HotItem(BaseModel):
    rank: int
    bvid: Bvid
    prob: float
    level: str | None
    play_range: str | None
    as_of: int | None
    title: str | None
    category: str | None


class HotList(BaseModel):
    horizon: Horizon
    size: int = Field(description="members of the live list in Redis")
    items: list[HotItem]


class Problem(BaseModel):
    """Every 4xx/5xx body: FastAPI's `detail` plus one readable sentence."""

    detail: Any
    message: str
