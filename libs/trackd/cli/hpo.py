"""`trackd hpo …`: create studies, run workers, look at trials."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import typer
from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.importance import fanova
from trackd_platform.vocabulary import TrialState

from trackd import hpo as sdk
from trackd._client import Client
from trackd._hpo_worker import LEASE_LOST, Lease, heartbeats, run_slots
from trackd._logs import ENV_CAPTURED, ProcessPump
from trackd._query import get_latest_metrics
from trackd.cli.tables import _fail, _table, console
from trackd.errors import FailedPrecondition, TrackdError

app = typer.Typer(no_args_is_help=True, help="Hyperparameter optimization studies.")


@app.command("create")
def create(
    name: str,
    space: Path | None = typer.Option(None, "--space", help="YAML search space; without it the study is "
                                      "define-by-run (the trials' suggest_* calls define it)."),
    experiment: str = typer.Option(None, "--experiment", "-e"),
    project: str = typer.Option("default", "--project", "-p"),
    direction: list[str] = typer.Option(["minimize"], "--direction", help="minimize or maximize (repeatable)."),
    metric: list[str] = typer.Option(["value"], "--metric", help="Objective metric (repeatable)."),
    sampler: str = typer.Option("tpe"), pruner: str = typer.Option("none"),
    max_trials: int = typer.Option(0, "--max-trials"), parallelism: int = typer.Option(1, "--parallelism"),
    retries: int = typer.Option(0, "--retries", help="Retries of a trial whose worker vanished."),
    seed: int = typer.Option(None, "--seed", help="Seed the sampler: the same trials for the same results."),
) -> None:
    """Create a RUNNING study: with --space, trials sampled from that space; without it,
    define-by-run (as in Optuna: each param is sampled when a trial first suggests it)."""
    try:
        study = sdk.create_study(name, experiment=experiment, project=project, directions=direction, metric=metric,
                                 search_space=space, sampler=sampler, pruner=pruner, max_trials=max_trials,
                                 parallelism=parallelism, retries_per_trial=retries, seed=seed)
    except TrackdError as exc:
        raise _fail(exc) from None
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    kind = "" if space is not None else ", define-by-run: trials call trackd.hpo.current_trial().suggest_*"
    console.print(f"created study [bold]{study.name}[/] ({study.id}{kind}): run workers with "
                  f"`trackd hpo worker {study.name} -- CMD …`")


@app.command("list")
def list_() -> None:
    """Every study."""
    client = Client()
    try:
        studies = client.call("hpo", client.hpo.ListStudies, hpo_pb2.ListStudiesRequest(page_size=1000)).studies
    except TrackdError as exc:
        raise _fail(exc) from None
    _table("studies", ("name", "state", "sampler", "pruner", "complete", "pruned", "failed", "running"),
           ((s.name, sdk.STUDY_STATES[s.state], s.sampler, s.pruner, str(s.trials_complete), str(s.trials_pruned),
             str(s.trials_failed), str(s.trials_running)) for s in studies))


@app.command("show")
def show(
    study: str,
    plot: Path = typer.Option(None, "--plot", help="Write the optimization history as a PNG here."),
) -> None:
    """A study: progress, best trials, param importance (Optuna's fANOVA) and its history."""
    try:
        info, best, found = sdk.get_study(study), sdk.best_trials(study), sdk.list_trials(study)
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"[bold]{info.name}[/] {info.state}: {info.complete} complete, {info.pruned} pruned, "
                  f"{info.failed} failed, {info.running} running (max {info.max_trials or '∞'})")
    _table("best trials", ("#", "values", "params", "run"),
           ((str(t.number), ", ".join(f"{v:.6g}" for v in t.values), json.dumps(t.params), t.run_id) for t in best))
    if failed := [t for t in found if t.state == TrialState.FAIL.name]:
        _table(f"failed trials (last {min(len(failed), 10)} of {len(failed)})", ("#", "attempt", "reason"),
               ((str(t.number), str(t.attempt), t.fail_reason) for t in failed[-10:]))
    complete = [t for t in found if t.state == TrialState.COMPLETE.name and len(t.values) == 1]
    if len(info.objectives) == 1 and len(complete) >= 2:
        try:
            importance = _importance(complete)
        except ImportError as exc:  # the light client without optuna / scikit-learn
            console.print(f"[yellow]no param importance:[/yellow] {exc}")
        else:
            _table("param importance (optuna fANOVA, seed 0)", ("param", "importance"),
                   ((k, f"{v:.3f}") for k, v in importance.items()))
    if plot is not None:
        _history_png(info, complete, plot)
        console.print(f"wrote {plot}")


