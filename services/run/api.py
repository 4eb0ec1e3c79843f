"""The RunService servicer: convert the request, call the store, convert the result. Errors are
mapped to status codes by the server bootstrap's interceptor, not here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.errors import InvalidArgument
from trackd_platform.paging import decode_token, encode_token, page_size
from trackd_platform.rpc_types import Context
from trackd_platform.run_records import run_to_proto
from trackd_platform.timestamps import timestamp

from . import domain
from .domain import format_id, optional_id, parse_id
from .store import RunStore

T = TypeVar("T")


def _project(p: domain.Project) -> run_pb2.Project:
    return run_pb2.Project(id=format_id(p.id), name=p.name, description=p.description,
                           create_time=timestamp(p.created_at))


def _experiment(e: domain.Experiment) -> run_pb2.Experiment:
    return run_pb2.Experiment(
        id=format_id(e.id), project_id=format_id(e.project_id), name=e.name, description=e.description,
        tags=e.tags, archived=e.archived, create_time=timestamp(e.created_at),
    )


def _as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _client_time(field: str, message: Message) -> datetime | None:
    """A Timestamp field of `message` as a datetime; None when unset. Out of range is INVALID_ARGUMENT."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{field} is out of range (years 1–9999)") from None


def _next(items: Sequence[T], limit: int, position: Callable[[T], list[str]]) -> str:
    return encode_token(position(items[-1])) if len(items) == limit else ""


