"""MLflow 3's logged models (`/logged-models…`, and `runs/outputs` which links them to a run),
so `mlflow.<flavor>.log_model` and `autolog()` work against trackd.

Where a logged model lives: trackd keeps every artifact in a run, so a logged model belongs to its
source run. Its id is `m-<run_id>-<12 hex>` (it names its run: no index to look it up in), its
files are the run's artifacts under `models/<model_id>/` (artifact location
`mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/models/<model_id>`), and its metadata
(name, type, status, params, tags, times) is JSON beside them: each change adds a revision under
`models/<model_id>.meta/` (artifacts are immutable, and a write token may add but not delete);
the newest is the model's. A logged model needs a source run: `log_model` outside a run is
INVALID_PARAMETER_VALUE. Search scans the newest runs of the asked experiments (SEARCH_RUNS)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from trackd_api.artifact.v1 import artifact_pb2
from trackd_api.run.v1 import run_pb2

from . import convert
from .artifacts import Location
from .experiments import get_experiment
from .protocol import Call, MlflowError, invalid, not_found

_MODEL_ID = re.compile(r"^m-([0-9a-f]{32})-[0-9a-f]{12}$")
STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
MAX_PARAMS = 1000
MAX_TAGS = 1000
SEARCH_RUNS = 1000  # search-logged-models looks at most at this many (newest) runs
_EXPERIMENT_ID = re.compile(r"^[0-9a-f]{32}$")
_FILTER = re.compile(r"^\s*(name|source_run_id|model_id)\s*=\s*'([^']*)'\s*$")


def metadata_dir(model_id: str) -> str:
    return f"models/{model_id}.meta/"


def files_path(model_id: str) -> str:
    return f"models/{model_id}"


def run_of(model_id: str) -> str:
    """The source run of a logged model; RESOURCE_DOES_NOT_EXIST for an id trackd never made."""
    found = _MODEL_ID.match(model_id)
    if not found:
        raise not_found(f"Logged model {model_id[:100]!r} not found")
    return found.group(1)


def _pairs(call: Call, name: str, limit: int) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in call.get(name, list, []) or []:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise invalid(f"Invalid value for parameter '{name}': each entry is {{\"key\": …, \"value\": …}}")
        value = item.get("value", "")
        if not isinstance(value, str) or len(item["key"]) > 250 or len(value) > 8000:
            raise invalid(f"Invalid {name[:-1]} {item['key'][:60]!r}: keys are at most 250 characters, "
                          "values strings of at most 8000")
        found[item["key"]] = value
    if len(found) > limit:
        raise invalid(f"{len(found)} {name}; the limit is {limit}")
    return found


async def _run(call: Call, run_id: str) -> run_pb2.Run:
    try:
        return (await call.rpc(call.backends.runs.GetRun, run_pb2.GetRunRequest(run_id=run_id))).run
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise not_found(f"Run with id={run_id[:100]} not found") from None
        raise


async def read(call: Call, model_id: str) -> dict[str, Any]:
    """The stored metadata of a logged model: its newest revision."""
    run_id = run_of(model_id)
    try:
        revisions = await _files(call, run_id, metadata_dir(model_id))
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            revisions = []
        else:
            raise
    if not revisions:
        raise not_found(f"Logged model with ID '{model_id}' not found")
    request = artifact_pb2.DownloadArtifactRequest(run_id=run_id, path=max(revisions))
    body = b"".join([part.chunk async for part in call.backends.artifacts.DownloadArtifact(
        request, metadata=call.metadata, timeout=30.0)])
    stored: dict[str, Any] = json.loads(body)
    return stored


async def _write(call: Call, stored: dict[str, Any]) -> None:
    """A new revision (artifacts are immutable; a write token may add, not delete): named by time,
    so the newest sorts last."""
    model_id = stored["model_id"]
    run_id = run_of(model_id)
    path = f"{metadata_dir(model_id)}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    body = json.dumps(stored, sort_keys=True).encode()

    async def messages() -> AsyncIterator[artifact_pb2.UploadArtifactRequest]:
        yield artifact_pb2.UploadArtifactRequest(header=artifact_pb2.UploadHeader(
            run_id=run_id, path=path, type=artifact_pb2.ARTIFACT_TYPE_TEXT,
            metadata={"mlflow.logged_model": model_id}, expected_size_bytes=len(body)))
        yield artifact_pb2.UploadArtifactRequest(chunk=body)

    await call.backends.artifacts.UploadArtifact(messages(), metadata=call.metadata, timeout=30.0)


def view(stored: dict[str, Any]) -> dict[str, Any]:
    """MLflow's LoggedModel JSON."""
    where = Location(stored["experiment_id"], run_of(stored["model_id"]), files_path(stored["model_id"]))
    info = {key: stored[key] for key in ("model_id", "experiment_id", "name", "creation_timestamp_ms",
                                         "last_updated_timestamp_ms", "status", "model_type", "source_run_id",
                                         "status_message")}
    info["artifact_uri"] = where.uri
    info["tags"] = [{"key": k, "value": v} for k, v in sorted(stored["tags"].items())]
    return {"info": info, "data": {"params": [{"key": k, "value": v} for k, v in sorted(stored["params"].items())],
                                   "metrics": []}}


