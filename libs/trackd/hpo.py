"""Hyperparameter optimization through the HPO service.

    trackd.hpo.create_study("bert-search", experiment="bert", direction="maximize", metric="val_acc",
                            search_space="space.yaml", sampler="tpe", pruner="asha", max_trials=200)
    # then, on any number of machines:  trackd hpo worker bert-search -- python train.py

    trial = trackd.hpo.current_trial()       # inside train.py
    for epoch in range(100):
        acc = train_one_epoch(trial.params["lr"])
        if trial.report(epoch, acc):         # True → pruned: stop early
            break
    trial.complete(acc)
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.vocabulary import StudyState, TrialState

from trackd._client import Client, default_client
from trackd.errors import TrackdError, Unavailable

DIRECTIONS = {"minimize": hpo_pb2.DIRECTION_MINIMIZE, "maximize": hpo_pb2.DIRECTION_MAXIMIZE}
STATES = {0: "UNSPECIFIED"} | {s.value: s.name for s in TrialState}  # a trial state's number → its name
STUDY_STATES = {0: "UNSPECIFIED"} | {s.value: s.name for s in StudyState}
# What a worker hands each trial process.
ENV_TRIAL_ID, ENV_RUN_ID, ENV_WORKER, ENV_PARAMS = "TRACKD_TRIAL_ID", "TRACKD_RUN_ID", "TRACKD_HPO_WORKER", \
    "TRACKD_TRIAL_PARAMS"


@dataclass(frozen=True)
class StudyInfo:
    id: str
    name: str
    state: str
    objectives: list[tuple[str, str]]  # (metric, "minimize" / "maximize")
    sampler: str
    pruner: str
    max_trials: int
    parallelism: int
    run_id: str
    complete: int
    pruned: int
    failed: int
    running: int

    @classmethod
    def from_proto(cls, s: hpo_pb2.Study) -> StudyInfo:
        return cls(s.id, s.name, STUDY_STATES[s.state],
                   [(o.metric, "minimize" if o.direction == hpo_pb2.DIRECTION_MINIMIZE else "maximize")
                    for o in s.objectives], s.sampler, s.pruner, s.max_trials, s.parallelism, s.run_id,
                   s.trials_complete, s.trials_pruned, s.trials_failed, s.trials_running)


@dataclass(frozen=True)
class TrialInfo:
    id: str
    number: int
    state: str  # a TrialState name: WAITING, RUNNING, COMPLETE, PRUNED, FAIL
    params: dict[str, Any]
    values: list[float]
    run_id: str
    attempt: int
    fail_reason: str = ""  # why a FAIL failed (Trial.fail's reason, or "worker lost: …")

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None

    @classmethod
    def from_proto(cls, t: hpo_pb2.Trial) -> TrialInfo:
        return cls(t.id, t.number, STATES[t.state], json.loads(t.params_json or "{}"), list(t.values), t.run_id,
                   t.attempt, t.fail_reason)


RETRY_FOR_S = 90.0  # how long calls wait out a restarting controller


def call(client: Client, method: str, request: Any) -> Any:
    """One HpoService call, retried while the service is unavailable (a controller restart);
    every HpoService call is safe to repeat."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            return client.call("hpo", getattr(client.hpo, method), request)
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def env_name(param: str) -> str:
    """The environment variable a worker passes a param in: HP_<NAME>, upper-cased."""
    return "HP_" + re.sub(r"[^A-Za-z0-9]", "_", param).upper()


def _space(search_space: Mapping[str, Any] | str | Path | None) -> str:
    if search_space is None:
        return ""  # define-by-run
    if isinstance(search_space, str | Path):
        import yaml

        try:
            return json.dumps(yaml.safe_load(Path(search_space).read_text()))
        except yaml.YAMLError as exc:
            raise ValueError(f"{search_space} is not valid YAML: {exc}") from None
    return json.dumps(dict(search_space))


