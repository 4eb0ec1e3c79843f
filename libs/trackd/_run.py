"""Runs from the trainer's side: `trackd.start_run()`, the `Run` handle and its heartbeat."""

from __future__ import annotations

import getpass
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict, ParseDict
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import RunStatus

from trackd import _artifacts
from trackd._capture import Captured, capture
from trackd._client import Client, default_client
from trackd._metrics import MetricWriter, check_key, context_code, timestamp_ns
from trackd._params import flatten
from trackd._run_data import RunData
from trackd._spool import SpoolInUse, default_root, leftover
from trackd._system import SystemMonitor
from trackd.errors import FailedPrecondition, TrackdError

log = logging.getLogger("trackd")

STATUSES = tuple(s.name for s in RunStatus)
VIEWS = {"active": run_pb2.VIEW_TYPE_ACTIVE_ONLY, "deleted": run_pb2.VIEW_TYPE_DELETED_ONLY,
         "all": run_pb2.VIEW_TYPE_ALL}


@dataclass(frozen=True)
class RunInfo:
    """A snapshot of a run as the run service reports it."""

    id: str
    name: str
    experiment_id: str
    project_id: str
    status: str
    start_time: datetime | None
    end_time: datetime | None
    duration_s: float
    params: dict[str, str]
    tags: dict[str, str]
    notes: str
    source: dict[str, Any]
    environment: dict[str, Any]
    parent_run_id: str
    user: str
    deleted: bool
    # latest value per metric (`key`, or `key@eval` for a context): filled by search_runs
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, run: run_pb2.Run) -> RunInfo:
        return cls(
            id=run.id, name=run.name, experiment_id=run.experiment_id, project_id=run.project_id,
            status=run_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_"),
            start_time=run.start_time.ToDatetime() if run.HasField("start_time") else None,
            end_time=run.end_time.ToDatetime() if run.HasField("end_time") else None,
            duration_s=run.duration_ms / 1000, params=dict(run.params), tags=dict(run.tags),
            notes=run.notes, source=MessageToDict(run.source, preserving_proto_field_name=True),
            environment=MessageToDict(run.environment, preserving_proto_field_name=True),
            parent_run_id=run.parent_run_id, user=run.user, deleted=run.deleted,
        )


def _status(name: str) -> RunStatus:
    upper = name.upper()
    if upper not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {name!r}")
    return RunStatus[upper]


