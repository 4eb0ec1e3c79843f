"""MLflow's model registry (`/registered-models/…`, `/model-versions/…`) on trackd's
ModelRegistryService, so `mlflow.register_model`, aliases and `models:/<name>@<alias>` or
`models:/<name>/<version>` work.

A model version is a trackd version of the run's artifact directory the source names: a logged
model (`models:/m-…`, its `models/<model_id>` directory), an `mlflow-artifacts:/…/<run_id>/artifacts/
<path>` location, or `runs:/<run_id>/<path>`. MLflow's version tags are the trackd version's
metadata; the source, logged model id, experiment and description ride along under `trackd.mlflow.*`
keys, which are not shown as tags. Every version is READY (trackd registers synchronously) and in
stage "None"; MLflow's stages are deprecated and not kept."""

from __future__ import annotations

import re
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from trackd_api.artifact.v1 import registry_pb2
from trackd_api.run.v1 import run_pb2

from . import models
from .artifacts import Location, parse_uri
from .protocol import Call, invalid, not_found

META = "trackd.mlflow."  # metadata keys MLflow does not see as tags
SOURCE, MODEL_ID, EXPERIMENT, DESCRIPTION = (META + k for k in ("source", "model_id", "experiment_id", "description"))
MAX_VERSIONS_SCANNED = 10_000
_RUNS_URI = re.compile(r"^runs:/([0-9a-f]{32})/(.+)$")
_CLAUSE = re.compile(r"^\s*(?:tags?\.(?:`(?P<tag>[^`]+)`|(?P<tag2>[\w.-]+))|(?P<field>\w+))\s*"
                     r"(?P<op>=|!=|(?i:LIKE|ILIKE))\s*'(?P<value>[^']*)'\s*$")


