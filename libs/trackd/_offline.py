"""Whole runs without the servers: `TRACKD_MODE=offline`, or `auto` when the run service cannot
be reached at `start_run`. The run is journaled on local disk — its id (a UUID made here) and
start time, params, tags, notes, metrics, artifacts and its end — and `trackd sync`
(trackd._sync) uploads it later under the same id and times.

A journal belongs to the process writing it: that process holds an exclusive `flock` on
`<journal>/lock` while the run is open (the spool's mechanism, `trackd._spool.hold`; the kernel
drops it when the process dies), so `trackd sync` never touches the journal of a live run.

Layout: <spool root>/runs/<run id>/ (the spool root is TRACKD_SPOOL_DIR, ~/.cache/trackd/spool)
    start.json  the StartRunRequest (JSON): client_run_id, start_time, source, environment, …
    ops.jsonl   one record a line, in the order they happened: params, tags, notes, artifact, end
    files/      copies of the logged artifacts (the originals may change or vanish before sync)
    metrics/    the run's metric spool (trackd._spool), bounded by TRACKD_SPOOL_MAX_BYTES
    lock
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict, MessageToJson, Parse
from trackd_api.run.v1 import run_pb2

from trackd import _artifacts
from trackd._capture import Captured
from trackd._client import Client
from trackd._inputs import RunInput
from trackd._metrics import MetricWriter
from trackd._params import flatten
from trackd._run import Run, RunInfo, _status
from trackd._spool import default_root, hold
from trackd.errors import FailedPrecondition, InvalidArgument

RUNS_DIR = "runs"
START, OPS, FILES, METRICS = "start.json", "ops.jsonl", "files", "metrics"


def journal_root(spool_dir: str) -> Path:
    """Where offline runs are journaled: `runs/` in the spool root."""
    return default_root(spool_dir) / RUNS_DIR


def journals(path: Path) -> list[Path]:
    """The journals at `path`: `path` itself when it is one, else those in it or in its `runs/`,
    in the order their runs started (a parent before its children)."""
    if (path / START).exists():
        return [path]
    found = [d for parent in (path, path / RUNS_DIR) if parent.is_dir()
             for d in parent.iterdir() if (d / START).exists()]
    return sorted(found, key=lambda d: os.stat(d / START).st_mtime_ns)


class Journal:
    """One offline run's journal, held by this process until `close()`.

    `start` given: a new journal for that StartRunRequest. Without it: an existing journal
    (`trackd sync`); FileNotFoundError when it is gone, SpoolInUse (from `hold`) when a live
    process holds it."""

    def __init__(self, directory: Path, *, start: run_pb2.StartRunRequest | None = None) -> None:
        self.directory = directory
        if start is not None:
            (directory / FILES).mkdir(parents=True)
        elif not directory.is_dir():
            raise FileNotFoundError(f"{directory} holds no offline run")
        self._fd = hold(directory, "the offline run journal")
        try:
            if start is not None:
                partial = directory / (START + ".part")
                partial.write_text(MessageToJson(start, preserving_proto_field_name=True))
                partial.replace(directory / START)  # whole or absent: sync never reads half a start
            elif not (directory / START).exists():  # synced and removed just before we got the lock
                raise FileNotFoundError(f"{directory} holds no offline run")
            self._ops = open(directory / OPS, "a", encoding="utf-8")  # noqa: SIM115 — closed in close()
        except BaseException:
            self._release()
            raise
        self._files = len(list((directory / FILES).glob("*")))

    def start_request(self) -> run_pb2.StartRunRequest:
        return Parse((self.directory / START).read_text(), run_pb2.StartRunRequest())

    def ops(self) -> list[dict[str, Any]]:
        """The records in order; a torn last line (the process died writing it) is left out."""
        records = []
        for line in (self.directory / OPS).read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        self._ops.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._ops.flush()  # to the OS: survives the process, as the spool's records do

    def keep(self, source: Path | bytes) -> str:
        """A copy of a file (or bytes) in `files/`; returns its name there."""
        self._files += 1
        name = f"{self._files:06d}"
        target = self.directory / FILES / name
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        return name

    def file(self, name: str) -> Path:
        return self.directory / FILES / name

    def close(self) -> None:
        if not self._ops.closed:
            self._ops.close()
        self._release()

    def remove(self) -> None:
        """Delete the journal (uploaded), then release it."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.close()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _now_ns() -> int:
    return time.time_ns()


