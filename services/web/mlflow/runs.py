"""MLflow's run endpoints on trackd's run, ingest and query services: runs start and end through
the run service (so they publish `run.started` / `run.ended`), params and tags go to it, metrics to
the ingest service with their steps and timestamps, searches to the query service's SearchRuns
(MLflow's filter syntax is a subset of trackd's grammar, docs/search.md).

A run started here is `unattended`: MLflow's clients send no heartbeats, so it stays RUNNING until
it is ended. Every write first reads the run, so that bad input or a deleted run writes nothing."""

from __future__ import annotations

import re
from typing import Any

import grpc
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import RunStatus

from . import convert
from .experiments import get_experiment
from .protocol import INVALID_STATE, RESOURCE_DOES_NOT_EXIST, Call, MlflowError, invalid, not_found

SEARCH_DEFAULT, SEARCH_MAX, QUERY_PAGE = 1000, 50_000, 1000
_ID = re.compile(r"[0-9a-fA-F-]{32,36}")


def run_id_field(call: Call) -> str:
    """MLflow sends `run_id`, older clients `run_uuid`."""
    run_id = call.get("run_id", str) or call.get("run_uuid", str)
    if not run_id:
        raise invalid("Missing value for required parameter 'run_id'. See the API docs for more information about "
                      "request parameters.")
    return run_id


async def get_run(call: Call, run_id: str) -> run_pb2.Run:
    if not _ID.fullmatch(run_id):
        raise not_found(f"Run '{run_id[:80]}' not found")
    try:
        return (await call.rpc(call.backends.runs.GetRun, run_pb2.GetRunRequest(run_id=run_id))).run
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise not_found(f"Run '{run_id[:80]}' not found") from None
        raise


async def _run_exists(call: Call, run_id: str) -> bool:
    try:
        await get_run(call, run_id)
    except MlflowError as error:
        if error.code == RESOURCE_DOES_NOT_EXIST:
            return False
        raise
    return True


async def _active_run(call: Call) -> run_pb2.Run:
    run = await get_run(call, run_id_field(call))
    if run.deleted:
        raise invalid(f"The run {run.id} must be in the 'active' state. Current state is deleted.")
    return run


def _writable(run: run_pb2.Run, what: str) -> None:
    """trackd takes params and metrics while a run is RUNNING (or CRASHED, for metrics)."""
    if run.status not in (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_CRASHED):
        raise MlflowError(INVALID_STATE, f"Cannot log {what} to run {run.id}: it has ended "
                                         f"({convert.MLFLOW_STATUS[RunStatus(run.status)]}) and trackd "
                                         "takes params and metrics only while a run is RUNNING")


async def _run_json(call: Call, run: run_pb2.Run) -> dict[str, Any]:
    latest = await call.rpc(call.backends.query.GetLatestMetrics, query_pb2.GetLatestMetricsRequest(run_id=run.id))
    return convert.run_json(run, latest.metrics)


# -- runs ----------------------------------------------------------------------------------------

async def create(call: Call) -> dict[str, Any]:
    experiment = await get_experiment(call, call.get("experiment_id", str) or convert.DEFAULT_EXPERIMENT_ID)
    if experiment.archived:
        raise invalid(f"The experiment {experiment.id} must be in the 'active' state. Current state is deleted.")
    tags = _pairs(call, "tags", convert.TAG_VALUE_MAX)
    name = call.get("run_name", str) or tags.get(convert.RUN_NAME_TAG, "")
    if len(name) > convert.KEY_MAX:
        raise invalid(f"Run name had length {len(name)}, which exceeded length limit of {convert.KEY_MAX}")
    if name:
        tags[convert.RUN_NAME_TAG] = name  # MLflow keeps the name as a tag too (searchable)
    parent = tags.get(convert.PARENT_TAG, "")
    if parent and not await _run_exists(call, parent):
        parent = ""  # MLflow does not check the tag: a parent trackd does not hold stays a plain tag, unlinked
    start = call.get("start_time", int)
    request = run_pb2.StartRunRequest(
        experiment_id=experiment.id, name=name, tags=tags, parent_run_id=parent, unattended=True,
        user=call.get("user_id", str) or tags.get(convert.USER_TAG, ""),
        start_time=convert.from_millis(start) if start is not None else None)
    run = (await call.rpc(call.backends.runs.StartRun, request)).run
    if tags.get(convert.RUN_NAME_TAG) != run.name:  # the name trackd chose
        await call.rpc(call.backends.runs.SetTags, run_pb2.SetTagsRequest(
            run_id=run.id, tags={convert.RUN_NAME_TAG: run.name}))
        run.tags[convert.RUN_NAME_TAG] = run.name
    return {"run": convert.run_json(run, [])}


