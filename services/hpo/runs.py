"""Trials are runs, and a study has one: the hpo service starts, beats and ends them through the
run service's gRPC API — validated, evented and stored by the service that owns runs — as the
admin when auth is on (TRACKD_ADMIN_TOKEN), over TLS when the servers serve it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

import grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.config import ServerSettings
from trackd_platform.errors import TrackdError, Unavailable
from trackd_platform.ids import format_id, parse_id
from trackd_platform.run_records import RunStatus
from trackd_platform.server import STATUS_OF
from trackd_platform.tls import channel_credentials

CALL_TIMEOUT_S = 10.0
_ERROR_OF = {code: error for error, code in STATUS_OF.items()}
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


@dataclass(frozen=True)
class StartedRun:
    id: uuid.UUID
    experiment_id: uuid.UUID


class RunsClient:
    """The run service, as the hpo controller uses it. Its errors are trackd's (NotFound,
    FailedPrecondition, …) with the run service's message; an unreachable run service is
    Unavailable."""

    def __init__(self, target: str, settings: ServerSettings) -> None:
        tls = settings.tls
        self._channel = (grpc.aio.secure_channel(target, channel_credentials(tls.ca_file or tls.cert_file))
                         if tls.serving else grpc.aio.insecure_channel(target))
        self._stub = run_pb2_grpc.RunServiceStub(self._channel)  # type: ignore[no-untyped-call]
        token = settings.auth.admin_token if settings.auth.enabled else ""
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    async def start(self, *, name: str, tags: dict[str, str], params: dict[str, str] | None = None,
                    experiment_id: uuid.UUID | None = None, project: str = "", experiment: str = "",
                    parent_run_id: uuid.UUID | None = None) -> StartedRun:
        """A RUNNING run in `experiment_id`, or in `project` / `experiment` by name (created if new)."""
        response = await self._call(self._stub.StartRun, run_pb2.StartRunRequest(
            experiment_id=format_id(experiment_id) if experiment_id else "", project_name=project,
            experiment_name=experiment, name=name, params=params or {}, tags=tags,
            parent_run_id=format_id(parent_run_id) if parent_run_id else ""))
        return StartedRun(parse_id("run_id", response.run.id), parse_id("experiment_id", response.run.experiment_id))

    async def end(self, run_id: uuid.UUID, status: RunStatus) -> None:
        await self._call(self._stub.EndRun, run_pb2.EndRunRequest(
            run_id=format_id(run_id), status=cast(run_pb2.RunStatus, int(status))))

    async def heartbeat(self, run_id: uuid.UUID) -> None:
        await self._call(self._stub.Heartbeat, run_pb2.HeartbeatRequest(run_id=format_id(run_id)))

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable, request: object) -> Any:
        try:
            return await method(request, timeout=CALL_TIMEOUT_S, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            details = f"the run service: {error.details()}"
            raise _ERROR_OF.get(error.code(), Unavailable if error.code() in _RETRYABLE else TrackdError)(
                details) from None