def _ms(ts: Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def version_json(v: registry_pb2.ModelVersion) -> dict[str, Any]:
    where = Location(v.metadata.get(EXPERIMENT, "0"), v.run_id, v.path)
    return {
        "name": v.name, "version": str(v.version), "creation_timestamp": _ms(v.create_time),
        "last_updated_timestamp": _ms(v.create_time), "current_stage": "None",
        "description": v.metadata.get(DESCRIPTION, ""), "source": v.metadata.get(SOURCE, where.uri),
        "run_id": v.run_id, "status": "READY",
        "tags": [{"key": k, "value": val} for k, val in sorted(v.metadata.items()) if not k.startswith(META)],
        "aliases": list(v.aliases), **({"model_id": v.metadata[MODEL_ID]} if MODEL_ID in v.metadata else {}),
    }


def model_json(m: registry_pb2.RegisteredModel, latest: list[registry_pb2.ModelVersion]) -> dict[str, Any]:
    return {
        "name": m.name, "creation_timestamp": _ms(m.create_time), "last_updated_timestamp": _ms(m.create_time),
        "description": m.description, "tags": [{"key": k, "value": v} for k, v in sorted(m.tags.items())],
        "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(m.aliases.items())],
        "latest_versions": [version_json(v) for v in latest],
    }


def _tags(call: Call) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in call.get("tags", list, []) or []:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"] \
                or not isinstance(item.get("value", ""), str):
            raise invalid("Invalid value for parameter 'tags': each entry is {\"key\": …, \"value\": …}")
        if item["key"].startswith(META):
            raise invalid(f"Tag keys starting with {META!r} are trackd's")
        found[item["key"]] = item.get("value", "")
    return found


def _version_number(call: Call) -> int:
    version = call.require("version", int)
    if version <= 0:
        raise invalid(f"Invalid value {version} for parameter 'version': versions start at 1")
    return version


async def _model(call: Call, name: str) -> registry_pb2.RegisteredModel:
    return (await call.rpc(call.backends.registry.GetRegisteredModel,
                           registry_pb2.GetRegisteredModelRequest(name=name))).model


async def _latest(call: Call, m: registry_pb2.RegisteredModel) -> list[registry_pb2.ModelVersion]:
    if not m.latest_version:
        return []
    return [(await call.rpc(call.backends.registry.GetModelVersion, registry_pb2.GetModelVersionRequest(
        name=m.name, version=m.latest_version))).version]


async def create_model(call: Call) -> dict[str, Any]:
    name = call.require("name", str)
    m = (await call.rpc(call.backends.registry.CreateRegisteredModel, registry_pb2.CreateRegisteredModelRequest(
        name=name, description=call.get("description", str, "") or "", tags=_tags(call)))).model
    return {"registered_model": model_json(m, [])}


async def get_model(call: Call) -> dict[str, Any]:
    m = await _model(call, call.require("name", str))
    return {"registered_model": model_json(m, await _latest(call, m))}


def parse_filter(text: str, fields: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """MLflow's registry filter as (field, operator, value) clauses joined by AND: `field` one of
    `fields` or `tags.<key>` (also `tag.` and backquoted keys), operators =, != and, for names,
    LIKE / ILIKE; values single-quoted."""
    clauses = []
    for clause in re.split(r"\s+AND\s+", text.strip(), flags=re.I) if text.strip() else []:
        found = _CLAUSE.match(clause)
        tag = found and (found["tag"] or found["tag2"])
        if found is None or (found["field"] not in fields and not tag) \
                or (found["op"].upper() in ("LIKE", "ILIKE") and found["field"] != "name"):
            raise invalid(f"Unsupported filter {text[:200]!r}: trackd's registry filters are "
                          f"{', '.join(fields)} or tags.<key> compared with = or != (names also with LIKE or "
                          "ILIKE) to a quoted value, joined by AND")
        clauses.append((f"tags.{tag}" if tag else found["field"], found["op"].upper(),
                        found["value"]))
    return clauses


def _like(pattern: str, value: str, *, ignore_case: bool) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.I | re.S if ignore_case else re.S) is not None


def matches(clauses: list[tuple[str, str, str]], values: dict[str, str], tags: dict[str, str]) -> bool:
    for field, op, value in clauses:
        actual = tags.get(field[5:]) if field.startswith("tags.") else values.get(field)
        if op == "=" and actual != value or op == "!=" and actual == value:
            return False
        if op in ("LIKE", "ILIKE") and not _like(value, actual or "", ignore_case=op == "ILIKE"):
            return False
    return True


async def search_models(call: Call) -> dict[str, Any]:
    """`filter`: clauses on `name` (=, !=, LIKE, ILIKE) and `tags.<key>` (=, !=) joined by AND. An
    exact name or tag value and a LIKE '%…%' substring are searched by the registry; the other
    clauses filter its pages (which may then be shorter than max_results)."""
    clauses = parse_filter(call.get("filter", str, "") or "", ("name",))
    limit = call.get("max_results", int, 100) or 100
    if not 1 <= limit <= 1000:
        raise invalid("Invalid value for parameter 'max_results': between 1 and 1000")
    contains = next((v for f, op, v in clauses if f == "name" and op == "="), "")
    for field, op, value in clauses:
        inner = value.strip("%")
        if field == "name" and op == "LIKE" and "%" not in inner and "_" not in inner and not contains:
            contains = inner
    tags = {f[5:]: v for f, op, v in clauses if f.startswith("tags.") and op == "="}
    response = await call.rpc(call.backends.registry.ListRegisteredModels, registry_pb2.ListRegisteredModelsRequest(
        name_contains=contains, tags=tags, page_size=limit, page_token=call.get("page_token", str, "") or ""))
    found = [m for m in response.models if matches(clauses, {"name": m.name}, dict(m.tags))]
    return {"registered_models": [model_json(m, await _latest(call, m)) for m in found],
            **({"next_page_token": response.next_page_token} if response.next_page_token else {})}


async def _source(call: Call, source: str, run_id: str, model_id: str) -> tuple[str, str, str]:
    """(run id, artifact path, logged model id) of a version's source."""
    if source.startswith("models:/") and not model_id:
        model_id = source[len("models:/"):].strip("/")
        if "/" in model_id or "@" in model_id:  # a registered version (copy_model_version): its files
            v = await _registered_source(call, model_id)
            return v.run_id, v.path, v.metadata.get(MODEL_ID, "")
    if model_id:
        await models.read(call, model_id)  # RESOURCE_DOES_NOT_EXIST for an unknown id
        return models.run_of(model_id), models.files_path(model_id), model_id
    runs = _RUNS_URI.match(source)
    if runs:
        return runs.group(1), runs.group(2).strip("/"), ""
    where = parse_uri(source)
    if run_id and run_id != where.run_id:
        raise invalid(f"Source {source[:200]!r} is not in run {run_id[:40]}")
    if not where.path:
        raise invalid("Register a directory of the run's artifacts (the model's), not the whole run")
    return where.run_id, where.path, ""


async def _registered_source(call: Call, reference: str) -> registry_pb2.ModelVersion:
    """The version `<name>/<version>` or `<name>@<alias>` names."""
    name, alias = reference.split("@", 1) if "@" in reference else (reference, "")
    number = 0
    if not alias:
        name, _, text = reference.rpartition("/")
        if not text.isdigit() or "/" in name:
            raise invalid(f"Source 'models:/{reference[:200]}' is neither models:/<name>/<version>, "
                          "models:/<name>@<alias> nor models:/<model_id>")
        number = int(text)
    return await _version(call, name, number, alias)


async def create_version(call: Call) -> dict[str, Any]:
    name = call.require("name", str)
    source = call.require("source", str)
    run_id, path, model_id = await _source(call, source, call.get("run_id", str, "") or "",
                                           call.get("model_id", str, "") or "")
    await _model(call, name)  # RESOURCE_DOES_NOT_EXIST, as MLflow: a version needs its registered model
    try:
        run = (await call.rpc(call.backends.runs.GetRun, run_pb2.GetRunRequest(run_id=run_id))).run
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise not_found(f"Run with id={run_id} not found") from None
        raise
    metadata = {**_tags(call), SOURCE: source, EXPERIMENT: run.experiment_id}
    if model_id:
        metadata[MODEL_ID] = model_id
    if description := call.get("description", str, "") or "":
        metadata[DESCRIPTION] = description
    version = (await call.rpc(call.backends.registry.CreateModelVersion, registry_pb2.CreateModelVersionRequest(
        name=name, run_id=run_id, path=path, metadata=metadata))).version
    return {"model_version": version_json(version)}


async def _version(call: Call, name: str, version: int = 0, alias: str = "") -> registry_pb2.ModelVersion:
    return (await call.rpc(call.backends.registry.GetModelVersion, registry_pb2.GetModelVersionRequest(
        name=name, version=version, alias=alias))).version


async def get_version(call: Call) -> dict[str, Any]:
    return {"model_version": version_json(await _version(call, call.require("name", str), _version_number(call)))}


async def download_uri(call: Call) -> dict[str, Any]:
    v = await _version(call, call.require("name", str), _version_number(call))
    return {"artifact_uri": Location(v.metadata.get(EXPERIMENT, "0"), v.run_id, v.path).uri}


async def latest_versions(call: Call) -> dict[str, Any]:
    """Every version is in stage "None": the latest one, unless other stages are asked for."""
    stages = call.get("stages", list, []) or []
    m = await _model(call, call.require("name", str))
    wanted = not stages or any(isinstance(s, str) and s.lower() == "none" for s in stages)
    return {"model_versions": [version_json(v) for v in await _latest(call, m)] if wanted else []}


async def search_versions(call: Call) -> dict[str, Any]:
    """`filter`: clauses on `name`, `run_id`, `source_path` and `tags.<key>` joined by AND. With
    `name = '…'` that model's versions are read; else those of every model the caller sees (at most
    MAX_VERSIONS_SCANNED models)."""
    clauses = parse_filter(call.get("filter", str, "") or "", ("name", "run_id", "source_path"))
    limit = call.get("max_results", int, 10_000) or 10_000
    offset_text = call.get("page_token", str, "") or "0"
    if not 1 <= limit <= 200_000 or not offset_text.isdigit():
        raise invalid("Invalid value for parameter 'max_results' or 'page_token'")
    name = next((v for f, op, v in clauses if f == "name" and op == "="), "")
    names = [name] if name else await _model_names(call)
    versions: list[dict[str, Any]] = []
    for each in names:
        try:
            listed = (await call.rpc(call.backends.registry.ListModelVersions,
                                     registry_pb2.ListModelVersionsRequest(name=each))).versions
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                continue  # MLflow answers an empty list for an unknown name
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION and not name:
                continue  # auth off, a name two projects use: not addressable by name alone, so left out of a scan
            raise
        for v in listed:
            shown = version_json(v)
            values = {"name": v.name, "run_id": v.run_id, "source_path": shown["source"]}
            if matches(clauses, values, {t["key"]: t["value"] for t in shown["tags"]}):
                versions.append(shown)
    versions.sort(key=lambda v: (v["name"], -int(v["version"])))
    offset = int(offset_text)
    more = offset + limit < len(versions)
    return {"model_versions": versions[offset:offset + limit],
            **({"next_page_token": str(offset + limit)} if more else {})}


async def _model_names(call: Call) -> list[str]:
    names: list[str] = []
    token = ""
    while len(names) < MAX_VERSIONS_SCANNED:
        page = await call.rpc(call.backends.registry.ListRegisteredModels,
                              registry_pb2.ListRegisteredModelsRequest(page_size=1000, page_token=token))
        names += [m.name for m in page.models]
        token = page.next_page_token
        if not token:
            break
    return names


async def set_alias(call: Call) -> dict[str, Any]:
    await call.rpc(call.backends.registry.SetModelAlias, registry_pb2.SetModelAliasRequest(
        name=call.require("name", str), alias=call.require("alias", str), version=_version_number(call)))
    return {}


async def delete_alias(call: Call) -> dict[str, Any]:
    await call.rpc(call.backends.registry.DeleteModelAlias, registry_pb2.DeleteModelAliasRequest(
        name=call.require("name", str), alias=call.require("alias", str)))
    return {}


async def get_by_alias(call: Call) -> dict[str, Any]:
    return {"model_version": version_json(await _version(call, call.require("name", str),
                                                         alias=call.require("alias", str)))}


async def update_model(call: Call) -> dict[str, Any]:
    description = call.get("description", str)
    m = (await call.rpc(call.backends.registry.UpdateRegisteredModel, registry_pb2.UpdateRegisteredModelRequest(
        name=call.require("name", str), description=description))).model
    return {"registered_model": model_json(m, await _latest(call, m))}


async def rename_model(call: Call) -> dict[str, Any]:
    m = (await call.rpc(call.backends.registry.RenameRegisteredModel, registry_pb2.RenameRegisteredModelRequest(
        name=call.require("name", str), new_name=call.require("new_name", str)))).model
    return {"registered_model": model_json(m, await _latest(call, m))}


async def delete_model(call: Call) -> dict[str, Any]:
    await call.rpc(call.backends.registry.DeleteRegisteredModel,
                   registry_pb2.DeleteRegisteredModelRequest(name=call.require("name", str)))
    return {}


def _tag(call: Call, *, with_value: bool) -> tuple[str, str]:
    key = call.require("key", str)
    if key.startswith(META):
        raise invalid(f"Tag keys starting with {META!r} are trackd's")
    return key, (call.get("value", str, "") or "") if with_value else ""


async def set_model_tag(call: Call) -> dict[str, Any]:
    key, value = _tag(call, with_value=True)
    await call.rpc(call.backends.registry.UpdateRegisteredModel, registry_pb2.UpdateRegisteredModelRequest(
        name=call.require("name", str), set_tags={key: value}))
    return {}


async def delete_model_tag(call: Call) -> dict[str, Any]:
    key, _ = _tag(call, with_value=False)
    name = call.require("name", str)
    if key not in (await _model(call, name)).tags:
        raise not_found(f"Registered model {name!r} has no tag {key!r}")
    await call.rpc(call.backends.registry.UpdateRegisteredModel, registry_pb2.UpdateRegisteredModelRequest(
        name=name, delete_tag_keys=[key]))
    return {}


async def _update_version(call: Call, set_metadata: dict[str, str], delete_keys: list[str]) -> dict[str, Any]:
    v = (await call.rpc(call.backends.registry.UpdateModelVersion, registry_pb2.UpdateModelVersionRequest(
        name=call.require("name", str), version=_version_number(call), set_metadata=set_metadata,
        delete_metadata_keys=delete_keys))).version
    return {"model_version": version_json(v)}


async def update_version(call: Call) -> dict[str, Any]:
    description = call.get("description", str)
    if description is None:
        return await get_version(call)
    return await _update_version(call, {DESCRIPTION: description} if description else {},
                                 [] if description else [DESCRIPTION])


async def delete_version(call: Call) -> dict[str, Any]:
    await call.rpc(call.backends.registry.DeleteModelVersion, registry_pb2.DeleteModelVersionRequest(
        name=call.require("name", str), version=_version_number(call)))
    return {}


async def set_version_tag(call: Call) -> dict[str, Any]:
    key, value = _tag(call, with_value=True)
    await _update_version(call, {key: value}, [])
    return {}


async def delete_version_tag(call: Call) -> dict[str, Any]:
    key, _ = _tag(call, with_value=False)
    v = await _version(call, call.require("name", str), _version_number(call))
    if key not in v.metadata:
        raise not_found(f"Model version {v.name!r} {v.version} has no tag {key!r}")
    await _update_version(call, {}, [key])
    return {}

ENDPOINTS = [
    ("/registered-models/create", ["POST"], create_model),
    ("/registered-models/get", ["GET"], get_model),
    ("/registered-models/update", ["PATCH"], update_model),
    ("/registered-models/rename", ["POST"], rename_model),
    ("/registered-models/delete", ["DELETE"], delete_model),
    ("/registered-models/set-tag", ["POST"], set_model_tag),
    ("/registered-models/delete-tag", ["DELETE"], delete_model_tag),
    ("/registered-models/search", ["GET"], search_models),
    ("/registered-models/get-latest-versions", ["POST", "GET"], latest_versions),
    ("/registered-models/alias", ["POST"], set_alias),
    ("/registered-models/alias", ["DELETE"], delete_alias),
    ("/registered-models/alias", ["GET"], get_by_alias),
    ("/model-versions/create", ["POST"], create_version),
    ("/model-versions/get", ["GET"], get_version),
    ("/model-versions/update", ["PATCH"], update_version),
    ("/model-versions/delete", ["DELETE"], delete_version),
    ("/model-versions/set-tag", ["POST"], set_version_tag),
    ("/model-versions/delete-tag", ["DELETE"], delete_version_tag),
    ("/model-versions/search", ["GET"], search_versions),
    ("/model-versions/get-download-uri", ["GET"], download_uri),
]