def _model_id(call: Call) -> str:
    model_id: str = call.request.path_params["model_id"]
    run_of(model_id)
    return model_id


async def create(call: Call) -> dict[str, Any]:
    experiment_id = call.require("experiment_id", str)
    run_id = call.get("source_run_id", str, "") or ""
    if not run_id:
        raise invalid("trackd keeps a logged model's files in its source run: log the model inside a run "
                      "(mlflow.start_run()) or pass source_run_id")
    name = call.get("name", str, "") or f"model-{uuid.uuid4().hex[:8]}"
    if len(name) > 250 or "/" in name:
        raise invalid(f"Invalid model name {name[:60]!r}: at most 250 characters, no '/'")
    model_type = call.get("model_type", str, "") or ""
    params, tags = _pairs(call, "params", MAX_PARAMS), _pairs(call, "tags", MAX_TAGS)
    await get_experiment(call, experiment_id)  # RESOURCE_DOES_NOT_EXIST for an unknown one
    run = await _run(call, run_id)
    experiment_id = run.experiment_id  # MLflow's "0" (the default experiment) is the run's trackd id
    now = int(time.time() * 1000)
    stored = {"model_id": f"m-{run.id}-{uuid.uuid4().hex[:12]}", "experiment_id": experiment_id, "name": name,
              "model_type": model_type, "source_run_id": run.id, "status": "LOGGED_MODEL_PENDING",
              "status_message": "", "creation_timestamp_ms": now, "last_updated_timestamp_ms": now,
              "params": params, "tags": tags}
    await _write(call, stored)
    return {"model": view(stored)}


async def get(call: Call) -> dict[str, Any]:
    return {"model": view(await read(call, _model_id(call)))}


async def _update(call: Call, change: dict[str, Any], *, drop_tag: str = "") -> dict[str, Any]:
    stored = await read(call, _model_id(call))
    for key, value in change.items():
        stored[key] = {**stored[key], **value} if isinstance(value, dict) else value
    if drop_tag:
        if drop_tag not in stored["tags"]:
            raise not_found(f"No tag with key {drop_tag!r} on logged model {stored['model_id']}")
        del stored["tags"][drop_tag]
    if len(stored["tags"]) > MAX_TAGS or len(stored["params"]) > MAX_PARAMS:
        raise invalid(f"A logged model holds at most {MAX_TAGS} tags and {MAX_PARAMS} params")
    stored["last_updated_timestamp_ms"] = int(time.time() * 1000)
    await _write(call, stored)
    return {"model": view(stored)}


async def finalize(call: Call) -> dict[str, Any]:
    status = call.require("status", str)
    if status not in STATUSES:
        raise invalid(f"Invalid value {status[:60]!r} for parameter 'status': one of {', '.join(STATUSES)}")
    return await _update(call, {"status": status})


async def set_tags(call: Call) -> dict[str, Any]:
    await _update(call, {"tags": _pairs(call, "tags", MAX_TAGS)})
    return {}


async def delete_tag(call: Call) -> dict[str, Any]:
    await _update(call, {}, drop_tag=call.request.path_params["tag_key"])
    return {}


async def log_params(call: Call) -> dict[str, Any]:
    await _update(call, {"params": _pairs(call, "params", MAX_PARAMS)})
    return {}


async def delete(call: Call) -> dict[str, Any]:
    """The model's files, then its metadata. A registered model version keeps its files: deleting
    its logged model is INVALID_STATE, and nothing is deleted."""
    model_id = _model_id(call)
    await read(call, model_id)
    run_id = run_of(model_id)
    paths = await _files(call, run_id, files_path(model_id) + "/") + await _files(call, run_id, metadata_dir(model_id))
    for path in paths:
        await call.rpc(call.backends.artifacts.DeleteArtifact, artifact_pb2.DeleteArtifactRequest(run_id=run_id,
                                                                                                  path=path))
    return {}


