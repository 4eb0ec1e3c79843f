"""The read side of the SDK: search, metric history, comparison and analysis (QueryService)."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from trackd_api.query.v1 import query_pb2
from trackd_platform.vocabulary import CONTEXTS as CONTEXT_NAMES  # a context's number → its name

from trackd._client import Client, default_client
from trackd._history import MetricHistory, Point, from_series
from trackd._metrics import CONTEXTS
from trackd._run import VIEWS, RunInfo
from trackd.errors import from_rpc_error

DIRECTIONS = {"min": query_pb2.DIRECTION_MINIMIZE, "max": query_pb2.DIRECTION_MAXIMIZE}


def metric_name(key: str, context: int) -> str:
    """How a series is named in results: `key`, or `key@eval` for a context (as in filters)."""
    return f"{key}@{CONTEXT_NAMES[context]}" if context else key


def _selection(experiments: str | Sequence[str] | None, project: str, filter: str, view: str
               ) -> query_pb2.RunSelection:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
    names = [experiments] if isinstance(experiments, str) else list(experiments or [])
    return query_pb2.RunSelection(experiment_names=names, project=project, filter=filter,
                                  view_type=VIEWS[view])


def _info(result: Any) -> RunInfo:
    info = RunInfo.from_proto(result.run)
    info.metrics.update({metric_name(m.key, m.context): m.value for m in result.metrics})
    return info


def search_runs(
    experiments: str | Sequence[str] | None = None,
    filter: str = "",
    order_by: Sequence[str] = (),
    *,
    max_results: int = 1000,
    project: str = "default",
    view: str = "active",
    client: Client | None = None,
) -> list[RunInfo]:
    """Runs matching `filter` (MLflow's syntax plus OR, NOT and parentheses), with their latest
    metrics in `.metrics`. Pages through results up to `max_results`."""
    return list(iter_search(experiments, filter, order_by, max_results=max_results, project=project, view=view,
                            client=client))


def iter_search(
    experiments: str | Sequence[str] | None = None,
    filter: str = "",
    order_by: Sequence[str] = (),
    *,
    max_results: int | None = None,
    project: str = "default",
    view: str = "active",
    client: Client | None = None,
) -> Iterator[RunInfo]:
    client = client or default_client()
    selection = _selection(experiments, project, filter, view)
    token, yielded = "", 0
    while True:
        size = 1000 if max_results is None else max(1, min(1000, max_results - yielded))
        response = client.call("query", client.query.SearchRuns, query_pb2.SearchRunsRequest(
            selection=selection, order_by=list(order_by), page_size=size, page_token=token))
        for result in response.results:
            yield _info(result)
            yielded += 1
            if max_results is not None and yielded >= max_results:
                return
        token = response.next_page_token
        if not token:
            return


def runs_to_frame(runs: Iterable[RunInfo]) -> Any:
    """A pandas DataFrame, one row per run, columns as MLflow names them (`params.lr`,
    `metrics.acc`, `tags.stage`). Needs pandas."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("runs_to_frame needs pandas: pip install pandas") from None
    rows = []
    for r in runs:
        row: dict[str, Any] = {"run_id": r.id, "name": r.name, "experiment_id": r.experiment_id, "status": r.status,
                               "start_time": r.start_time, "end_time": r.end_time, "duration_s": r.duration_s,
                               "user": r.user}
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        row.update({f"params.{k}": v for k, v in r.params.items()})
        row.update({f"tags.{k}": v for k, v in r.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


# Larger answers are streamed (ExportMetric) rather than sent as one message, which gRPC caps:
# a point takes about 27 bytes on the wire, so this stays far below the client's 16 MiB limit.
UNARY_POINTS = 100_000


def get_metric_history(
    run_id: str, key: str, *, context: str | None = None, max_points: int | None = None,
    start_step: int | None = None, end_step: int | None = None, client: Client | None = None,
) -> MetricHistory:
    """The points of one series in step order: every point when `max_points` is None, else at
    most that many (downsampled keeping the first, last, minimum and maximum points).

    Returns a MetricHistory: numpy columns `.steps`, `.values`, `.timestamps` (24 bytes a point),
    read as a sequence of `Point`s like the list this returned before. Series of any length: a
    large answer is streamed in parts, each part decoded straight into arrays, and the columns
    joined once at the end (the client holds at most about twice the series' arrays)."""
    client = client or default_client()
    if max_points is not None and max_points < 0:
        raise ValueError(f"max_points is None (every point) or a positive number, not {max_points}")
    if max_points and max_points <= UNARY_POINTS:
        response = client.call("query", client.query.GetMetricHistory, query_pb2.GetMetricHistoryRequest(
            run_id=run_id, key=key, context=CONTEXTS[context].proto, max_points=max_points,
            start_step=start_step, end_step=end_step), timeout=max(60.0, client.settings.rpc_timeout_s))
        return from_series(response.series)
    # Joined once at the end. Growing the columns in place (ndarray.resize, a realloc) is leaner only
    # while malloc maps them: glibc's heap takes blocks below its dynamic mmap threshold (up to 32 MiB,
    # a 3,000,000-point column is 24) and fragments — 5 × 3 M peaked at +469 MiB RSS that way, +412 here.
    return MetricHistory.concatenate(_export(client, query_pb2.ExportMetricRequest(
        run_id=run_id, key=key, context=CONTEXTS[context].proto, max_points=max_points or 0,
        start_step=start_step, end_step=end_step)))


def get_metric_histories(
    run_ids: Sequence[str], keys: Sequence[str], *, context: str | None = None, max_points: int | None = 1000,
    client: Client | None = None,
) -> dict[tuple[str, str], MetricHistory]:
    """Many runs × keys at once: {(run_id, key): MetricHistory} for the series that have points.
    Every point with `max_points=None`. Answered in one call when small enough (then at most
    100 runs and 20 keys), else series by series, each streamed (any number and length); the
    client then holds the histories' arrays (24 bytes a point) and one series' parts on top."""
    client = client or default_client()
    if max_points is not None and max_points < 0:
        raise ValueError(f"max_points is None (every point) or a positive number, not {max_points}")
    if max_points and max_points * len(run_ids) * len(keys) <= UNARY_POINTS:
        response = client.call("query", client.query.GetMetricHistoryBulk, query_pb2.GetMetricHistoryBulkRequest(
            run_ids=list(run_ids), keys=list(keys), context=CONTEXTS[context].proto, max_points=max_points))
        return {(s.run_id, s.series.key): from_series(s.series) for s in response.series}
    found: dict[tuple[str, str], MetricHistory] = {}
    for run_id in dict.fromkeys(_run_hex(r) for r in run_ids):
        for key in dict.fromkeys(keys):
            points = get_metric_history(run_id, key, context=context, max_points=max_points or None, client=client)
            if points:
                found[run_id, key] = points
    return found


def _run_hex(run_id: str) -> str:
    """A run id as the services spell it (uuid hex); left as given when it is no uuid, for the
    service to refuse."""
    try:
        return uuid.UUID(run_id).hex
    except ValueError:
        return run_id


@dataclass(frozen=True)
class Bucket:
    start_step: int
    end_step: int
    min: float
    max: float
    mean: float
    last: float
    count: int


def aggregate_metric(
    run_ids: Sequence[str], key: str, *, context: str | None = None, bucket_width: int = 0, max_buckets: int = 0,
    client: Client | None = None,
) -> list[Bucket]:
    """Per step bucket min / max / mean / last / count over the points of these runs (e.g. the
    seeds of one configuration)."""
    client = client or default_client()
    response = client.call("query", client.query.AggregateMetric, query_pb2.AggregateMetricRequest(
        run_ids=list(run_ids), key=key, context=CONTEXTS[context].proto,
        bucket_width=bucket_width, max_buckets=max_buckets))
    return [Bucket(b.start_step, b.end_step, b.min, b.max, b.mean, b.last, b.count) for b in response.buckets]


def export_metric(run_id: str, key: str, *, context: str | None = None,
                  client: Client | None = None) -> Iterator[MetricHistory]:
    """A full series in step order, part by part (about 65,536 points each, as MetricHistory)."""
    client = client or default_client()
    return _export(client, query_pb2.ExportMetricRequest(run_id=run_id, key=key, context=CONTEXTS[context].proto))


EXPORT_RESUMES = 100  # times a whole-series export resumes after its call ended mid-way


def _export(client: Client, request: query_pb2.ExportMetricRequest) -> Iterator[MetricHistory]:
    """The parts of an export. A whole-series export (max_points 0) whose call ends UNAVAILABLE or
    DEADLINE_EXCEEDED after it made progress — the server ends the call of a client that takes no
    message for a while (TRACKD_QUERY_SLOW_READER_S), or a query replica stopped — resumes after
    the last step received, so a slow client still gets every point once."""
    resumes = 0
    while True:
        last_step: int | None = None
        try:
            for part in client.query.ExportMetric(request, timeout=3600):
                points = from_series(part.series)
                if len(points):
                    last_step = int(points.steps[-1])
                yield points
            return
        except grpc.RpcError as error:  # raised while iterating
            if not hasattr(error, "code"):
                raise
            if (error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    or request.max_points != 0 or last_step is None or resumes >= EXPORT_RESUMES):
                raise from_rpc_error(error, client.settings.target("query")) from None
            if request.HasField("end_step") and last_step >= request.end_step:
                return  # every point was received: only the call's end was lost
            resumes += 1
            resumed = query_pb2.ExportMetricRequest()
            resumed.CopyFrom(request)
            resumed.start_step = last_step + 1
            request = resumed


def get_latest_metrics(run_id: str, *, client: Client | None = None) -> dict[str, float]:
    client = client or default_client()
    response = client.call("query", client.query.GetLatestMetrics, query_pb2.GetLatestMetricsRequest(run_id=run_id))
    return {metric_name(m.key, m.context): m.value for m in response.metrics}


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: `params[key]` and `metrics[name]` hold one value per run (None when
    missing); `differing_params` names the params whose values differ."""

    runs: list[RunInfo]
    params: dict[str, list[str | None]]
    differing_params: list[str]
    metrics: dict[str, list[float | None]]

    def to_frame(self) -> Any:
        import pandas as pd

        data = {f"params.{k}": v for k, v in self.params.items()} | {f"metrics.{k}": v for k, v in self.metrics.items()}
        return pd.DataFrame(data, index=[r.id for r in self.runs]).T


def compare_runs(run_ids: Sequence[str], *, client: Client | None = None) -> Comparison:
    client = client or default_client()
    response = client.call("query", client.query.CompareRuns, query_pb2.CompareRunsRequest(run_ids=list(run_ids)))
    return Comparison(
        runs=[RunInfo.from_proto(r) for r in response.runs],
        params={p.key: [c.value if c.present else None for c in p.values] for p in response.params},
        differing_params=[p.key for p in response.params if p.differs],
        metrics={metric_name(m.key, m.context): [c.value if c.present else None for c in m.values]
                 for m in response.metrics})


@dataclass(frozen=True)
class MetricSummary:
    name: str
    direction: str  # "min" or "max"
    runs: int
    best: float
    worst: float
    mean: float
    std: float
    median: float
    best_run_id: str


def summarize_experiment(
    experiments: str | Sequence[str] | None = None, *, filter: str = "", project: str = "default",
    directions: Mapping[str, str] | None = None, client: Client | None = None,
) -> list[MetricSummary]:
    """Per metric: best, worst, mean, std, median and the best run. A metric's direction is
    guessed from its name (loss, error… are minimized) unless `directions` says "min" / "max"."""
    client = client or default_client()
    wanted = {k: DIRECTIONS[v] for k, v in (directions or {}).items()}
    response = client.call("query", client.query.SummarizeExperiment, query_pb2.SummarizeExperimentRequest(
        selection=_selection(experiments, project, filter, "active"), directions=wanted))
    return [MetricSummary(metric_name(m.key, m.context), "min" if m.direction == query_pb2.DIRECTION_MINIMIZE
                          else "max", m.runs, m.best, m.worst, m.mean, m.std, m.median, m.best_run_id)
            for m in response.metrics]


def param_importance(
    experiments: str | Sequence[str] | None, metric: str, *, params: Sequence[str] = (), filter: str = "",
    project: str = "default", context: str | None = None, client: Client | None = None,
) -> dict[str, float]:
    """Normalized importance of each param for `metric` (Optuna's fANOVA), most important first."""
    client = client or default_client()
    response = client.call("query", client.query.GetParamImportance, query_pb2.GetParamImportanceRequest(
        selection=_selection(experiments, project, filter, "active"), metric=metric,
        context=CONTEXTS[context].proto, params=list(params)), timeout=120)
    return {i.param: i.importance for i in response.importances}


@dataclass(frozen=True)
class Axis:
    name: str
    values: list[float]
    categories: list[str]  # when set, values are indices into it

    def labels(self) -> list[str]:
        if self.categories:
            return [self.categories[int(v)] for v in self.values]
        return [f"{v:g}" for v in self.values]


def parallel_coordinates(
    experiments: str | Sequence[str] | None, metric: str, *, params: Sequence[str] = (), filter: str = "",
    project: str = "default", context: str | None = None, client: Client | None = None,
) -> tuple[list[str], list[Axis]]:
    """(run ids, axes): one axis per param, the metric last; axis.values[i] is run i's."""
    client = client or default_client()
    response = client.call("query", client.query.GetParallelCoordinates, query_pb2.GetParallelCoordinatesRequest(
        selection=_selection(experiments, project, filter, "active"), metric=metric,
        context=CONTEXTS[context].proto, params=list(params)))
    return list(response.run_ids), [Axis(a.name, list(a.values), list(a.categories)) for a in response.axes]


@dataclass(frozen=True)
class ContourData:
    run_ids: list[str]
    x: Axis
    y: Axis
    z: list[float]
    grid_x: list[float]
    grid_y: list[float]
    grid_z: list[list[float]]  # [row per grid_y][column per grid_x], NaN where no run lies


def contour(
    experiments: str | Sequence[str] | None, x_param: str, y_param: str, metric: str, *, filter: str = "",
    project: str = "default", context: str | None = None, client: Client | None = None,
) -> ContourData:
    client = client or default_client()
    r = client.call("query", client.query.GetContour, query_pb2.GetContourRequest(
        selection=_selection(experiments, project, filter, "active"), x_param=x_param, y_param=y_param,
        metric=metric, context=CONTEXTS[context].proto))
    width = len(r.grid_x)
    grid = [list(r.grid_z[i:i + width]) for i in range(0, len(r.grid_z), width)] if width else []
    return ContourData(list(r.run_ids), Axis(r.x.name, list(r.x.values), list(r.x.categories)),
                       Axis(r.y.name, list(r.y.values), list(r.y.categories)), list(r.z), list(r.grid_x),
                       list(r.grid_y), grid)


def watch_run(run_id: str, *, from_step: int | None = None, keys: Sequence[str] = (),
              client: Client | None = None) -> Iterator[tuple[str, Point]]:
    """(metric name, point) as points are committed; first the stored points from `from_step`
    when given. Ends when the run has ended; interrupt with Ctrl-C otherwise."""
    client = client or default_client()
    request = query_pb2.WatchRunRequest(run_id=run_id, from_step=from_step, keys=list(keys))
    stream: Iterator[query_pb2.WatchRunResponse] = client.query.WatchRun(request)
    try:
        for response in stream:
            for series in response.series:
                name = metric_name(series.key, series.context)
                for point in from_series(series):
                    yield name, point
    except grpc.RpcError as error:
        if hasattr(error, "code"):
            raise from_rpc_error(error, client.settings.target("query")) from None
        raise
    finally:  # a call object (cancel) or, through the tracing interceptor, a generator (close)
        if isinstance(stream, grpc.Call):
            stream.cancel()
        elif isinstance(stream, Generator):
            stream.close()
