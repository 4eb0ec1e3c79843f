"""The HPO service's study controls and the fixes found in review, on the real stack: a grid
study runs its grid to the end, `gp` without torch is refused up front, a FailTrial reason is
kept and shown, pause / resume and enqueue_trial (a warm start handed out before sampled trials)
from the SDK and the CLI, and a `trackd hpo worker` trial that only logs the study's metric
completes with that metric's last value."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import trackd
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

SPACE = {"x": {"type": "float", "low": -5, "high": 5}, "k": {"type": "int", "low": 1, "high": 4}}
TRACKD_CLI = str(Path(sys.executable).with_name("trackd"))


@pytest.fixture
def hpo(stack: EmbeddedStack) -> Iterator[hpo_pb2_grpc.HpoServiceStub]:
    with grpc.insecure_channel(stack.client_env()["TRACKD_HPO_TARGET"]) as channel:
        yield hpo_pb2_grpc.HpoServiceStub(channel)


def cli(*args: str) -> str:
    done = subprocess.run([TRACKD_CLI, "hpo", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def acquire(hpo: hpo_pb2_grpc.HpoServiceStub, study_id: str, worker: str) -> hpo_pb2.Trial | None:
    reply = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study_id, worker=worker), timeout=30)
    return reply.trial if reply.HasField("trial") else None


def complete(hpo: hpo_pb2_grpc.HpoServiceStub, trial: hpo_pb2.Trial, value: float) -> None:
    hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker=trial.worker, values=[value]),
                      timeout=30)


def test_a_grid_study_runs_every_point_once_and_finishes(
        hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    name = unique("grid")
    space = {"a": {"type": "categorical", "choices": ["x", "y"]}, "b": {"type": "int", "low": 0, "high": 2}}
    study = trackd.hpo.create_study(name, search_space=space, sampler="grid", parallelism=2)
    assert study.max_trials == 6  # unbounded asked: the grid's size
    seen = []
    while (trial := acquire(hpo, study.id, "w")) is not None:
        params = json.loads(trial.params_json)
        seen.append((params["a"], params["b"]))
        complete(hpo, trial, float(params["b"]))  # the last point's tell used to fail the study's sampling
    assert sorted(seen) == [(a, b) for a in "xy" for b in range(3)]
    assert trackd.hpo.get_study(name).state == "FINISHED"
    assert trackd.hpo.best_trials(name)[0].params["b"] == 0


def test_samplers_whose_packages_are_missing_are_refused_at_create(unique: Callable[[str], str]) -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed: gp can run")
    with pytest.raises(trackd.errors.InvalidArgument, match="torch"):
        trackd.hpo.create_study(unique("gp"), search_space=SPACE, sampler="gp")
    name = unique("cmaes")  # its package is a server dependency: the study samples past its startup trial
    study = trackd.hpo.create_study(name, search_space=SPACE, sampler="cmaes", max_trials=4, seed=1)
    assert study.sampler == "cmaes"
    ran = trackd.hpo.optimize(lambda t: t.suggest_float("x", -5, 5) ** 2 + t.suggest_int("k", 1, 4), name,
                              processes=False, show_progress=False)
    assert [t.state for t in ran] == ["COMPLETE"] * 4


def test_a_fail_reason_is_kept_and_shown(hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    name = unique("reason")
    study = trackd.hpo.create_study(name, search_space=SPACE, max_trials=3)
    trial = acquire(hpo, study.id, "w")
    assert trial is not None
    failed = hpo.FailTrial(hpo_pb2.FailTrialRequest(trial_id=trial.id, worker="w", reason="CUDA out of memory"),
                           timeout=30).trial
    assert failed.fail_reason == "CUDA out of memory"
    [listed] = [t for t in trackd.hpo.list_trials(name) if t.number == trial.number]
    assert (listed.state, listed.fail_reason) == ("FAIL", "CUDA out of memory")
    assert "CUDA out of memory" in cli("show", name)


def test_enqueued_params_are_handed_out_before_sampled_ones_and_pause_holds_them(
        hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    name = unique("warm")
    study = trackd.hpo.create_study(name, search_space=SPACE, parallelism=3, max_trials=5, seed=2)
    assert "PAUSED" in cli("pause", name)
    assert acquire(hpo, study.id, "w0") is None  # paused: nothing is handed out
    known_good = trackd.hpo.enqueue_trial(name, {"x": 1.25, "k": 3})
    assert known_good.state == "WAITING" and known_good.params == {"x": 1.25, "k": 3}
    assert "enqueued" in cli("enqueue", name, "x=-2.5")  # k is sampled
    with pytest.raises(trackd.errors.InvalidArgument, match="outside the space"):
        trackd.hpo.enqueue_trial(name, {"x": 99.0})
    with pytest.raises(trackd.errors.InvalidArgument, match="no param"):
        trackd.hpo.enqueue_trial(name, {"y": 1})
    assert trackd.hpo.resume_study(name).state == "RUNNING"
    first, second = acquire(hpo, study.id, "w1"), acquire(hpo, study.id, "w2")
    assert first is not None and second is not None
    assert json.loads(first.params_json) == {"x": 1.25, "k": 3}
    assert json.loads(second.params_json)["x"] == -2.5
    complete(hpo, first, 0.5)
    complete(hpo, second, 0.7)
    # enqueued while trials are sampled ahead: still the next one handed out
    trackd.hpo.enqueue_trial(name, {"x": 0.0, "k": 1})
    third = acquire(hpo, study.id, "w3")
    assert third is not None and json.loads(third.params_json) == {"x": 0.0, "k": 1}
    while (trial := acquire(hpo, study.id, "w4")) is not None:
        complete(hpo, trial, 1.0)
    complete(hpo, third, 0.1)
    trials = trackd.hpo.list_trials(name)
    assert len(trials) == 5 and trackd.hpo.get_study(name).state == "FINISHED"  # enqueued ones count as trials
    assert trackd.hpo.best_trials(name)[0].params == {"x": 0.0, "k": 1}


LOGS_ONLY = """
import os
import trackd
run = trackd.Run(trackd.get_run(os.environ["TRACKD_RUN_ID"]), client=trackd.Client(), system_metrics=False)
x = float(os.environ["HP_X"])
print(f"trial with x={x}")
for step in range(3):
    run.log_metric("loss", (x - 1) ** 2 + 1 / (step + 1), step=step)
assert run.flush(30)
"""


def test_a_worker_trial_that_only_logs_the_metric_completes_with_its_last_value(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str]) -> None:
    name = unique("logs")
    trackd.hpo.create_study(name, metric="loss", search_space=SPACE, sampler="random", max_trials=2, seed=5)
    script = tmp_path / "train.py"
    script.write_text(LOGS_ONLY)
    output = cli("worker", name, "--", sys.executable, str(script))
    trials = trackd.hpo.list_trials(name)
    assert [t.state for t in trials] == ["COMPLETE", "COMPLETE"], output
    for t in trials:
        assert t.value == pytest.approx((t.params["x"] - 1) ** 2 + 1 / 3)  # the last logged point
        console = "".join(line.text for line in trackd.read_logs(t.run_id))  # the worker tees the trial's output
        assert console.count(f"trial with x={t.params['x']}") == 1, console
