"""Trials are runs, and a study has one: the hpo service starts, beats and ends them through the
run service's gRPC API — validated, evented and stored by the service that owns runs — as the
admin when auth is on (TRACKD_ADMIN_TOKEN), over TLS when the servers serve it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar, cast

import grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.config import ServerSettings
from trackd_platform.errors import FailedPrecondition, NotFound, TrackdError, Unavailable
from trackd_platform.ids import format_id, parse_id
from trackd_platform.run_records import RunStatus
from trackd_platform.server import STATUS_OF
from trackd_platform.tls import channel_credentials

from .domain import StudyRow, TrialRow

CALL_TIMEOUT_S = 10.0
_ERROR_OF = {code: error for error, code in STATUS_OF.items()}
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def service_channel(target: str, settings: ServerSettings) -> grpc.aio.Channel:
    """A channel to another trackd service: TLS when this one serves it."""
    tls = settings.tls
    return (grpc.aio.secure_channel(target, channel_credentials(tls.ca_file or tls.cert_file))
            if tls.serving else grpc.aio.insecure_channel(target))


def admin_metadata(settings: ServerSettings) -> tuple[tuple[str, str], ...]:
    """The hpo service calls as the admin when auth is on."""
    token = settings.auth.admin_token if settings.auth.enabled else ""
    return (("authorization", f"Bearer {token}"),) if token else ()


async def call(method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT], request: RequestT,
               metadata: tuple[tuple[str, str], ...]) -> ResponseT:
    """One call; its error as trackd's (NotFound, FailedPrecondition, …) with the service's
    message, an unreachable service as Unavailable."""
    try:
        return await method(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        details = f"the run service: {error.details()}"
        raise _ERROR_OF.get(error.code(), Unavailable if error.code() in _RETRYABLE else TrackdError)(
            details) from None


@dataclass(frozen=True)
class StartedRun:
    id: uuid.UUID
    experiment_id: uuid.UUID


class RunsClient:
    """The run service, as the hpo controller uses it. Its errors are trackd's (NotFound,
    FailedPrecondition, …) with the run service's message; an unreachable run service is
    Unavailable."""

    def __init__(self, target: str, settings: ServerSettings) -> None:
        self._channel = service_channel(target, settings)
        self._stub = run_pb2_grpc.RunServiceStub(self._channel)
        self._metadata = admin_metadata(settings)

    async def start(self, *, name: str, tags: dict[str, str], params: dict[str, str] | None = None,
                    experiment_id: uuid.UUID | None = None, project: str = "", experiment: str = "",
                    parent_run_id: uuid.UUID | None = None, run_id: uuid.UUID | None = None) -> StartedRun:
        """A RUNNING run in `experiment_id`, or in `project` / `experiment` by name (created if
        new), under `run_id` when given (AlreadyExists when a run has it)."""
        response = await self._call(self._stub.StartRun, run_pb2.StartRunRequest(
            experiment_id=format_id(experiment_id) if experiment_id else "", project_name=project,
            experiment_name=experiment, name=name, params=params or {}, tags=tags,
            parent_run_id=format_id(parent_run_id) if parent_run_id else "",
            client_run_id=format_id(run_id) if run_id else ""))
        return StartedRun(parse_id("run_id", response.run.id), parse_id("experiment_id", response.run.experiment_id))

    async def start_study_run(self, study: str, *, project: str, experiment: str) -> StartedRun:
        """The study's own run (parent of its trials' runs), in `project` / `experiment`."""
        return await self.start(project=project, experiment=experiment, name=f"study {study}",
                                tags={"trackd.hpo.study": study})

    async def start_trial_run(self, study: StudyRow, trial: TrialRow) -> StartedRun:
        """A run for this attempt of the trial: a child of the study's run, with the trial's
        params, under the id the trial was claimed with (`trial.run_id`) if it has one."""
        return await self.start(
            experiment_id=study.experiment_id, parent_run_id=study.run_id, run_id=trial.run_id,
            name=f"{study.name} #{trial.number}" + (f" (attempt {trial.attempt})" if trial.attempt > 1 else ""),
            params={k: str(v) for k, v in trial.params.items()},
            tags={"trackd.hpo.study": study.name, "trackd.hpo.trial": str(trial.number)})

    async def log_params_if_running(self, run_id: uuid.UUID | None, params: dict[str, str]) -> None:
        """Log `params` on the run (a param logged again with its value is a no-op), unless there
        is no run or it has ended (or is gone)."""
        if run_id is not None:
            try:
                await self._call(self._stub.LogParams, run_pb2.LogParamsRequest(run_id=format_id(run_id),
                                                                                params=params))
            except (FailedPrecondition, NotFound):
                pass

    async def end(self, run_id: uuid.UUID, status: RunStatus) -> None:
        await self._call(self._stub.EndRun, run_pb2.EndRunRequest(
            run_id=format_id(run_id), status=cast(run_pb2.RunStatus, int(status))))

    async def heartbeat(self, run_id: uuid.UUID) -> None:
        await self._call(self._stub.Heartbeat, run_pb2.HeartbeatRequest(run_id=format_id(run_id)))

    async def end_if_running(self, run_id: uuid.UUID | None, status: RunStatus) -> None:
        """`end`, unless there is no run or it has ended already (or is gone)."""
        if run_id is not None:
            try:
                await self.end(run_id, status)
            except (FailedPrecondition, NotFound):
                pass

    async def heartbeat_if_running(self, run_id: uuid.UUID | None) -> None:
        """`heartbeat`, unless there is no run or it has ended (or is gone)."""
        if run_id is not None:
            try:
                await self.heartbeat(run_id)
            except (FailedPrecondition, NotFound):
                pass

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
                    request: RequestT) -> ResponseT:
        return await call(method, request, self._metadata)
