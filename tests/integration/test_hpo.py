"""The HPO service on the real stack: a study driven through AcquireTrial / CompleteTrial,
pruning through ReportIntermediate, conditional params, idempotent completion, trials as runs,
and bad input with its status."""

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
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

SPACE = {"x": {"type": "float", "low": -5, "high": 5}, "opt": {"type": "categorical", "choices": ["adam", "sgd"]},
         "momentum": {"type": "float", "low": 0, "high": 0.99, "when": {"opt": "sgd"}}}


@pytest.fixture
def hpo(stack: EmbeddedStack) -> Iterator[hpo_pb2_grpc.HpoServiceStub]:
    with grpc.insecure_channel(stack.client_env()["TRACKD_HPO_TARGET"]) as channel:
        yield hpo_pb2_grpc.HpoServiceStub(channel)


def create(hpo: hpo_pb2_grpc.HpoServiceStub, name: str, **fields: object) -> hpo_pb2.Study:
    request = hpo_pb2.CreateStudyRequest(
        name=name, experiment=name, search_space_json=json.dumps(fields.pop("space", SPACE)),
        objectives=[hpo_pb2.Objective(metric="loss", direction=hpo_pb2.DIRECTION_MINIMIZE)], **fields)
    return hpo.CreateStudy(request, timeout=30).study


def run_when_ended(run_id: str) -> trackd.RunInfo:
    """The run, once it has ended: a trial's run is ended just after CompleteTrial answers."""
    deadline = time.monotonic() + 20
    while (run := trackd.get_run(run_id)).status == "RUNNING":
        assert time.monotonic() < deadline, f"run {run_id} still RUNNING"
        time.sleep(0.05)
    return run


def test_a_study_runs_to_its_trial_limit_with_conditional_params(
        hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    study = create(hpo, unique("study"), sampler="tpe", max_trials=12, parallelism=3, seed=7)
    assert study.state == hpo_pb2.STUDY_STATE_RUNNING and study.run_id
    held = [hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker=f"w{i}")).trial for i in range(3)]
    assert [t.number for t in held] == [0, 1, 2]
    full = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w9"))
    assert not full.HasField("trial") and full.study.trials_running == 3  # parallelism reached
    done = 0
    while True:
        for trial in held:
            params = json.loads(trial.params_json)
            assert ("momentum" in params) == (params["opt"] == "sgd")
            value = (params["x"] - 2) ** 2
            finished = hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker=trial.worker,
                                                                      values=[value])).trial
            assert finished.state == hpo_pb2.TRIAL_STATE_COMPLETE
            again = hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker=trial.worker,
                                                                   values=[value])).trial
            assert again == finished  # idempotent
            done += 1
        replies = [hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker=f"w{i}")) for i in range(3)]
        held = [r.trial for r in replies if r.HasField("trial")]
        if not held:
            break
    assert done == 12
    final = hpo.GetStudy(hpo_pb2.GetStudyRequest(study_id=study.id)).study
    assert final.state == hpo_pb2.STUDY_STATE_FINISHED and final.trials_complete == 12
    trials = hpo.ListTrials(hpo_pb2.ListTrialsRequest(study_id=study.id)).trials
    assert [t.number for t in trials] == list(range(12))
    [best] = hpo.GetBestTrials(hpo_pb2.GetBestTrialsRequest(study_id=study.id)).trials
    assert best.values[0] == min(t.values[0] for t in trials)
    run = run_when_ended(best.run_id)  # every trial is a run, child of the study's run
    assert run.parent_run_id == study.run_id and run.status == "FINISHED"
    assert float(run.params["x"]) == json.loads(best.params_json)["x"]
    late = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="late"))
    assert not late.HasField("trial") and late.study.state == hpo_pb2.STUDY_STATE_FINISHED


