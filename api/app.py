"""The FastAPI app: prediction, live hot list and stream, model metrics, seed 000's analyses, dashboard.

Every input is declared with its constraints, so FastAPI answers bad input with a 422 naming the
field (and never echoing the input back); a missing model or an unreachable store is a 503 saying
what to do, never a bare 500. Bodies are limited in size (413) and in time (408, api.limits).
"""

from __future__ import annotations

import reprlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import redis
from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from api import analysis
from api.headers import SecurityHeaders, docs_page
from api.limits import BodyDeadline
from api.live import READ_BLOCK_MS, Entry, Feed, FeedFull, FeedUnavailable, Subscriber, parse_id
from api.prototype import PlatformArtifactError
from api.schemas import HistoryPayload, HotItem, HotList, PredictOut, PredictPayload, Problem
from api.service import Platform
from api.words import word_counts
from core.events import BVID_PATTERN
from core.reference import Horizon
from core.settings import Settings, get_settings
from model.registry import ModelRegistryError

STATIC = Path(__file__).parent / "static"
STREAM_ID_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"
"""A Redis stream id: two 64-bit numbers (19 digits always fit; Redis refuses larger ones)."""
SSE_RETRY_AFTER_S = 5
"""What a client refused for want of a /stream slot is told to wait."""
REDIS_CONNECTIONS = 20
"""Connections of the /stream feed: its reader, and clients catching up from Redis (they queue)."""
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "unparsable body"},
    422: {"model": Problem, "description": "invalid input"},
    503: {"model": Problem, "description": "model or store unavailable"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {**ERRORS, 404: {"model": Problem, "description": "unknown"}}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    408: {"model": Problem, "description": "body not received in time (API_BODY_TIMEOUT_S)"},
    413: {"content": {"text/plain": {}}, "description": "body over API_MAX_BODY_BYTES (FastAPI's answer)"},
}

BvidPath = Annotated[str, PathParam(pattern=BVID_PATTERN, description="BV + 10 base58 characters")]
MidPath = Annotated[str, PathParam(pattern=r"^[1-9][0-9]{0,19}$", description="uploader UID")]


MAX_ERRORS = 10
"""Validation errors listed in a 422; the rest are counted. A body of many bad items stays small."""
_EXCERPT = reprlib.Repr()
"""The part of a rejected value a 422 shows: never the value itself, which may be megabytes or NaN."""
_EXCERPT.maxlevel, _EXCERPT.maxlist, _EXCERPT.maxdict = 1, 2, 2
_EXCERPT.maxstring = _EXCERPT.maxlong = _EXCERPT.maxother = 40


def _problem(
    status: int, detail: Any, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail, "message": message}, headers=headers)


def _clip(text: object, size: int = 200) -> str:
    text = str(text)
    return text if len(text) <= size else text[: size - 1] + "…"


def _validation_problem(exc: RequestValidationError) -> JSONResponse:
    """Each error's field, type, reason and a short excerpt of the input, for the first MAX_ERRORS."""
    errors = exc.errors()
    detail = [
        {
            "loc": [_clip(part, 64) for part in err.get("loc", ())],
            "type": err.get("type", "invalid"),
            "msg": _clip(err.get("msg", "invalid")),
            "input": _EXCERPT.repr(err.get("input")),
        }
        for err in errors[:MAX_ERRORS]
    ]
    if not detail:
        return _problem(422, [], "invalid request")
    where = ".".join(str(p) for p in detail[0]["loc"] if p != "body") or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _problem(422, detail, f"{where}: {detail[0]['msg']}{more}")