def _pairs(call: Call, field: str, value_max: int) -> dict[str, str]:
    found = {}
    for item in convert.items(field, call.get(field, list)):
        key = convert.check_key(field.rstrip("s"), item.get("key"))
        found[key] = convert.check_value(field.rstrip("s"), key, item.get("value", ""), value_max)
    return found


async def get(call: Call) -> dict[str, Any]:
    return {"run": await _run_json(call, await get_run(call, run_id_field(call)))}


async def update(call: Call) -> dict[str, Any]:
    run = await _active_run(call)
    status = call.get("status", str)
    end_time = call.get("end_time", int)
    name = call.get("run_name", str)
    if status is not None and status not in ("RUNNING", "SCHEDULED", *convert.END_STATUSES):
        raise invalid(f"Invalid value {status[:40]!r} for parameter 'status' supplied")
    if status == "SCHEDULED":
        raise invalid("trackd has no SCHEDULED status: a run is RUNNING from its start")
    ended = run.status != run_pb2.RUN_STATUS_RUNNING
    if status == "RUNNING" and ended:
        raise MlflowError(INVALID_STATE, f"Run {run.id} has ended; trackd runs end once and cannot be resumed "
                                         "(start a new run)")
    if name is not None and len(name) > convert.KEY_MAX:
        raise invalid(f"Run name had length {len(name)}, which exceeded length limit of {convert.KEY_MAX}")
    end = convert.from_millis(end_time) if end_time is not None else None
    if name and name != run.name:
        run = (await call.rpc(call.backends.runs.UpdateRun, run_pb2.UpdateRunRequest(run_id=run.id, name=name))).run
        await call.rpc(call.backends.runs.SetTags, run_pb2.SetTagsRequest(
            run_id=run.id, tags={convert.RUN_NAME_TAG: name}))
    if status in convert.END_STATUSES and not ended:
        run = (await call.rpc(call.backends.runs.EndRun, run_pb2.EndRunRequest(
            run_id=run.id, status=convert.END_STATUSES[status].proto, end_time=end))).run
    return {"run_info": convert.run_info(run)}


async def delete(call: Call) -> dict[str, Any]:
    run = await get_run(call, run_id_field(call))
    await call.rpc(call.backends.runs.DeleteRun, run_pb2.DeleteRunRequest(run_id=run.id))
    return {}


async def restore(call: Call) -> dict[str, Any]:
    run = await get_run(call, run_id_field(call))
    await call.rpc(call.backends.runs.RestoreRun, run_pb2.RestoreRunRequest(run_id=run.id))
    return {}


async def search(call: Call) -> dict[str, Any]:
    limit = call.get("max_results", int, SEARCH_DEFAULT) or SEARCH_DEFAULT
    if not 0 < limit <= SEARCH_MAX:
        raise invalid(f"Invalid value {limit} for parameter 'max_results' supplied: it must be at most {SEARCH_MAX}")
    view = call.get("run_view_type", str, "ACTIVE_ONLY") or "ACTIVE_ONLY"
    if view not in convert.VIEW_TYPES:
        raise invalid(f"Invalid value {view[:40]!r} for parameter 'run_view_type' supplied")
    order_by = call.get("order_by", list, []) or []
    if not all(isinstance(o, str) for o in order_by):
        raise invalid("Invalid value for parameter 'order_by' supplied: expected strings")
    experiments = []
    for experiment_id in call.get("experiment_ids", list, []) or []:
        if not isinstance(experiment_id, str):
            raise invalid("Invalid value for parameter 'experiment_ids' supplied: expected strings")
        experiments.append((await get_experiment(call, experiment_id)).id)
    selection = query_pb2.RunSelection(experiment_ids=experiments, view_type=convert.VIEW_TYPES[view],
                                       filter=convert.search_syntax(call.get("filter", str, "") or ""))
    order_by = [convert.search_syntax(o) for o in order_by]
    token = call.get("page_token", str, "") or ""
    runs: list[dict[str, Any]] = []
    while len(runs) < limit:
        page = await call.rpc(call.backends.query.SearchRuns, query_pb2.SearchRunsRequest(
            selection=selection, order_by=order_by, page_size=min(QUERY_PAGE, limit - len(runs)), page_token=token))
        runs += [convert.run_json(r.run, r.metrics) for r in page.results]
        token = page.next_page_token
        if not token:
            break
    return {"runs": runs, **({"next_page_token": token} if token else {})}


# -- params, tags, metrics, inputs --------------------------------------------------------------

