"""Comparing runs and taking data out: the compare page (`/compare?runs=<id>,<id>,…`) and the JSON
its charts read (every run's series of some keys, parallel coordinates, a contour), the data of
the experiment page's overlay panel (each run's line, or per group of a param the mean and the
min–max band), and CSV downloads of an experiment's runs and of one series.

A handler reads like a servicer: parse the request, call the query service, render or stream."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_platform.vocabulary import MetricContext

from . import views
from .backends import PAGE_TIMEOUT_S, Backends, Caller
from .charts import BULK_KEYS, MAX_WIDTH, MIN_WIDTH, FastJSON, _int

MAX_COMPARED = 100  # CompareRuns' and GetMetricHistoryBulk's limit of runs
MAX_CSV_ROWS = 100_000  # an experiment's runs.csv stops after this many rows (narrow the filter for more)
CSV_PAGE_SIZE = 1000
EXPORT_TIMEOUT_S = 300.0  # a series export streams for at most this long
MAX_GROUPS = 20  # groups of the overlay panel (AggregateMetric calls per request)


# -- parsing (pure) -------------------------------------------------------------------------------

def parse_run_ids(raw: str, *, low: int = 2) -> list[str]:
    """Comma-separated run ids (with or without dashes), as the services spell them, duplicates
    dropped, in their order. 400 with the reason when one is not a UUID, or there are fewer than
    `low` or more than MAX_COMPARED."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if len(parts) > MAX_COMPARED:
        raise HTTPException(400, f"At most {MAX_COMPARED} runs can be compared at once; the link names {len(parts)}.")
    ids: list[str] = []
    for part in parts:
        try:
            ids.append(uuid.UUID(part).hex)  # as the services spell ids, so a run named twice counts once
        except ValueError:
            raise HTTPException(400, f"{part[:80]!r} is not a run id (a UUID).") from None
    ids = list(dict.fromkeys(ids))
    if len(ids) < low:
        raise HTTPException(400, f"Name at least {low} runs: /compare?runs=<id>,<id>,… "
                                 f"({len(ids)} given).")
    return ids


def parse_context(raw: str) -> ingest_pb2.MetricContext:
    if raw not in views.CONTEXTS_BY_NAME:
        raise HTTPException(400, f"context is one of {sorted(views.CONTEXTS_BY_NAME)}, got {raw!r}")
    return MetricContext(views.CONTEXTS_BY_NAME[raw]).proto


def run_id_filter(run_ids: Sequence[str]) -> str:
    """The search grammar's filter for exactly these (validated) run ids."""
    return "attributes.run_id IN (" + ", ".join(f"'{i}'" for i in run_ids) + ")"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def compare_view(found: query_pb2.CompareRunsResponse) -> dict[str, Any]:
    """CompareRuns → the page: runs in order, params (differing marked), latest metrics side by
    side, the chart keys (system metrics apart), and the numbers the scatter plot reads."""
    runs = [{"id": r.id, "name": r.name or r.id[:8], "status": views.status_name(r.status),
             "experiment_id": r.experiment_id, "start_ms": r.start_time.ToMilliseconds()} for r in found.runs]
    params = [{"key": p.key, "differs": p.differs,
               "values": [v.value if v.present else "" for v in p.values]} for p in found.params]
    metrics = []
    for m in found.metrics:
        context = views.CONTEXT_NAMES.get(m.context, "")
        present = [v.value for v in m.values if v.present and math.isfinite(v.value)]
        metrics.append({"key": m.key, "context": context, "label": views.metric_label(m.key, m.context),
                        "differs": m.differs, "system": m.key.startswith(views.SYSTEM_PREFIX),
                        "values": [views.format_value(v.value) if v.present else "" for v in m.values],
                        "raw": [_finite(v.value) if v.present else None for v in m.values],
                        "best": (min(present) if lower_is_better(m.key) else max(present))
                        if len(present) > 1 and m.differs else None})
    metrics.sort(key=lambda m: (m["system"], m["key"], m["context"]))
    return {"runs": runs, "params": params, "metrics": metrics,
            "charts": [m for m in metrics if not m["system"]],
            "data": {"runs": runs, "params": {p["key"]: p["values"] for p in params},
                     "metrics": {m["label"]: m["raw"] for m in metrics}}}


