import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_MINIMIZE: _ClassVar[Direction]
    DIRECTION_MAXIMIZE: _ClassVar[Direction]

class StudyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STUDY_STATE_UNSPECIFIED: _ClassVar[StudyState]
    STUDY_STATE_CREATED: _ClassVar[StudyState]
    STUDY_STATE_RUNNING: _ClassVar[StudyState]
    STUDY_STATE_PAUSED: _ClassVar[StudyState]
    STUDY_STATE_STOPPED: _ClassVar[StudyState]
    STUDY_STATE_FINISHED: _ClassVar[StudyState]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    TRIAL_STATE_WAITING: _ClassVar[TrialState]
    TRIAL_STATE_RUNNING: _ClassVar[TrialState]
    TRIAL_STATE_COMPLETE: _ClassVar[TrialState]
    TRIAL_STATE_PRUNED: _ClassVar[TrialState]
    TRIAL_STATE_FAIL: _ClassVar[TrialState]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_MINIMIZE: Direction
DIRECTION_MAXIMIZE: Direction
STUDY_STATE_UNSPECIFIED: StudyState
STUDY_STATE_CREATED: StudyState
STUDY_STATE_RUNNING: StudyState
STUDY_STATE_PAUSED: StudyState
STUDY_STATE_STOPPED: StudyState
STUDY_STATE_FINISHED: StudyState
TRIAL_STATE_UNSPECIFIED: TrialState
TRIAL_STATE_WAITING: TrialState
TRIAL_STATE_RUNNING: TrialState
TRIAL_STATE_COMPLETE: TrialState
TRIAL_STATE_PRUNED: TrialState
TRIAL_STATE_FAIL: TrialState

class Objective(_message.Message):
    __slots__ = ("metric", "direction")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    metric: str
    direction: Direction
    def __init__(self, metric: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ...) -> None: ...