def test_reports_prune_a_bad_trial(hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    study = create(hpo, unique("prune"), sampler="random", pruner="median", parallelism=1,
                   pruner_options_json=json.dumps({"n_startup_trials": 2, "n_warmup_steps": 0}))
    for _ in range(3):
        trial = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w")).trial
        for step in range(4):
            reply = hpo.ReportIntermediate(hpo_pb2.ReportIntermediateRequest(
                trial_id=trial.id, worker="w", step=step, value=1.0 / (step + 1)))
            assert not reply.should_prune
        hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker="w", values=[0.25]))
    bad = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w")).trial
    assert hpo.ReportIntermediate(hpo_pb2.ReportIntermediateRequest(
        trial_id=bad.id, worker="w", step=0, value=50.0)).should_prune
    pruned = hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=bad.id, worker="w", pruned=True)).trial
    assert pruned.state == hpo_pb2.TRIAL_STATE_PRUNED and list(pruned.values) == [50.0]


@pytest.mark.parametrize(("fields", "code"), [
    ({"space": {"x": {"type": "float", "low": 2, "high": 1}}}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"space": {"x": {"type": "float", "low": 0, "high": 1, "log": True}}}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"space": {"x": {"type": "categorical", "choices": []}}}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"space": {"x": {"type": "float", "low": 0, "high": 1, "when": {"y": 1}}}}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"space": {"x": {"type": "float", "low": 0, "high": 1, "step": 0.3}}}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"sampler": "bayes"}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"pruner": "early"}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"parallelism": -1}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"sampler_options_json": "{not json"}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"sampler_options_json": json.dumps({"bogus": 1})}, grpc.StatusCode.INVALID_ARGUMENT),
])
def test_bad_studies_are_refused(hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str],
                                 fields: dict[str, object], code: grpc.StatusCode) -> None:
    name = unique("bad")
    with pytest.raises(grpc.RpcError) as caught:
        create(hpo, name, **fields)
    assert caught.value.code() == code, caught.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        hpo.GetStudy(hpo_pb2.GetStudyRequest(name=name))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # nothing was stored


def test_bad_trial_calls_are_refused(hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    name = unique("calls")
    study = create(hpo, name, parallelism=2)
    with pytest.raises(grpc.RpcError) as duplicate:
        create(hpo, name)
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
    several = hpo_pb2.CreateStudyRequest(
        name=unique("multi"), search_space_json=json.dumps(SPACE), pruner="median",
        objectives=[hpo_pb2.Objective(metric="a", direction=1), hpo_pb2.Objective(metric="b", direction=2)])
    with pytest.raises(grpc.RpcError) as multi:
        hpo.CreateStudy(several)
    assert multi.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trial = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="owner")).trial
    cases = [
        (lambda: hpo.ReportIntermediate(hpo_pb2.ReportIntermediateRequest(trial_id="0" * 32, worker="w", step=0,
                                                                          value=1.0)), grpc.StatusCode.NOT_FOUND),
        (lambda: hpo.HeartbeatTrial(hpo_pb2.HeartbeatTrialRequest(trial_id=trial.id, worker="thief")),
         grpc.StatusCode.ABORTED),
        (lambda: hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker="owner", values=[1, 2])),
         grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id)), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, code in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == code, caught.value.details()
    hpo.FailTrial(hpo_pb2.FailTrialRequest(trial_id=trial.id, worker="owner", reason="oom"))
    with pytest.raises(grpc.RpcError) as ended:
        hpo.ReportIntermediate(hpo_pb2.ReportIntermediateRequest(trial_id=trial.id, worker="owner", step=1, value=1))
    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    hpo.StopStudy(hpo_pb2.StopStudyRequest(study_id=study.id))
    with pytest.raises(grpc.RpcError) as stopped:
        hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="owner"))
    assert stopped.value.code() == grpc.StatusCode.FAILED_PRECONDITION


TRAIN = """
import os, sys
import trackd
trial = trackd.hpo.current_trial()
x = float(os.environ["HP_X"])
assert trial.params["x"] == x
if trial.params["opt"] == "sgd" and "HP_MOMENTUM" not in os.environ:
    sys.exit(3)
for step in range(3):
    if trial.report(step, (x - 2) ** 2 + 1 / (step + 1), metric="loss"):
        trial.prune()
        sys.exit(0)
if x > 4.5:
    sys.exit(1)  # a crash without ending the trial: the worker fails it with the exit status
trial.complete((x - 2) ** 2)
"""