class RunServicer(run_pb2_grpc.RunServiceServicer):
    def __init__(self, store: RunStore) -> None:
        self._store = store

    async def CreateProject(
        self, request: run_pb2.CreateProjectRequest, context: Context
    ) -> run_pb2.CreateProjectResponse:
        name = domain.validate_name("project name", request.name)
        project = await self._store.create_project(name, request.description)
        return run_pb2.CreateProjectResponse(project=_project(project))

    async def GetProject(self, request: run_pb2.GetProjectRequest, context: Context) -> run_pb2.GetProjectResponse:
        if request.project_id:
            project = await self._store.get_project(project_id=parse_id("project_id", request.project_id))
        else:
            project = await self._store.get_project(name=domain.validate_name("project name", request.name))
        return run_pb2.GetProjectResponse(project=_project(project))

    async def ListProjects(
        self, request: run_pb2.ListProjectsRequest, context: Context
    ) -> run_pb2.ListProjectsResponse:
        limit = page_size(request.page_size)
        after = decode_token(request.page_token, arity=1, kinds=(str,))
        projects = await self._store.list_projects(limit=limit, after=after)
        return run_pb2.ListProjectsResponse(
            projects=[_project(p) for p in projects],
            next_page_token=_next(projects, limit, lambda p: [p.name]),
        )

    async def CreateExperiment(
        self, request: run_pb2.CreateExperimentRequest, context: Context
    ) -> run_pb2.CreateExperimentResponse:
        experiment = await self._store.create_experiment(
            parse_id("project_id", request.project_id),
            domain.validate_name("experiment name", request.name),
            request.description,
            domain.validate_tags(request.tags),
        )
        return run_pb2.CreateExperimentResponse(experiment=_experiment(experiment))

    async def GetExperiment(
        self, request: run_pb2.GetExperimentRequest, context: Context
    ) -> run_pb2.GetExperimentResponse:
        if request.experiment_id:
            experiment = await self._store.get_experiment(
                experiment_id=parse_id("experiment_id", request.experiment_id)
            )
        else:
            experiment = await self._store.get_experiment(
                project_name=domain.validate_name("project name", request.project_name),
                name=domain.validate_name("experiment name", request.name),
            )
        return run_pb2.GetExperimentResponse(experiment=_experiment(experiment))

    async def ListExperiments(
        self, request: run_pb2.ListExperimentsRequest, context: Context
    ) -> run_pb2.ListExperimentsResponse:
        limit = page_size(request.page_size)
        experiments = await self._store.list_experiments(
            project_id=optional_id("project_id", request.project_id),
            include_archived=request.include_archived,
            limit=limit,
            after=decode_token(request.page_token, arity=2),
        )
        return run_pb2.ListExperimentsResponse(
            experiments=[_experiment(e) for e in experiments],
            next_page_token=_next(experiments, limit, lambda e: [e.created_at.isoformat(), e.id.hex]),
        )

    async def UpdateExperiment(
        self, request: run_pb2.UpdateExperimentRequest, context: Context
    ) -> run_pb2.UpdateExperimentResponse:
        experiment = await self._store.update_experiment(
            parse_id("experiment_id", request.experiment_id),
            description=request.description if request.HasField("description") else None,
            tags=domain.validate_tags(request.tags),
            archived=None,
            name=domain.validate_name("experiment name", request.name) if request.HasField("name") else None,
            delete_tag_keys=list(domain.validate_tags(dict.fromkeys(request.delete_tag_keys, ""))),
        )
        return run_pb2.UpdateExperimentResponse(experiment=_experiment(experiment))

    async def ArchiveExperiment(
        self, request: run_pb2.ArchiveExperimentRequest, context: Context
    ) -> run_pb2.ArchiveExperimentResponse:
        experiment = await self._store.update_experiment(
            parse_id("experiment_id", request.experiment_id), description=None, tags={}, archived=True
        )
        return run_pb2.ArchiveExperimentResponse(experiment=_experiment(experiment))

    async def UnarchiveExperiment(
        self, request: run_pb2.UnarchiveExperimentRequest, context: Context
    ) -> run_pb2.UnarchiveExperimentResponse:
        experiment = await self._store.update_experiment(
            parse_id("experiment_id", request.experiment_id), description=None, tags={}, archived=False
        )
        return run_pb2.UnarchiveExperimentResponse(experiment=_experiment(experiment))

    async def StartRun(self, request: run_pb2.StartRunRequest, context: Context) -> run_pb2.StartRunResponse:
        if request.client_run_id and (request.run_id or request.resume_key):
            raise InvalidArgument("client_run_id starts a new run under that id: give it without run_id or resume_key")
        if request.run_id:
            run = await self._store.resume_run(parse_id("run_id", request.run_id),
                                               domain.validate_params(request.params),
                                               domain.validate_tags(request.tags))
            return run_pb2.StartRunResponse(run=run_to_proto(run), resumed=True)
        experiment_id = optional_id("experiment_id", request.experiment_id)
        new = domain.NewRun(
            experiment_id=experiment_id,
            project_name=(
                "" if experiment_id else domain.validate_name("project name", request.project_name or "default")
            ),
            experiment_name="" if experiment_id else domain.validate_name("experiment name", request.experiment_name),
            name=domain.validate_name("run name", request.name) if request.name else "",
            params=domain.validate_params(request.params),
            tags=domain.validate_tags(request.tags),
            source=_as_dict(request.source),
            environment=_as_dict(request.environment),
            parent_run_id=optional_id("parent_run_id", request.parent_run_id),
            user=request.user[: domain.NAME_MAX],
            notes=domain.validate_notes(request.notes),
            start_time=_client_time("start_time", request),
            unattended=request.unattended,
            resume_key=domain.validate_resume_key(request.resume_key),
            run_id=optional_id("client_run_id", request.client_run_id),
        )
        run, resumed = await self._store.start_run(new)
        return run_pb2.StartRunResponse(run=run_to_proto(run), resumed=resumed)

    async def GetRun(self, request: run_pb2.GetRunRequest, context: Context) -> run_pb2.GetRunResponse:
        run = await self._store.get_run(parse_id("run_id", request.run_id))
        return run_pb2.GetRunResponse(run=run_to_proto(run))

    async def ListRuns(self, request: run_pb2.ListRunsRequest, context: Context) -> run_pb2.ListRunsResponse:
        limit = page_size(request.page_size)
        runs = await self._store.list_runs(
            experiment_ids=[parse_id("experiment_id", e) for e in request.experiment_ids],
            view=domain.parse_view(request.view_type),
            parent_run_id=optional_id("parent_run_id", request.parent_run_id),
            limit=limit,
            after=decode_token(request.page_token, arity=2),
        )
        return run_pb2.ListRunsResponse(
            runs=[run_to_proto(r) for r in runs],
            next_page_token=_next(runs, limit, lambda r: [r.start_time.isoformat(), r.id.hex]),
        )

    async def EndRun(self, request: run_pb2.EndRunRequest, context: Context) -> run_pb2.EndRunResponse:
        run_id = parse_id("run_id", request.run_id)
        run = await self._store.end_run(run_id, domain.parse_status(request.status),
                                        _client_time("end_time", request))
        return run_pb2.EndRunResponse(run=run_to_proto(run))

    async def UpdateRun(self, request: run_pb2.UpdateRunRequest, context: Context) -> run_pb2.UpdateRunResponse:
        run_id = parse_id("run_id", request.run_id)
        if request.HasField("name"):
            run = await self._store.rename_run(run_id, domain.validate_name("run name", request.name))
        else:
            run = await self._store.get_run(run_id)
        return run_pb2.UpdateRunResponse(run=run_to_proto(run))

    async def LogParams(self, request: run_pb2.LogParamsRequest, context: Context) -> run_pb2.LogParamsResponse:
        run_id = parse_id("run_id", request.run_id)
        await self._store.log_params(run_id, domain.validate_params(request.params))
        return run_pb2.LogParamsResponse()

    async def SetTags(self, request: run_pb2.SetTagsRequest, context: Context) -> run_pb2.SetTagsResponse:
        run_id = parse_id("run_id", request.run_id)
        await self._store.set_tags(run_id, domain.validate_tags(request.tags))
        return run_pb2.SetTagsResponse()

    async def DeleteTags(self, request: run_pb2.DeleteTagsRequest, context: Context) -> run_pb2.DeleteTagsResponse:
        run_id = parse_id("run_id", request.run_id)
        await self._store.delete_tags(run_id, list(domain.validate_tags(dict.fromkeys(request.keys, ""))))
        return run_pb2.DeleteTagsResponse()

    async def SetNotes(self, request: run_pb2.SetNotesRequest, context: Context) -> run_pb2.SetNotesResponse:
        run_id = parse_id("run_id", request.run_id)
        await self._store.set_notes(run_id, domain.validate_notes(request.notes))
        return run_pb2.SetNotesResponse()

    async def Heartbeat(self, request: run_pb2.HeartbeatRequest, context: Context) -> run_pb2.HeartbeatResponse:
        status = await self._store.heartbeat(parse_id("run_id", request.run_id))
        return run_pb2.HeartbeatResponse(status=cast(run_pb2.RunStatus, int(status)))

    async def DeleteRun(self, request: run_pb2.DeleteRunRequest, context: Context) -> run_pb2.DeleteRunResponse:
        await self._store.set_deleted(parse_id("run_id", request.run_id), True)
        return run_pb2.DeleteRunResponse()

    async def RestoreRun(self, request: run_pb2.RestoreRunRequest, context: Context) -> run_pb2.RestoreRunResponse:
        await self._store.set_deleted(parse_id("run_id", request.run_id), False)
        return run_pb2.RestoreRunResponse()