def _datetime(ns: int) -> datetime:
    """As the run service will report it: microseconds, naive UTC (RunInfo's convention)."""
    return datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000)


class OfflineRun(Run):
    """A `Run` whose every record goes to its journal instead of the servers (see the module
    docstring). It behaves as an online run does, with these differences: `info` is what this
    process recorded (no project or experiment ids: the servers assign those at sync), and
    registering a model, console capture, media and inputs need the servers."""

    def __init__(self, journal: Journal, request: run_pb2.StartRunRequest, *, client: Client,
                 system_metrics: bool = True, rank: int | None = None) -> None:
        self._journal = journal
        self._request = request
        self._params = dict(request.params)
        self._tags = dict(request.tags)
        self._notes = request.notes
        self._status = "RUNNING"
        self._end_ns: int | None = None
        super().__init__(self._snapshot(), client=client, system_metrics=system_metrics, rank=rank)

    @property
    def journal_directory(self) -> Path:
        return self._journal.directory

    def _snapshot(self) -> RunInfo:
        r = self._request
        start_ns = r.start_time.ToNanoseconds()
        end = self._end_ns or _now_ns()
        return RunInfo(
            id=r.client_run_id, name=r.name or f"run-{r.client_run_id[:8]}", experiment_id=r.experiment_id,
            project_id="", status=self._status, start_time=_datetime(start_ns),
            end_time=_datetime(self._end_ns) if self._end_ns else None, duration_s=(end - start_ns) / 1e9,
            params=dict(self._params), tags=dict(self._tags), notes=self._notes,
            source=MessageToDict(r.source, preserving_proto_field_name=True),
            environment=MessageToDict(r.environment, preserving_proto_field_name=True),
            parent_run_id=r.parent_run_id, user=r.user, deleted=False,
        )

    def __repr__(self) -> str:
        return f"OfflineRun(id={self.id!r}, name={self.name!r}, journal={str(self._journal.directory)!r})"

    # -- what the servers would have done ---------------------------------------------------------

    def _beat(self) -> None:
        return  # nobody to tell

    def _start_console(self, enabled: bool) -> None:
        return  # console capture streams to the servers: not offline

    def _metrics(self) -> MetricWriter:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    settings = self._client.settings
                    self._writer = MetricWriter(self.id, None, spool_root=self._journal.directory / METRICS,
                                                max_spool_bytes=settings.spool_max_bytes)
        return self._writer

    def _require_open(self, action: str) -> None:
        if self._status != "RUNNING":
            raise FailedPrecondition(f"cannot {action}: run {self.id} is {self._status}, not RUNNING")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._require_open("log params")
        flat = flatten(params)
        conflicts = sorted(k for k, v in flat.items() if k in self._params and self._params[k] != v)
        if conflicts:
            key = conflicts[0]
            raise InvalidArgument(f"param {key!r} is already {self._params[key]!r} and params cannot change "
                                  f"(got {flat[key]!r}); log it under another key or start a new run")
        new = {k: v for k, v in flat.items() if k not in self._params}
        if new:
            self._journal.append({"op": "params", "params": new})
            self._params.update(new)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        flat = flatten(tags)
        self._journal.append({"op": "tags", "tags": flat})
        self._tags.update(flat)

    def set_notes(self, notes: str) -> None:
        self._journal.append({"op": "notes", "notes": notes})
        self._notes = notes

    def _keep(self, source: Path | bytes, path: str, type: str, metadata: Mapping[str, Any] | None) -> None:
        if type not in _artifacts.TYPES:
            raise InvalidArgument(f"artifact type must be one of {', '.join(_artifacts.TYPES)}, not {type!r}")
        name = self._journal.keep(source)
        self._journal.append({"op": "artifact", "path": path, "file": name, "type": type,
                              "metadata": {k: str(v) for k, v in (metadata or {}).items()}})

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None, *, type: str = "file",
                     metadata: Mapping[str, Any] | None = None, wait: bool = True) -> None:
        """Copied into the journal now (a directory: each of its files); uploaded by `trackd sync`."""
        files = _artifacts.files_to_log(local_path, artifact_path)
        for file, path in files:
            self._keep(file, path, type, metadata)

    def log_text(self, text: str, artifact_path: str) -> None:
        self._keep(text.encode(), artifact_path, "text", None)

    def log_dict(self, value: Mapping[str, Any], artifact_path: str) -> None:
        self._keep(_artifacts.encode_dict(value, artifact_path), artifact_path, "data", None)

    def log_figure(self, figure: Any, artifact_path: str) -> None:
        self._keep(_artifacts.encode_figure(figure, artifact_path), artifact_path, "figure", None)

    def log_model(self, local_path: str | Path, name: str | None = None, *, artifact_path: str = "model",
                  metadata: Mapping[str, Any] | None = None) -> Any:
        if name is not None:
            raise FailedPrecondition(f"run {self.id} is offline: registering model {name!r} needs the servers; "
                                     "log it without a name, `trackd sync`, then trackd.register_model")
        self.log_artifact(local_path, artifact_path, type="model", metadata=metadata)
        return None

    def _online_only(self, what: str) -> Any:
        raise FailedPrecondition(f"run {self.id} is offline: {what} needs the servers (not journaled)")

    def log_image(self, *args: Any, **kwargs: Any) -> Any:
        return self._online_only("log_image")

    def log_histogram(self, *args: Any, **kwargs: Any) -> Any:
        return self._online_only("log_histogram")

    def log_table(self, *args: Any, **kwargs: Any) -> Any:
        return self._online_only("log_table")

    def log_input(self, *args: Any, **kwargs: Any) -> Any:
        return self._online_only("log_input")

    @property
    def inputs(self) -> list[RunInput]:
        return []  # none can be logged offline

    @property
    def info(self) -> RunInfo:
        return self._snapshot()

    def last_step(self, key: str, context: str | None = None) -> int | None:
        """The latest step this process logged for the series (offline, nothing else is stored)."""
        if self._writer is None:
            return None
        following = self._writer.next_step(key, context)
        return None if following is None else following - 1

    def flush(self, timeout_s: float | None = None) -> bool:
        """Write every logged point to the journal's spool (there is nobody to acknowledge them)."""
        if self._writer is not None:
            self._writer.flush(0)
        return True

    # -- the end ----------------------------------------------------------------------------------

    def _close_writer(self) -> None:
        if self._system is not None:
            self._system.stop()
        if self._writer is not None:
            self._writer.close(0)  # what it holds is spooled; the spool stays for `trackd sync`

    def detach(self) -> None:
        self._close_writer()
        self._stop.set()
        self._journal.close()
        self._ended = True

    def end(self, status: str = "FINISHED") -> RunInfo:
        """End the run in its journal (its end time is now); `trackd sync` uploads it."""
        code = _status(status)
        if self._ended:
            raise FailedPrecondition(f"run {self.id} has ended already")
        self._close_writer()
        self._stop.set()
        self._end_ns = _now_ns()
        self._journal.append({"op": "end", "status": code.name, "end_time_ns": self._end_ns})
        self._journal.close()
        self._status = code.name
        self._ended = True
        return self._snapshot()


def start_offline(request: run_pb2.StartRunRequest, captured: Captured | None, *, client: Client,
                  system_metrics: bool, rank: int | None) -> OfflineRun:
    """Journal a new run for `request` (given an id and a start time here) and return its handle."""
    request.client_run_id = uuid.uuid4().hex
    request.start_time.FromNanoseconds(_now_ns())
    journal = Journal(journal_root(client.settings.spool_dir) / request.client_run_id, start=request)
    run = OfflineRun(journal, request, client=client, system_metrics=system_metrics, rank=rank)
    for path, file in (captured.files if captured else {}).items():
        run._keep(file.content, path, "text", file.metadata)
    return run
