"""The HPO domain: study and trial states (trackd_platform.vocabulary's, from the protos — the
numbers PostgreSQL stores too), the study and trial records, and as pure functions the
decisions the controller takes on them — has a study reached a limit, may it change state, may a
trial move from one state to another, is a lost trial retried or failed, how many trials to
sample ahead. No I/O here: the controller reads the records, asks these rules, and writes."""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.errors import Aborted, FailedPrecondition, InvalidArgument
from trackd_platform.vocabulary import StudyState as StudyState  # re-exported: the one vocabulary's
from trackd_platform.vocabulary import TrialState as TrialState

from .space import MAX_PARAMS, Param

ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
OPTUNA_CLIENT = "optuna-client"  # `studies.sampler` of a study made through Optuna's storage (optuna_storage.py)

_TRIAL_MOVES: Mapping[TrialState, frozenset[TrialState]] = {
    # A waiting trial is leased, or ended directly by a client holding its id (CompleteTrial / FailTrial).
    TrialState.WAITING: frozenset({TrialState.RUNNING, *ENDED}),
    # A running one ends, or goes back to wait for a retry when its worker was lost.
    TrialState.RUNNING: frozenset({TrialState.WAITING, *ENDED}),
    TrialState.COMPLETE: frozenset(), TrialState.PRUNED: frozenset(), TrialState.FAIL: frozenset(),
}


class Limit(enum.StrEnum):
    """A study limit that stops sampling."""

    MAX_FAILED_TRIALS = "max_failed_trials"
    MAX_DURATION = "max_duration"
    MAX_TRIALS = "max_trials"


@dataclass(frozen=True)
class StudyRow:
    id: uuid.UUID
    name: str
    experiment_id: uuid.UUID
    run_id: uuid.UUID | None
    objectives: list[dict[str, Any]]  # {"metric": str, "direction": trackd.hpo.v1.Direction number}
    search_space: dict[str, Any]
    sampler: str
    sampler_options: dict[str, Any]
    pruner: str
    pruner_options: dict[str, Any]
    max_trials: int  # 0: no limit (as for the two below)
    max_duration_s: int
    parallelism: int
    max_failed_trials: int
    retries_per_trial: int
    seed: int | None
    state: StudyState
    created_at: datetime
    started_at: datetime | None
    counts: Mapping[TrialState, int]  # trials per state (empty when not read)
    define_by_run: bool = False  # created without a search space: search_space is learnt from the trials

    def count(self, *states: TrialState) -> int:
        return sum(self.counts.get(s, 0) for s in states)


@dataclass(frozen=True)
class TrialRow:
    id: uuid.UUID
    study_id: uuid.UUID
    number: int
    state: TrialState
    params: dict[str, Any]
    values: list[float] | None
    run_id: uuid.UUID | None
    attempt: int  # 1 for the first try; a retry is the same trial with attempt + 1
    worker: str
    lease_expires: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    fail_reason: str = ""  # FailTrial's reason, or why the service failed it


def directions(objectives: Sequence[Mapping[str, Any]]) -> tuple[Literal["minimize", "maximize"], ...]:
    """Optuna's directions for a study's objectives."""
    return tuple("minimize" if o["direction"] == hpo_pb2.DIRECTION_MINIMIZE else "maximize" for o in objectives)


# -- studies ------------------------------------------------------------------------------------

def exhausted(study: StudyRow, now: datetime) -> Limit | None:
    """The limit the study has reached, if any: no trial is sampled past it."""
    if study.max_failed_trials and study.count(TrialState.FAIL) >= study.max_failed_trials:
        return Limit.MAX_FAILED_TRIALS
    if study.max_duration_s and study.started_at is not None and (
            now - study.started_at > timedelta(seconds=study.max_duration_s)):
        return Limit.MAX_DURATION
    if study.max_trials and sum(study.counts.values()) >= study.max_trials:
        return Limit.MAX_TRIALS
    return None


def finishing(study: StudyRow, now: datetime) -> Limit | None:
    """The limit a running study has reached (None when it runs on, or does not run). It is
    FINISHED once no trial is open; trials sampled ahead are dropped first unless the limit is
    max_trials (those within it are still needed)."""
    return exhausted(study, now) if study.state == StudyState.RUNNING else None