def create_study(
    name: str, *, experiment: str | None = None, project: str = "default", direction: str = "minimize",
    directions: Sequence[str] | None = None, metric: str | Sequence[str] = "value",
    search_space: Mapping[str, Any] | str | Path | None = None, sampler: str = "tpe",
    sampler_options: Mapping[str, Any] | None = None, pruner: str | None = None,
    pruner_options: Mapping[str, Any] | None = None, max_trials: int | None = None, max_duration_s: int | None = None,
    parallelism: int = 1, max_failed_trials: int | None = None, retries_per_trial: int = 0, seed: int | None = None,
    client: Client | None = None,
) -> StudyInfo:
    """Create a RUNNING study (a search space is a mapping of name → {type, low, high, log, step,
    choices, when}, or a YAML file of the same). Without a search space the study is
    define-by-run, as in Optuna: the trials' `suggest_*` calls define it, each param sampled by
    the study's sampler when first suggested; suggesting a name again with another distribution
    than the study has seen for it is InvalidArgument."""
    client = client or default_client()
    wanted = list(directions or [direction])
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if len(metrics) != len(wanted):
        metrics = [f"{metrics[0]}_{i}" for i in range(len(wanted))] if len(metrics) == 1 else metrics
    if any(d not in DIRECTIONS for d in wanted) or len(metrics) != len(wanted):
        raise ValueError("directions are 'minimize' or 'maximize', one per metric")
    request = hpo_pb2.CreateStudyRequest(
        name=name, experiment=experiment or name, project=project,
        objectives=[hpo_pb2.Objective(metric=m, direction=DIRECTIONS[d]) for m, d in zip(metrics, wanted, strict=True)],
        search_space_json=_space(search_space), sampler=sampler, sampler_options_json=json.dumps(sampler_options or {}),
        pruner=pruner or "none", pruner_options_json=json.dumps(pruner_options or {}), max_trials=max_trials or 0,
        max_duration_s=max_duration_s or 0, parallelism=parallelism, max_failed_trials=max_failed_trials or 0,
        retries_per_trial=retries_per_trial, seed=seed or 0)
    return StudyInfo.from_proto(client.call("hpo", client.hpo.CreateStudy, request).study)


def get_study(name: str, *, client: Client | None = None) -> StudyInfo:
    client = client or default_client()
    return StudyInfo.from_proto(call(client, "GetStudy", hpo_pb2.GetStudyRequest(name=name)).study)


def list_trials(study: str, *, client: Client | None = None) -> list[TrialInfo]:
    client = client or default_client()
    study_id = get_study(study, client=client).id
    trials, token = [], ""
    while True:
        response = call(client, "ListTrials", hpo_pb2.ListTrialsRequest(
            study_id=study_id, page_size=1000, page_token=token))
        trials += [TrialInfo.from_proto(t) for t in response.trials]
        token = response.next_page_token
        if not token:
            return trials


def best_trials(study: str, *, client: Client | None = None) -> list[TrialInfo]:
    """The best trial, or the Pareto front of a study with several objectives."""
    client = client or default_client()
    study_id = get_study(study, client=client).id
    response = call(client, "GetBestTrials", hpo_pb2.GetBestTrialsRequest(study_id=study_id))
    return [TrialInfo.from_proto(t) for t in response.trials]


def stop_study(study: str, *, client: Client | None = None) -> StudyInfo:
    """No new trials; workers stop the running ones. A study Optuna's clients run (made through
    GrpcStorageProxy) is stopped too: Optuna's next trial is refused (docs/optuna.md)."""
    client = client or default_client()
    study_id = get_study(study, client=client).id
    return StudyInfo.from_proto(call(client, "StopStudy", hpo_pb2.StopStudyRequest(study_id=study_id)).study)


def pause_study(study: str, *, client: Client | None = None) -> StudyInfo:
    """No trial is handed out until `resume_study`; running trials go on (their results count).
    FailedPrecondition for a study Optuna's clients run (they would not wait)."""
    client = client or default_client()
    study_id = get_study(study, client=client).id
    return StudyInfo.from_proto(call(client, "PauseStudy", hpo_pb2.PauseStudyRequest(study_id=study_id)).study)


def resume_study(study: str, *, client: Client | None = None) -> StudyInfo:
    """Hand out trials again (a paused study, or one created paused). FailedPrecondition for a
    study Optuna's clients run."""
    client = client or default_client()
    study_id = get_study(study, client=client).id
    return StudyInfo.from_proto(call(client, "StartStudy", hpo_pb2.StartStudyRequest(study_id=study_id)).study)


def enqueue_trial(study: str, params: Mapping[str, Any], *, client: Client | None = None) -> TrialInfo:
    """A trial with these params (a known-good configuration: a warm start), handed out before
    any sampled one, as Optuna's `study.enqueue_trial`; params left out are sampled. Raises
    InvalidArgument for params outside the study's search space. On a study Optuna's clients run,
    a trial Optuna's next `study.ask()` runs with these params (Optuna's own enqueue)."""
    client = client or default_client()
    study_id = get_study(study, client=client).id
    response = call(client, "EnqueueTrial", hpo_pb2.EnqueueTrialRequest(study_id=study_id,
                                                                        params_json=json.dumps(dict(params))))
    return TrialInfo.from_proto(response.trial)


