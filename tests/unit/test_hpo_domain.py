"""The HPO rules as pure functions: states match the protos, limits, study moves, trial moves,
retry or fail after a lost worker, sampling ahead, leases and finishing idempotently."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.errors import Aborted, FailedPrecondition, InvalidArgument
from trackd_services.hpo.domain import (
    Limit,
    StudyRow,
    StudyState,
    TrialRow,
    TrialState,
    after_lost,
    ahead,
    check_finish,
    check_lease,
    check_report,
    check_study_move,
    check_value,
    directions,
    exhausted,
    finishing,
    may_hand_out,
    may_move,
    open_to_workers,
    open_trials,
    stale,
    to_sample_ahead,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
W, R, C, P, F = TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


def study(**changes: Any) -> StudyRow:
    base = StudyRow(
        id=uuid.uuid4(), name="s", experiment_id=uuid.uuid4(), run_id=None,
        objectives=[{"metric": "loss", "direction": hpo_pb2.DIRECTION_MINIMIZE}], search_space={},
        sampler="tpe", sampler_options={}, pruner="none", pruner_options={}, max_trials=0, max_duration_s=0,
        parallelism=2, max_failed_trials=0, retries_per_trial=0, seed=None, state=StudyState.RUNNING,
        created_at=NOW, started_at=NOW, counts={})
    return dataclasses.replace(base, **changes)


def trial(**changes: Any) -> TrialRow:
    base = TrialRow(id=uuid.uuid4(), study_id=uuid.uuid4(), number=4, state=R, params={}, values=None, run_id=None,
                    attempt=1, worker="w1", lease_expires=None, started_at=NOW, ended_at=None)
    return dataclasses.replace(base, **changes)


def test_states_are_the_proto_enums() -> None:
    assert {s.name: s.value for s in StudyState} == {
        n.removeprefix("STUDY_STATE_"): v for n, v in hpo_pb2.StudyState.items() if v}
    assert {s.name: s.value for s in TrialState} == {
        n.removeprefix("TRIAL_STATE_"): v for n, v in hpo_pb2.TrialState.items() if v}
    assert [s for s in TrialState if s.ended] == [C, P, F]
    assert [s for s in StudyState if s.ended] == [StudyState.STOPPED, StudyState.FINISHED]


def test_directions() -> None:
    assert directions([{"direction": hpo_pb2.DIRECTION_MINIMIZE}, {"direction": hpo_pb2.DIRECTION_MAXIMIZE}]) == (
        "minimize", "maximize")


def test_limits_in_order_failures_duration_trials() -> None:
    assert exhausted(study(), NOW) is None
    assert exhausted(study(max_trials=3, counts={C: 2, R: 1}), NOW) is Limit.MAX_TRIALS
    assert exhausted(study(max_trials=3, counts={C: 2}), NOW) is None
    assert exhausted(study(max_failed_trials=2, max_trials=3, counts={F: 2, C: 1}), NOW) is Limit.MAX_FAILED_TRIALS
    assert exhausted(study(max_failed_trials=2, counts={F: 1}), NOW) is None
    late = NOW + timedelta(seconds=61)
    assert exhausted(study(max_duration_s=60), late) is Limit.MAX_DURATION
    assert exhausted(study(max_duration_s=60), NOW + timedelta(seconds=60)) is None
    assert exhausted(study(max_duration_s=60, started_at=None), late) is None  # never started: no clock


def test_only_a_running_study_finishes_and_only_without_open_trials() -> None:
    assert finishing(study(max_trials=1, counts={C: 1}), NOW) is Limit.MAX_TRIALS
    assert finishing(study(max_trials=1, counts={C: 1}, state=StudyState.PAUSED), NOW) is None
    assert open_trials(study(counts={W: 1, R: 2, C: 5})) == 3


def test_study_moves() -> None:
    for ended in (StudyState.STOPPED, StudyState.FINISHED):
        for target in StudyState:
            with pytest.raises(FailedPrecondition, match="has ended"):
                check_study_move(study(state=ended), target)
    check_study_move(study(state=StudyState.CREATED), StudyState.PAUSED)
    check_study_move(study(state=StudyState.RUNNING), StudyState.PAUSED)
    with pytest.raises(FailedPrecondition, match="not running"):
        check_study_move(study(state=StudyState.PAUSED), StudyState.PAUSED)
    check_study_move(study(state=StudyState.PAUSED), StudyState.RUNNING)
    check_study_move(study(state=StudyState.PAUSED), StudyState.STOPPED)


def test_trial_moves() -> None:
    allowed = {(a, b) for a in TrialState for b in TrialState if may_move(a, b)}
    assert allowed == {(W, R), (W, C), (W, P), (W, F), (R, W), (R, C), (R, P), (R, F)}


def test_a_lost_trial_is_retried_while_attempts_remain() -> None:
    assert after_lost(trial(attempt=1), retries_per_trial=0) == F
    assert after_lost(trial(attempt=1), retries_per_trial=2) == W
    assert after_lost(trial(attempt=2), retries_per_trial=2) == W
    assert after_lost(trial(attempt=3), retries_per_trial=2) == F


def test_workers_of_a_finished_study_leave_and_a_stopped_one_is_refused() -> None:
    assert open_to_workers(study(state=StudyState.PAUSED))
    assert not open_to_workers(study(state=StudyState.FINISHED))
    with pytest.raises(FailedPrecondition, match="was stopped"):
        open_to_workers(study(state=StudyState.STOPPED))


def test_hand_out_and_sample_ahead_within_parallelism_and_limits() -> None:
    assert may_hand_out(study(parallelism=2, counts={R: 1}))
    assert not may_hand_out(study(parallelism=2, counts={R: 2}))
    assert not may_hand_out(study(state=StudyState.PAUSED))
    rand = "random"  # a sampler that ignores results: `parallelism` wait
    assert to_sample_ahead(study(sampler=rand, parallelism=3, counts={W: 1, R: 3}), NOW) == 2
    assert to_sample_ahead(study(sampler=rand, parallelism=3, max_trials=5, counts={W: 1, R: 3}), NOW) == 1
    assert to_sample_ahead(study(sampler=rand, parallelism=3, counts={W: 4}), NOW) == 0
    assert to_sample_ahead(study(sampler=rand, parallelism=3, state=StudyState.PAUSED), NOW) == 0
    assert to_sample_ahead(study(sampler=rand, parallelism=3, max_failed_trials=1, counts={F: 1}), NOW) == 0


def test_model_based_samplers_keep_few_trials_ahead_and_resample_stale_ones() -> None:
    # a queued trial is blind to the results that arrive while it waits: a quarter of the workers wait
    assert [ahead(study(parallelism=p)) for p in (1, 4, 16)] == [1, 1, 4]
    assert to_sample_ahead(study(parallelism=16, counts={W: 1, R: 16}), NOW) == 3
    assert not stale(study(parallelism=1), 1)  # the result of the one running trial: as sampled ahead
    assert stale(study(parallelism=1), 2)
    assert not stale(study(parallelism=16), 4) and stale(study(parallelism=16), 5)
    assert not stale(study(sampler="random", parallelism=1), 100)


def test_a_lease_belongs_to_its_worker() -> None:
    check_lease(trial(worker="w1"), "w1")
    check_lease(trial(worker="w1"), "")  # no worker named: not checked
    check_lease(trial(worker="w1", state=C), "w2")  # ended: finishing it again is judged by check_finish
    with pytest.raises(Aborted, match="leased by 'w1'"):
        check_lease(trial(worker="w1"), "w2")


def test_reports() -> None:
    check_value(-1e300)
    for value in (float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match="finite"):
            check_value(value)
    check_report(trial(), study())
    with pytest.raises(FailedPrecondition, match="not running"):
        check_report(trial(state=W), study())
    two = study(objectives=[{"metric": "a", "direction": 1}, {"metric": "b", "direction": 2}])
    with pytest.raises(FailedPrecondition, match="single-objective"):
        check_report(trial(), two)


def test_finishing_again_the_same_way_is_a_no_op() -> None:
    assert check_finish(trial(), study(), C, [1.0]) is False
    assert check_finish(trial(state=W), study(), F, []) is False
    assert check_finish(trial(state=C, values=[1.0]), study(), C, [1.0]) is True
    assert check_finish(trial(state=P, values=[0.5]), study(), P, []) is True
    with pytest.raises(FailedPrecondition, match="ended already"):
        check_finish(trial(state=C, values=[1.0]), study(), C, [2.0])
    with pytest.raises(FailedPrecondition, match="ended already"):
        check_finish(trial(state=F), study(), C, [1.0])
    for values in ([], [1.0, 2.0], [float("inf")]):
        with pytest.raises(InvalidArgument, match="1 finite value"):
            check_finish(trial(), study(), C, values)
