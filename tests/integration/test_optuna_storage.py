"""Unchanged Optuna code on trackd (docs/optuna.md): two processes, each `study.optimize(n_jobs=4)`
through GrpcStorageProxy at the hpo service's Optuna port, run a TPE study with a median pruner,
an enqueued trial and user attributes to exactly N trials; the study and its trials are trackd's
(the hpo, run and query services show them: params, intermediate values as the metric `value`,
state, duration), and optuna-dashboard reads the same trials from the same storage."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
import optuna
import optuna_dashboard
import pytest
from optuna.storages import GrpcStorageProxy
from optuna.trial import TrialState
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import HOST, EmbeddedStack

from tests.integration._optuna_worker import optimize

N_TRIALS = 20  # 2 processes × n_trials=10, each with 4 threads
ENQUEUED = {"x": 1.0, "y": 0, "kind": "a"}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def dashboard(stack: EmbeddedStack) -> Iterator[Callable[[str], object]]:
    """optuna-dashboard's app on the same storage, served on a free port: GET path → JSON."""
    import urllib.request

    server = make_server(HOST, 0, optuna_dashboard.wsgi(GrpcStorageProxy(host=HOST, port=stack.ports.optuna)),
                         handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def get(path: str) -> object:
        with urllib.request.urlopen(f"http://{HOST}:{server.server_port}{path}", timeout=30) as response:
            return json.loads(response.read())

    yield get
    server.shutdown()
    thread.join()


def test_unchanged_optuna_code_from_two_processes_runs_on_trackd(
        stack: EmbeddedStack, unique: Callable[[str], str], dashboard: Callable[[str], object]) -> None:
    name = unique("optuna")
    storage = GrpcStorageProxy(host=HOST, port=stack.ports.optuna)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.set_user_attr("owner", "tests")
    study.enqueue_trial(ENQUEUED)  # a warm start: one of the N, run by whichever worker asks first

    spawn = multiprocessing.get_context("spawn")  # grpc's threads do not survive a fork
    workers = [spawn.Process(target=optimize, args=(HOST, stack.ports.optuna, name, N_TRIALS // 2))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
        assert worker.exitcode == 0, f"an Optuna worker process failed (exit code {worker.exitcode})"

    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))  # exactly N, numbers dense and unique
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert [t.number for t in trials if t.params == ENQUEUED] == [0]  # the enqueued trial ran once
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    assert optuna.load_study(study_name=name, storage=storage).user_attrs == {"owner": "tests"}

    channel = grpc.insecure_channel(stack.client_env()["TRACKD_HPO_TARGET"])
    hpo = hpo_pb2_grpc.HpoServiceStub(channel)
    runs = run_pb2_grpc.RunServiceStub(grpc.insecure_channel(stack.client_env()["TRACKD_RUN_TARGET"]))
    query = query_pb2_grpc.QueryServiceStub(grpc.insecure_channel(stack.client_env()["TRACKD_QUERY_TARGET"]))
    trackd_study = hpo.GetStudy(hpo_pb2.GetStudyRequest(name=name)).study
    listed = hpo.ListTrials(hpo_pb2.ListTrialsRequest(study_id=trackd_study.id, page_size=100)).trials
    assert sorted(t.number for t in listed) == list(range(N_TRIALS))
    by_number = {t.number: t for t in trials}

    def run_of(trial: hpo_pb2.Trial) -> run_pb2.Run | None:
        """The trial's run once its updates (made after Optuna's calls answer) are all in."""
        if not trial.run_id:
            return None
        run = runs.GetRun(run_pb2.GetRunRequest(run_id=trial.run_id)).run
        return run if run.status != run_pb2.RUN_STATUS_RUNNING else None

    deadline = time.monotonic() + 60
    while not all(run_of(t) for t in listed) and time.monotonic() < deadline:
        time.sleep(0.5)
        listed = hpo.ListTrials(hpo_pb2.ListTrialsRequest(study_id=trackd_study.id, page_size=100)).trials
    for trial in listed:
        optuna_trial = by_number[trial.number]
        assert json.loads(trial.params_json) == optuna_trial.params
        assert trial.state == (hpo_pb2.TRIAL_STATE_COMPLETE if optuna_trial.state == TrialState.COMPLETE
                               else hpo_pb2.TRIAL_STATE_PRUNED)
        run = run_of(trial)
        assert run is not None and run.status == run_pb2.RUN_STATUS_FINISHED, f"trial {trial.number}'s run"
        assert dict(run.params) == {k: str(v) for k, v in optuna_trial.params.items()}
        assert run.end_time.ToDatetime() >= run.start_time.ToDatetime()  # its duration
        history = query.GetMetricHistory(query_pb2.GetMetricHistoryRequest(run_id=trial.run_id, key="value")).series
        assert dict(zip(history.steps, history.values, strict=True)) == optuna_trial.intermediate_values

    detail = dashboard(f"/api/studies/{study._study_id}")
    assert isinstance(detail, dict)
    assert sorted((t["number"], t["state"]) for t in detail["trials"]) == sorted(
        (t.number, t.state.name.capitalize()) for t in trials)
    assert {t["number"]: {p["name"] for p in t["params"]} for t in detail["trials"]} == {
        t.number: set(t.params) for t in trials}
