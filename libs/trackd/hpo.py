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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from trackd._client import Client, default_client
from trackd.errors import Unavailable

DIRECTIONS = {"minimize": hpo_pb2.DIRECTION_MINIMIZE, "maximize": hpo_pb2.DIRECTION_MAXIMIZE}
STATES = {v: k.removeprefix("TRIAL_STATE_") for k, v in hpo_pb2.TrialState.items()}
STUDY_STATES = {v: k.removeprefix("STUDY_STATE_") for k, v in hpo_pb2.StudyState.items()}
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
    state: str  # WAITING, RUNNING, COMPLETE, PRUNED, FAIL
    params: dict[str, Any]
    values: list[float]
    run_id: str
    attempt: int

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None

    @classmethod
    def from_proto(cls, t: hpo_pb2.Trial) -> TrialInfo:
        return cls(t.id, t.number, STATES[t.state], json.loads(t.params_json or "{}"), list(t.values), t.run_id,
                   t.attempt)


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
        raise ValueError("a study needs a search_space: a mapping, or the path of a YAML file")
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
    choices, when}, or a YAML file of the same)."""
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
    client = client or default_client()
    study_id = get_study(study, client=client).id
    return StudyInfo.from_proto(call(client, "StopStudy", hpo_pb2.StopStudyRequest(study_id=study_id)).study)


class Trial:
    """The trial a worker started this process for (see `current_trial`)."""

    def __init__(self, trial_id: str, run_id: str, worker: str, params: dict[str, Any], *,
                 client: Client | None = None) -> None:
        self.id, self.run_id, self.worker, self.params = trial_id, run_id, worker, params
        self._client = client or default_client()

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
        return bool(response.should_prune)

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
