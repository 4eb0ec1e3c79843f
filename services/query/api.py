"""The QueryService servicer: convert requests, call the stores and pure modules, convert back."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import cast

import numpy as np
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.errors import InvalidArgument, ResourceExhausted, TrackdError
from trackd_platform.ids import format_id, parse_id
from trackd_platform.metric_series import CONTEXTS, KEY_MAX, Summary
from trackd_platform.paging import page_size
from trackd_platform.rpc_types import Context
from trackd_platform.run_records import Run, RunStatus, parse_view, run_to_proto
from trackd_platform.streams import SlowReader
from trackd_platform.vocabulary import MetricContext

from . import analysis, history
from .grammar import parse_filter, parse_order_by
from .live import PointsHub
from .search_page import search_reply
from .store import EXPORT_PART_POINTS, Columns, Latest, LatestReader, QueryStore, Selection
from .wire import export_response, series_message

MAX_BULK_RUNS, MAX_BULK_KEYS = 100, 20
MAX_COMPARED_RUNS = 100
MAX_POINTS_LIMIT = 1_000_000
MAX_COLUMN_KEYS = 100
DEFAULT_KEY_SCAN_RUNS, MAX_KEY_SCAN_RUNS = 1_000, 10_000
MAX_STATS_EXPERIMENTS = 1_000
MAX_AGGREGATED_POINTS = 20_000_000  # AggregateMetric holds the points of every run it merges
WATCH_IDLE_CHECK_S = 2.0


def _series(key: str, context: int, points: history.Points) -> ingest_pb2.MetricSeries:
    return series_message(key, MetricContext(context).proto, points.steps, points.values, points.timestamps)


_PROTO_CONTEXT = {number: MetricContext(number).proto for number in CONTEXTS}


def _latest(metrics: Latest) -> list[query_pb2.LatestMetric]:
    return [query_pb2.LatestMetric(key=key, context=_PROTO_CONTEXT[context], step=s.step, value=s.value,
                                   timestamp_ms=s.timestamp, min=s.min, max=s.max, count=s.count)
            for (key, context), s in metrics.items()]


def _key(key: str, context: int) -> tuple[str, int]:
    if not key or len(key) > KEY_MAX:
        raise InvalidArgument(f"a metric key is 1–{KEY_MAX} characters")
    if context not in CONTEXTS:
        raise InvalidArgument(f"unknown metric context {context}")
    return key, context


def _columns(message: query_pb2.RunColumns) -> Columns:
    lists = {"param_keys": message.param_keys, "tag_keys": message.tag_keys, "metric_keys": message.metric_keys}
    for name, keys in lists.items():
        if len(keys) > MAX_COLUMN_KEYS:
            raise InvalidArgument(f"columns.{name}: at most {MAX_COLUMN_KEYS} keys, got {len(keys)}")
        if any(not k or len(k) > KEY_MAX for k in keys):
            raise InvalidArgument(f"columns.{name}: a key is 1–{KEY_MAX} characters")
    return Columns(params=tuple(message.param_keys), tags=tuple(message.tag_keys), metrics=tuple(message.metric_keys))


def _max_points(requested: int) -> int:
    if requested < 0 or requested > MAX_POINTS_LIMIT:
        raise InvalidArgument(f"max_points is 0 (every point) or 1–{MAX_POINTS_LIMIT}, got {requested}")
    return requested


def _ids(name: str, values: Iterable[str], *, low: int, high: int) -> list[uuid.UUID]:
    ids = [parse_id(name, v) for v in values]
    if not low <= len(ids) <= high:
        raise InvalidArgument(f"{name}: give {low} to {high} ids, got {len(ids)}")
    return list(dict.fromkeys(ids))


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, store: QueryStore, latest: LatestReader, hub: PointsHub, *, slow_reader_s: float = 60.0) -> None:
        self._store = store
        self._latest = latest
        self._hub = hub
        self._slow_reader_s = slow_reader_s  # an ExportMetric client that takes no part this long is ended
        self._status_seen: dict[uuid.UUID, tuple[float, RunStatus]] = {}

    async def _selection(self, message: query_pb2.RunSelection) -> Selection:
        ids = [parse_id("experiment_ids", i) for i in message.experiment_ids]
        experiment_ids = await self._store.experiment_ids(ids, list(message.experiment_names), message.project)
        return Selection(experiment_ids, parse_filter(message.filter), parse_view(message.view_type))

    async def SearchRuns(self, request: query_pb2.SearchRunsRequest, context: Context) -> query_pb2.SearchRunsResponse:
        order = parse_order_by(list(request.order_by))
        columns = _columns(request.columns) if request.HasField("columns") else None
        selection = await self._selection(request.selection)
        rows, token = await self._store.search(
            selection, order, limit=page_size(request.page_size), page_token=request.page_token, columns=columns)
        return search_reply(rows, token, now_us=time.time_ns() // 1000)

    async def ListRunKeys(
        self, request: query_pb2.ListRunKeysRequest, context: Context
    ) -> query_pb2.ListRunKeysResponse:
        if not 0 <= request.max_runs <= MAX_KEY_SCAN_RUNS:
            raise InvalidArgument(f"max_runs is 0 (meaning {DEFAULT_KEY_SCAN_RUNS}) to {MAX_KEY_SCAN_RUNS}")
        params, tags, metrics, scanned = await self._store.run_keys(
            await self._selection(request.selection), request.max_runs or DEFAULT_KEY_SCAN_RUNS)
        return query_pb2.ListRunKeysResponse(
            param_keys=params, tag_keys=tags, runs_scanned=scanned,
            metric_keys=[query_pb2.MetricKey(key=k, context=MetricContext(c).proto) for k, c in metrics])

    async def GetExperimentStats(
        self, request: query_pb2.GetExperimentStatsRequest, context: Context
    ) -> query_pb2.GetExperimentStatsResponse:
        ids = _ids("experiment_ids", request.experiment_ids, low=0, high=MAX_STATS_EXPERIMENTS)
        stats = []
        for s in await self._store.experiment_stats(ids):
            item = query_pb2.ExperimentStats(experiment_id=format_id(s.experiment_id), runs=s.runs,
                                             running_runs=s.running)
            if s.last_activity is not None:
                item.last_activity_time.FromDatetime(s.last_activity)
            stats.append(item)
        return query_pb2.GetExperimentStatsResponse(stats=stats)

    async def GetMetricHistory(
        self, request: query_pb2.GetMetricHistoryRequest, context: Context
    ) -> query_pb2.GetMetricHistoryResponse:
        run_id = parse_id("run_id", request.run_id)
        key, ctx = _key(request.key, request.context)
        limit = _max_points(request.max_points)
        start = request.start_step if request.HasField("start_step") else None
        end = request.end_step if request.HasField("end_step") else None
        shown, total = await self._store.downsampled(run_id, key, ctx, start, end, limit)
        return query_pb2.GetMetricHistoryResponse(series=_series(key, ctx, shown), total_points=total,
                                                  downsampled=len(shown) < total)

    async def GetMetricHistoryBulk(
        self, request: query_pb2.GetMetricHistoryBulkRequest, context: Context
    ) -> query_pb2.GetMetricHistoryBulkResponse:
        run_ids = _ids("run_ids", request.run_ids, low=1, high=MAX_BULK_RUNS)
        if not 1 <= len(request.keys) <= MAX_BULK_KEYS:
            raise InvalidArgument(f"keys: give 1 to {MAX_BULK_KEYS} metric keys")
        keys = [_key(k, request.context)[0] for k in request.keys]
        limit = _max_points(request.max_points)
        series = await self._store.each_series(  # one query for every run and key
            run_ids, keys, request.context, lambda points: (history.downsample(points, limit), len(points)))
        if missing := [r for r in run_ids if not any((r, k) in series for k in keys)]:
            await self._store.require_runs(missing)  # NOT_FOUND for an unknown run
        found = []
        for run_id in run_ids:
            for key in keys:
                shown, total = series.get((run_id, key), (None, 0))
                if shown is not None and total:
                    found.append(query_pb2.RunSeries(
                        run_id=format_id(run_id), series=_series(key, request.context, shown),
                        total_points=total, downsampled=len(shown) < total))
        return query_pb2.GetMetricHistoryBulkResponse(series=found)

    async def AggregateMetric(
        self, request: query_pb2.AggregateMetricRequest, context: Context
    ) -> query_pb2.AggregateMetricResponse:
        run_ids = _ids("run_ids", request.run_ids, low=1, high=MAX_BULK_RUNS)
        key, ctx = _key(request.key, request.context)
        if request.bucket_width < 0:
            raise InvalidArgument("bucket_width is 0 (automatic) or a positive number of steps")
        if not 0 <= request.max_buckets <= history.MAX_BUCKETS:
            raise InvalidArgument(f"max_buckets is 0 (meaning {history.DEFAULT_BUCKETS}) to {history.MAX_BUCKETS}")
        total, first, last = await self._store.extent(run_ids, key, ctx)
        if total > MAX_AGGREGATED_POINTS:  # refused before a point is read
            raise ResourceExhausted(f"{total:,} points to aggregate; the limit is {MAX_AGGREGATED_POINTS:,}: "
                                    "aggregate fewer runs")
        if request.bucket_width and (last - first) // request.bucket_width + 1 > history.MAX_BUCKETS:
            raise InvalidArgument(f"bucket_width {request.bucket_width} makes up to "
                                  f"{(last - first) // request.bucket_width + 1:,} buckets over steps {first}–{last}; "
                                  f"the limit is {history.MAX_BUCKETS}: widen the buckets")
        points = history.merge_sorted([await self._store.points(r, key, ctx) for r in run_ids])
        width = history.bucket_width(points, request.bucket_width, request.max_buckets or history.DEFAULT_BUCKETS)
        buckets = history.aggregate(points, width)
        if len(buckets) > history.MAX_BUCKETS:
            raise InvalidArgument(f"bucket_width {width} makes {len(buckets)} buckets; the limit is "
                                  f"{history.MAX_BUCKETS}: widen the buckets")
        return query_pb2.AggregateMetricResponse(bucket_width=width, buckets=[
            query_pb2.Bucket(start_step=b.start_step, end_step=b.end_step, min=b.min, max=b.max, mean=b.mean,
                             last=b.last, count=b.count) for b in buckets])

    async def ExportMetric(  # type: ignore[override]  # wire bytes: registered with wire.pre_encoded (app.py)
        self, request: query_pb2.ExportMetricRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """ExportMetricResponse parts as wire bytes (wire.export_response), sent as they are."""
        run_id = parse_id("run_id", request.run_id)
        key, ctx = _key(request.key, request.context)
        if request.max_points < 0:
            raise InvalidArgument(f"max_points is 0 (every point) or a positive number, got {request.max_points}")
        start = request.start_step if request.HasField("start_step") else None
        end = request.end_step if request.HasField("end_step") else None
        reader = SlowReader(context, self._slow_reader_s, call="ExportMetric",
                            then="export again and skip the steps already received")
        try:
            async for part in self._export(run_id, key, ctx, start, end, request.max_points):
                reader.waiting()
                yield export_response(key, MetricContext(ctx).proto, part.steps, part.values, part.timestamps)
                reader.taken()
        finally:
            reader.taken()

    async def _export(self, run_id: uuid.UUID, key: str, context: int, start: int | None, end: int | None,
                      max_points: int) -> AsyncIterator[history.Points]:
        if not max_points:  # chunk by chunk: memory bounded however long the series
            async for part in self._store.export(run_id, key, context, start, end):
                yield part
            return
        shown, _ = await self._store.downsampled(run_id, key, context, start, end, max_points)
        if not len(shown):
            await self._store.require_run(run_id)  # NOT_FOUND for an unknown run, as a full export
        for at in range(0, len(shown), EXPORT_PART_POINTS):
            yield shown.take(slice(at, at + EXPORT_PART_POINTS))

    async def GetLatestMetrics(
        self, request: query_pb2.GetLatestMetricsRequest, context: Context
    ) -> query_pb2.GetLatestMetricsResponse:
        metrics, from_cache = await self._latest.latest(parse_id("run_id", request.run_id))
        return query_pb2.GetLatestMetricsResponse(metrics=_latest(metrics), from_cache=from_cache)

    async def CompareRuns(
        self, request: query_pb2.CompareRunsRequest, context: Context
    ) -> query_pb2.CompareRunsResponse:
        run_ids = _ids("run_ids", request.run_ids, low=2, high=MAX_COMPARED_RUNS)
        runs = await self._store.get_runs(run_ids)
        params, metrics = analysis.compare(runs, await self._store.latest_from_db(run_ids))
        return query_pb2.CompareRunsResponse(
            runs=[run_to_proto(r) for r in runs],
            params=[query_pb2.ComparedParam(key=p.key, differs=p.differs, values=[
                query_pb2.ParamCell(present=v is not None, value=v or "") for v in p.values]) for p in params],
            metrics=[query_pb2.ComparedMetric(
                key=m.key, context=MetricContext(m.context).proto, differs=m.differs,
                values=[_metric_cell(s) for s in m.values]) for m in metrics])

    async def SummarizeExperiment(
        self, request: query_pb2.SummarizeExperimentRequest, context: Context
    ) -> query_pb2.SummarizeExperimentResponse:
        directions = {k: int(v) for k, v in request.directions.items()}
        if any(v not in (analysis.MINIMIZE, analysis.MAXIMIZE) for v in directions.values()):
            raise InvalidArgument("directions are DIRECTION_MINIMIZE or DIRECTION_MAXIMIZE")
        run_ids = await self._store.select_run_ids(await self._selection(request.selection))
        summaries = analysis.summarize(run_ids, await self._store.latest_from_db(run_ids), directions)
        return query_pb2.SummarizeExperimentResponse(runs=len(run_ids), metrics=[
            query_pb2.MetricSummary(key=s.key, context=MetricContext(s.context).proto,
                                    direction=query_pb2.Direction.Name(s.direction), runs=s.runs,
                                    best=s.best, worst=s.worst, mean=s.mean, std=s.std, median=s.median,
                                    best_run_id=format_id(s.best_run)) for s in summaries])

    async def _targets(self, selection: query_pb2.RunSelection, metric: str, ctx: int
                       ) -> tuple[list[Run], list[tuple[Run, float]]]:
        _key(metric, ctx)
        run_ids = await self._store.select_run_ids(await self._selection(selection))
        runs = await self._store.get_runs(run_ids)
        return runs, analysis.target_values(runs, await self._store.latest_from_db(run_ids), metric, ctx)

    async def GetParamImportance(
        self, request: query_pb2.GetParamImportanceRequest, context: Context
    ) -> query_pb2.GetParamImportanceResponse:
        runs, pairs = await self._targets(request.selection, request.metric, request.context)
        params = analysis.param_keys(runs, request.params)
        # fANOVA fits a random forest: CPU work off the event loop
        found, used = await asyncio.to_thread(analysis.importance, pairs, params)
        return query_pb2.GetParamImportanceResponse(
            importances=[query_pb2.Importance(param=k, importance=v) for k, v in found.items()],
            method=analysis.IMPORTANCE_METHOD, runs_used=used)

    async def GetParallelCoordinates(
        self, request: query_pb2.GetParallelCoordinatesRequest, context: Context
    ) -> query_pb2.GetParallelCoordinatesResponse:
        _key(request.metric, request.context)
        selected = await self._store.select_run_ids(await self._selection(request.selection))
        pairs, keys = await self._store.param_points(selected, request.metric, request.context)
        run_ids, axes = analysis.parallel_coordinates(pairs, list(request.params) or keys, request.metric)
        return query_pb2.GetParallelCoordinatesResponse(run_ids=[format_id(cast(uuid.UUID, i)) for i in run_ids],
                                                        axes=[_axis(a) for a in axes])

    async def GetContour(self, request: query_pb2.GetContourRequest, context: Context) -> query_pb2.GetContourResponse:
        if not request.x_param or not request.y_param:
            raise InvalidArgument("x_param and y_param name two params")
        _, pairs = await self._targets(request.selection, request.metric, request.context)
        c = analysis.contour(pairs, request.x_param, request.y_param)
        return query_pb2.GetContourResponse(
            run_ids=[format_id(cast(uuid.UUID, i)) for i in c.run_ids], x=_axis(c.x), y=_axis(c.y), z=c.z,
            grid_x=c.grid_x, grid_y=c.grid_y, grid_z=c.grid_z)

    async def WatchRun(
        self, request: query_pb2.WatchRunRequest, context: Context
    ) -> AsyncIterator[query_pb2.WatchRunResponse]:
        """Subscribes (through the replica's shared PointsHub) before reading the backlog, so
        nothing committed in between is missed; live points of a series at or below the last
        backlog step are the overlap and are dropped. The stream ends once the run has ended
        (FINISHED, FAILED, KILLED) and no point is pending."""
        run_id = parse_id("run_id", request.run_id)
        await self._store.require_run(run_id)
        keys = set(request.keys)
        queue = await self._hub.join(run_id)
        try:
            # tells the caller it is subscribed: every point committed from now on reaches it
            await context.send_initial_metadata(())
            seen: dict[tuple[str, int], int] = {}
            if request.HasField("from_step"):
                backlog = await self._store.points_since(run_id, request.from_step, list(keys))
                for (key, ctx), points in sorted(backlog.items()):
                    seen[(key, ctx)] = int(points.steps.max()) if len(points) else request.from_step - 1
                    for start in range(0, len(points), 65_536):
                        yield query_pb2.WatchRunResponse(series=[_series(key, ctx, points.take(
                            slice(start, start + 65_536)))])
            while True:
                try:
                    batch = await asyncio.wait_for(queue.get(), WATCH_IDLE_CHECK_S)
                except TimeoutError:
                    if await self._ended(run_id):
                        return
                    continue
                if isinstance(batch, TrackdError):
                    raise batch
                series = [s for s in (_fresh(s, seen) for s in batch.series if not keys or s.key in keys) if s]
                if series:
                    yield query_pb2.WatchRunResponse(series=series)
        finally:
            self._hub.leave(run_id, queue)

    async def _ended(self, run_id: uuid.UUID) -> bool:
        """Whether the run has ended; one lookup per run per WATCH_IDLE_CHECK_S however many
        callers watch it."""
        now = asyncio.get_running_loop().time()
        known = self._status_seen.get(run_id)
        if known is None or now - known[0] >= WATCH_IDLE_CHECK_S:
            if len(self._status_seen) > 10_000:
                self._status_seen.clear()
            known = self._status_seen[run_id] = (now, RunStatus(await self._store.require_run(run_id)))
        return known[1] in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


def _fresh(series: ingest_pb2.MetricSeries, seen: dict[tuple[str, int], int]) -> ingest_pb2.MetricSeries | None:
    """The points of a live batch not already sent with the backlog."""
    last = seen.get((series.key, series.context))
    if last is None:
        return series
    steps = np.asarray(series.steps, np.int64)
    keep = steps > last
    if keep.all():
        return series
    if not keep.any():
        return None
    return ingest_pb2.MetricSeries(
        key=series.key, context=series.context, steps=steps[keep].tolist(),
        values=np.asarray(series.values)[keep].tolist(), timestamps_ms=np.asarray(series.timestamps_ms)[keep].tolist())


def _metric_cell(s: Summary | None) -> query_pb2.MetricCell:
    if s is None:
        return query_pb2.MetricCell(present=False, value=math.nan)
    return query_pb2.MetricCell(present=True, value=s.value, step=s.step)


def _axis(a: analysis.Axis) -> query_pb2.Axis:
    return query_pb2.Axis(name=a.name, values=a.values, categories=a.categories)
