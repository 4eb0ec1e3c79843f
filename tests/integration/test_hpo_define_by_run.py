"""Define-by-run studies (created without a search space) on the real stack: the trials'
`suggest_*` calls define the space, each param sampled by the study's sampler when a trial first
suggests it, and logged on the trial's run; a conflicting distribution is INVALID_ARGUMENT; `trackd hpo
create` without --space makes one too. And a trial sampled ahead that went
stale (results arrived while it waited) is sampled again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import trackd
from trackd.hpo import Trial
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration
TRACKD_CLI = str(Path(sys.executable).with_name("trackd"))


@pytest.fixture
def hpo(stack: EmbeddedStack) -> Iterator[hpo_pb2_grpc.HpoServiceStub]:
    with grpc.insecure_channel(stack.client_env()["TRACKD_HPO_TARGET"]) as channel:
        yield hpo_pb2_grpc.HpoServiceStub(channel)


def test_a_study_without_a_search_space_learns_it_from_the_suggestions(
        hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    name = unique("by-run")
    trackd.hpo.create_study(name, sampler="tpe", seed=3, max_trials=8, parallelism=2)

    def objective(trial: Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        assert trial.suggest_float("x", -5, 5) == x  # asked again: the same value
        if trial.suggest_categorical("opt", ["adam", "sgd"]) == "sgd":
            return (x - 2) ** 2 + trial.suggest_int("layers", 1, 4)
        return (x - 2) ** 2

    trials = trackd.hpo.optimize(objective, study=name, n_workers=2, processes=False, show_progress=False)
    complete = [t for t in trials if t.state == "COMPLETE"]
    assert len(complete) == 8, [t.fail_reason for t in trials]
    for t in complete:  # each trial has exactly the params it suggested, in their bounds
        assert set(t.params) == ({"x", "opt", "layers"} if t.params["opt"] == "sgd" else {"x", "opt"})
        assert -5 <= t.params["x"] <= 5 and t.params.get("layers", 1) in range(1, 5)
        assert t.value == pytest.approx((t.params["x"] - 2) ** 2 + t.params.get("layers", 0))
        # the trial's run has them too, as a declared space's trial run has its params
        assert trackd.get_run(t.run_id).params == {k: str(v) for k, v in t.params.items()}
    middle = sorted(t.params["x"] for t in complete)[len(complete) // 2]  # searchable: half are above
    above = sorted(t.run_id for t in complete if t.params["x"] > middle)
    assert above and sorted(r.id for r in trackd.search_runs(name, f"params.x > {middle!r}")) == above
    study = hpo.GetStudy(hpo_pb2.GetStudyRequest(name=name)).study
    assert study.define_by_run and study.state == hpo_pb2.STUDY_STATE_FINISHED
    learnt = json.loads(study.search_space_json)
    assert learnt["x"] == {"type": "float", "low": -5.0, "high": 5.0}
    assert learnt["opt"] == {"type": "categorical", "choices": ["adam", "sgd"]}
    if any(t.params["opt"] == "sgd" for t in complete):
        assert learnt["layers"] == {"type": "int", "low": 1, "high": 4, "step": 1}


def test_a_conflicting_suggestion_is_invalid_argument(
        hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    study = hpo.CreateStudy(hpo_pb2.CreateStudyRequest(
        name=(name := unique("by-run-conflict")), sampler="random", parallelism=2,
        objectives=[hpo_pb2.Objective(metric="loss", direction=hpo_pb2.DIRECTION_MINIMIZE)])).study
    first, second = (hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker=w)).trial
                     for w in ("w1", "w2"))

    def suggest(trial: hpo_pb2.Trial, param: str, distribution: dict[str, object]) -> object:
        return json.loads(hpo.SuggestParam(hpo_pb2.SuggestParamRequest(
            trial_id=trial.id, worker=trial.worker, name=param, distribution_json=json.dumps(distribution))).value_json)

    lr = suggest(first, "lr", {"type": "float", "low": 1e-4, "high": 1e-1, "log": True})
    assert isinstance(lr, float) and 1e-4 <= lr <= 1e-1
    assert suggest(second, "lr", {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}) != lr
    for distribution, says in (({"type": "float", "low": 1e-4, "high": 1.0, "log": True}, "one name, one distribution"),
                               ({"type": "int", "low": 5, "high": 1}, "low 5 is above high 1"),
                               ({"type": "float", "low": 0, "high": 1, "when": {"lr": 1}}, "has no 'when'")):
        with pytest.raises(grpc.RpcError) as caught:
            suggest(second, "lr" if "distribution" in says else "other", distribution)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and says in (caught.value.details() or "")
    # through the SDK, the objective's error fails that trial with the reason
    trackd.hpo.create_study(sdk := unique("by-run-sdk"), sampler="random")
    trackd.hpo.optimize(lambda t: t.suggest_float("x", 0, 1), study=sdk, n_trials=1, processes=False,
                        show_progress=False)
    trials = trackd.hpo.optimize(lambda t: t.suggest_float("x", 0, 10), study=sdk, n_trials=1, processes=False,
                                 show_progress=False)
    [failed] = [t for t in trials if t.state == "FAIL"]
    assert "one name, one distribution" in failed.fail_reason
    assert json.loads(hpo.GetStudy(hpo_pb2.GetStudyRequest(name=name)).study.search_space_json) == {
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}


def test_a_trial_sampled_ahead_that_went_stale_is_sampled_again(
        hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    # TPE at parallelism 4 keeps one trial sampled ahead; once more than one result arrived
    # after it was sampled, it is deleted and sampled again (the same number, a new trial)
    space = {"x": {"type": "float", "low": 0, "high": 1}}
    study = hpo.CreateStudy(hpo_pb2.CreateStudyRequest(
        name=unique("stale"), search_space_json=json.dumps(space), sampler="tpe", parallelism=4, seed=1,
        objectives=[hpo_pb2.Objective(metric="loss", direction=hpo_pb2.DIRECTION_MINIMIZE)])).study

    def waiting() -> list[hpo_pb2.Trial]:
        return list(hpo.ListTrials(hpo_pb2.ListTrialsRequest(
            study_id=study.id, states=[hpo_pb2.TRIAL_STATE_WAITING])).trials)

    def eventually(check: Callable[[list[hpo_pb2.Trial]], bool]) -> list[hpo_pb2.Trial]:
        deadline = time.monotonic() + 10
        while not check(found := waiting()):
            assert time.monotonic() < deadline, f"waiting trials: {found}"
            time.sleep(0.05)
        return found

    running = [hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker=f"w{i}")).trial
               for i in range(4)]
    [ahead] = eventually(lambda found: len(found) == 1)
    assert ahead.number == 4
    for trial in running[:2]:
        hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker=trial.worker, values=[0.5]))
    [fresh] = eventually(lambda found: len(found) == 1 and found[0].id != ahead.id)
    assert fresh.number == 4  # numbers stay contiguous
    assert [t.number for t in hpo.ListTrials(hpo_pb2.ListTrialsRequest(study_id=study.id)).trials] == [0, 1, 2, 3, 4]


SUGGESTS = """
import time
import trackd
trial = trackd.hpo.current_trial()
trial.complete((trial.suggest_float("x", 0, 1) - 0.5) ** 2)
time.sleep(2.5)  # finishing up (saving a checkpoint...): the worker's heartbeat sees the trial ended meanwhile
"""


def test_the_cli_creates_a_define_by_run_study_and_its_worker_trials_suggest(
        hpo: hpo_pb2_grpc.HpoServiceStub, tmp_path: Path, unique: Callable[[str], str]) -> None:
    name = unique("by-run-cli")
    script = tmp_path / "train.py"
    script.write_text(SUGGESTS)
    said = []
    for args in (("create", name, "--sampler", "random", "--max-trials", "1"),  # no --space
                 ("worker", name, "--", sys.executable, str(script))):
        done = subprocess.run([TRACKD_CLI, "hpo", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        said.append(done.stdout)
    # the trial ended by its process, which exits by itself although a heartbeat saw the trial ended
    # first (it used to be stopped then: "exit status -15"), not failed for want of a logged value
    assert "define-by-run" in said[0] and "trial 0: ended by the trial process" in said[1], said
    [trial] = trackd.hpo.list_trials(name)
    assert trial.state == "COMPLETE" and trial.value == pytest.approx((trial.params["x"] - 0.5) ** 2)
    assert trackd.get_run(trial.run_id).params == {"x": str(trial.params["x"])}
    study = hpo.GetStudy(hpo_pb2.GetStudyRequest(name=name)).study
    assert study.define_by_run and json.loads(study.search_space_json) == {"x": {"type": "float", "low": 0, "high": 1}}