class Study(_message.Message):
    __slots__ = ("id", "name", "experiment_id", "objectives", "search_space_json", "sampler", "sampler_options_json", "pruner", "pruner_options_json", "max_trials", "max_duration_s", "parallelism", "max_failed_trials", "retries_per_trial", "state", "run_id", "create_time", "trials_complete", "trials_pruned", "trials_failed", "trials_running", "define_by_run")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_JSON_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRUNER_FIELD_NUMBER: _ClassVar[int]
    PRUNER_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILED_TRIALS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_PER_TRIAL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIALS_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    TRIALS_PRUNED_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FAILED_FIELD_NUMBER: _ClassVar[int]
    TRIALS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    DEFINE_BY_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    experiment_id: str
    objectives: _containers.RepeatedCompositeFieldContainer[Objective]
    search_space_json: str
    sampler: str
    sampler_options_json: str
    pruner: str
    pruner_options_json: str
    max_trials: int
    max_duration_s: int
    parallelism: int
    max_failed_trials: int
    retries_per_trial: int
    state: StudyState
    run_id: str
    create_time: _timestamp_pb2.Timestamp
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    trials_running: int
    define_by_run: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., experiment_id: _Optional[str] = ..., objectives: _Optional[_Iterable[_Union[Objective, _Mapping]]] = ..., search_space_json: _Optional[str] = ..., sampler: _Optional[str] = ..., sampler_options_json: _Optional[str] = ..., pruner: _Optional[str] = ..., pruner_options_json: _Optional[str] = ..., max_trials: _Optional[int] = ..., max_duration_s: _Optional[int] = ..., parallelism: _Optional[int] = ..., max_failed_trials: _Optional[int] = ..., retries_per_trial: _Optional[int] = ..., state: _Optional[_Union[StudyState, str]] = ..., run_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trials_complete: _Optional[int] = ..., trials_pruned: _Optional[int] = ..., trials_failed: _Optional[int] = ..., trials_running: _Optional[int] = ..., define_by_run: _Optional[bool] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("id", "study_id", "number", "state", "params_json", "values", "run_id", "attempt", "lease_expire_time", "worker", "start_time", "end_time", "fail_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FAIL_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    study_id: str
    number: int
    state: TrialState
    params_json: str
    values: _containers.RepeatedScalarFieldContainer[float]
    run_id: str
    attempt: int
    lease_expire_time: _timestamp_pb2.Timestamp
    worker: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    fail_reason: str
    def __init__(self, id: _Optional[str] = ..., study_id: _Optional[str] = ..., number: _Optional[int] = ..., state: _Optional[_Union[TrialState, str]] = ..., params_json: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., worker: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fail_reason: _Optional[str] = ...) -> None: ...

class CreateStudyRequest(_message.Message):
    __slots__ = ("name", "experiment", "project", "objectives", "search_space_json", "sampler", "sampler_options_json", "pruner", "pruner_options_json", "max_trials", "max_duration_s", "parallelism", "max_failed_trials", "retries_per_trial", "paused", "seed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_JSON_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRUNER_FIELD_NUMBER: _ClassVar[int]
    PRUNER_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILED_TRIALS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_PER_TRIAL_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    name: str
    experiment: str
    project: str
    objectives: _containers.RepeatedCompositeFieldContainer[Objective]
    search_space_json: str
    sampler: str
    sampler_options_json: str
    pruner: str
    pruner_options_json: str
    max_trials: int
    max_duration_s: int
    parallelism: int
    max_failed_trials: int
    retries_per_trial: int
    paused: bool
    seed: int
    def __init__(self, name: _Optional[str] = ..., experiment: _Optional[str] = ..., project: _Optional[str] = ..., objectives: _Optional[_Iterable[_Union[Objective, _Mapping]]] = ..., search_space_json: _Optional[str] = ..., sampler: _Optional[str] = ..., sampler_options_json: _Optional[str] = ..., pruner: _Optional[str] = ..., pruner_options_json: _Optional[str] = ..., max_trials: _Optional[int] = ..., max_duration_s: _Optional[int] = ..., parallelism: _Optional[int] = ..., max_failed_trials: _Optional[int] = ..., retries_per_trial: _Optional[int] = ..., paused: _Optional[bool] = ..., seed: _Optional[int] = ...) -> None: ...

class CreateStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class GetStudyRequest(_message.Message):
    __slots__ = ("study_id", "name")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    name: str
    def __init__(self, study_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class ListStudiesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ("studies", "next_page_token")
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[Study]
    next_page_token: str
    def __init__(self, studies: _Optional[_Iterable[_Union[Study, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StartStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class StartStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class PauseStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class PauseStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class StopStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class StopStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class EnqueueTrialRequest(_message.Message):
    __slots__ = ("study_id", "params_json")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    params_json: str
    def __init__(self, study_id: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

class EnqueueTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: Trial
    def __init__(self, trial: _Optional[_Union[Trial, _Mapping]] = ...) -> None: ...

class ListTrialsRequest(_message.Message):
    __slots__ = ("study_id", "states", "page_size", "page_token")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    states: _containers.RepeatedScalarFieldContainer[TrialState]
    page_size: int
    page_token: str
    def __init__(self, study_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[TrialState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTrialsResponse(_message.Message):
    __slots__ = ("trials", "next_page_token")
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    next_page_token: str
    def __init__(self, trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBestTrialsRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class GetBestTrialsResponse(_message.Message):
    __slots__ = ("trials",)
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    def __init__(self, trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ...) -> None: ...

class AcquireTrialRequest(_message.Message):
    __slots__ = ("study_id", "worker")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    worker: str
    def __init__(self, study_id: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class AcquireTrialResponse(_message.Message):
    __slots__ = ("trial", "study", "lease_s")
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    trial: Trial
    study: Study
    lease_s: int
    def __init__(self, trial: _Optional[_Union[Trial, _Mapping]] = ..., study: _Optional[_Union[Study, _Mapping]] = ..., lease_s: _Optional[int] = ...) -> None: ...

class HeartbeatTrialRequest(_message.Message):
    __slots__ = ("trial_id", "worker")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    worker: str
    def __init__(self, trial_id: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class HeartbeatTrialResponse(_message.Message):
    __slots__ = ("lease_expire_time", "should_stop", "trial_ended")
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SHOULD_STOP_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ENDED_FIELD_NUMBER: _ClassVar[int]
    lease_expire_time: _timestamp_pb2.Timestamp
    should_stop: bool
    trial_ended: bool
    def __init__(self, lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., should_stop: _Optional[bool] = ..., trial_ended: _Optional[bool] = ...) -> None: ...

class ReportIntermediateRequest(_message.Message):
    __slots__ = ("trial_id", "worker", "step", "value")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    worker: str
    step: int
    value: float
    def __init__(self, trial_id: _Optional[str] = ..., worker: _Optional[str] = ..., step: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class ReportIntermediateResponse(_message.Message):
    __slots__ = ("should_prune",)
    SHOULD_PRUNE_FIELD_NUMBER: _ClassVar[int]
    should_prune: bool
    def __init__(self, should_prune: _Optional[bool] = ...) -> None: ...

class CompleteTrialRequest(_message.Message):
    __slots__ = ("trial_id", "worker", "values", "pruned")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PRUNED_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    worker: str
    values: _containers.RepeatedScalarFieldContainer[float]
    pruned: bool
    def __init__(self, trial_id: _Optional[str] = ..., worker: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., pruned: _Optional[bool] = ...) -> None: ...

class CompleteTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: Trial
    def __init__(self, trial: _Optional[_Union[Trial, _Mapping]] = ...) -> None: ...

class FailTrialRequest(_message.Message):
    __slots__ = ("trial_id", "worker", "reason")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    worker: str
    reason: str
    def __init__(self, trial_id: _Optional[str] = ..., worker: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FailTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: Trial
    def __init__(self, trial: _Optional[_Union[Trial, _Mapping]] = ...) -> None: ...

class SuggestParamRequest(_message.Message):
    __slots__ = ("trial_id", "worker", "name", "distribution_json")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_JSON_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    worker: str
    name: str
    distribution_json: str
    def __init__(self, trial_id: _Optional[str] = ..., worker: _Optional[str] = ..., name: _Optional[str] = ..., distribution_json: _Optional[str] = ...) -> None: ...

class SuggestParamResponse(_message.Message):
    __slots__ = ("value_json",)
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    value_json: str
    def __init__(self, value_json: _Optional[str] = ...) -> None: ...
