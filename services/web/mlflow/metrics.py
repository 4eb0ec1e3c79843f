"""MLflow's metric history endpoints on trackd's query service: `get-history` (every point of one
series, paged when `max_results` is given) and `get-history-bulk-interval` (what MLflow's UI charts:
up to 100 runs, at most `max_results` points each, optionally within a step range; trackd
downsamples keeping each series' extremes and last point rather than MLflow's evenly spaced steps)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
from starlette.responses import Response, StreamingResponse
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_platform.paging import decode_token, encode_token
from trackd_platform.vocabulary import MetricContext

from . import convert
from .protocol import Call, invalid
from .runs import get_run, run_id_field

MAX_RUNS, MAX_RESULTS_PER_RUN = 100, 2500
MAX_HISTORY_PAGE = 25_000  # get-history's max_results (MLflow's GET_METRIC_HISTORY_MAX_RESULTS)
EXPORT_TIMEOUT_S = 600.0  # a whole series streamed to a slow client


def _points(series: ingest_pb2.MetricSeries, name: str, run_id: str | None = None) -> list[dict[str, Any]]:
    extra = {"run_id": run_id} if run_id else {}
    return [{"key": name, "value": convert.number(v), "timestamp": t, "step": s, **extra}
            for s, v, t in zip(series.steps, series.values, series.timestamps_ms, strict=True)]


async def _history(call: Call, request: query_pb2.GetMetricHistoryRequest) -> ingest_pb2.MetricSeries:
    """The series, or an empty one when the run has no such metric (as MLflow answers)."""
    try:
        return (await call.rpc(call.backends.query.GetMetricHistory, request)).series
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return ingest_pb2.MetricSeries()
        raise


def _export(call: Call, run_id: str, key: str, context: int,
            start_step: int | None = None) -> grpc.aio.UnaryStreamCall[Any, Any]:
    """The query service's ExportMetric stream of every point from `start_step` on, in step order,
    in parts of about 65,536 points: memory bounded, however long the series."""
    request = query_pb2.ExportMetricRequest(run_id=run_id, key=key, context=MetricContext(context).proto,
                                            start_step=start_step)
    stream: grpc.aio.UnaryStreamCall[Any, Any] = call.backends.query.ExportMetric(
        request, metadata=call.metadata, timeout=EXPORT_TIMEOUT_S)
    return stream


async def _first(stream: grpc.aio.UnaryStreamCall[Any, Any]) -> ingest_pb2.MetricSeries | None:
    """The stream's first part, None when the run has no such metric (as MLflow answers: no points)."""
    try:
        async for part in stream:
            found: ingest_pb2.MetricSeries = part.series
            return found
        return None
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def get_history(call: Call) -> dict[str, Any] | Response:
    """Every point of the series streamed as one JSON body when `max_results` is absent (what
    `MlflowClient.get_metric_history` asks for), else one page of at most `max_results` points;
    the page token is (step, points of that step already returned), so a page starts where the
    last ended without reading what came before."""
    run = await get_run(call, run_id_field(call))
    name = call.require("metric_key", str)
    limit = call.get("max_results", int)
    if limit is not None and not 0 < limit <= MAX_HISTORY_PAGE:
        raise invalid(f"Invalid value {limit} for parameter 'max_results' supplied. It must be a positive integer "
                      f"of at most {MAX_HISTORY_PAGE}.")
    try:
        step, skip = decode_token(call.get("page_token", str, "") or "", arity=2, kinds=(int, int)) or [None, 0]
    except Exception:  # noqa: BLE001 - any malformed token is the caller's
        raise invalid("Invalid page token") from None
    key, context = convert.parse_metric_name(name)
    stream = _export(call, run.id, key, context, step)
    first = await _first(stream)
    if first is None:
        return {"metrics": []}
    if limit is None:
        return StreamingResponse(_body(stream, first, name), media_type="application/json")
    return await _page(stream, first, name, limit, step, skip)


async def _page(stream: grpc.aio.UnaryStreamCall[Any, Any], first: ingest_pb2.MetricSeries, name: str, limit: int,
                step: int | None, skip: int) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    at_step, seen = step, 0  # the current step, and its points read so far (skipped ones included)
    taken = 0  # `seen` when the page's last point was read
    part: ingest_pb2.MetricSeries | None = first
    try:
        while part is not None:
            for s, v, t in zip(part.steps, part.values, part.timestamps_ms, strict=True):
                seen, at_step = (seen + 1 if s == at_step else 1), s
                if s == step and seen <= skip:
                    continue
                if len(points) == limit:  # one more point exists: the page is full
                    return {"metrics": points, "next_page_token": encode_token([points[-1]["step"], taken])}
                points.append({"key": name, "value": convert.number(v), "timestamp": t, "step": s})
                taken = seen
            part = await _next(stream)
    finally:
        stream.cancel()
    return {"metrics": points}


