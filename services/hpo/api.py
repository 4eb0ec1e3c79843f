"""The HpoService servicer: convert requests, call the controller, convert back."""

from __future__ import annotations

import json
import uuid
from typing import Any

from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_platform.errors import InvalidArgument
from trackd_platform.ids import format_id, parse_id
from trackd_platform.paging import decode_token, encode_token, page_size
from trackd_platform.rpc_types import Context
from trackd_platform.run_records import validate_name
from trackd_platform.timestamps import timestamp

from .controller import Controller
from .domain import StudyRow, StudyState, TrialRow, TrialState
from .optuna_controls import OptunaControls
from .store import StudyStore

MAX_PARALLELISM = 1_000


def _options(name: str, text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"{name} is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a JSON object")
    return value


def study_to_proto(s: StudyRow) -> hpo_pb2.Study:
    return hpo_pb2.Study(
        id=format_id(s.id), name=s.name, experiment_id=format_id(s.experiment_id),
        objectives=[hpo_pb2.Objective(metric=o["metric"], direction=o["direction"]) for o in s.objectives],
        search_space_json=json.dumps(s.search_space), sampler=s.sampler,
        sampler_options_json=json.dumps(s.sampler_options), pruner=s.pruner,
        pruner_options_json=json.dumps(s.pruner_options), max_trials=s.max_trials, max_duration_s=s.max_duration_s,
        parallelism=s.parallelism, max_failed_trials=s.max_failed_trials, retries_per_trial=s.retries_per_trial,
        state=s.state.value, run_id=format_id(s.run_id) if s.run_id else "", create_time=timestamp(s.created_at),
        trials_complete=s.count(TrialState.COMPLETE), trials_pruned=s.count(TrialState.PRUNED),
        trials_failed=s.count(TrialState.FAIL), trials_running=s.count(TrialState.RUNNING),
        define_by_run=s.define_by_run)


def trial_to_proto(t: TrialRow) -> hpo_pb2.Trial:
    return hpo_pb2.Trial(
        id=format_id(t.id), study_id=format_id(t.study_id), number=t.number, state=t.state.value,
        params_json=json.dumps(t.params, sort_keys=True), values=t.values or [],
        run_id=format_id(t.run_id) if t.run_id else "", attempt=t.attempt, worker=t.worker,
        lease_expire_time=timestamp(t.lease_expires), start_time=timestamp(t.started_at),
        end_time=timestamp(t.ended_at), fail_reason=t.fail_reason)