def open_trials(study: StudyRow) -> int:
    """Trials waiting or running: a study finishes only when there are none."""
    return study.count(TrialState.RUNNING, TrialState.WAITING)


def check_study_move(study: StudyRow, target: StudyState) -> None:
    """Raise FailedPrecondition unless the study may go to `target` (Start, Pause or Stop)."""
    if study.state.ended:
        raise FailedPrecondition(f"study {study.name!r} has ended; create a new one to search again")
    if target == StudyState.PAUSED and study.state not in (StudyState.RUNNING, StudyState.CREATED):
        raise FailedPrecondition(f"study {study.name!r} is not running")


def check_run_by_trackd(study: StudyRow, action: str) -> None:
    """FailedPrecondition for a study made through Optuna's storage (GrpcStorageProxy): Optuna's
    clients sample, start and end its trials, so trackd cannot `action`."""
    if study.sampler == OPTUNA_CLIENT:
        raise FailedPrecondition(
            f"study {study.name!r} was created through Optuna's storage (GrpcStorageProxy): Optuna's clients "
            f"sample and run its trials (study.optimize / study.ask), so trackd cannot {action}; trackd can "
            "enqueue a trial for it (Optuna's next ask runs it) or stop it (no new trials)")


def open_to_workers(study: StudyRow) -> bool:
    """False when the study has finished (its workers see that and leave); FailedPrecondition
    when it was stopped, or is run by Optuna's clients."""
    check_run_by_trackd(study, "hand its trials to trackd's workers")
    if study.state == StudyState.STOPPED:
        raise FailedPrecondition(f"study {study.name!r} was stopped: no more trials")
    return study.state != StudyState.FINISHED


def may_hand_out(study: StudyRow) -> bool:
    """Whether a worker may get a trial now: the study runs below its parallelism."""
    return study.state == StudyState.RUNNING and study.count(TrialState.RUNNING) < study.parallelism


# Samplers that fit a model to the results: a trial they sampled ahead misses the results that
# arrive while it waits, so fewer wait, and those that went stale are sampled again.
MODEL_BASED_SAMPLERS = frozenset({"tpe", "gp", "cmaes"})


def ahead(study: StudyRow) -> int:
    """How many trials wait sampled ahead (besides those running): `parallelism` for samplers
    that ignore results; for model-based ones a quarter of it (at least 1), as a queued trial
    is blind to the results that arrive before a worker takes it; past that depth a worker's
    trial is sampled on demand, as Optuna samples, seeing every result so far."""
    if study.sampler not in MODEL_BASED_SAMPLERS:
        return study.parallelism
    return max(1, math.ceil(study.parallelism / 4))


def stale(study: StudyRow, missed: int) -> bool:
    """Whether a trial sampled ahead that has missed `missed` results since (completed or pruned
    trials) is to be sampled again: more than `ahead` (a trial of a FIFO queue that deep misses
    that many in the steady state), and only for model-based samplers."""
    return study.sampler in MODEL_BASED_SAMPLERS and missed > ahead(study)


def to_sample_ahead(study: StudyRow, now: datetime) -> int:
    """How many trials to sample ahead so that `ahead(study)` wait besides those running, within
    the study's limits (0 unless it runs)."""
    if study.state != StudyState.RUNNING or exhausted(study, now):
        return 0
    missing = ahead(study) - study.count(TrialState.WAITING)
    if study.max_trials:
        missing = min(missing, study.max_trials - sum(study.counts.values()))
    return max(missing, 0)


# -- trials -------------------------------------------------------------------------------------

def may_move(current: TrialState, target: TrialState) -> bool:
    """Whether a trial may go from `current` to `target` (ended trials never change)."""
    return target in _TRIAL_MOVES[current]


def after_lost(trial: TrialRow, retries_per_trial: int) -> TrialState:
    """What a running trial whose worker was lost (lease expired, run ended FAILED or CRASHED)
    becomes: WAITING for another attempt while retries remain, else FAIL."""
    return TrialState.WAITING if trial.attempt <= retries_per_trial else TrialState.FAIL


