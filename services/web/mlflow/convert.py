"""trackd's messages as MLflow's tracking JSON and back, pure (docs/mlflow.md, "Tracking"): names
(`project/experiment`), statuses, lifecycle stages, metric keys with a context, the system tags
MLflow reads (`mlflow.runName`, `mlflow.user`, `mlflow.parentRunId`), datasets kept as run tags,
and the value limits MLflow's server enforces."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import CONTEXT_NUMBERS, CONTEXTS, RunStatus

from .protocol import invalid

DEFAULT_PROJECT = "default"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment: trackd's default/Default
DEFAULT_EXPERIMENT_NAME = "Default"
RUN_NAME_TAG, USER_TAG, PARENT_TAG = "mlflow.runName", "mlflow.user", "mlflow.parentRunId"
OUTPUT_TAG_PREFIX = "mlflow.trackd.output."  # + a logged model's id; value: the step it was logged at
DATASET_TAG_PREFIX = "mlflow.trackd.dataset."  # + the dataset's digest; value: the DatasetInput as JSON

# MLflow's server limits (mlflow/utils/validation.py); tag values are trackd's (5,000, MLflow 8,000)
MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS, MAX_BATCH_ITEMS = 1000, 100, 100, 1000
KEY_MAX, PARAM_VALUE_MAX, TAG_VALUE_MAX = 250, 6000, 5000
MAX_DATASETS = 1000

MLFLOW_STATUS = {RunStatus.RUNNING: "RUNNING", RunStatus.FINISHED: "FINISHED", RunStatus.FAILED: "FAILED",
                 RunStatus.KILLED: "KILLED", RunStatus.CRASHED: "FAILED"}
END_STATUSES = {"FINISHED": RunStatus.FINISHED, "FAILED": RunStatus.FAILED, "KILLED": RunStatus.KILLED}
VIEW_TYPES = {"ACTIVE_ONLY": run_pb2.VIEW_TYPE_ACTIVE_ONLY, "DELETED_ONLY": run_pb2.VIEW_TYPE_DELETED_ONLY,
              "ALL": run_pb2.VIEW_TYPE_ALL}


def millis(ts: Timestamp) -> int | None:
    return ts.seconds * 1000 + ts.nanos // 1_000_000 if ts.seconds or ts.nanos else None


def from_millis(ms: int) -> Timestamp:
    found = Timestamp()
    try:
        found.FromMilliseconds(ms)
        found.ToDatetime()  # in range?
    except (ValueError, OverflowError):
        raise invalid(f"Timestamp {ms} (milliseconds since the epoch) is out of range") from None
    return found


def split_name(name: str) -> tuple[str, str]:
    """MLflow's experiment name → (trackd project, experiment): `project/experiment`, else the
    `default` project."""
    project, slash, rest = name.partition("/")
    return (project, rest) if slash and project.strip() and rest.strip() else (DEFAULT_PROJECT, name)


def join_name(project: str, name: str) -> str:
    return name if project == DEFAULT_PROJECT else f"{project}/{name}"


def experiment_json(e: run_pb2.Experiment, project: str) -> dict[str, Any]:
    created = millis(e.create_time)
    return {
        "experiment_id": e.id, "name": join_name(project, e.name),
        "artifact_location": f"mlflow-artifacts:/{e.id}",
        "lifecycle_stage": "deleted" if e.archived else "active",
        "creation_time": created, "last_update_time": created,
        "tags": pairs({**e.tags, **({"mlflow.note.content": e.description} if e.description else {})}),
    }


def pairs(items: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(items.items())]


def number(value: float) -> float | str:
    """A double as MLflow's proto JSON writes it: NaN and the infinities as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric_name(key: str, context: int) -> str:
    """A trackd series as one MLflow metric key: `loss`, or `loss@eval` for a context."""
    label = CONTEXTS.get(context, "")
    return f"{key}@{label}" if label else key


def parse_metric_name(name: str) -> tuple[str, int]:
    key, at, label = name.rpartition("@")
    if at and key and label in CONTEXT_NUMBERS and label:
        return key, CONTEXT_NUMBERS[label]
    return name, 0


def latest_json(m: query_pb2.LatestMetric) -> dict[str, Any]:
    return {"key": metric_name(m.key, m.context), "value": number(m.value), "timestamp": m.timestamp_ms,
            "step": m.step}


def run_tags(run: run_pb2.Run) -> dict[str, str]:
    """The tags MLflow shows: the run's own (datasets left out) and the system tags it expects."""
    tags = {k: v for k, v in run.tags.items() if not k.startswith((DATASET_TAG_PREFIX, OUTPUT_TAG_PREFIX))}
    tags[RUN_NAME_TAG] = run.name
    if run.user:
        tags.setdefault(USER_TAG, run.user)
    if run.parent_run_id:
        tags.setdefault(PARENT_TAG, run.parent_run_id)
    return tags


def run_info(run: run_pb2.Run) -> dict[str, Any]:
    return {
        "run_id": run.id, "run_uuid": run.id, "run_name": run.name, "experiment_id": run.experiment_id,
        "user_id": run.user, "status": MLFLOW_STATUS.get(RunStatus(run.status), "FAILED")
        if run.status else "RUNNING",
        "start_time": millis(run.start_time), "end_time": millis(run.end_time),
        "artifact_uri": f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts",
        "lifecycle_stage": "deleted" if run.deleted else "active",
    }


def run_datasets(run: run_pb2.Run) -> list[dict[str, Any]]:
    """The run's DatasetInputs (`{"dataset": {...}, "tags": [...]}`), kept as tags by log-inputs."""
    return [json.loads(v) for k, v in sorted(run.tags.items()) if k.startswith(DATASET_TAG_PREFIX)]