class TrialPruned(Exception):  # noqa: N818 (Optuna's name, which users know)
    """Raise it in an `optimize` objective after `report` returned True: the trial ends PRUNED."""


class Trial:
    """A trial to evaluate: the one a worker started this process for (`current_trial`), or the
    one `optimize` passes its objective."""

    def __init__(self, trial_id: str, run_id: str, worker: str, params: dict[str, Any], *,
                 client: Client | None = None, space: Mapping[str, Any] | None = None,
                 define_by_run: bool = False) -> None:
        self.id, self.run_id, self.worker, self.params = trial_id, run_id, worker, params
        self._client = client or default_client()
        self._space = dict(space or {})
        self._by_run = define_by_run
        self._stop = False

    def request_stop(self) -> None:
        """The controller wants this trial to stop: `report` returns True from now on."""
        self._stop = True

    # Optuna-style accessors. A declared search space decides the value (sampled by the
    # controller before the trial started); the arguments are checked against it so a mismatch
    # is an error rather than a silent surprise. Define-by-run, each asks the controller
    # (SuggestParam), which samples the param the first time and checks the distribution.
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return float(self._suggest(name, {"type": "float", "low": low, "high": high, "step": step, "log": log}))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return int(self._suggest(name, {"type": "int", "low": low, "high": high, "step": step, "log": log}))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._suggest(name, {"type": "categorical", "choices": list(choices)})

    def _suggest(self, name: str, asked: dict[str, Any]) -> Any:
        if self._by_run or (name not in self.params and not self._space):
            # define-by-run, or a worker's trial (current_trial) that does not know the space
            response = call(self._client, "SuggestParam", hpo_pb2.SuggestParamRequest(
                trial_id=self.id, worker=self.worker, name=name,
                distribution_json=json.dumps({k: v for k, v in asked.items() if v is not None})))
            self.params[name] = json.loads(response.value_json)
            return self.params[name]
        declared = self._space.get(name)
        if declared is None and self._space:
            raise ValueError(f"param {name!r} is not in the study's search space ({', '.join(self._space)}): "
                             "declare it in create_study(search_space=…)")
        if declared is not None:
            defaults = {"step": 1 if asked["type"] == "int" else None, "log": False}
            different = [k for k, v in asked.items() if declared.get(k, defaults.get(k)) != v]
            if different:
                raise ValueError(f"suggest for {name!r} asks {({k: asked[k] for k in different})} but the study "
                                 f"declares {({k: declared.get(k, defaults.get(k)) for k in different})}: the "
                                 "study's search space decides; make them agree")
        if name not in self.params:
            raise ValueError(f"param {name!r} has no value in this trial: its condition "
                             f"({(declared or {}).get('when')}) does not hold")
        return self.params[name]

    def report(self, step: int, value: float, *, metric: str = "objective") -> bool:
        """Record an intermediate value (also logged on the trial's run as `metric`); True when
        the pruner says the trial should stop."""
        client = self._client
        if self.run_id:
            stub = ingest_pb2_grpc.IngestServiceStub(client.channel("ingest"))
            client.call("ingest", stub.LogMetrics, ingest_pb2.LogMetricsRequest(run_id=self.run_id, series=[
                ingest_pb2.MetricSeries(key=metric, steps=[step], values=[float(value)])]))
        response = call(client, "ReportIntermediate", hpo_pb2.ReportIntermediateRequest(
            trial_id=self.id, worker=self.worker, step=step, value=float(value)))
        return bool(response.should_prune) or self._stop

    def complete(self, value: float | Sequence[float]) -> TrialInfo:
        values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
        response = call(self._client, "CompleteTrial", hpo_pb2.CompleteTrialRequest(
            trial_id=self.id, worker=self.worker, values=values))
        return TrialInfo.from_proto(response.trial)

    def prune(self) -> TrialInfo:
        """End the trial PRUNED (after `report` said so); its last reported value stands."""
        response = call(self._client, "CompleteTrial", hpo_pb2.CompleteTrialRequest(
            trial_id=self.id, worker=self.worker, pruned=True))
        return TrialInfo.from_proto(response.trial)

    def fail(self, reason: str = "") -> TrialInfo:
        response = call(self._client, "FailTrial", hpo_pb2.FailTrialRequest(
            trial_id=self.id, worker=self.worker, reason=reason))
        return TrialInfo.from_proto(response.trial)