def check_lease(trial: TrialRow, worker: str) -> None:
    """Raise Aborted when a running trial is leased to another worker than `worker` (an empty
    worker is not checked)."""
    if trial.state == TrialState.RUNNING and worker and trial.worker != worker:
        raise Aborted(f"trial {trial.number} is leased by {trial.worker!r}, not {worker!r}")


MAX_FAIL_REASON = 1_000


def fail_reason(reason: str) -> str:
    """A FailTrial reason as kept: at most MAX_FAIL_REASON characters."""
    return reason if len(reason) <= MAX_FAIL_REASON else reason[:MAX_FAIL_REASON - 1] + "…"


def check_enqueue(study: StudyRow, now: datetime) -> None:
    """Raise FailedPrecondition unless a trial may be enqueued: the study has not ended, and
    (its unstarted trials sampled ahead dropped first) has room below its limits."""
    if study.state.ended:
        raise FailedPrecondition(f"study {study.name!r} has ended; create a new one to search again")
    if limit := exhausted(study, now):
        raise FailedPrecondition(f"study {study.name!r} reached {limit.value}: no trial can be added")


def check_suggest(trial: TrialRow, study: StudyRow, param: Param, known: Param | None) -> None:
    """Raise unless the trial may be given a value for `param` (SuggestParam): it runs
    (FailedPrecondition), and the study's distribution for that name, if it has one, is this
    one (InvalidArgument: a conflict). In a declared space the param must be declared, and the
    trial have a value (FailedPrecondition: its condition does not hold)."""
    if trial.state != TrialState.RUNNING:
        raise FailedPrecondition(f"trial {trial.number} is not running: nothing to suggest")
    if known is None and not study.define_by_run:
        raise InvalidArgument(f"param {param.name!r} is not in the study's search space: declare it, or create the "
                              "study without a search space (define-by-run)")
    if known is not None and known.distribution() != param.distribution():
        raise InvalidArgument(f"param {param.name!r} is suggested as {param.describe()}, but the study has it as "
                              f"{known.describe()}: one name, one distribution")
    if not study.define_by_run and param.name not in trial.params:
        raise FailedPrecondition(f"param {param.name!r} has no value in trial {trial.number}: its condition "
                                 f"({dict(known.when) if known else {}}) does not hold")


def check_space_size(params: int) -> None:
    """Raise InvalidArgument when a define-by-run study, with `params` params, cannot learn another."""
    if params >= MAX_PARAMS:
        raise InvalidArgument(f"the study has {params} params; the limit is {MAX_PARAMS}")


def check_value(value: float) -> None:
    """Raise InvalidArgument unless `value` may be reported as an intermediate value."""
    if not math.isfinite(value):
        raise InvalidArgument("an intermediate value must be a finite number")


def check_report(trial: TrialRow, study: StudyRow) -> None:
    """Raise FailedPrecondition unless the trial may report an intermediate value."""
    check_run_by_trackd(study, "take its trials' reports (Optuna's trial.report does)")
    if trial.state != TrialState.RUNNING:
        raise FailedPrecondition(f"trial {trial.number} is not running: nothing to report")
    if len(study.objectives) > 1:
        raise FailedPrecondition("intermediate values need a single-objective study")


def check_finish(trial: TrialRow, study: StudyRow, state: TrialState, values: Sequence[float]) -> bool:
    """Whether ending `trial` as `state` with `values` is a repeat of how it ended (a no-op:
    True) or a change to make (False). Raises InvalidArgument for a COMPLETE without one finite
    value per objective, FailedPrecondition when it ended differently (or Optuna's clients run it)."""
    check_run_by_trackd(study, "end its trials (Optuna's study.tell does)")
    if state == TrialState.COMPLETE and (len(values) != len(study.objectives) or not all(map(math.isfinite, values))):
        raise InvalidArgument(f"give {len(study.objectives)} finite value(s), one per objective")
    if may_move(trial.state, state):
        return False
    if trial.state == state and (state != TrialState.COMPLETE or trial.values == list(values)):
        return True
    raise FailedPrecondition(f"trial {trial.number} has ended already")