def test_worker_processes_run_a_study_to_its_limit(stack: EmbeddedStack, tmp_path: Path,
                                                   unique: Callable[[str], str]) -> None:

    name = unique("workers")
    study = trackd.hpo.create_study(name, metric="loss", search_space=SPACE, sampler="random", max_trials=10,
                                    parallelism=4, seed=3)
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    trackd_cli = str(Path(sys.executable).with_name("trackd"))
    workers = [subprocess.Popen([trackd_cli, "hpo", "worker", name, "--max-concurrent", "2", "--",
                                 sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for _ in range(2)]
    outputs = [w.communicate(timeout=180)[0].decode() for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    trials = trackd.hpo.list_trials(name)
    assert [t.number for t in trials] == list(range(10)), outputs
    assert all(t.state in ("COMPLETE", "FAIL", "PRUNED") for t in trials)
    for t in trials:
        expected = "FAIL" if t.params["x"] > 4.5 else "COMPLETE"
        assert t.state == expected, (t, outputs)
        if expected == "COMPLETE":
            assert t.value == pytest.approx((t.params["x"] - 2) ** 2)
        history = trackd.get_metric_history(t.run_id, "loss")
        assert [p.step for p in history] == [0, 1, 2]  # intermediate values are the run's metrics
        assert trackd.get_run(t.run_id).parent_run_id == study.run_id
    assert trackd.hpo.get_study(name).state == "FINISHED"
    best = trackd.hpo.best_trials(name)[0]
    assert best.value == min(t.value for t in trials if t.state == "COMPLETE")


FIRST_ATTEMPT_HANGS = """
import os, time
import trackd
trial = trackd.hpo.current_trial()
if not os.path.exists({done!r}):
    open({marker!r}, "w").close()  # tell the test the first attempt runs, then hang until killed
    time.sleep(600)
trial.complete(1.0)
"""


def test_a_worker_killed_mid_trial_gets_its_trial_retried_once(stack: EmbeddedStack, tmp_path: Path,
                                                               unique: Callable[[str], str]) -> None:
    import os
    import signal

    name = unique("retry")
    trackd.hpo.create_study(name, search_space={"x": {"type": "categorical", "choices": [0]}}, sampler="random",
                            max_trials=2, parallelism=1, retries_per_trial=1)
    marker = tmp_path / "started"
    script = tmp_path / "train.py"
    script.write_text(FIRST_ATTEMPT_HANGS.format(marker=str(marker), done=str(tmp_path / "done")))
    command = [str(Path(sys.executable).with_name("trackd")), "hpo", "worker", name, "--", sys.executable,
               str(script)]
    first = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its trial process vanish
    first.wait()
    (tmp_path / "done").touch()
    second = subprocess.run(command, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stdout.decode() + second.stderr.decode()
    trials = trackd.hpo.list_trials(name)
    assert [(t.number, t.state, t.attempt) for t in trials] == [(0, "COMPLETE", 2), (1, "COMPLETE", 1)]
    assert trackd.hpo.get_study(name).state == "FINISHED"


def test_hpo_cli_shows_progress_importance_and_a_history_png(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str]) -> None:
    from matplotlib.image import imread
    from trackd.cli import app
    from typer.testing import CliRunner

    name = unique("cli")
    space = tmp_path / "space.yaml"
    space.write_text("x: {type: float, low: -3, high: 3}\nnoise: {type: float, low: 0, high: 1}\n")
    cli = CliRunner()
    # seeded: 12 random trials always put x first (unseeded, an unlucky draw could rank noise first)
    created = cli.invoke(app, ["hpo", "create", name, "--space", str(space), "--max-trials", "12",
                               "--sampler", "random", "--seed", "7"])
    assert created.exit_code == 0, created.output
    client = trackd.Client()
    study_id = trackd.hpo.get_study(name).id
    while True:
        reply = client.hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study_id, worker="w"))
        if not reply.HasField("trial"):
            break
        params = json.loads(reply.trial.params_json)
        client.hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=reply.trial.id, worker="w",
                                                              values=[params["x"] ** 2 + 0.01 * params["noise"]]))
    png = tmp_path / "history.png"
    shown = cli.invoke(app, ["hpo", "show", name, "--plot", str(png)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "12 complete" in shown.output and "param importance" in shown.output
    lines = shown.output.splitlines()
    title = next(i for i, line in enumerate(lines) if "param importance" in line)
    header_end = next(i for i in range(title, len(lines)) if lines[i].startswith("┡"))
    assert lines[header_end + 1].split("│")[1].strip() == "x"  # x drives the value: listed first
    image = imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0
    listed = cli.invoke(app, ["hpo", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and name in listed.output
    client.close()


def test_a_trial_whose_run_fails_is_retried_then_failed(
        hpo: hpo_pb2_grpc.HpoServiceStub, runs: object, unique: Callable[[str], str]) -> None:
    from trackd_api.run.v1 import run_pb2

    study = create(hpo, unique("run-ended"), sampler="random", retries_per_trial=1, max_trials=1)
    first = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w1")).trial
    client = trackd.Client()

    def end_run_and_wait(trial: hpo_pb2.Trial) -> hpo_pb2.Trial:
        client.call("run", client.runs.EndRun, run_pb2.EndRunRequest(run_id=trial.run_id,
                                                                     status=run_pb2.RUN_STATUS_FAILED))
        deadline = time.monotonic() + 20  # the run.ended event, well before the 5 s lease could matter
        while time.monotonic() < deadline:
            [now] = hpo.ListTrials(hpo_pb2.ListTrialsRequest(study_id=study.id)).trials
            if now.state != hpo_pb2.TRIAL_STATE_RUNNING or now.attempt != trial.attempt:
                return now
            hpo.HeartbeatTrial(hpo_pb2.HeartbeatTrialRequest(trial_id=trial.id, worker=trial.worker))
            time.sleep(0.2)
        raise AssertionError("the trial did not react to its run's end")

    retried = end_run_and_wait(first)
    assert (retried.state, retried.attempt) == (hpo_pb2.TRIAL_STATE_WAITING, 2)
    second = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w2")).trial
    assert (second.number, second.attempt) == (0, 2) and second.run_id != first.run_id
    failed = end_run_and_wait(second)
    assert failed.state == hpo_pb2.TRIAL_STATE_FAIL  # no retry left: counted once, as failed
    assert hpo.GetStudy(hpo_pb2.GetStudyRequest(study_id=study.id)).study.state == hpo_pb2.STUDY_STATE_FINISHED
    client.close()


def test_the_reaper_ends_a_trial_run_its_controller_did_not(
        stack: EmbeddedStack, hpo: hpo_pb2_grpc.HpoServiceStub, unique: Callable[[str], str]) -> None:
    """A controller killed between CompleteTrial's commit and ending the trial's run leaves the
    trial marked (run_ending): the reaper ends that run. Simulated: a completed trial pointed, as
    marked, at a run still RUNNING."""
    import asyncio
    import uuid

    import asyncpg

    study = create(hpo, unique("run-ending"), sampler="random", max_trials=1)
    trial = hpo.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w1")).trial
    hpo.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker="w1", values=[1.0]))
    assert run_when_ended(trial.run_id).status == "FINISHED"
    from trackd_api.run.v1 import run_pb2

    client = trackd.Client()
    left = client.call("run", client.runs.StartRun, run_pb2.StartRunRequest(
        experiment_name=unique("left-running"), name="left running", unattended=True)).run

    async def mark() -> None:
        conn = await asyncpg.connect(stack.pg_dsn)
        try:
            await conn.execute("UPDATE trials SET run_id = $2, run_ending = true WHERE id = $1",
                               uuid.UUID(trial.id), uuid.UUID(left.id))
        finally:
            await conn.close()
    asyncio.run(mark())
    assert run_when_ended(left.id).status == "FINISHED"  # by the reaper (every 2 s)
    client.close()