def run_json(run: run_pb2.Run, metrics: Iterable[query_pb2.LatestMetric]) -> dict[str, Any]:
    datasets = run_datasets(run)
    return {"info": run_info(run),
            "data": {"metrics": [latest_json(m) for m in metrics], "params": pairs(run.params),
                     "tags": pairs(run_tags(run))},
            "inputs": {"dataset_inputs": datasets},
            "outputs": {"model_outputs": [{"model_id": k[len(OUTPUT_TAG_PREFIX):], "step": int(v)}
                                          for k, v in sorted(run.tags.items()) if k.startswith(OUTPUT_TAG_PREFIX)]}}


# MLflow's search syntax beyond trackd's grammar: bare attribute names (`status = 'FAILED'`,
# `start_time DESC`), `parameter(s).` and `run.` prefixes, and the `created` alias of start_time.
_LITERAL = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`""")
_PREFIX = re.compile(r"(?<![\w.`/:-])(parameters?|run)\.")
_BARE = re.compile(r"(?<![\w.`/:-])(run_id|run_name|status|user_id|start_time|end_time|created|Created)(?![\w.`/:-])")
_CREATED = re.compile(r"(?<![\w.`/:-])(attributes?|attr)\.(created|Created)(?![\w.`/:-])")


def search_syntax(text: str) -> str:
    """An MLflow filter or order_by clause in trackd's grammar (docs/search.md), literals untouched."""
    def rewrite(code: str) -> str:
        code = _PREFIX.sub(lambda m: "params." if m[1].startswith("param") else "attributes.", code)
        code = _CREATED.sub("attributes.start_time", code)
        return _BARE.sub(lambda m: "attributes." + ("start_time" if m[1].lower() == "created" else m[1]), code)

    parts, last = [], 0
    for literal in _LITERAL.finditer(text):
        parts += [rewrite(text[last:literal.start()]), literal[0]]
        last = literal.end()
    return "".join([*parts, rewrite(text[last:])])


def dataset_tag(entry: Any) -> tuple[str, str]:
    """A log-inputs DatasetInput (`{"dataset": {name, digest, source_type, source, schema?,
    profile?}, "tags": [...]}`) as one run tag; schema and profile are dropped when the whole does
    not fit a tag value."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dataset"), dict):
        raise invalid("Each entry of 'datasets' must be an object with a 'dataset' object")
    dataset = entry["dataset"]
    for field in ("name", "digest", "source_type", "source"):
        if not isinstance(dataset.get(field), str) or not dataset[field]:
            raise invalid(f"Missing value for required parameter 'datasets.dataset.{field}'")
    tags = entry.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str)
                                             and isinstance(t.get("value", ""), str) for t in tags):
        raise invalid("'datasets.tags' must be a list of {key, value} strings")
    kept = {k: v for k, v in dataset.items() if k in ("name", "digest", "source_type", "source", "schema", "profile")}
    value = json.dumps({"dataset": kept, "tags": tags}, separators=(",", ":"), sort_keys=True)
    if len(value) > TAG_VALUE_MAX:
        kept = {k: v for k, v in kept.items() if k not in ("schema", "profile")}
        value = json.dumps({"dataset": kept, "tags": tags}, separators=(",", ":"), sort_keys=True)
    if len(value) > TAG_VALUE_MAX:
        raise invalid(f"Dataset {dataset['name'][:80]!r}: its name, source and tags are {len(value)} characters "
                      f"together; the limit is {TAG_VALUE_MAX}")
    key = DATASET_TAG_PREFIX + f"{dataset['name']}.{dataset['digest']}"
    if len(key) > KEY_MAX:
        raise invalid(f"Dataset name and digest are too long ({len(key)} characters with the prefix; limit {KEY_MAX})")
    return key, value


def check_key(kind: str, key: Any) -> str:
    """A metric, param or tag key as MLflow's server accepts it."""
    if not isinstance(key, str) or not key.strip():
        raise invalid(f"Missing value for required parameter '{kind}.key'" if not key else
                      f"Invalid value {json.dumps(key)[:100]} for parameter '{kind}.key' supplied")
    if len(key) > KEY_MAX:
        raise invalid(f"{kind.capitalize()} key '{key[:40]}…' had length {len(key)}, which exceeded length limit "
                      f"of {KEY_MAX}")
    if "\x00" in key or "/../" in f"/{key}/" or key.startswith("/"):
        raise invalid(f"Invalid {kind} name: '{key[:100]}'")
    return key


def check_value(kind: str, key: str, value: Any, limit: int) -> str:
    """A param or tag value: a string (MLflow's server refuses a number as well), at most `limit` long."""
    if not isinstance(value, str):
        raise invalid(f"Invalid value {json.dumps(value)[:100]} for parameter 'value' supplied: the value of "
                      f"{kind} '{key[:100]}' must be a string")
    if len(value) > limit:
        raise invalid(f"{kind.capitalize()} '{key}' had length {len(value)}, which exceeded length limit of {limit}")
    return value


def metric_value(key: str, value: Any) -> float:
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"Got invalid value {json.dumps(value)[:100]} for metric '{key}' (timestamp=…). "
                      "Please specify value as a valid double (64-bit floating point)")
    return float(value)


def integer(field: str, value: Any, *, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        if value is None:
            raise invalid(f"Missing value for required parameter '{field}'")
        raise invalid(f"Invalid value {json.dumps(value)[:100]} for parameter '{field}' supplied: expected int64")
    return value


def items(field: str, value: Any) -> list[dict[str, Any]]:
    """A list of objects (MLflow's metrics / params / tags of a batch)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise invalid(f"Invalid value {json.dumps(value)[:100]} for parameter '{field}' supplied: "
                      "expected a list of objects")
    return value