def _metric(item: dict[str, Any], field: str = "") -> tuple[str, int, float, int, int]:
    """(key, context, value, timestamp, step) of one MLflow metric; `field` ("metrics[3].") prefixes
    the names in error messages, as MLflow's server spells them for a batch."""
    key = convert.check_key("metric", item.get("key"))
    if "@" in key:
        raise invalid(f"Invalid metric name: '{key[:100]}' ('@' is trackd's context separator)")
    value = convert.metric_value(key, item.get("value"))
    timestamp = convert.integer(f"{field}timestamp", item.get("timestamp"))
    step = convert.integer(f"{field}step", item.get("step"), default=0)
    return key, 0, value, timestamp, step


def _series(metrics: list[tuple[str, int, float, int, int]]) -> list[ingest_pb2.MetricSeries]:
    """One series a (key, context), its points in the batch's order (columns extended once each)."""
    grouped: dict[tuple[str, int], tuple[list[int], list[float], list[int]]] = {}
    for key, context, value, timestamp, step in metrics:
        steps, values, stamps = grouped.setdefault((key, context), ([], [], []))
        steps.append(step)
        values.append(value)
        stamps.append(timestamp)
    return [ingest_pb2.MetricSeries(key=key, steps=steps, values=values, timestamps_ms=stamps)
            for (key, _), (steps, values, stamps) in grouped.items()]


def _param_conflict(run: run_pb2.Run, params: dict[str, str]) -> None:
    for key, value in params.items():
        if key in run.params and run.params[key] != value:
            raise invalid(f"Changing param values is not allowed. Param with key='{key}' was already logged with "
                          f"value='{run.params[key][:200]}' for run ID='{run.id}'. Attempted logging new value "
                          f"'{value[:200]}'.")


async def _write(call: Call, run: run_pb2.Run, *, params: dict[str, str], tags: dict[str, str],
                 metrics: list[tuple[str, int, float, int, int]]) -> None:
    """Params, then tags, then metrics: checked first, so a refusal writes nothing."""
    if params or metrics:
        _writable(run, "params" if params else "metrics")
    _param_conflict(run, params)
    if params:
        await call.rpc(call.backends.runs.LogParams, run_pb2.LogParamsRequest(run_id=run.id, params=params))
    if tags:
        await call.rpc(call.backends.runs.SetTags, run_pb2.SetTagsRequest(run_id=run.id, tags=tags))
        name = tags.get(convert.RUN_NAME_TAG)
        if name and name != run.name:
            await call.rpc(call.backends.runs.UpdateRun, run_pb2.UpdateRunRequest(run_id=run.id, name=name))
    if metrics:
        await call.rpc(call.backends.ingest.LogMetrics,
                       ingest_pb2.LogMetricsRequest(run_id=run.id, series=_series(metrics)))


async def log_metric(call: Call) -> dict[str, Any]:
    run_id_field(call)  # MLflow checks the run id's type before the other fields
    metric = _metric({"key": call.require("key", str), "value": call.fields.get("value"),
                      "timestamp": call.fields.get("timestamp"), "step": call.fields.get("step")})
    await _write(call, await _active_run(call), params={}, tags={}, metrics=[metric])
    return {}


async def log_param(call: Call) -> dict[str, Any]:
    run_id_field(call)  # MLflow checks the run id's type before the other fields
    key = convert.check_key("param", call.require("key", str))
    value = convert.check_value("param", key, call.fields.get("value", ""), convert.PARAM_VALUE_MAX)
    await _write(call, await _active_run(call), params={key: value}, tags={}, metrics=[])
    return {}


async def set_tag(call: Call) -> dict[str, Any]:
    run_id_field(call)  # MLflow checks the run id's type before the other fields
    key = convert.check_key("tag", call.require("key", str))
    value = convert.check_value("tag", key, call.fields.get("value", ""), convert.TAG_VALUE_MAX)
    if key == convert.RUN_NAME_TAG and not value:
        raise invalid("mlflow.runName must not be empty")
    await _write(call, await _active_run(call), params={}, tags={key: value}, metrics=[])
    return {}


async def delete_tag(call: Call) -> dict[str, Any]:
    key = call.require("key", str)
    run = await _active_run(call)
    if key not in run.tags:
        raise not_found(f"No tag with name: {key[:100]} in run with id {run.id}")
    await call.rpc(call.backends.runs.DeleteTags, run_pb2.DeleteTagsRequest(run_id=run.id, keys=[key]))
    return {}


