"""Optuna's storage protocol: the `optuna.StorageService` that `optuna.storages.GrpcStorageProxy`
speaks (the messages are the ones generated inside the optuna package), served by the hpo service
on its Optuna port (TRACKD_OPTUNA_PORT, docs/optuna.md). Unchanged Optuna code runs on trackd: an
Optuna study is a trackd study (experiment `optuna` of the caller's project), each trial a
trackd trial with its run (optuna_runs.py). The contract is Optuna's `BaseStorage`: unknown ids
are NOT_FOUND (KeyError), writes to an ended trial FAILED_PRECONDITION (UpdateFinishedTrialError),
an incompatible distribution INVALID_ARGUMENT (ValueError), a taken study name ALREADY_EXISTS.

With TRACKD_AUTH=on every call needs a token (`authorization: Bearer` metadata); a study belongs
to the project of the token that created it, and a project token reaches only its project's
studies (checked here: the access table only authenticates)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import asyncpg
from optuna.distributions import check_distribution_compatibility, json_to_distribution
from optuna.storages._grpc.auto_generated import api_pb2, api_pb2_grpc
from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.access import Rule, rules_for
from trackd_platform.auth import Role, current_principal
from trackd_platform.config import StoresConfig
from trackd_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from trackd_platform.rpc_types import Context
from trackd_platform.run_records import NAME_MAX, RunStatus
from trackd_platform.server import GrpcServer

from .domain import TrialState
from .optuna_controls import OptunaControls, fixed_params
from .optuna_runs import OptunaRuns
from .optuna_store import NewTrial, OptunaStore, OptunaStudy, OptunaTrial
from .optuna_trial_runs import TrialRuns

SERVICE = api_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name
_READS = ("GetStudyIdFromName", "GetStudyNameFromId", "GetStudyDirections", "GetStudyUserAttributes",
          "GetStudySystemAttributes", "GetAllStudies", "GetTrialIdFromStudyIdTrialNumber", "GetTrial", "GetTrials")
_WRITES = ("CreateNewStudy", "DeleteStudy", "SetStudyUserAttribute", "SetStudySystemAttribute", "CreateNewTrial",
           "SetTrialParameter", "SetTrialStateValues", "SetTrialIntermediateValue", "SetTrialUserAttribute",
           "SetTrialSystemAttribute")
# Authentication (and write rate limits) at the edge; the project is checked by the servicer,
# which knows a study's project from its integer id.
RULES = rules_for(SERVICE, {**{m: Rule(Role.READ) for m in _READS}, **{m: Rule(Role.WRITE) for m in _WRITES}})

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # Optuna's, in the server's local time as Optuna's own servicer
_TO_PB = {TrialState.WAITING: api_pb2.WAITING, TrialState.RUNNING: api_pb2.RUNNING,
          TrialState.COMPLETE: api_pb2.COMPLETE, TrialState.PRUNED: api_pb2.PRUNED, TrialState.FAIL: api_pb2.FAIL}
_FROM_PB = {pb: state for state, pb in _TO_PB.items()}


def _state(value: int) -> TrialState:
    if value not in _FROM_PB:
        raise InvalidArgument(f"unknown trial state {value}")
    return _FROM_PB[value]  # type: ignore[index]


def _time(value: datetime | None) -> str:
    return value.astimezone().replace(tzinfo=None).strftime(DATETIME_FORMAT) if value else ""


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, DATETIME_FORMAT).astimezone() if value else None
    except ValueError:
        raise InvalidArgument(f"a datetime is {DATETIME_FORMAT!r}, not {value!r}") from None


def _distribution(text: str) -> Any:
    try:
        return json_to_distribution(text)
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(f"not an Optuna distribution: {text[:200]!r} ({error})") from None


def _shown(value: Any) -> Any:
    """A param's value as trackd shows it (`trials.params` is JSON: no NaN or Infinity)."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _trial_pb(trial: OptunaTrial) -> api_pb2.Trial:
    return api_pb2.Trial(
        trial_id=trial.id, number=trial.number, state=_TO_PB[trial.state], values=trial.values or [],
        datetime_start=_time(trial.started_at), datetime_complete=_time(trial.ended_at),
        distributions=trial.distributions, params=trial.params, user_attributes=trial.user_attrs,
        system_attributes=trial.system_attrs, intermediate_values=trial.intermediates)