def current_trial(*, client: Client | None = None) -> Trial:
    """The trial of this process, from the environment `trackd hpo worker` sets."""
    trial_id = os.environ.get(ENV_TRIAL_ID)
    if not trial_id:
        raise RuntimeError(f"no trial here: {ENV_TRIAL_ID} is unset (run under `trackd hpo worker STUDY -- CMD`)")
    return Trial(trial_id, os.environ.get(ENV_RUN_ID, ""), os.environ.get(ENV_WORKER, ""),
                 json.loads(os.environ.get(ENV_PARAMS, "{}")), client=client)


def optimize(objective: Callable[[Trial], float | Sequence[float]], study: str, *, n_trials: int | None = None,
             n_workers: int = 1, processes: bool = True, show_progress: bool = True,
             client: Client | None = None) -> list[TrialInfo]:
    """Evaluate `objective(trial)` on trials of `study` (created with `create_study`, whose
    search space the `trial.suggest_*` calls must match) until `n_trials` have run here or the
    study ends. `n_workers` evaluate at once: separate processes by default (the objective is
    sent to them with cloudpickle, so a notebook's functions work), threads with
    `processes=False`. The objective returns the value (a sequence with several objectives),
    raises `TrialPruned` to prune; any other exception fails that trial and the search goes on.
    Returns the study's trials."""
    from trackd import _hpo_worker

    client = client or default_client()
    info = call(client, "GetStudy", hpo_pb2.GetStudyRequest(name=study)).study
    if n_workers < 1 or (n_trials is not None and n_trials < 1):
        raise ValueError("n_workers and n_trials are at least 1")
    shares = [0] * n_workers if n_trials is None else [n_trials // n_workers + (i < n_trials % n_workers)
                                                          for i in range(n_workers)]
    worker = f"{os.uname().nodename}:{os.getpid()}"
    with _progress(client, info, n_trials, show_progress):
        if processes:
            _optimize_in_processes(objective, study, shares, worker)
        else:
            space = None if info.define_by_run else json.loads(info.search_space_json or "{}")
            _hpo_worker.run_slots(client, info.id, worker,
                                  lambda t, lease: _hpo_worker.call_objective(client, objective, space, t, lease),
                                  n_trials=n_trials or 0, slots=n_workers)
    return list_trials(study, client=client)


def _optimize_in_processes(objective: Callable[..., Any], study: str, shares: list[int], worker: str) -> None:
    import subprocess
    import sys

    import cloudpickle

    payload = cloudpickle.dumps(objective)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the caller's modules
    children = [subprocess.Popen([sys.executable, "-m", "trackd._hpo_worker", study, str(share), f"{worker}-{i}"],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                for i, share in enumerate(shares) if share or not any(shares)]
    outputs = [child.communicate(payload)[1].decode(errors="replace") for child in children]
    for child, err in zip(children, outputs, strict=True):
        if err.strip():
            print(err, end="", file=sys.stderr)  # the failed trials' tracebacks
        if child.returncode != 0:
            raise RuntimeError(f"an optimize worker process exited with status {child.returncode}:\n{err[-2000:]}")


class _progress:
    """A tqdm bar of this study's finished trials while optimize runs (polled from the service)."""

    def __init__(self, client: Client, info: hpo_pb2.Study, n_trials: int | None, show: bool) -> None:
        self._client, self._info, self._total, self._show = client, info, n_trials, show
        self._done = threading.Event()

    @staticmethod
    def _finished(study: hpo_pb2.Study) -> int:
        return study.trials_complete + study.trials_pruned + study.trials_failed

    def __enter__(self) -> None:
        if not self._show:
            return
        from tqdm.auto import tqdm

        start = self._finished(self._info)
        bar = tqdm(total=self._total or (self._info.max_trials - start if self._info.max_trials else None),
                   desc=f"study {self._info.name}", unit="trial")

        def poll() -> None:
            while not self._done.wait(0.5):
                try:
                    now = self._finished(call(self._client, "GetStudy", hpo_pb2.GetStudyRequest(
                        study_id=self._info.id)).study)
                except TrackdError:
                    continue
                bar.update(max(0, now - start - bar.n))
            bar.close()

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._show:
            self._thread.join()