async def log_batch(call: Call) -> dict[str, Any]:
    raw_metrics = convert.items("metrics", call.get("metrics", list))
    raw_params = convert.items("params", call.get("params", list))
    raw_tags = convert.items("tags", call.get("tags", list))
    for what, found, limit in (("metrics", raw_metrics, convert.MAX_BATCH_METRICS),
                               ("params", raw_params, convert.MAX_BATCH_PARAMS),
                               ("tags", raw_tags, convert.MAX_BATCH_TAGS)):
        if len(found) > limit:
            raise invalid(f"A batch logging request can contain at most {limit} {what}. Got {len(found)} {what}. "
                          "Please split up metrics, params, and tags into multiple requests and try again.")
    if len(raw_metrics) + len(raw_params) + len(raw_tags) > convert.MAX_BATCH_ITEMS:
        raise invalid(f"A batch logging request can contain at most {convert.MAX_BATCH_ITEMS} metrics, params and "
                      "tags in total.")
    metrics = [_metric(m, f"metrics[{i}].") for i, m in enumerate(raw_metrics)]
    params: dict[str, str] = {}
    for p in raw_params:
        key = convert.check_key("param", p.get("key"))
        value = convert.check_value("param", key, p.get("value", ""), convert.PARAM_VALUE_MAX)
        if params.get(key, value) != value:
            raise invalid(f"Duplicate parameter keys have been submitted: '{key}' with different values")
        params[key] = value
    tags = {convert.check_key("tag", t.get("key")): t.get("value", "") for t in raw_tags}
    tags = {k: convert.check_value("tag", k, v, convert.TAG_VALUE_MAX) for k, v in tags.items()}
    await _write(call, await _active_run(call), params=params, tags=tags, metrics=metrics)
    return {}


async def log_inputs(call: Call) -> dict[str, Any]:
    datasets = convert.items("datasets", call.get("datasets", list))
    if len(datasets) > convert.MAX_DATASETS:
        raise invalid(f"At most {convert.MAX_DATASETS} datasets in one request")
    tags = dict(convert.dataset_tag(d) for d in datasets)
    if tags:
        await _write(call, await _active_run(call), params={}, tags=tags, metrics=[])
    else:
        await _active_run(call)
    return {}


MAX_DATASET_EXPERIMENTS, MAX_DATASET_SUMMARIES, DATASET_SCAN_RUNS = 20, 1000, 1000
DATASET_CONTEXT_TAG = "mlflow.data.context"  # a DatasetInput's tag: training, eval, …


async def search_datasets(call: Call) -> dict[str, Any]:
    """MLflow's UI's `experiments/search-datasets`: the distinct (experiment, dataset name, digest,
    context) of the runs' inputs, read from the newest DATASET_SCAN_RUNS runs of the experiments."""
    ids = call.strings("experiment_ids", most=MAX_DATASET_EXPERIMENTS,
                       missing="SearchDatasets request must specify at least one experiment_id.",
                       too_many=f"SearchDatasets request cannot specify more than {MAX_DATASET_EXPERIMENTS} "
                                "experiment_ids. Received {count} experiment_ids.")
    experiments = [(await get_experiment(call, i)).id for i in ids]
    selection = query_pb2.RunSelection(experiment_ids=experiments, view_type=convert.VIEW_TYPES["ACTIVE_ONLY"])
    summaries: dict[tuple[str, str, str, str], None] = {}
    token, scanned = "", 0
    while scanned < DATASET_SCAN_RUNS and len(summaries) < MAX_DATASET_SUMMARIES:
        page = await call.rpc(call.backends.query.SearchRuns, query_pb2.SearchRunsRequest(
            selection=selection, page_size=min(QUERY_PAGE, DATASET_SCAN_RUNS - scanned), page_token=token))
        scanned += len(page.results)
        for result in page.results:
            for entry in convert.run_datasets(result.run):
                context = next((t["value"] for t in entry.get("tags", []) if t.get("key") == DATASET_CONTEXT_TAG), "")
                summaries[(result.run.experiment_id, entry["dataset"]["name"], entry["dataset"]["digest"],
                           context)] = None
        token = page.next_page_token
        if not token:
            break
    return {"dataset_summaries": [{"experiment_id": e, "name": n, "digest": d, "context": c}
                                  for e, n, d, c in list(summaries)[:MAX_DATASET_SUMMARIES]]}


ENDPOINTS = [
    ("/experiments/search-datasets", ["POST"], search_datasets),
    ("/runs/create", ["POST"], create),
    ("/runs/get", ["GET"], get),
    ("/runs/update", ["POST"], update),
    ("/runs/delete", ["POST"], delete),
    ("/runs/restore", ["POST"], restore),
    ("/runs/search", ["GET", "POST"], search),
    ("/runs/log-metric", ["POST"], log_metric),
    ("/runs/log-parameter", ["POST"], log_param),
    ("/runs/set-tag", ["POST"], set_tag),
    ("/runs/delete-tag", ["POST"], delete_tag),
    ("/runs/log-batch", ["POST"], log_batch),
    ("/runs/log-inputs", ["POST"], log_inputs),
]
