"""MLflow's experiment endpoints on trackd's run service: an MLflow experiment is a trackd
experiment, in the `default` project unless its name is `project/experiment`; MLflow's id "0"
("Default") is `default/Default`, created when first used; deleting archives."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import grpc
from trackd_api.run.v1 import run_pb2
from trackd_platform.paging import decode_token, encode_token

from . import convert
from .protocol import RESOURCE_ALREADY_EXISTS, Call, MlflowError, invalid, not_found

MAX_EXPERIMENTS = 10_000  # search-experiments reads at most this many (it filters and orders them here)
SEARCH_DEFAULT, SEARCH_MAX = 1000, 50_000


def _missing(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.NOT_FOUND


async def _project_id(call: Call, name: str, *, create: bool) -> str:
    try:
        return (await call.rpc(call.backends.runs.GetProject, run_pb2.GetProjectRequest(name=name))).project.id
    except grpc.aio.AioRpcError as error:
        if not (create and _missing(error)):
            raise
    try:
        created = await call.rpc(call.backends.runs.CreateProject, run_pb2.CreateProjectRequest(name=name))
        return created.project.id
    except grpc.aio.AioRpcError as error:  # created meanwhile
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        return (await call.rpc(call.backends.runs.GetProject, run_pb2.GetProjectRequest(name=name))).project.id


async def default_experiment(call: Call) -> run_pb2.Experiment:
    """MLflow's "Default" experiment (id "0"): trackd's default/Default, created when missing."""
    request = run_pb2.GetExperimentRequest(project_name=convert.DEFAULT_PROJECT, name=convert.DEFAULT_EXPERIMENT_NAME)
    try:
        return (await call.rpc(call.backends.runs.GetExperiment, request)).experiment
    except grpc.aio.AioRpcError as error:
        if not _missing(error):
            raise
    project_id = await _project_id(call, convert.DEFAULT_PROJECT, create=True)
    try:
        return (await call.rpc(call.backends.runs.CreateExperiment, run_pb2.CreateExperimentRequest(
            project_id=project_id, name=convert.DEFAULT_EXPERIMENT_NAME))).experiment
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        return (await call.rpc(call.backends.runs.GetExperiment, request)).experiment


async def get_experiment(call: Call, experiment_id: str) -> run_pb2.Experiment:
    """The experiment an MLflow id names ("0" included); RESOURCE_DOES_NOT_EXIST otherwise."""
    if experiment_id == convert.DEFAULT_EXPERIMENT_ID:
        return await default_experiment(call)
    if not re.fullmatch(r"[0-9a-fA-F-]{32,36}", experiment_id):
        raise not_found(f"No Experiment with id={experiment_id[:80]} exists")
    try:
        return (await call.rpc(call.backends.runs.GetExperiment,
                               run_pb2.GetExperimentRequest(experiment_id=experiment_id))).experiment
    except grpc.aio.AioRpcError as error:
        if _missing(error) or error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise not_found(f"No Experiment with id={experiment_id[:80]} exists") from None
        raise


async def _project_name(call: Call, project_id: str) -> str:
    found = await call.rpc(call.backends.runs.GetProject, run_pb2.GetProjectRequest(project_id=project_id))
    return found.project.name


async def _as_json(call: Call, e: run_pb2.Experiment) -> dict[str, Any]:
    return convert.experiment_json(e, await _project_name(call, e.project_id))


async def create(call: Call) -> dict[str, Any]:
    name = call.require("name", str)
    call.get("artifact_location", str)  # checked, then ignored: trackd chooses where artifacts live
    project, experiment = convert.split_name(name)
    tags = {t["key"]: t["value"] for t in _tags(call)}
    try:
        await call.rpc(call.backends.runs.GetExperiment,
                       run_pb2.GetExperimentRequest(project_name=project, name=experiment))
        raise MlflowError(RESOURCE_ALREADY_EXISTS, f"Experiment '{name}' already exists.")
    except grpc.aio.AioRpcError as error:
        if not _missing(error):
            raise
    project_id = await _project_id(call, project, create=True)
    created = await call.rpc(call.backends.runs.CreateExperiment, run_pb2.CreateExperimentRequest(
        project_id=project_id, name=experiment, tags=tags))
    return {"experiment_id": created.experiment.id}


def _tags(call: Call) -> list[dict[str, str]]:
    found = convert.items("tags", call.get("tags", list))
    for t in found:
        key = convert.check_key("tag", t.get("key"))
        t["value"] = convert.check_value("tag", key, t.get("value", ""), convert.TAG_VALUE_MAX)
    return found


async def get(call: Call) -> dict[str, Any]:
    return {"experiment": await _as_json(call, await get_experiment(call, call.require("experiment_id", str)))}


async def get_by_name(call: Call) -> dict[str, Any]:
    name = call.require("experiment_name", str)
    if name == convert.DEFAULT_EXPERIMENT_NAME:
        return {"experiment": await _as_json(call, await default_experiment(call))}
    project, experiment = convert.split_name(name)
    try:
        found = await call.rpc(call.backends.runs.GetExperiment,
                               run_pb2.GetExperimentRequest(project_name=project, name=experiment))
    except grpc.aio.AioRpcError as error:
        if _missing(error) or error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise not_found(f"Could not find experiment with name '{name}'") from None
        raise
    return {"experiment": convert.experiment_json(found.experiment, project)}


async def update(call: Call) -> dict[str, Any]:
    found = await get_experiment(call, call.require("experiment_id", str))
    new_name = call.require("new_name", str)  # required, as MLflow's server has it
    if new_name:
        project, name = convert.split_name(new_name)
        if project != await _project_name(call, found.project_id):
            raise invalid(f"Cannot rename experiment to '{new_name}': trackd keeps an experiment in its project "
                          "(only the part after 'project/' may change)")
        await call.rpc(call.backends.runs.UpdateExperiment,
                       run_pb2.UpdateExperimentRequest(experiment_id=found.id, name=name))
    return {}


async def delete(call: Call) -> dict[str, Any]:
    found = await get_experiment(call, call.require("experiment_id", str))
    await call.rpc(call.backends.runs.ArchiveExperiment, run_pb2.ArchiveExperimentRequest(experiment_id=found.id))
    return {}


async def restore(call: Call) -> dict[str, Any]:
    found = await get_experiment(call, call.require("experiment_id", str))
    await call.rpc(call.backends.runs.UnarchiveExperiment, run_pb2.UnarchiveExperimentRequest(experiment_id=found.id))
    return {}


async def set_tag(call: Call) -> dict[str, Any]:
    found = await get_experiment(call, call.require("experiment_id", str))
    key = convert.check_key("tag", call.require("key", str))
    value = convert.check_value("tag", key, call.get("value", str, ""), convert.TAG_VALUE_MAX)
    await call.rpc(call.backends.runs.UpdateExperiment,
                   run_pb2.UpdateExperimentRequest(experiment_id=found.id, tags={key: value}))
    return {}


async def delete_tag(call: Call) -> dict[str, Any]:
    found = await get_experiment(call, call.require("experiment_id", str))
    key = call.require("key", str)
    if key not in found.tags:
        raise not_found(f"No tag with name: {key[:100]} in experiment with id {found.id}")
    await call.rpc(call.backends.runs.UpdateExperiment,
                   run_pb2.UpdateExperimentRequest(experiment_id=found.id, delete_tag_keys=[key]))
    return {}


async def search(call: Call) -> dict[str, Any]:
    limit = call.get("max_results", int, SEARCH_DEFAULT) or SEARCH_DEFAULT
    if not 0 < limit <= SEARCH_MAX:
        raise invalid(f"Invalid value {limit} for parameter 'max_results' supplied: it must be at most {SEARCH_MAX}")
    view = call.get("view_type", str, "ACTIVE_ONLY") or "ACTIVE_ONLY"
    if view not in convert.VIEW_TYPES:
        raise invalid(f"Invalid value {view[:40]!r} for parameter 'view_type' supplied")
    predicates = parse_filter(call.get("filter", str, "") or "")
    orders = [parse_order(o) for o in call.get("order_by", list, []) or []]
    token = call.get("page_token", str, "") or ""
    try:
        start = (decode_token(token, arity=1, kinds=(int,)) or [0])[0]
    except Exception:  # noqa: BLE001 - any malformed token is the caller's
        raise invalid("Invalid page token") from None
    await _ensure_default(call)
    projects = await _project_names(call)
    everything = await _all_experiments(call, include_archived=view != "ACTIVE_ONLY")
    shown = [convert.experiment_json(e, projects.get(e.project_id, "")) for e in everything
             if view != "DELETED_ONLY" or e.archived]
    shown = [e for e in shown if all(p(e) for p in predicates)]
    for field, descending in reversed(orders or [("creation_time", True)]):
        shown.sort(key=partial(_sort_key, field), reverse=descending)
    page = shown[start:start + limit]
    return {"experiments": page, **({"next_page_token": encode_token([start + limit])}
                                    if start + limit < len(shown) else {})}


async def _ensure_default(call: Call) -> None:
    """MLflow's server always has its Default experiment, so a search always finds it; trackd
    creates default/Default on first use (a caller not allowed to is shown what exists)."""
    try:
        await default_experiment(call)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise


def _sort_key(field: str, experiment: dict[str, Any]) -> tuple[bool, str | int]:
    value = experiment.get(field)
    return (value is None, value if isinstance(value, (str, int)) else "")


async def _project_names(call: Call) -> dict[str, str]:
    names, token = {}, ""
    while True:
        page = await call.rpc(call.backends.runs.ListProjects,
                              run_pb2.ListProjectsRequest(page_size=1000, page_token=token))
        names.update({p.id: p.name for p in page.projects})
        token = page.next_page_token
        if not token:
            return names


async def _all_experiments(call: Call, *, include_archived: bool) -> list[run_pb2.Experiment]:
    found: list[run_pb2.Experiment] = []
    token = ""
    while len(found) < MAX_EXPERIMENTS:
        page = await call.rpc(call.backends.runs.ListExperiments, run_pb2.ListExperimentsRequest(
            include_archived=include_archived, page_size=1000, page_token=token))
        found += page.experiments
        token = page.next_page_token
        if not token:
            break
    return found


# -- search-experiments' filter and order_by: MLflow's small grammar, evaluated here ---------------

_CLAUSE = re.compile(
    r"""\s*(?P<field>(?:attributes?\.)?(?:name|creation_time|last_update_time)
                    |tags?\.(?:`[^`]+`|"[^"]+"|[\w.\-/]+))
        \s*(?P<op>!=|<=|>=|=|<|>|\bNOT\s+ILIKE\b|\bNOT\s+LIKE\b|\bILIKE\b|\bLIKE\b)
        \s*(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?\d+)\s*""",
    re.IGNORECASE | re.VERBOSE)


def _like(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def parse_filter(text: str) -> list[Any]:
    """MLflow's experiment filter (clauses joined by AND over name, creation_time,
    last_update_time and tags.<key>) as predicates over an experiment's MLflow JSON."""
    predicates = []
    parts = re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []
    for part in parts:
        match = _CLAUSE.fullmatch(part)
        if not match:
            raise invalid(f"Invalid filter '{text[:200]}': cannot parse '{part[:100]}'")
        field = re.sub(r"^attributes?\.", "", match["field"], flags=re.IGNORECASE)
        op = " ".join(match["op"].upper().split())
        raw = match["value"]
        value: Any = raw[1:-1].replace("\\'", "'").replace('\\"', '"') if raw[0] in "'\"" else int(raw)
        predicates.append(_predicate(field, op, value, text))
    return predicates


def _predicate(field: str, op: str, value: Any, text: str) -> Any:
    is_time = field.lower() in ("creation_time", "last_update_time")
    if is_time != isinstance(value, int) or (not is_time and op in ("<", "<=", ">", ">=")) or (
            is_time and "LIKE" in op):
        raise invalid(f"Invalid filter '{text[:200]}': '{op}' with {value!r} does not apply to {field}")
    tag = field.split(".", 1)[1].strip("`\"") if "." in field else None

    def read(e: dict[str, Any]) -> Any:
        if tag is not None:
            return next((t["value"] for t in e["tags"] if t["key"] == tag), None)
        return e[field.lower()]

    compare = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
               "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    if "LIKE" in op:
        pattern = _like(value, ignore_case="ILIKE" in op)
        negate = op.startswith("NOT")
        return lambda e: (v := read(e)) is not None and bool(pattern.fullmatch(v)) != negate
    return lambda e: (v := read(e)) is not None and compare[op](v, value)


def parse_order(text: Any) -> tuple[str, bool]:
    if not isinstance(text, str):
        raise invalid("Invalid value for parameter 'order_by' supplied: expected strings")
    match = re.fullmatch(r"\s*(?:attributes?\.)?(name|creation_time|last_update_time|experiment_id)"
                         r"(?:\s+(ASC|DESC))?\s*", text, re.IGNORECASE)
    if not match:
        raise invalid(f"Invalid order_by clause '{text[:100]}': order by name, creation_time, last_update_time "
                      "or experiment_id, ASC or DESC")
    return match[1].lower(), (match[2] or "ASC").upper() == "DESC"


ENDPOINTS = [
    ("/experiments/create", ["POST"], create),
    ("/experiments/get", ["GET"], get),
    ("/experiments/get-by-name", ["GET"], get_by_name),
    ("/experiments/search", ["GET", "POST"], search),
    ("/experiments/update", ["POST"], update),
    ("/experiments/delete", ["POST"], delete),
    ("/experiments/restore", ["POST"], restore),
    ("/experiments/set-experiment-tag", ["POST"], set_tag),
    ("/experiments/delete-experiment-tag", ["POST"], delete_tag),
]