def lower_is_better(key: str) -> bool:
    """The guess the query service makes too: losses, errors, … are minimized."""
    name = key.lower().rsplit("/", 1)[-1]
    return any(word in name for word in ("loss", "err", "mse", "mae", "perplexity", "regret", "latency", "time"))


def _axis_json(axis: query_pb2.Axis) -> dict[str, Any]:
    return {"name": axis.name, "values": [_finite(v) for v in axis.values], "categories": list(axis.categories)}


def _csv_line(values: Sequence[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def _number(value: float) -> str:
    return repr(value) if math.isfinite(value) else ("NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf"))


def _download(rows: AsyncIterator[str], filename: str) -> StreamingResponse:
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "cache-control": "no-store"})


def experiment_panel(query: QueryParams, keys: query_pb2.ListRunKeysResponse, path: str,
                     table: views.TableQuery) -> dict[str, Any]:
    """What the experiment page adds for this module: the overlay panel's choices and state (the
    metric `chart` of context `ctx`, grouped by the param `group`), and the runs table's CSV link."""
    metrics = sorted({(m.key, views.CONTEXT_NAMES.get(m.context, "")) for m in keys.metric_keys},
                     key=lambda kc: (kc[0].startswith(views.SYSTEM_PREFIX), kc))
    key, context, group = query.get("chart", ""), query.get("ctx", ""), query.get("group", "")
    if (key, context) not in metrics:
        key, context = "", ""
    csv_query = {("order" if name == "order_by" else name): value
                 for name, value in table.params_dict().items() if name not in ("page_token", "page_size")}
    return {"overlay": {"key": key, "context": context, "group": group if group in keys.param_keys else "",
                        "metrics": [{"key": k, "context": c, "label": f"{k}@{c}" if c else k} for k, c in metrics],
                        "params": list(keys.param_keys)},
            "csv_url": f"{path}/runs.csv" + (f"?{urlencode(csv_query)}" if csv_query else "")}