async def _next(stream: grpc.aio.UnaryStreamCall[Any, Any]) -> ingest_pb2.MetricSeries | None:
    message = await stream.read()
    if message is grpc.aio.EOF:
        return None
    return cast(query_pb2.ExportMetricResponse, message).series


async def _body(stream: grpc.aio.UnaryStreamCall[Any, Any], first: ingest_pb2.MetricSeries,
                name: str) -> AsyncIterator[bytes]:
    """`{"metrics": [...]}` part by part. A failure after the first part (the status is sent by
    then) ends the body early, which the client reports as a broken response, not a short series."""
    yield b'{"metrics": ['
    part: ingest_pb2.MetricSeries | None = first
    separator = b""
    try:
        while part is not None:
            text = json.dumps(_points(part, name))[1:-1].encode()
            if text:
                yield separator + text
                separator = b", "
            part = await _next(stream)
    finally:
        stream.cancel()
    yield b"]}"


async def get_history_bulk_interval(call: Call) -> dict[str, Any]:
    run_ids = call.strings("run_ids", most=MAX_RUNS, missing="Missing value for required parameter 'run_ids'.",
                           too_many=f"GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS} run_ids. "
                                    "Received {count} run_ids.")
    name = call.require("metric_key", str)
    limit = call.get("max_results", int)
    limit = MAX_RESULTS_PER_RUN if limit is None else limit  # 0 is refused, not taken for "absent"
    if not 1 <= limit <= MAX_RESULTS_PER_RUN:
        raise invalid(f"max_results must be between 1 and {MAX_RESULTS_PER_RUN}.")
    start, end = call.get("start_step", int), call.get("end_step", int)
    if (start is None) != (end is None):
        raise invalid("If either start step or end step are specified, both must be specified.")
    if start is not None and end is not None and start > end:
        raise invalid(f"end_step must be greater than start_step. Found start_step={start} and end_step={end}.")
    runs = [await get_run(call, r) for r in dict.fromkeys(run_ids)]
    key, context = convert.parse_metric_name(name)
    requests = [query_pb2.GetMetricHistoryRequest(run_id=run.id, key=key, context=MetricContext(context).proto,
                                                  max_points=limit, start_step=start, end_step=end) for run in runs]
    histories = await asyncio.gather(*(_history(call, r) for r in requests))
    metrics = []
    for run, found in zip(runs, histories, strict=True):
        metrics += _points(found, name, run.id)
    return {"metrics": metrics}


async def get_history_bulk(call: Call) -> dict[str, Any]:
    """MLflow's older bulk read (`run_id` repeated): the runs' points in run id order, each run's in
    (timestamp, step, value) order, at most `max_results` (≤ 25,000) points in all."""
    run_ids = call.strings("run_id", most=MAX_RUNS,
                           missing="GetMetricHistoryBulk request must specify at least one run_id.",
                           too_many=f"GetMetricHistoryBulk request cannot specify more than {MAX_RUNS} run_ids. "
                                    "Received {count} run_ids.")
    name = call.get("metric_key", str)
    if not name:
        raise invalid("GetMetricHistoryBulk request must specify a metric_key.")
    limit = call.get("max_results", int)
    limit = MAX_HISTORY_PAGE if limit is None else limit
    if not 1 <= limit <= MAX_HISTORY_PAGE:
        raise invalid(f"max_results must be between 1 and {MAX_HISTORY_PAGE}.")
    runs = sorted({run.id: run for run in [await get_run(call, r) for r in run_ids]}.values(), key=lambda r: r.id)
    key, context = convert.parse_metric_name(name)
    metrics: list[dict[str, Any]] = []
    for run in runs:
        found = await _history(call, query_pb2.GetMetricHistoryRequest(
            run_id=run.id, key=key, context=MetricContext(context).proto))
        points = _points(found, name, run.id)
        points.sort(key=lambda p: (p["timestamp"], p["step"], _order(p["value"])))
        metrics += points[:limit - len(metrics)]
        if len(metrics) >= limit:
            break
    return {"metrics": metrics}


def _order(value: Any) -> float:
    """A point's value as a sort key (NaN, ±Inf arrive as MLflow's strings)."""
    return float(value.replace("Infinity", "inf")) if isinstance(value, str) else float(value)


ENDPOINTS = [
    ("/metrics/get-history", ["GET"], get_history),
    ("/metrics/get-history-bulk", ["GET"], get_history_bulk),
    ("/metrics/get-history-bulk-interval", ["GET"], get_history_bulk_interval),
]