def _importance(trials: list[sdk.TrialInfo]) -> dict[str, float]:
    """fANOVA over the params every completed trial has (conditional ones are left out): numbers
    as numbers, anything else as a category (its JSON)."""
    shared = sorted(set.intersection(*(set(t.params) for t in trials)))
    numeric = {name for name in shared
               if all(isinstance(t.params[name], int | float) and not isinstance(t.params[name], bool) for t in trials)}
    categories = {name: sorted({json.dumps(t.params[name]) for t in trials}) for name in shared if name not in numeric}
    points: list[tuple[Mapping[str, float | str], float]] = [
        ({k: float(t.params[k]) if k in numeric else json.dumps(t.params[k]) for k in shared}, t.values[0])
        for t in trials]
    return fanova(shared, categories, points)


def _history_png(info: sdk.StudyInfo, trials: list[sdk.TrialInfo], path: Path) -> None:
    """Each completed trial's value by trial number, and the best so far."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric, direction = info.objectives[0]
    numbers = [t.number for t in trials]
    values = [t.values[0] for t in trials]
    best, running = [], None
    for v in values:
        running = v if running is None else (min(running, v) if direction == "minimize" else max(running, v))
        best.append(running)
    figure = Figure(figsize=(9, 5.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(numbers, values, s=18, alpha=0.7, label="trial")
    axes.step(numbers, best, where="post", color="tab:red", linewidth=2, label=f"best so far ({direction})")
    axes.set(xlabel="trial", ylabel=metric, title=f"{info.name}: optimization history ({len(trials)} trials)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


@app.command("trials")
def trials(study: str) -> None:
    """Every trial of a study."""
    try:
        found = sdk.list_trials(study)
    except TrackdError as exc:
        raise _fail(exc) from None
    _table(f"trials of {study}", ("#", "state", "values", "params", "attempt", "fail reason"),
           ((str(t.number), t.state, ", ".join(f"{v:.6g}" for v in t.values), json.dumps(t.params), str(t.attempt),
             t.fail_reason) for t in found))


def _move(change: Callable[[str], sdk.StudyInfo], study: str) -> None:
    """Pause, resume or stop `study` through the SDK and print its new state."""
    try:
        info = change(study)
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"study {info.name}: {info.state}")


@app.command("pause")
def pause(study: str) -> None:
    """Pause a study: no trial is handed out until `trackd hpo resume`; running ones go on (not
    for a study made by Optuna's GrpcStorageProxy: its clients would not wait)."""
    _move(sdk.pause_study, study)


@app.command("resume")
def resume(study: str) -> None:
    """Resume a paused study (or start one created paused)."""
    _move(sdk.resume_study, study)


@app.command("enqueue")
def enqueue(
    study: str,
    params: list[str] = typer.Argument(..., help="NAME=VALUE (a JSON value, else a string), one per param; "
                                                  "params left out are sampled."),
) -> None:
    """Run a trial with these params before any sampled one (a warm start: a known-good config);
    on a study made by Optuna's GrpcStorageProxy, Optuna's next ask runs it."""
    given: dict[str, object] = {}
    for item in params:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE")
        try:
            given[name] = json.loads(text)
        except ValueError:
            given[name] = text
    try:
        trial = sdk.enqueue_trial(study, given)
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"trial {trial.number} enqueued: {json.dumps(trial.params)}")


@app.command("stop")
def stop(study: str) -> None:
    """Stop a study: no new trials; workers stop the running ones (Optuna's clients, on a study
    made by its GrpcStorageProxy, get an error for their next trial)."""
    _move(sdk.stop_study, study)


LOGGED_WAIT_S = 5.0  # how long the last logged points may take to be readable after the process exits
EXIT_GRACE_S = 30.0  # how long a process that ended its trial itself may take to exit before it is stopped


def _logged_values(client: Client, run_id: str, metrics: list[str], wait_s: float) -> list[float] | None:
    """The last value the run logged of each metric, None unless it logged all of them (within `wait_s`)."""
    deadline = time.monotonic() + wait_s
    while True:
        latest = get_latest_metrics(run_id, client=client) if run_id else {}
        if all(m in latest for m in metrics):
            return [latest[m] for m in metrics]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.25)