class HpoServicer(hpo_pb2_grpc.HpoServiceServicer):
    def __init__(self, controller: Controller, store: StudyStore, optuna: OptunaControls) -> None:
        self._controller = controller
        self._store = store
        self._optuna = optuna  # the controls of a study Optuna's clients run (made through GrpcStorageProxy)

    async def _optuna_study(self, study_id: uuid.UUID) -> StudyRow | None:
        """The study, when Optuna's clients run it: the controls below act on it through OptunaControls."""
        study = await self._store.get(study_id=study_id)
        return study if self._optuna.made_by_optuna(study) else None

    async def CreateStudy(self, request: hpo_pb2.CreateStudyRequest, context: Context) -> hpo_pb2.CreateStudyResponse:
        name = validate_name("study", request.name)
        if not request.objectives:
            raise InvalidArgument("a study needs at least one objective (metric and direction)")
        objectives = []
        for o in request.objectives:
            if o.direction not in (hpo_pb2.DIRECTION_MINIMIZE, hpo_pb2.DIRECTION_MAXIMIZE):
                raise InvalidArgument(f"objective {o.metric!r}: direction is DIRECTION_MINIMIZE or DIRECTION_MAXIMIZE")
            objectives.append({"metric": validate_name("objective metric", o.metric), "direction": int(o.direction)})
        for field in ("max_trials", "max_duration_s", "max_failed_trials", "retries_per_trial"):
            if getattr(request, field) < 0:
                raise InvalidArgument(f"{field} must not be negative")
        if not 0 <= request.parallelism <= MAX_PARALLELISM:
            raise InvalidArgument(f"parallelism is 1–{MAX_PARALLELISM} (0 means 1)")
        fields = {
            "name": name, "objectives": objectives,
            # none given: define-by-run, the space is learnt from the trials' SuggestParam calls
            "search_space": _options("search_space_json", request.search_space_json),
            "define_by_run": not request.search_space_json.strip(),
            "sampler": request.sampler or "tpe", "sampler_options": _options("sampler_options_json",
                                                                            request.sampler_options_json),
            "pruner": request.pruner or "none", "pruner_options": _options("pruner_options_json",
                                                                          request.pruner_options_json),
            "max_trials": request.max_trials, "max_duration_s": request.max_duration_s,
            "parallelism": request.parallelism or 1, "max_failed_trials": request.max_failed_trials,
            "retries_per_trial": request.retries_per_trial, "seed": request.seed or None,
        }
        study = await self._controller.create(
            fields, experiment=validate_name("experiment", request.experiment or name),
            project=validate_name("project", request.project or "default"), paused=request.paused)
        return hpo_pb2.CreateStudyResponse(study=study_to_proto(study))

    async def GetStudy(self, request: hpo_pb2.GetStudyRequest, context: Context) -> hpo_pb2.GetStudyResponse:
        if request.study_id:
            study = await self._store.get(study_id=parse_id("study_id", request.study_id))
        else:
            study = await self._store.get(name=validate_name("study", request.name))
        return hpo_pb2.GetStudyResponse(study=study_to_proto(study))

    async def ListStudies(self, request: hpo_pb2.ListStudiesRequest, context: Context) -> hpo_pb2.ListStudiesResponse:
        limit = page_size(request.page_size)
        after = decode_token(request.page_token, arity=1, kinds=(str,))
        studies = await self._store.list_studies(limit=limit, after=after[0] if after else None)
        token = encode_token([studies[-1].name]) if len(studies) == limit else ""
        return hpo_pb2.ListStudiesResponse(studies=[study_to_proto(s) for s in studies], next_page_token=token)

    async def StartStudy(self, request: hpo_pb2.StartStudyRequest, context: Context) -> hpo_pb2.StartStudyResponse:
        study_id = parse_id("study_id", request.study_id)
        if optuna := await self._optuna_study(study_id):
            self._optuna.refuse(optuna, "start or resume it")
        study = await self._controller.transition(study_id, StudyState.RUNNING)
        return hpo_pb2.StartStudyResponse(study=study_to_proto(study))

    async def PauseStudy(self, request: hpo_pb2.PauseStudyRequest, context: Context) -> hpo_pb2.PauseStudyResponse:
        study_id = parse_id("study_id", request.study_id)
        if optuna := await self._optuna_study(study_id):
            self._optuna.refuse(optuna, "pause it (its clients would not wait)")
        study = await self._controller.transition(study_id, StudyState.PAUSED)
        return hpo_pb2.PauseStudyResponse(study=study_to_proto(study))

    async def StopStudy(self, request: hpo_pb2.StopStudyRequest, context: Context) -> hpo_pb2.StopStudyResponse:
        study_id = parse_id("study_id", request.study_id)
        if optuna := await self._optuna_study(study_id):
            await self._optuna.stop(optuna)
            study = await self._store.get(study_id=study_id)
        else:
            study = await self._controller.transition(study_id, StudyState.STOPPED)
        return hpo_pb2.StopStudyResponse(study=study_to_proto(study))

    async def EnqueueTrial(
        self, request: hpo_pb2.EnqueueTrialRequest, context: Context
    ) -> hpo_pb2.EnqueueTrialResponse:
        study_id = parse_id("study_id", request.study_id)
        params = _options("params_json", request.params_json)
        if optuna := await self._optuna_study(study_id):
            number = (await self._optuna.enqueue(optuna, params)).number
            [trial] = await self._store.trials_by_number(study_id, [number])
        else:
            trial = await self._controller.enqueue(study_id, params)
        return hpo_pb2.EnqueueTrialResponse(trial=trial_to_proto(trial))

    async def ListTrials(self, request: hpo_pb2.ListTrialsRequest, context: Context) -> hpo_pb2.ListTrialsResponse:
        study_id = parse_id("study_id", request.study_id)
        await self._store.get(study_id=study_id)
        limit = page_size(request.page_size)
        after = decode_token(request.page_token, arity=1, kinds=(int,))
        trials = await self._store.trials(study_id, states=[int(s) for s in request.states], limit=limit,
                                          after=int(after[0]) if after else -1)
        token = encode_token([trials[-1].number]) if len(trials) == limit else ""
        return hpo_pb2.ListTrialsResponse(trials=[trial_to_proto(t) for t in trials], next_page_token=token)

    async def GetBestTrials(
        self, request: hpo_pb2.GetBestTrialsRequest, context: Context
    ) -> hpo_pb2.GetBestTrialsResponse:
        study_id = parse_id("study_id", request.study_id)
        if optuna := await self._optuna_study(study_id):
            trials = await self._store.trials_by_number(study_id, await self._optuna.best(optuna))
        else:
            trials = await self._controller.best(study_id)
        return hpo_pb2.GetBestTrialsResponse(trials=[trial_to_proto(t) for t in trials])

    async def AcquireTrial(
        self, request: hpo_pb2.AcquireTrialRequest, context: Context
    ) -> hpo_pb2.AcquireTrialResponse:
        got = await self._controller.acquire(parse_id("study_id", request.study_id), request.worker)
        return hpo_pb2.AcquireTrialResponse(trial=trial_to_proto(got.trial) if got.trial else None,
                                            study=study_to_proto(got.study), lease_s=int(self._controller.lease_s))

    async def HeartbeatTrial(
        self, request: hpo_pb2.HeartbeatTrialRequest, context: Context
    ) -> hpo_pb2.HeartbeatTrialResponse:
        beat = await self._controller.heartbeat(parse_id("trial_id", request.trial_id), request.worker)
        return hpo_pb2.HeartbeatTrialResponse(lease_expire_time=timestamp(beat.lease_expires),
                                              should_stop=beat.should_stop, trial_ended=beat.trial_ended)

    async def ReportIntermediate(
        self, request: hpo_pb2.ReportIntermediateRequest, context: Context
    ) -> hpo_pb2.ReportIntermediateResponse:
        prune = await self._controller.report(parse_id("trial_id", request.trial_id), request.worker, request.step,
                                              request.value)
        return hpo_pb2.ReportIntermediateResponse(should_prune=prune)

    async def CompleteTrial(
        self, request: hpo_pb2.CompleteTrialRequest, context: Context
    ) -> hpo_pb2.CompleteTrialResponse:
        state = TrialState.PRUNED if request.pruned else TrialState.COMPLETE
        trial = await self._controller.finish(parse_id("trial_id", request.trial_id), request.worker, state,
                                              list(request.values))
        return hpo_pb2.CompleteTrialResponse(trial=trial_to_proto(trial))

    async def SuggestParam(
        self, request: hpo_pb2.SuggestParamRequest, context: Context
    ) -> hpo_pb2.SuggestParamResponse:
        value = await self._controller.suggest(parse_id("trial_id", request.trial_id), request.worker,
                                               request.name, _options("distribution_json", request.distribution_json))
        return hpo_pb2.SuggestParamResponse(value_json=json.dumps(value))

    async def FailTrial(self, request: hpo_pb2.FailTrialRequest, context: Context) -> hpo_pb2.FailTrialResponse:
        trial = await self._controller.finish(parse_id("trial_id", request.trial_id), request.worker,
                                              TrialState.FAIL, [], request.reason)
        return hpo_pb2.FailTrialResponse(trial=trial_to_proto(trial))