class Compare:
    def __init__(self, backends: Backends, templates: Jinja2Templates) -> None:
        self._b = backends
        self._t = templates

    def routes(self) -> list[Route]:
        return [
            Route("/compare", self.page),
            Route("/api/compare/series", self.series),
            Route("/api/compare/parcoords", self.parcoords),
            Route("/api/compare/contour", self.contour),
            Route("/api/experiments/{experiment_id}/overlay", self.overlay),
            Route("/experiments/{experiment_id}/runs.csv", self.runs_csv),
            Route("/runs/{run_id}/metrics/{key:path}", self.series_csv),
        ]

    async def _unary(self, method: Any, message: Any, caller: Caller) -> Any:
        return await method(message, metadata=caller.metadata, timeout=PAGE_TIMEOUT_S)

    # -- the compare page -------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        caller = self._b.caller(request)
        run_ids = parse_run_ids(request.query_params.get("runs", ""))
        found = await self._unary(self._b.query.CompareRuns, query_pb2.CompareRunsRequest(run_ids=run_ids), caller)
        view = compare_view(found)
        q = request.query_params
        numeric_labels = [m["label"] for m in view["charts"]] or [m["label"] for m in view["metrics"]]
        differing = [p["key"] for p in view["params"] if p["differs"]] or [p["key"] for p in view["params"]]
        keys = [p["key"] for p in view["params"]]

        def choose(name: str, choices: list[str], default: str) -> str:
            value = q.get(name, "")
            return value if value in choices else default

        metric = choose("metric", numeric_labels, numeric_labels[0] if numeric_labels else "")
        state = {"metric": metric, "sx": choose("sx", keys, differing[0] if differing else ""),
                 "cx": choose("cx", keys, differing[0] if differing else ""),
                 "cy": choose("cy", keys, differing[1] if len(differing) > 1 else (keys[1] if len(keys) > 1 else "")),
                 "diff": q.get("diff") == "1"}
        experiments = sorted({r["experiment_id"] for r in view["runs"]})
        return self._t.TemplateResponse(request, "compare.html", {
            **view, "state": state, "param_keys": keys, "metric_labels": [m["label"] for m in view["metrics"]],
            "metric_choices": {m["label"]: {"key": m["key"], "context": m["context"]} for m in view["metrics"]},
            "experiments": experiments, "run_ids": [r["id"] for r in view["runs"]],
            "differing": sum(1 for p in view["params"] if p["differs"])})

    async def series(self, request: Request) -> Response:
        """Every run's series of up to BULK_KEYS keys of one context, downsampled to `width`."""
        caller = self._b.caller(request)
        run_ids = parse_run_ids(request.query_params.get("runs", ""), low=1)
        keys = list(dict.fromkeys(request.query_params.getlist("key")))
        if not keys or len(keys) > BULK_KEYS:
            raise HTTPException(400, f"name 1 to {BULK_KEYS} keys (key=…), got {len(keys)}")
        found = await self._unary(self._b.query.GetMetricHistoryBulk, query_pb2.GetMetricHistoryBulkRequest(
            run_ids=run_ids, keys=keys, context=parse_context(request.query_params.get("context", "")),
            max_points=_int(request, "width", 1000, low=MIN_WIDTH, high=MAX_WIDTH)), caller)
        return FastJSON({"series": [
            {**views.series_json(s.series, total_points=s.total_points, downsampled=s.downsampled), "run_id": s.run_id}
            for s in found.series]})

    def _selection(self, request: Request) -> query_pb2.RunSelection:
        run_ids = parse_run_ids(request.query_params.get("runs", ""), low=1)
        experiments = [e for e in request.query_params.get("experiments", "").split(",") if e]
        for e in experiments:
            if not _is_id(e):
                raise HTTPException(400, f"{e[:80]!r} is not an experiment id")
        if not experiments:
            raise HTTPException(400, "experiments names the runs' experiments")
        return query_pb2.RunSelection(experiment_ids=experiments, filter=run_id_filter(run_ids),
                                      view_type=views.VIEWS["all"])

    async def parcoords(self, request: Request) -> Response:
        """Axes of every param (then the metric) over the runs: GetParallelCoordinates."""
        q = request.query_params
        metric = q.get("metric", "")
        if not metric:
            raise HTTPException(400, "metric names the last axis")
        found = await self._unary(self._b.query.GetParallelCoordinates, query_pb2.GetParallelCoordinatesRequest(
            selection=self._selection(request), metric=metric, context=parse_context(q.get("context", ""))),
            self._b.caller(request))
        return FastJSON({"run_ids": list(found.run_ids), "axes": [_axis_json(a) for a in found.axes]})

    async def contour(self, request: Request) -> Response:
        """The metric over a grid of two params: GetContour (mean per cell, null where no run lies)."""
        q = request.query_params
        if not q.get("x") or not q.get("y") or not q.get("metric"):
            raise HTTPException(400, "x and y name two params, metric the value")
        found = await self._unary(self._b.query.GetContour, query_pb2.GetContourRequest(
            selection=self._selection(request), x_param=q["x"], y_param=q["y"], metric=q["metric"],
            context=parse_context(q.get("context", ""))), self._b.caller(request))
        return FastJSON({"run_ids": list(found.run_ids), "x": _axis_json(found.x), "y": _axis_json(found.y),
                         "z": [_finite(v) for v in found.z], "grid_x": list(found.grid_x),
                         "grid_y": list(found.grid_y), "grid_z": [_finite(v) for v in found.grid_z]})

    # -- the experiment page's overlay panel ------------------------------------------------------

    async def overlay(self, request: Request) -> Response:
        """The runs' lines of one metric; with `group`, per value of that param the mean and the
        min–max band over its runs (AggregateMetric), up to MAX_GROUPS groups."""
        caller = self._b.caller(request)
        q = request.query_params
        experiment_id = request.path_params["experiment_id"]
        if not _is_id(experiment_id):
            raise HTTPException(404, f"No experiment has the id {experiment_id[:80]!r}.")
        run_ids = parse_run_ids(q.get("runs", ""), low=1)
        key, group = q.get("key", ""), q.get("group", "")
        if not key:
            raise HTTPException(400, "key names the metric")
        context = parse_context(q.get("context", ""))
        width = _int(request, "width", 600, low=MIN_WIDTH, high=MAX_WIDTH)
        assert width is not None
        found, history = await asyncio.gather(
            self._unary(self._b.query.SearchRuns, query_pb2.SearchRunsRequest(
                selection=query_pb2.RunSelection(experiment_ids=[experiment_id], filter=run_id_filter(run_ids),
                                                 view_type=views.VIEWS["all"]),
                page_size=MAX_COMPARED, columns=query_pb2.RunColumns(param_keys=[group] if group else [])), caller),
            self._unary(self._b.query.GetMetricHistoryBulk, query_pb2.GetMetricHistoryBulkRequest(
                run_ids=run_ids, keys=[key], context=context, max_points=width), caller))
        runs = {r.run.id: r.run for r in found.results}
        members: dict[str, list[str]] = {}
        for run_id in run_ids:
            if run_id in runs:
                members.setdefault(runs[run_id].params.get(group, "(none)") if group else "", []).append(run_id)
        lines = [{**views.series_json(s.series, total_points=s.total_points, downsampled=s.downsampled),
                  "run_id": s.run_id, "name": runs[s.run_id].name or s.run_id[:8] if s.run_id in runs else s.run_id,
                  "group": runs[s.run_id].params.get(group, "(none)") if group and s.run_id in runs else "",
                  "start_ms": runs[s.run_id].start_time.ToMilliseconds() if s.run_id in runs else 0}
                 for s in history.series if s.run_id in runs]
        groups: list[dict[str, Any]] = []
        if group:
            with_points = {line["run_id"] for line in lines}
            named = sorted((value, [i for i in ids if i in with_points]) for value, ids in members.items())
            named = [(value, ids) for value, ids in named if ids][:MAX_GROUPS]
            answers = await asyncio.gather(*(self._unary(
                self._b.query.AggregateMetric, query_pb2.AggregateMetricRequest(
                    run_ids=ids, key=key, context=context, max_buckets=min(width, 2000)), caller) for _, ids in named))
            groups = [{"value": value, "run_ids": ids,
                       "steps": [b.start_step for b in a.buckets], "mean": [_finite(b.mean) for b in a.buckets],
                       "min": [_finite(b.min) for b in a.buckets], "max": [_finite(b.max) for b in a.buckets]}
                      for (value, ids), a in zip(named, answers, strict=True)]
        return FastJSON({"key": key, "group": group, "lines": lines, "groups": groups})

    # -- CSV downloads ----------------------------------------------------------------------------

    async def runs_csv(self, request: Request) -> Response:
        """The runs table of a search as CSV, every page of it up to MAX_CSV_ROWS rows: the columns
        the URL names (params, metrics, tags; else every param and non-system metric), metrics at
        full precision, one column per context of a metric."""
        caller = self._b.caller(request)
        q = request.query_params
        experiment_id = request.path_params["experiment_id"]
        if not _is_id(experiment_id):
            raise HTTPException(404, f"No experiment has the id {experiment_id[:80]!r}.")
        table = views.TableQuery.parse({**q, "order_by": q.get("order", q.get("order_by", ""))})
        base = query_pb2.RunSelection(experiment_ids=[experiment_id], view_type=table.view_type)
        keys = await self._unary(self._b.query.ListRunKeys, query_pb2.ListRunKeysRequest(selection=base), caller)
        chosen = bool(table.params or table.metrics or table.tags)
        params = list(table.params) if chosen else list(keys.param_keys[:views.MAX_COLUMNS])
        metric_names = list(table.metrics) if chosen else sorted(
            {m.key for m in keys.metric_keys if not m.key.startswith(views.SYSTEM_PREFIX)})[:views.MAX_COLUMNS]
        contexts = {(m.key, m.context) for m in keys.metric_keys if m.key in metric_names}
        metric_columns = sorted(contexts or {(k, 0) for k in metric_names}, key=lambda kc: (kc[0], kc[1]))
        tags = list(table.tags)

        def search(token: str) -> Any:
            return self._unary(self._b.query.SearchRuns, query_pb2.SearchRunsRequest(
                selection=query_pb2.RunSelection(experiment_ids=[experiment_id], view_type=table.view_type,
                                                 filter=table.filter),
                order_by=[o.strip() for o in table.order_by.split(",") if o.strip()], page_size=CSV_PAGE_SIZE,
                page_token=token, columns=query_pb2.RunColumns(param_keys=params, tag_keys=tags,
                                                               metric_keys=metric_names)), caller)

        first = await search("")  # a bad filter or order is a 400 page, before any byte is sent
        header = (["run_id", "name", "status", "user", "start_time", "end_time", "duration_ms"]
                  + [f"params.{k}" for k in params] + [f"metrics.{views.metric_label(k, c)}" for k, c in metric_columns]
                  + [f"tags.{k}" for k in tags])

        async def rows() -> AsyncIterator[str]:
            yield _csv_line(header)
            page, sent = first, 0
            while True:
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\n")
                for result in page.results[:MAX_CSV_ROWS - sent]:
                    run = result.run
                    latest = {(m.key, m.context): m.value for m in result.metrics}
                    writer.writerow([run.id, run.name, views.status_name(run.status), run.user,
                                     views.iso_time(run.start_time), views.iso_time(run.end_time), run.duration_ms]
                                    + [run.params.get(k, "") for k in params]
                                    + [_number(latest[kc]) if kc in latest else "" for kc in metric_columns]
                                    + [run.tags.get(k, "") for k in tags])
                    sent += 1
                yield out.getvalue()
                if not page.next_page_token or sent >= MAX_CSV_ROWS:
                    return
                page = await search(page.next_page_token)

        return _download(rows(), f"runs-{experiment_id}.csv")

    async def series_csv(self, request: Request) -> Response:
        """`/runs/<id>/metrics/<key>.csv?context=…`: every point of one series (step, value,
        timestamp_ms), streamed from ExportMetric in step order."""
        caller = self._b.caller(request)
        run_id, path = request.path_params["run_id"], request.path_params["key"]
        if not path.endswith(".csv") or len(path) == 4:
            raise HTTPException(404, "A series downloads as /runs/<run id>/metrics/<key>.csv")
        key = path[:-4]
        if not _is_id(run_id):
            raise HTTPException(404, f"No run has the id {run_id[:80]!r}.")
        context_name = request.query_params.get("context", "")
        call = self._b.query.ExportMetric(query_pb2.ExportMetricRequest(
            run_id=run_id, key=key, context=parse_context(context_name)), metadata=caller.metadata,
            timeout=EXPORT_TIMEOUT_S)
        parts = call.__aiter__()
        try:
            first: query_pb2.ExportMetricResponse | None = await parts.__anext__()
        except StopAsyncIteration:
            first = None
        if first is None or not first.series.steps:
            call.cancel()
            label = views.metric_label(key, views.CONTEXTS_BY_NAME[context_name])
            raise HTTPException(404, f"Run {run_id} has no points of {label!r}.")

        async def rows() -> AsyncIterator[str]:
            try:
                yield _csv_line(["step", "value", "timestamp_ms"])
                part: query_pb2.ExportMetricResponse | None = first
                while part is not None:
                    s = part.series
                    yield "".join(f"{step},{_number(value)},{ts}\n"
                                  for step, value, ts in zip(s.steps, s.values, s.timestamps_ms, strict=True))
                    try:
                        part = await parts.__anext__()
                    except StopAsyncIteration:
                        part = None
            finally:
                call.cancel()

        label = views.metric_label(key, views.CONTEXTS_BY_NAME[context_name]).replace("/", "_")
        return _download(rows(), f"{label}-{run_id[:8]}.csv")


def _is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
