"""An Optuna trial's trackd run: started when the trial runs (or is created ended), its
intermediate values logged as the metric `value` (step = Optuna's step), its params logged and
the run ended when the trial ends — through the run and ingest services' gRPC APIs, as the admin
when auth is on, like the controller's runs (runs.py). Runs are `unattended` (Optuna's clients
send no heartbeats). Apart from the start, run updates are best effort: a trial's state is
Optuna's record, so a run service outage is logged, not failed."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, TypeVar, cast

import grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.config import ServerSettings
from trackd_platform.errors import TrackdError
from trackd_platform.ids import format_id, parse_id
from trackd_platform.run_records import RunStatus

from .domain import TrialState
from .runs import admin_metadata, call, service_channel

METRIC = "value"  # the metric an Optuna trial's intermediate values are logged as
EXPERIMENT = "optuna"  # the experiment (in the caller's project) of every Optuna study
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
log = logging.getLogger(__name__)


def run_status(state: TrialState) -> RunStatus:
    return RunStatus.FAILED if state == TrialState.FAIL else RunStatus.FINISHED


class OptunaRuns:
    def __init__(self, run_target: str, ingest_target: str, settings: ServerSettings) -> None:
        self._channels = [service_channel(run_target, settings),
                          service_channel(ingest_target or run_target, settings)]
        self._runs = run_pb2_grpc.RunServiceStub(self._channels[0])
        self._ingest = ingest_pb2_grpc.IngestServiceStub(self._channels[1])
        self._metadata = admin_metadata(settings)

    async def start_study(self, study: str, *, project: str) -> tuple[uuid.UUID, uuid.UUID]:
        """The study's run (parent of its trials' runs) in `project` / EXPERIMENT: (run, experiment)."""
        response = await self._call(self._runs.StartRun, run_pb2.StartRunRequest(
            project_name=project, experiment_name=EXPERIMENT, name=f"study {study}", unattended=True,
            tags={"trackd.hpo.study": study, "trackd.hpo.optuna": "true"}))
        return parse_id("run_id", response.run.id), parse_id("experiment_id", response.run.experiment_id)

    async def start_trial(self, *, study: str, number: int, experiment_id: uuid.UUID,
                          parent: uuid.UUID | None) -> uuid.UUID:
        response = await self._call(self._runs.StartRun, run_pb2.StartRunRequest(
            experiment_id=format_id(experiment_id), parent_run_id=format_id(parent) if parent else "",
            name=f"{study} #{number}", unattended=True,
            tags={"trackd.hpo.study": study, "trackd.hpo.trial": str(number), "trackd.hpo.optuna": "true"}))
        return parse_id("run_id", response.run.id)

    async def log_value(self, run_id: uuid.UUID, step: int, value: float) -> None:
        await self._best_effort(self._ingest.LogMetrics, ingest_pb2.LogMetricsRequest(
            run_id=format_id(run_id), series=[ingest_pb2.MetricSeries(
                key=METRIC, steps=[step], values=[value], timestamps_ms=[int(time.time() * 1000)])]))

    async def end_trial(self, run_id: uuid.UUID, state: TrialState, params: dict[str, Any]) -> None:
        if params:
            await self._best_effort(self._runs.LogParams, run_pb2.LogParamsRequest(
                run_id=format_id(run_id), params={k: str(v) for k, v in params.items()}))
        await self.end(run_id, run_status(state))

    async def end(self, run_id: uuid.UUID, status: RunStatus) -> None:
        await self._best_effort(self._runs.EndRun, run_pb2.EndRunRequest(
            run_id=format_id(run_id), status=cast(run_pb2.RunStatus, int(status))))

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def _best_effort(self, method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
                           request: RequestT) -> None:
        try:
            await self._call(method, request)
        except TrackdError as error:
            log.warning("updating an Optuna trial's run failed (%s): %s", type(error).__name__, error)

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
                    request: RequestT) -> ResponseT:
        return await call(method, request, self._metadata)
