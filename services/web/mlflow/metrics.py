"""MLflow's metric history endpoints on trackd's query service: `get-history` (every point of one
series, paged when `max_results` is given) and `get-history-bulk-interval` (what MLflow's UI charts:
up to 100 runs, at most `max_results` points each, optionally within a step range; trackd
downsamples keeping each series' extremes and last point rather than MLflow's evenly spaced steps)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_platform.paging import decode_token, encode_token
from trackd_platform.vocabulary import MetricContext

from . import convert
from .protocol import Call, invalid
from .runs import get_run, run_id_field

MAX_RUNS, MAX_RESULTS_PER_RUN = 100, 2500


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


async def get_history(call: Call) -> dict[str, Any]:
    run = await get_run(call, run_id_field(call))
    name = call.require("metric_key", str)
    limit = call.get("max_results", int)
    if limit is not None and limit <= 0:
        raise invalid(f"Invalid value {limit} for parameter 'max_results' supplied. It must be a positive integer.")
    try:
        start = (decode_token(call.get("page_token", str, "") or "", arity=1, kinds=(int,)) or [0])[0]
    except Exception:  # noqa: BLE001 - any malformed token is the caller's
        raise invalid("Invalid page token") from None
    key, context = convert.parse_metric_name(name)
    found = await _history(call, query_pb2.GetMetricHistoryRequest(
        run_id=run.id, key=key, context=MetricContext(context).proto))
    points = _points(found, name)
    if limit is None:
        return {"metrics": points}
    page = points[start:start + limit]
    return {"metrics": page, **({"next_page_token": encode_token([start + limit])}
                                if start + limit < len(points) else {})}


async def get_history_bulk_interval(call: Call) -> dict[str, Any]:
    run_ids = call.get("run_ids", list) or []
    if not run_ids:
        raise invalid("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > MAX_RUNS or not all(isinstance(r, str) for r in run_ids):
        raise invalid(f"GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS} run_ids (strings). "
                      f"Received {len(run_ids)} run_ids.")
    name = call.require("metric_key", str)
    limit = call.get("max_results", int, MAX_RESULTS_PER_RUN) or MAX_RESULTS_PER_RUN
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


ENDPOINTS = [
    ("/metrics/get-history", ["GET"], get_history),
    ("/metrics/get-history-bulk-interval", ["GET"], get_history_bulk_interval),
]