async def _files(call: Call, run_id: str, prefix: str, *, recursive: bool = True) -> list[str]:
    found: list[str] = []
    token = ""
    while True:
        page = await call.rpc(call.backends.artifacts.ListArtifacts, artifact_pb2.ListArtifactsRequest(
            run_id=run_id, prefix=prefix, recursive=recursive, page_size=1000, page_token=token))
        found += [a.path for a in page.artifacts]
        token = page.next_page_token
        if not token:
            return found


async def search(call: Call) -> dict[str, Any]:
    """Logged models of the experiments' newest runs, newest first; `filter` may be empty or one of
    `name = '…'`, `source_run_id = '…'`, `model_id = '…'`."""
    experiment_ids = call.get("experiment_ids", list, []) or []
    if not experiment_ids or not all(isinstance(e, str) and e for e in experiment_ids):
        raise invalid("Missing value for required parameter 'experiment_ids'.")
    experiment_ids = [e for e in experiment_ids if _EXPERIMENT_ID.match(e)]  # a logged model's is its run's
    text = call.get("filter", str, "") or ""
    wanted = _FILTER.match(text) if text.strip() else None
    if text.strip() and wanted is None:
        raise invalid(f"Unsupported filter {text[:200]!r}: trackd filters logged models by name = '…', "
                      "source_run_id = '…' or model_id = '…'")
    limit = call.get("max_results", int, 100) or 100
    offset_text = call.get("page_token", str, "") or "0"
    if not 1 <= limit <= 1000 or not offset_text.isdigit():
        raise invalid("max_results is between 1 and 1000; page_token is the one a search returned")
    found = [view(m) for m in await _scan(call, experiment_ids)] if experiment_ids else []
    if wanted is not None:
        field, value = wanted.groups()
        found = [m for m in found if m["info"][field] == value]
    found.sort(key=lambda m: (-m["info"]["creation_timestamp_ms"], m["info"]["model_id"]))
    offset = int(offset_text)
    page = found[offset:offset + limit]
    more = offset + limit < len(found)
    return {"models": page, **({"next_page_token": str(offset + limit)} if more else {})}


async def _scan(call: Call, experiment_ids: list[str]) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = []
    token, seen = "", 0
    while seen < SEARCH_RUNS:
        try:
            page = await call.rpc(call.backends.runs.ListRuns, run_pb2.ListRunsRequest(
                experiment_ids=experiment_ids, page_size=200, page_token=token))
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise not_found(f"No experiment among {experiment_ids[:10]}") from None
            raise
        for run in page.runs:
            for path in await _files(call, run.id, "models/", recursive=False):
                model_id = path[len("models/"):-len(".meta/")]
                if path.endswith(".meta/") and _MODEL_ID.match(model_id):
                    try:
                        models.append(await read(call, model_id))
                    except MlflowError:
                        continue  # deleted meanwhile
        seen += len(page.runs)
        token = page.next_page_token
        if not token:
            break
    return models


async def log_outputs(call: Call) -> dict[str, Any]:
    """runs/outputs: the run's logged models (each must exist and be the run's: a model's source
    run is its run in trackd), kept as run tags `mlflow.trackd.output.<model id>` = step, which
    runs/get shows as `outputs.model_outputs`."""
    run_id = call.require("run_id", str)
    run = await _run(call, run_id)
    outputs: dict[str, str] = {}
    for item in call.get("models", list, []) or []:
        model_id = item.get("model_id") if isinstance(item, dict) else None
        if not isinstance(model_id, str) or not model_id:
            raise invalid("Invalid value for parameter 'models': each entry has a model_id")
        step = convert.integer("step", item.get("step"), default=0)
        if run_of(model_id) not in (run_id, run.id):
            raise invalid(f"Logged model {model_id} was logged in run {run_of(model_id)}, not {run_id}")
        await read(call, model_id)
        outputs[convert.OUTPUT_TAG_PREFIX + model_id] = str(step)
    if outputs:
        await call.rpc(call.backends.runs.SetTags, run_pb2.SetTagsRequest(run_id=run.id, tags=outputs))
    return {}


ENDPOINTS = [
    ("/logged-models", ["POST"], create),
    ("/logged-models/search", ["POST"], search),
    ("/logged-models/{model_id}", ["GET"], get),
    ("/logged-models/{model_id}", ["PATCH"], finalize),
    ("/logged-models/{model_id}", ["DELETE"], delete),
    ("/logged-models/{model_id}/tags", ["PATCH"], set_tags),
    ("/logged-models/{model_id}/tags/{tag_key:path}", ["DELETE"], delete_tag),
    ("/logged-models/{model_id}/params", ["POST"], log_params),
    ("/runs/outputs", ["POST"], log_outputs),
]