def _still_running(client: Client, trial: hpo_pb2.Trial) -> bool:
    """False once the trial has ended (or its study has): HeartbeatTrial then says stop."""
    try:
        return not sdk.call(client, "HeartbeatTrial", hpo_pb2.HeartbeatTrialRequest(
            trial_id=trial.id, worker=trial.worker)).should_stop
    except TrackdError:
        return True  # as if running: CompleteTrial / FailTrial below meet the same error


def _run_trial(client: Client, trial: hpo_pb2.Trial, command: list[str], lease_s: int, metrics: list[str]) -> str:
    """Run one trial as a subprocess: params in HP_<NAME>, heartbeats while it runs, killed when
    the study is stopped (a process that ended its trial itself gets EXIT_GRACE_S to exit). A trial
    the process did not end is completed with the last values of the study's metrics the process
    logged on the trial's run when it exited 0, else failed with its exit status. The process's
    stdout and stderr are teed to the trial's run (`trackd runs logs`)."""
    params = json.loads(trial.params_json)
    env = {**os.environ, **{sdk.env_name(k): str(v) for k, v in params.items()},
           sdk.ENV_TRIAL_ID: trial.id, sdk.ENV_RUN_ID: trial.run_id, sdk.ENV_WORKER: trial.worker,
           sdk.ENV_PARAMS: trial.params_json,
           **({ENV_CAPTURED: "1", "PYTHONUNBUFFERED": "1"} if trial.run_id else {})}  # piped: lines as printed
    pipe = subprocess.PIPE if trial.run_id else None  # the trial's console output goes to its run too
    child = subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe)
    pump = ProcessPump(client, trial.run_id, child) if trial.run_id else None

    lease = Lease()

    def stop() -> None:
        if lease.trial_ended.is_set():  # its process ended the trial and may be finishing up: let it
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(EXIT_GRACE_S)
        if child.poll() is None:
            child.terminate()

    with heartbeats(client, trial, lease_s, on_stop=stop, lease=lease):
        code = child.wait()
    if pump is not None:
        pump.close()
    if lease.lost.is_set():  # another worker has the trial now: nothing to report
        return LEASE_LOST
    # a trial its process ended itself (trial.complete) has nothing to wait for
    logged = _logged_values(client, trial.run_id, metrics, LOGGED_WAIT_S if _still_running(client, trial) else 0) \
        if code == 0 else None
    try:  # a trial the process ended itself refuses these: that is the normal case
        if logged is not None:
            done = sdk.call(client, "CompleteTrial", hpo_pb2.CompleteTrialRequest(
                trial_id=trial.id, worker=trial.worker, values=logged))
            return f"COMPLETE with the logged {', '.join(metrics)}: {', '.join(f'{v:.6g}' for v in logged)}" \
                if done.trial.state == TrialState.COMPLETE else "ended"
        unlogged = f" nor logging {', '.join(metrics)}" if code == 0 else ""
        failed = sdk.call(client, "FailTrial", hpo_pb2.FailTrialRequest(
            trial_id=trial.id, worker=trial.worker,
            reason=f"the process exited with status {code} without ending the trial{unlogged}"))
    except FailedPrecondition:
        return "ended by the trial process" if code == 0 else f"ended, exit status {code}"
    return f"FAIL (exit status {code})" if failed.trial.state == TrialState.FAIL else "ended"


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    study: str,
    n_trials: int = typer.Option(0, "--n-trials", help="Stop after this many trials (0: until the study ends)."),
    max_concurrent: int = typer.Option(1, "--max-concurrent", help="Trials run at once by this worker."),
) -> None:
    """Run trials of STUDY: `trackd hpo worker STUDY -- python train.py`."""
    command = list(ctx.args)
    if not command:
        raise typer.BadParameter("give the command after `--`, e.g. -- python train.py")
    client = Client()

    try:
        info = sdk.get_study(study, client=client)
    except TrackdError as exc:
        raise _fail(exc) from None
    metrics = [metric for metric, _ in info.objectives]

    def run(trial: hpo_pb2.Trial, lease_s: int) -> None:
        console.print(f"trial {trial.number}: {_run_trial(client, trial, command, lease_s, metrics)}")

    try:
        study_id = info.id
        started = run_slots(client, study_id, f"{socket.gethostname()}:{os.getpid()}", run, n_trials=n_trials,
                            slots=max_concurrent)
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"worker done: {started} trials")