def _study_pb(study: OptunaStudy) -> api_pb2.Study:
    return api_pb2.Study(study_id=study.id, study_name=study.name, directions=study.directions,  # type: ignore[arg-type]
                         user_attributes=study.user_attrs, system_attributes=study.system_attrs)


def _new_trial(template: api_pb2.Trial) -> NewTrial:
    distributions = dict(template.distributions)
    if set(distributions) != set(template.params):
        raise InvalidArgument("a template trial gives a distribution for each param, and only those")
    external: dict[str, Any] = {}
    for name, internal in template.params.items():
        try:
            external[name] = _shown(_distribution(distributions[name]).to_external_repr(internal))
        except (ValueError, IndexError) as error:
            raise InvalidArgument(f"param {name!r}: {internal} is not in its distribution ({error})") from None
    if not external and template.state == api_pb2.WAITING:  # Optuna's enqueue_trial: trackd shows what it runs with
        external = {k: _shown(v) for k, v in fixed_params(template.system_attributes).items()}
    return NewTrial(state=_state(template.state), values=list(template.values) if template.values else None,
                    started_at=_parse_time(template.datetime_start),
                    ended_at=_parse_time(template.datetime_complete), params=dict(template.params),
                    external_params=external, distributions=distributions,
                    user_attrs=dict(template.user_attributes), system_attrs=dict(template.system_attributes),
                    intermediates=dict(template.intermediate_values))


