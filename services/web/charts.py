"""Chart data for a run's page, as JSON: every series of some keys downsampled to the chart's
pixel width (MinMaxLTTB in the query service, extremes kept), one series' zoomed step range, and
the live stream (Server-Sent Events) fed by the LiveHub."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import MetricContext

from . import views
from .backends import PAGE_TIMEOUT_S, Backends
from .live import CLOSE, LiveHub, NotSubscribed, TooManyViewers, sse

MIN_WIDTH, MAX_WIDTH = 16, 8192
MAX_KEYS = 1000  # keys one request may ask for
CONCURRENT_FETCHES = 8
BULK_KEYS = 20  # GetMetricHistoryBulk's limit of keys per call
MAX_EVENTS_PER_WRITE = 256


def _int(request: Request, name: str, default: int | None = None, *, low: int | None = None,
         high: int | None = None) -> int | None:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name}={raw!r} is not a whole number") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise HTTPException(400, f"{name} is {low} to {high}, got {value}")
    return value


def _context(request: Request) -> ingest_pb2.MetricContext:
    name = request.query_params.get("context", "")
    if name not in views.CONTEXTS_BY_NAME:
        raise HTTPException(400, f"context is one of {sorted(views.CONTEXTS_BY_NAME)}, got {name!r}")
    return MetricContext(views.CONTEXTS_BY_NAME[name]).proto


class ChartData:
    def __init__(self, backends: Backends, hub: LiveHub) -> None:
        self._b = backends
        self._hub = hub

    def routes(self) -> list[Route]:
        return [
            Route("/api/runs/{run_id}/metrics", self.metrics),
            Route("/api/runs/{run_id}/history", self.history),
            Route("/api/runs/{run_id}/live", self.live),
        ]

    async def metrics(self, request: Request) -> Response:
        """Every context of the asked keys (all keys when none), each downsampled to `width`
        points: GetMetricHistoryBulk calls of BULK_KEYS keys each, several at once."""
        caller = self._b.caller(request)
        run_id = request.path_params["run_id"]
        width = _int(request, "width", 1000, low=MIN_WIDTH, high=MAX_WIDTH)
        keys = set(request.query_params.getlist("key"))
        if len(keys) > MAX_KEYS:
            raise HTTPException(400, f"at most {MAX_KEYS} keys per request")
        latest = await self._b.query.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(run_id=run_id),
                                                      metadata=caller.metadata, timeout=PAGE_TIMEOUT_S)
        by_context: dict[ingest_pb2.MetricContext, list[str]] = {}
        for m in latest.metrics:
            if not keys or m.key in keys:
                by_context.setdefault(m.context, []).append(m.key)
        limit = asyncio.Semaphore(CONCURRENT_FETCHES)

        async def fetch(context: ingest_pb2.MetricContext, chunk: list[str]) -> list[dict[str, Any]]:
            async with limit:
                found = await self._b.query.GetMetricHistoryBulk(query_pb2.GetMetricHistoryBulkRequest(
                    run_ids=[run_id], keys=chunk, context=context, max_points=width),
                    metadata=caller.metadata, timeout=PAGE_TIMEOUT_S)
            return [views.series_json(s.series, total_points=s.total_points, downsampled=s.downsampled)
                    for s in found.series]

        parts = await asyncio.gather(*(fetch(context, names[i:i + BULK_KEYS])
                                       for context, names in by_context.items()
                                       for i in range(0, len(names), BULK_KEYS)))
        return FastJSON({"series": [s for part in parts for s in part]})

    async def history(self, request: Request) -> Response:
        """One series within [start, end] (a zoomed chart): at full resolution when it fits `width`."""
        caller = self._b.caller(request)
        key = request.query_params.get("key", "")
        if not key:
            raise HTTPException(400, "key names the metric")
        message = query_pb2.GetMetricHistoryRequest(
            run_id=request.path_params["run_id"], key=key, context=_context(request),
            max_points=_int(request, "width", 1000, low=MIN_WIDTH, high=MAX_WIDTH))
        start, end = _int(request, "start"), _int(request, "end")
        if start is not None:
            message.start_step = start
        if end is not None:
            message.end_step = end
        found = await self._b.query.GetMetricHistory(message, metadata=caller.metadata, timeout=PAGE_TIMEOUT_S)
        return FastJSON(views.series_json(found.series, total_points=found.total_points,
                                          downsampled=found.downsampled))

    async def live(self, request: Request) -> Response:
        """Server-Sent Events: `ready` once subscribed, then `points` batches as ingest commits them,
        `status` when the run's status changes; the stream ends when the run has ended."""
        caller = self._b.caller(request)
        run_id = request.path_params["run_id"]
        run = (await self._b.runs.GetRun(run_pb2.GetRunRequest(run_id=run_id), metadata=caller.metadata,
                                         timeout=PAGE_TIMEOUT_S)).run  # the caller may read it, it exists
        status = views.status_name(run.status)
        if status in views.ENDED:
            async def ended() -> Any:
                yield sse("status", {"status": status, "ended": True, "duration_ms": run.duration_ms})
            return _event_stream(ended())
        try:
            watching = self._hub.watch(run.id, caller, status)
            queue = await watching.__aenter__()
        except TooManyViewers as exc:
            raise HTTPException(429, f"{exc}; retry later") from None
        except NotSubscribed as exc:
            raise HTTPException(503, str(exc)) from None

        async def events() -> Any:
            try:
                while True:
                    batch = [await queue.get()]  # the hub's feed puts a keep-alive in every queue when idle
                    while not queue.empty() and len(batch) < MAX_EVENTS_PER_WRITE:
                        batch.append(queue.get_nowait())  # a viewer behind gets what waits in one write
                    closed = CLOSE in batch
                    if closed:
                        batch = batch[:batch.index(CLOSE)]
                    if batch:
                        yield "".join(batch)
                    if closed:
                        return
            finally:
                with contextlib.suppress(Exception):
                    await watching.__aexit__(None, None, None)

        return _event_stream(events())


class FastJSON(JSONResponse):
    """orjson: chart data is megabytes of numbers (the stdlib encoder took ~180 ms for 200 series)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _event_stream(events: Any) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