class Run(RunData):
    """An open run. Use as a context manager, or call `end()` yourself.

    Leaving a `with` block normally ends the run FINISHED; an exception ends it FAILED
    (KeyboardInterrupt: KILLED) and propagates."""

    def __init__(self, info: RunInfo, *, client: Client, system_metrics: bool = True, resumed: bool = False,
                 next_steps: Mapping[tuple[str, int], int] | None = None, rank: int | None = None,
                 console: bool = True) -> None:
        self._client = client
        self.resumed = resumed  # an existing run was reattached (start_run's run_id or resume_key)
        self._next_steps = dict(next_steps or {})
        self._writer: MetricWriter | None = None
        self._writer_lock = threading.Lock()
        self._system: SystemMonitor | None = None
        self._uploads: ThreadPoolExecutor | None = None
        self._pending: list[Future[Any]] = []
        self.id = info.id
        self.name = info.name
        self.experiment_id = info.experiment_id
        self._ended = False
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"trackd-heartbeat-{self.id[:8]}", daemon=True)
        self._heartbeat.start()
        interval = client.settings.system_metrics_interval_s
        if system_metrics and interval > 0:
            self._system = SystemMonitor(self.log_metrics if rank is None else self._rank_logger(rank), interval)
        self._start_console(console)  # stdout / stderr to the run (trackd._logs)

    def _rank_logger(self, rank: int) -> Callable[[dict[str, float]], None]:
        """System metrics of one rank of a distributed job: `system/rank{N}/…`."""
        def log_metrics(metrics: dict[str, float]) -> None:
            self.log_metrics({k.replace("system/", f"system/rank{rank}/", 1): v for k, v in metrics.items()})
        return log_metrics

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r})"

    def _beat(self) -> None:
        interval = self._client.settings.heartbeat_interval_s
        while not self._stop.wait(interval):
            try:
                response = self._client.call(
                    "run", self._client.runs.Heartbeat, run_pb2.HeartbeatRequest(run_id=self.id),
                    timeout=max(1.0, interval),
                )
            except TrackdError as exc:
                log.warning("heartbeat for run %s failed: %s", self.id, exc)
                continue
            if response.status != RunStatus.RUNNING.proto:
                log.warning("run %s is %s on the server; heartbeats stop",
                            self.id, run_pb2.RunStatus.Name(response.status).removeprefix("RUN_STATUS_"))
                return

    def _metrics(self) -> MetricWriter:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    settings = self._client.settings
                    self._writer = MetricWriter(
                        self.id, None if settings.offline else self._client.channel("ingest"),
                        spool_root=default_root(settings.spool_dir), max_spool_bytes=settings.spool_max_bytes,
                        next_steps=self._next_steps,
                    )
        return self._writer

    def log_metric(self, key: str, value: float, step: int | None = None, *,
                   context: str | None = None, timestamp: float | None = None) -> None:
        """Record one point; returns at once (the point is sent in the background).
        `step=None`: the key's next step. `context`: None, "train", "eval" or "test".

        Raises `InvalidMetric` (a ValueError and a `trackd.errors.InvalidArgument`) for a point
        the server would refuse — a key that is empty or longer than 250 characters, a step that
        is not a 64-bit integer, an unknown context — and `SpoolFull` (a
        `trackd.errors.ResourceExhausted`) when the service has been unreachable long enough to
        fill the buffer and the spool (TRACKD_SPOOL_MAX_BYTES). Either way this point is not
        recorded and every other point is kept."""
        (self._writer or self._metrics()).log(key, float(value), step, context,
                                              time.time_ns() if timestamp is None else timestamp_ns(timestamp))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, *,
                    context: str | None = None, timestamp: float | None = None) -> None:
        """`log_metric` for several keys at one step. A bad key raises before any point is recorded."""
        stamp = timestamp_ns(timestamp)
        writer = self._writer or self._metrics()
        context_code(context)
        points = [(key, float(value)) for key, value in metrics.items()]
        for key, _ in points:
            check_key(key)
        for key, value in points:
            writer.log(key, value, step, context, stamp)

    def last_step(self, key: str, context: str | None = None) -> int | None:
        """The step of the series' latest stored point (None: none stored): where a resumed
        script picks up (`range(run.last_step("loss") + 1, total)`). Points of this process not
        yet acknowledged are not counted: `flush()` first when logging already."""
        return _stored_steps(self._client, self.id).get((check_key(key), context_code(context)))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every logged point is acknowledged by the server; False on timeout."""
        if self._writer is None:
            return True
        return self._writer.flush(self._client.settings.flush_timeout_s if timeout_s is None else timeout_s)

    def _executor(self) -> ThreadPoolExecutor:
        with self._writer_lock:
            if self._uploads is None:
                self._uploads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="trackd-upload")
            return self._uploads

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None, *, type: str = "file",
                     metadata: Mapping[str, Any] | None = None, wait: bool = True) -> None:
        """Upload a file, or a directory's files (in parallel), under `artifact_path` (default:
        the file or directory name). `wait=False` uploads in the background; `end()` waits."""
        files = _artifacts.files_to_log(local_path, artifact_path)
        futures = [self._executor().submit(_artifacts.upload, self._client, self.id, f, p, type=type,
                                           metadata=metadata) for f, p in files]
        if wait:
            for future in futures:
                future.result()
        else:
            self._pending += futures

    def log_text(self, text: str, artifact_path: str) -> None:
        _artifacts.upload(self._client, self.id, text.encode(), artifact_path, type="text")

    def log_dict(self, value: Mapping[str, Any], artifact_path: str) -> None:
        """As JSON, or YAML when the path ends in .yaml / .yml."""
        _artifacts.upload(self._client, self.id, _artifacts.encode_dict(value, artifact_path), artifact_path,
                          type="data")

    def log_figure(self, figure: Any, artifact_path: str) -> None:
        """A matplotlib figure, rendered in the format the path's extension names (PNG by default)."""
        _artifacts.upload(self._client, self.id, _artifacts.encode_figure(figure, artifact_path), artifact_path,
                          type="figure")

    def log_model(self, local_path: str | Path, name: str | None = None, *, artifact_path: str = "model",
                  metadata: Mapping[str, Any] | None = None) -> Any:
        """Upload a model file or directory under `artifact_path`; with a `name`, also register
        it as that model's next version (returned)."""
        self.log_artifact(local_path, artifact_path, type="model", metadata=metadata)
        if name is None:
            return None
        from trackd._registry import register_model

        return register_model(name, run_id=self.id, path=artifact_path, metadata=metadata, client=self._client)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested dicts are flattened with dots; values become text. A param is immutable."""
        self._client.call("run", self._client.runs.LogParams,
                          run_pb2.LogParamsRequest(run_id=self.id, params=flatten(params)))

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._client.call("run", self._client.runs.SetTags,
                          run_pb2.SetTagsRequest(run_id=self.id, tags=flatten(tags)))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_notes(self, notes: str) -> None:
        self._client.call("run", self._client.runs.SetNotes, run_pb2.SetNotesRequest(run_id=self.id, notes=notes))

    @property
    def info(self) -> RunInfo:
        return get_run(self.id, client=self._client)

    def detach(self) -> None:
        """Stop this process's part (uploads, system metrics, heartbeats) after delivering its
        points, leaving the run open: for the ranks of a distributed job that share a run which
        rank 0 ends. Raises TrackdError when points are left undelivered, as `end()` does."""
        self._close_writer()
        self._end_console("FINISHED")
        self._stop.set()
        self._ended = True  # this handle is done: leaving a `with` block does not end the run

    def _close_writer(self) -> None:
        for future in self._pending:  # background uploads finish before the run ends
            future.result()
        self._pending.clear()
        if self._system is not None:
            self._system.stop()
        if self._writer is not None:
            left = self._writer.close(self._client.settings.flush_timeout_s)
            if left:
                self._stop.set()
                why = (f"the ingest service refused them: {self._writer.failure}" if self._writer.failure else
                       f"the ingest service did not acknowledge them in "
                       f"{self._client.settings.flush_timeout_s:.0f}s")
                raise TrackdError(
                    f"{left} metric batches of run {self.id} are still spooled in "
                    f"{self._writer.spool.directory} ({why}); the run is left open: run "
                    f"`trackd sync` when the servers are reachable, then end it"
                )

    def end(self, status: str = "FINISHED") -> RunInfo:
        """End the run with FINISHED, FAILED or KILLED. Ending it twice is an error."""
        code = _status(status)
        self._close_writer()
        self._end_console(code.name)  # FAILED / KILLED: capture on until exit (the traceback)
        self._stop.set()
        response = self._client.call("run", self._client.runs.EndRun,
                                     run_pb2.EndRunRequest(run_id=self.id, status=code.proto))
        self._ended = True
        return RunInfo.from_proto(response.run)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._ended:
            return
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        try:
            self.end(status)
        except TrackdError:
            if kind is None:
                raise
            log.exception("could not end run %s %s", self.id, status)  # keep the user's exception


def start_run(
    experiment: str = "default",
    *,
    project: str = "default",
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    notes: str = "",
    parent: Run | str | None = None,
    capture_env: bool = True,
    system_metrics: bool = True,
    experiment_id: str | None = None,
    run_id: str | None = None,
    resume_key: str | None = None,
    rank: int | None = None,
    console: bool = True,
    client: Client | None = None,
) -> Run:
    """Start a RUNNING run in `project`/`experiment` (both created if missing), or resume one.

    `run_id`: reattach to that run, RUNNING or CRASHED (CRASHED becomes RUNNING again); an ended
    run raises FailedPrecondition. `resume_key` (e.g. a scheduler's job id): the first start with
    it in the experiment creates the run, later ones resume it. A resumed run's heartbeats and
    system metrics continue; metric batches a killed process of it left in the local spool are
    delivered first, and `step=None` continues after each series' last stored step
    (`run.resumed`, `run.last_step(key)`). Params given again must keep their values; tags are set.
    `rank`: this process's rank in a distributed job; its system metrics are `system/rank{N}/…`.
    `console`: tee this process's stdout and stderr to the run (`trackd runs logs`)."""
    client = client or default_client()
    request = run_pb2.StartRunRequest(
        experiment_id=experiment_id or "",
        project_name="" if experiment_id else project,
        experiment_name="" if experiment_id else experiment,
        name=name or "",
        params=flatten(params or {}),
        tags=flatten(tags or {}),
        notes=notes,
        parent_run_id=parent.id if isinstance(parent, Run) else (parent or ""),
        user=getpass.getuser(),
        run_id=run_id or "",
        resume_key=resume_key or "",
    )
    captured = capture() if capture_env and not run_id else None
    if captured is not None:
        ParseDict(captured.source, request.source, ignore_unknown_fields=True)
        ParseDict(captured.environment, request.environment, ignore_unknown_fields=True)
    if client.settings.offline or client.settings.auto:
        if client.settings.offline or not _reachable(client):
            if run_id or resume_key:
                why = "TRACKD_MODE=offline" if client.settings.offline else "they cannot be reached"
                raise FailedPrecondition(f"resuming a run (run_id, resume_key) needs the servers; {why}")
            from trackd._offline import start_offline

            offline = start_offline(request, captured, client=client, system_metrics=system_metrics, rank=rank)
            log.warning("run %s is offline: journaled in %s; `trackd sync` uploads it", offline.id,
                        offline.journal_directory)
            return offline
    response = client.call("run", client.runs.StartRun, request)
    info = RunInfo.from_proto(response.run)
    if not response.resumed:
        run = Run(info, client=client, system_metrics=system_metrics, rank=rank, console=console)
        if captured is not None:
            _keep_captured_files(run, captured)
        return run
    if not client.settings.offline:
        _deliver_leftovers(client, info.id)
    next_steps = {series: step + 1 for series, step in _stored_steps(client, info.id).items()}
    log.info("resumed run %s (%s); metrics continue after their last stored steps", info.id, info.status)
    return Run(info, client=client, system_metrics=system_metrics, resumed=True, next_steps=next_steps, rank=rank,
               console=console)


def _reachable(client: Client) -> bool:
    """TRACKD_MODE=auto: can the run service be reached now (within the RPC timeout, at most 10 s)?"""
    ready = grpc.channel_ready_future(client.channel("run"))
    try:
        ready.result(timeout=min(10.0, client.settings.rpc_timeout_s))
    except grpc.FutureTimeoutError:
        ready.cancel()
        return False
    return True


def _keep_captured_files(run: Run, captured: Captured) -> None:
    """The uncommitted diff and the conda export, as the run's artifacts (a failure is logged:
    it does not stop the run)."""
    for path, file in captured.files.items():
        try:
            _artifacts.upload(run._client, run.id, file.content, path, type="text", metadata=file.metadata)
        except TrackdError as exc:
            log.warning("run %s: could not keep %s as an artifact: %s", run.id, path, exc)


def _stored_steps(client: Client, run_id: str) -> dict[tuple[str, int], int]:
    """(key, context) → the step of the latest stored point, for every series of the run."""
    response = client.call("query", client.query.GetLatestMetrics, query_pb2.GetLatestMetricsRequest(run_id=run_id))
    return {(m.key, int(m.context)): m.step for m in response.metrics}


def _deliver_leftovers(client: Client, run_id: str) -> None:
    """Send what earlier processes of this run left in the local spool (killed before their
    batches were acknowledged), so that the last stored steps include it. A spool still held by a
    live process is left alone (`trackd sync` skips it too)."""
    root = default_root(client.settings.spool_dir)
    for directory in leftover(root):
        try:
            meta = json.loads((directory / "meta.json").read_text())
            if meta.get("run_id") != run_id:
                continue
            writer = MetricWriter(run_id, client.channel("ingest"), spool_root=root, stream_id=meta["stream_id"],
                                  resume=True)
        except (SpoolInUse, FileNotFoundError, OSError, ValueError, KeyError):
            continue
        if left := writer.close(client.settings.flush_timeout_s):
            log.warning("run %s: %d spooled metric batches of an earlier process not delivered; kept in %s "
                        "(`trackd sync` sends them)", run_id, left, directory)


def get_run(run_id: str, *, client: Client | None = None) -> RunInfo:
    client = client or default_client()
    response = client.call("run", client.runs.GetRun, run_pb2.GetRunRequest(run_id=run_id))
    return RunInfo.from_proto(response.run)


def get_experiment_id(experiment: str, project: str = "default", *, client: Client | None = None) -> str:
    client = client or default_client()
    response = client.call("run", client.runs.GetExperiment,
                           run_pb2.GetExperimentRequest(project_name=project, name=experiment))
    return str(response.experiment.id)


def iter_runs(
    experiment: str | None = None,
    *,
    project: str = "default",
    view: str = "active",
    page_size: int = 100,
    client: Client | None = None,
) -> Iterator[RunInfo]:
    """Every run of an experiment (of all experiments when None), newest first, page by page."""
    client = client or default_client()
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
    ids = [get_experiment_id(experiment, project, client=client)] if experiment else []
    token = ""
    while True:
        response = client.call("run", client.runs.ListRuns, run_pb2.ListRunsRequest(
            experiment_ids=ids, view_type=VIEWS[view], page_size=page_size, page_token=token))
        for run in response.runs:
            yield RunInfo.from_proto(run)
        token = response.next_page_token
        if not token:
            return


def list_runs(
    experiment: str | None = None,
    *,
    project: str = "default",
    view: str = "active",
    max_results: int = 1000,
    client: Client | None = None,
) -> list[RunInfo]:
    runs = []
    for run in iter_runs(experiment, project=project, view=view, client=client):
        runs.append(run)
        if len(runs) >= max_results:
            break
    return runs


def list_artifacts(run_id: str, path: str = "", *, recursive: bool = False,
                   client: Client | None = None) -> list[_artifacts.ArtifactInfo]:
    return _artifacts.list_artifacts(client or default_client(), run_id, path, recursive=recursive)


def download_artifacts(run_id: str, path: str = "", dst: str | Path = ".", *,
                       client: Client | None = None) -> list[Path]:
    """Download an artifact file or directory into `dst`; interrupted downloads resume."""
    return _artifacts.download(client or default_client(), run_id, path, Path(dst))