class OptunaStorageServicer(api_pb2_grpc.StorageServiceServicer):
    def __init__(self, store: OptunaStore, runs: OptunaRuns, trial_runs: TrialRuns) -> None:
        self._store = store
        self._runs = runs
        self._trial_runs = trial_runs

    # -- access -----------------------------------------------------------------------------------

    async def _study(self, study_id: int, role: Role) -> OptunaStudy:
        study = await self._store.study(study_id)
        current_principal.get().require(role, [study.project_id])
        return study

    async def _trial(self, trial_id: int, role: Role) -> None:
        """Check the caller may act on the trial (as admin, or with auth off, the call's own
        query finds a missing trial)."""
        principal = current_principal.get()
        if not principal.admin:
            principal.require(role, [(await self._store.trial_head(trial_id))[3]])

    # -- studies ----------------------------------------------------------------------------------

    async def CreateNewStudy(self, request: api_pb2.CreateNewStudyRequest, context: Context) -> Any:
        name = request.study_name  # Optuna allows any name, the empty one too
        if len(name) > NAME_MAX:
            raise InvalidArgument(f"a study name is {len(name)} characters; the limit is {NAME_MAX}")
        if not request.directions:
            raise InvalidArgument("a study needs at least one direction")
        principal = current_principal.get()
        project = "default" if principal.project_id is None else await self._store.project_name(principal.project_id)
        if await self._store.name_taken(name):
            raise AlreadyExists(f"a study named {name!r} exists already")
        run_id, experiment_id = await self._runs.start_study(name, project=project)
        several = len(request.directions) > 1
        objectives = [{"metric": f"value_{i}" if several else "value",
                       "direction": hpo_pb2.DIRECTION_MAXIMIZE if d == api_pb2.MAXIMIZE else hpo_pb2.DIRECTION_MINIMIZE}
                      for i, d in enumerate(request.directions)]
        try:
            study_id = await self._store.create_study(name=name, directions=list(request.directions),
                                                      objectives=objectives, experiment_id=experiment_id, run_id=run_id)
        except AlreadyExists:
            await self._runs.end(run_id, RunStatus.KILLED)
            raise
        return api_pb2.CreateNewStudyReply(study_id=study_id)

    async def DeleteStudy(self, request: api_pb2.DeleteStudyRequest, context: Context) -> Any:
        study = await self._study(request.study_id, Role.WRITE)
        for run_id in await self._store.delete_study(study.id):
            await self._runs.end(run_id, RunStatus.KILLED)
        if study.run_id is not None:
            await self._runs.end(study.run_id, RunStatus.FINISHED)
        return api_pb2.DeleteStudyReply()

    async def SetStudyUserAttribute(self, request: api_pb2.SetStudyUserAttributeRequest, context: Context) -> Any:
        await self._study(request.study_id, Role.WRITE)
        await self._store.set_study_attr(request.study_id, system=False, key=request.key, value=request.value)
        return api_pb2.SetStudyUserAttributeReply()

    async def SetStudySystemAttribute(self, request: api_pb2.SetStudySystemAttributeRequest,
                                      context: Context) -> Any:
        await self._study(request.study_id, Role.WRITE)
        await self._store.set_study_attr(request.study_id, system=True, key=request.key, value=request.value)
        return api_pb2.SetStudySystemAttributeReply()

    async def GetStudyIdFromName(self, request: api_pb2.GetStudyIdFromNameRequest, context: Context) -> Any:
        study = await self._store.study_by_name(request.study_name)
        current_principal.get().require(Role.READ, [study.project_id])
        return api_pb2.GetStudyIdFromNameReply(study_id=study.id)

    async def GetStudyNameFromId(self, request: api_pb2.GetStudyNameFromIdRequest, context: Context) -> Any:
        return api_pb2.GetStudyNameFromIdReply(study_name=(await self._study(request.study_id, Role.READ)).name)

    async def GetStudyDirections(self, request: api_pb2.GetStudyDirectionsRequest, context: Context) -> Any:
        study = await self._study(request.study_id, Role.READ)
        return api_pb2.GetStudyDirectionsReply(directions=study.directions)  # type: ignore[arg-type]

    async def GetStudyUserAttributes(self, request: api_pb2.GetStudyUserAttributesRequest, context: Context) -> Any:
        study = await self._study(request.study_id, Role.READ)
        return api_pb2.GetStudyUserAttributesReply(user_attributes=study.user_attrs)

    async def GetStudySystemAttributes(self, request: api_pb2.GetStudySystemAttributesRequest,
                                       context: Context) -> Any:
        study = await self._study(request.study_id, Role.READ)
        return api_pb2.GetStudySystemAttributesReply(system_attributes=study.system_attrs)

    async def GetAllStudies(self, request: api_pb2.GetAllStudiesRequest, context: Context) -> Any:
        principal = current_principal.get()
        studies = await self._store.studies(None if principal.admin else principal.project_id)
        return api_pb2.GetAllStudiesReply(studies=[_study_pb(s) for s in studies])

    # -- trials -----------------------------------------------------------------------------------

    async def CreateNewTrial(self, request: api_pb2.CreateNewTrialRequest, context: Context) -> Any:
        study = await self._study(request.study_id, Role.WRITE)
        new = NewTrial(started_at=datetime.now().astimezone()) if request.template_trial_is_none \
            else _new_trial(request.template_trial)
        trial = await self._store.create_trial(study, new)
        if trial.state != TrialState.WAITING:
            await self._trial_runs.start(study, trial)
        if trial.state.ended:
            await self._trial_runs.end(trial.id, trial.state, trial.external_params)
        return api_pb2.CreateNewTrialReply(trial_id=trial.id)

    async def SetTrialParameter(self, request: api_pb2.SetTrialParameterRequest, context: Context) -> Any:
        await self._trial(request.trial_id, Role.WRITE)
        study_id, state, number, _ = await self._store.trial_head(request.trial_id)
        if state.ended:
            raise FailedPrecondition(f"trial {number} has ended ({state.name}): it cannot change")
        distribution = _distribution(request.distribution)
        first = await self._store.first_distribution(study_id, request.param_name, request.distribution)
        if first != request.distribution:
            try:
                check_distribution_compatibility(_distribution(first), distribution)
            except ValueError as error:
                raise InvalidArgument(f"param {request.param_name!r}: {error}") from None
        try:
            external = _shown(distribution.to_external_repr(request.param_value_internal))
        except (ValueError, IndexError) as error:
            raise InvalidArgument(f"param {request.param_name!r}: {request.param_value_internal} is not in its "
                                  f"distribution ({error})") from None
        await self._store.set_param(request.trial_id, request.param_name, request.param_value_internal,
                                    request.distribution, external)
        return api_pb2.SetTrialParameterReply()

    async def GetTrialIdFromStudyIdTrialNumber(self, request: api_pb2.GetTrialIdFromStudyIdTrialNumberRequest,
                                               context: Context) -> Any:
        await self._study(request.study_id, Role.READ)
        trial_id = await self._store.trial_id(request.study_id, request.trial_number)
        return api_pb2.GetTrialIdFromStudyIdTrialNumberReply(trial_id=trial_id)

    async def SetTrialStateValues(self, request: api_pb2.SetTrialStateValuesRequest, context: Context) -> Any:
        await self._trial(request.trial_id, Role.WRITE)
        state = _state(request.state)
        moved = await self._store.set_state(request.trial_id, state, list(request.values) or None)
        if moved is None:
            return api_pb2.SetTrialStateValuesReply(trial_updated=False)
        if moved.run_id is None and moved.state != TrialState.WAITING:
            await self._trial_runs.start(await self._store.study(moved.study_id), moved)  # unless started already
        if moved.state.ended:
            await self._trial_runs.end(moved.id, moved.state, moved.external_params)
        return api_pb2.SetTrialStateValuesReply(trial_updated=True)

    async def SetTrialIntermediateValue(self, request: api_pb2.SetTrialIntermediateValueRequest,
                                        context: Context) -> Any:
        await self._trial(request.trial_id, Role.WRITE)
        await self._store.set_intermediate(request.trial_id, request.step, request.intermediate_value)
        await self._trial_runs.log_value(request.trial_id, request.step, request.intermediate_value)
        return api_pb2.SetTrialIntermediateValueReply()

    async def SetTrialUserAttribute(self, request: api_pb2.SetTrialUserAttributeRequest, context: Context) -> Any:
        await self._trial(request.trial_id, Role.WRITE)
        await self._store.set_trial_attr(request.trial_id, system=False, key=request.key, value=request.value)
        return api_pb2.SetTrialUserAttributeReply()

    async def SetTrialSystemAttribute(self, request: api_pb2.SetTrialSystemAttributeRequest,
                                      context: Context) -> Any:
        await self._trial(request.trial_id, Role.WRITE)
        await self._store.set_trial_attr(request.trial_id, system=True, key=request.key, value=request.value)
        return api_pb2.SetTrialSystemAttributeReply()

    async def GetTrial(self, request: api_pb2.GetTrialRequest, context: Context) -> Any:
        await self._trial(request.trial_id, Role.READ)
        return api_pb2.GetTrialReply(trial=_trial_pb(await self._store.trial(request.trial_id)))

    async def GetTrials(self, request: api_pb2.GetTrialsRequest, context: Context) -> Any:
        await self._study(request.study_id, Role.READ)
        trials = await self._store.trials(request.study_id, after=request.trial_id_greater_than,
                                          including=list(request.included_trial_ids))
        return api_pb2.GetTrialsReply(trials=[_trial_pb(t) for t in trials])


def add_optuna_storage(server: GrpcServer, pool: asyncpg.Pool, config: StoresConfig) -> OptunaControls:
    """Serve the StorageService on the hpo server (both its ports); returns trackd's controls on
    the studies it makes (for the HpoService)."""
    runs = OptunaRuns(config.run_target, config.ingest_target, config.server)
    store = OptunaStore(pool)
    trial_runs = TrialRuns(runs, store)
    server.add_closer(runs.close)
    server.add_closer(trial_runs.drain)  # closers run in reverse: the runs' updates before their channels
    server.add_servicer(api_pb2_grpc.add_StorageServiceServicer_to_server,
                        OptunaStorageServicer(store, runs, trial_runs), SERVICE)
    return OptunaControls(store, runs)