class _Following(StreamingResponse):
    """The SSE response of one /stream client: its feed slot is freed however the response ends,
    even when the client leaves before the first byte (the generator then never starts)."""

    def __init__(self, feed: Feed, sub: Subscriber, events: AsyncIterator[str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.feed, self.sub = feed, sub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.feed.unsubscribe(self.sub)


def create_app(platform: Platform, settings: Settings | None = None) -> FastAPI:
    """The app over one Platform (stores + model), with the API limits of `settings`."""
    settings = settings or get_settings()

    # Metrics of this app only (a process may build several apps: tests do): requests, latency, the
    # clients following /stream, and the process (memory, CPU, open files).
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    sse_clients = Gauge("hotvideo_api_sse_clients", "Clients following /stream", registry=registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Feed]]:
        """The /stream feed of this server (lifespan state: its Redis connections belong to this loop)."""
        client = platform.redis.async_client(READ_BLOCK_MS // 1000 + 10, REDIS_CONNECTIONS)
        feed = Feed(client, platform.redis.stream_key, settings.api_sse_max_clients)
        sse_clients.set_function(lambda: len(feed.subscribers))
        async with feed.running():
            yield {"feed": feed}

    app = FastAPI(
        title="hotvideo platform",
        version="0.1.0",
        description="Bilibili 热门预测与UP主分析平台: predictions, live hot list, UP and hot-video analysis.",
        lifespan=lifespan,
        max_body_size=settings.api_max_body_bytes,
        docs_url=None,  # served below from local assets
        redoc_url=None,  # ReDoc would load from a CDN and Google Fonts
    )
    docs, docs_csp = docs_page(app.openapi_url or "/openapi.json", f"{app.title} - Swagger UI")
    app.add_middleware(BodyDeadline, timeout_s=settings.api_body_timeout_s)
    app.add_middleware(SecurityHeaders, csp_by_path={"/docs": docs_csp})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and Starlette's own (400, 405)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, exc.detail, str(exc.detail), exc.headers)

    @app.exception_handler(ModelRegistryError)
    @app.exception_handler(PlatformArtifactError)
    async def no_model(_: Request, exc: Exception) -> JSONResponse:
        return _problem(503, "model unavailable", str(exc))

    @app.exception_handler(redis.RedisError)
    @app.exception_handler(SQLAlchemyError)
    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        return _problem(
            503, "store unavailable", f"{type(exc).__name__}: the store did not answer; retry later"
        )

    @app.post("/predict", response_model=PredictOut, responses=BODY_ERRORS, tags=["predict"])
    def predict(body: Annotated[PredictPayload, Body()]) -> PredictOut:
        """Seed 000's short body (点赞率, 弹幕率, 评论率, 投币率, hour, weekday, duration) is scored by the
        short-payload prototype; a body with `snapshots` and `horizon` by the promoted ONNX model."""
        if isinstance(body, HistoryPayload):
            return platform.predict_history(body)
        return platform.predict_short(body)

    @app.get("/videos/{bvid}", responses=NOT_FOUND, tags=["videos"])
    def get_video(bvid: BvidPath) -> dict[str, Any]:
        """The video, its early metrics per checkpoint, its predictions per horizon (SQL) and live (Redis)."""
        found = platform.video(bvid)
        if found is None:
            raise HTTPException(404, f"video {bvid} is not known")
        return found

    @app.get("/hot", response_model=HotList, responses=ERRORS, tags=["live"])
    def hot(
        horizon: Annotated[Horizon, Query(description="1h, 3h or 6h")] = "1h",
        n: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> HotList:
        """The live hot list from Redis: the most probable videos of the horizon, best first."""
        top = platform.redis.hot_list(horizon, n)
        titles = platform.titles([b for b, _ in top])
        items = []
        for rank, (bvid, prob) in enumerate(top, start=1):
            live = platform.redis.video(bvid)
            title, zone = titles.get(bvid, (None, None))
            as_of = live.get(f"{horizon}:as_of")
            items.append(
                HotItem(
                    rank=rank,
                    bvid=bvid,
                    prob=prob,
                    level=live.get(f"{horizon}:level"),
                    play_range=live.get(f"{horizon}:play_range"),
                    as_of=None if as_of is None else int(as_of),
                    title=title,
                    category=zone,
                )
            )
        return HotList(horizon=horizon, size=platform.redis.hot_list_size(horizon), items=items)

    @app.get(
        "/stream",
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "SSE of predictions"},
            **ERRORS,
            503: {"model": Problem, "description": "store unavailable, or every client slot taken"},
        },
        response_class=StreamingResponse,
        tags=["live"],
    )
    async def stream(
        request: Request,
        horizon: Annotated[Horizon | None, Query()] = None,
        min_prob: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
        from_beginning: Annotated[bool, Query(description="replay the stream from its oldest entry")] = False,
        limit: Annotated[int | None, Query(ge=1, le=100_000, description="close after this many")] = None,
        last_event_id: Annotated[
            str | None,
            Header(pattern=STREAM_ID_PATTERN, description="resume after this event (EventSource sends it)"),
        ] = None,
    ) -> StreamingResponse:
        """Live predictions as Server-Sent Events (`event: prediction`, data = the prediction JSON)."""
        feed: Feed = request.state.feed
        try:
            sub = feed.subscribe()
        except (FeedFull, FeedUnavailable) as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(SSE_RETRY_AFTER_S)}) from None
        if from_beginning:
            after = (0, 0)
        elif last_event_id is not None:
            after = parse_id(last_event_id)
        else:
            after = feed.position or (0, 0)  # set: subscribe() refuses until it is

        def keep(entry: Entry) -> bool:
            return (horizon is None or entry.horizon == horizon) and entry.prob >= min_prob

        catch_up = from_beginning or last_event_id is not None
        return _Following(feed, sub, feed.follow(sub, after, catch_up, keep, limit))

    @app.get("/model/metrics", responses=ERRORS, tags=["model"])
    def model_metrics() -> dict[str, Any]:
        """metrics.json per version and horizon (accuracy, recall, …), ROC/PR curves, the short model."""
        return platform.model_metrics()

    @app.get("/overview", responses=ERRORS, tags=["analysis"])
    def overview() -> dict[str, Any]:
        """Daily active UPs (uploaders who published), average daily views, watch-duration proxy, goal."""
        return analysis.overview(platform.facts.get())

    @app.get("/ups", responses=ERRORS, tags=["ups"])
    def ups(
        uid: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,19}$")] = None,
        name: Annotated[str | None, Query(max_length=64)] = None,
        min_followers: Annotated[int | None, Query(ge=0, le=10**12)] = None,
        max_followers: Annotated[int | None, Query(ge=0, le=10**12)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Filter UPs by UID, name (substring) and follower range."""
        if min_followers is not None and max_followers is not None and min_followers > max_followers:
            raise HTTPException(422, "min_followers is greater than max_followers")
        return analysis.find_ups(platform.facts.get(), uid, name, min_followers, max_followers, limit)

    @app.get("/ups/engagement", responses=ERRORS, tags=["ups"])
    def ups_engagement() -> dict[str, Any]:
        """Potential-UP analysis: scatter (followers vs engagement) and box plots per follower tier."""
        return analysis.engagement(platform.facts.get())

    @app.get("/ups/clusters", responses=ERRORS, tags=["ups"])
    def ups_clusters(k: Annotated[int, Query(ge=1, le=10)] = 4) -> dict[str, Any]:
        """KMeans on seed 000's UP features, with a description of each cluster."""
        return analysis.clusters(platform.facts.get(), k)

    @app.get("/ups/{mid}", responses=NOT_FOUND, tags=["ups"])
    def up_detail(mid: MidPath, latest: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
        """One UP's detail card with its latest videos."""
        card = analysis.up_detail(platform.facts.get(), mid, latest)
        if card is None:
            raise HTTPException(404, f"UP {mid} is not known")
        return card

    @app.get("/ups/{mid}/history", responses=NOT_FOUND, tags=["ups"])
    def up_history(mid: MidPath) -> dict[str, Any]:
        """Followers, views and engagement rate over time."""
        history = analysis.up_history(platform.facts.get(), mid)
        if history is None:
            raise HTTPException(404, f"UP {mid} is not known")
        return history

    @app.get("/analysis/heatmap", responses=ERRORS, tags=["analysis"])
    def heatmap() -> dict[str, Any]:
        """Average views by publish hour × weekday (Beijing time)."""
        return analysis.heatmap(platform.facts.get())

    @app.get("/analysis/wordcloud", responses=ERRORS, tags=["analysis"])
    def wordcloud(
        top: Annotated[int, Query(ge=1, le=500)] = 100,
        lines: Annotated[int, Query(ge=1, le=200_000, description="newest danmaku lines read")] = 20_000,
    ) -> dict[str, Any]:
        """Danmaku word frequencies (jieba, stop words removed) from the `danmaku` table."""
        texts = platform.danmaku.texts(lines)
        return {"lines": len(texts), "words": [{"name": w, "value": c} for w, c in word_counts(texts, top)]}

    @app.get("/analysis/zones", responses=ERRORS, tags=["analysis"])
    def zone_ranking() -> dict[str, Any]:
        """Zones ranked by video count, with average views."""
        return analysis.zones(platform.facts.get())

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return docs

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    instrumentator = Instrumentator(
        should_group_status_codes=False, excluded_handlers=["/metrics"], registry=registry
    )
    instrumentator.instrument(app).expose(app, include_in_schema=False)
    return app
