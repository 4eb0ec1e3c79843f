"""Inputs of runs, for dataset lineage: `run.log_input(uri, digest=…)` records what a run read;
`trackd.runs_with_input(digest)` answers "which runs used this data"; the query service's search
finds runs by them (`inputs.digest = '…'`, `inputs.uri`, `inputs.context`).

A local file or directory given without a digest is hashed (sha256 of its files' paths and
contents); any other uri needs its digest. Limits (the run service's): uri up to 2,048 characters,
digest up to 256, schema up to 64 KiB of JSON, 1,000 inputs per run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from trackd_api.run.v1 import run_data_pb2

from trackd._client import Client
from trackd._logs import stub
from trackd.errors import InvalidArgument


@dataclass(frozen=True)
class RunInput:
    run_id: str
    uri: str
    digest: str
    context: str
    rows: int | None
    schema: Any
    time: datetime | None

    @classmethod
    def from_proto(cls, given: run_data_pb2.RunInput) -> RunInput:
        return cls(given.run_id, given.uri, given.digest, given.context, given.rows if given.rows >= 0 else None,
                   json.loads(given.schema_json) if given.schema_json else None,
                   given.log_time.ToDatetime() if given.HasField("log_time") else None)


def local_digest(path: Path) -> str:
    """sha256 over a file's bytes, or over a directory's files (relative path and bytes, sorted)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return "sha256:" + h.hexdigest()


def _schema(schema: Any) -> str:
    if schema is None:
        return ""
    if hasattr(schema, "dtypes") and hasattr(schema, "columns"):  # a DataFrame: its columns' types
        return json.dumps({str(c): str(t) for c, t in schema.dtypes.items()})
    if isinstance(schema, str):
        json.loads(schema)  # must be JSON already
        return schema
    return json.dumps(dict(schema) if isinstance(schema, Mapping) else schema, default=str)


def log_input(client: Client, run_id: str, uri: str, *, digest: str | None, schema: Any, rows: int | None,
              context: str) -> RunInput:
    uri = str(uri)
    if digest is None:
        local = Path(uri.removeprefix("file://"))
        if not local.exists():
            raise InvalidArgument(f"give the digest of {uri!r}: only a local file or directory is hashed")
        digest = local_digest(local)
    if rows is not None and rows < 0:
        raise InvalidArgument(f"rows is ≥ 0, not {rows}")
    given = run_data_pb2.RunInput(uri=uri, digest=digest, schema_json=_schema(schema),
                                  rows=-1 if rows is None else int(rows), context=context)
    client.call("run", stub(client).LogInputs, run_data_pb2.LogInputsRequest(run_id=run_id, inputs=[given]))
    return RunInput(run_id, uri, digest, context, rows, json.loads(given.schema_json) if given.schema_json else None,
                    None)


def list_inputs(run_id: str, *, client: Client) -> list[RunInput]:
    response = client.call("run", stub(client).ListInputs, run_data_pb2.ListInputsRequest(run_id=run_id))
    return [RunInput.from_proto(i) for i in response.inputs]


def iter_runs_with_input(digest: str, *, uri: str = "", client: Client) -> Iterator[RunInput]:
    """The inputs with this digest (and uri), each with its run, newest first; only runs the
    caller may read."""
    token = ""
    while True:
        response = client.call("run", stub(client).FindRunsByInput, run_data_pb2.FindRunsByInputRequest(
            digest=digest, uri=uri, page_size=1000, page_token=token))
        yield from (RunInput.from_proto(i) for i in response.inputs)
        token = response.next_page_token
        if not token:
            return
