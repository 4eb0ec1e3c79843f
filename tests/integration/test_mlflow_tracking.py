"""MLflow's tracking API on the web service, with the real (pinned) mlflow client against the real
stack: MLflow's tracking quickstart (params, metrics with steps, tags, log_batch, nested runs,
search_runs with filter_string and order_by, get_metric_history, experiments by name, delete and
restore); the same run read back through trackd's SDK; its run.ended on Kafka; and bad input on
each endpoint answered with MLflow's error JSON, never a 500, writing nothing."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import mlflow
import mlflow.tracking._tracking_service.utils as tracking_utils
import pytest
import trackd
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import fluent
from trackd_api.events.v1 import events_pb2
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import EmbeddedStack

from tests.integration.conftest import HEARTBEAT_TIMEOUT_S, collect_events

pytestmark = pytest.mark.integration
API = "/api/2.0/mlflow"


@pytest.fixture
def tracking(stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    """The mlflow client pointed at trackd, its global state (URI, active experiment, runs) undone after."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.web_url)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # set_experiment sets it
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    try:
        yield MlflowClient(tracking_uri=stack.web_url)
    finally:
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture
def http(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.web_url + API, timeout=30) as client:
        yield client


def test_tracking_quickstart_reads_back_through_mlflow_and_trackd(
        tracking: MlflowClient, unique: Callable[[str], str]) -> None:
    name = unique("quickstart")
    experiment_id = mlflow.set_experiment(name).experiment_id
    assert mlflow.get_experiment_by_name(name).experiment_id == experiment_id
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("lr", "0.01")
        mlflow.log_params({"layers": 3, "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.91, "f1": 0.8}, step=4)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev"})
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("acc", 0.5)
    run = tracking.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "parent"
    assert run.info.experiment_id == experiment_id and run.info.lifecycle_stage == "active"
    assert run.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run.info.run_id}/artifacts"
    assert run.info.end_time >= run.info.start_time > 0
    assert run.data.params == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert run.data.metrics == {"loss": 0.2, "acc": 0.91, "f1": 0.8}
    assert run.data.tags["team"] == "vision" and run.data.tags["stage"] == "dev"
    assert run.data.tags["mlflow.runName"] == "parent"
    history = tracking.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert all(m.timestamp > 0 for m in history)
    nested = tracking.get_run(child.info.run_id)
    assert nested.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert tracking.get_parent_run(child.info.run_id).info.run_id == parent.info.run_id
    # the same run through trackd's own SDK: identical params and metrics, parent kept
    same = trackd.get_run(run.info.run_id)
    assert same.params == run.data.params and same.status == "FINISHED"
    assert [p.value for p in trackd.get_metric_history(run.info.run_id, "loss")] == [m.value for m in history]
    assert [p.step for p in trackd.get_metric_history(run.info.run_id, "loss")] == list(range(5))
    assert trackd.get_run(child.info.run_id).parent_run_id == parent.info.run_id


def test_log_batch_and_search_runs_with_filter_and_order(tracking: MlflowClient, unique: Callable[[str], str]) -> None:
    experiment_id = tracking.create_experiment(unique("search"), tags={"owner": "ml"})
    ids = []
    for i, lr in enumerate(["0.1", "0.01", "0.001"]):
        run = tracking.create_run(experiment_id, run_name=f"r{i}", tags={"kind": "sweep"})
        now = int(time.time() * 1000)
        tracking.log_batch(run.info.run_id, metrics=[Metric("acc", 0.5 + i * 0.2, now, 1), Metric("acc", 0.6 + i * 0.2,
                                                                                                   now + 1, 2)],
                           params=[Param("lr", lr)], tags=[RunTag("i", str(i))])
        tracking.set_terminated(run.info.run_id, "FINISHED" if i else "FAILED")
        ids.append(run.info.run_id)
    found = tracking.search_runs([experiment_id], "metrics.acc > 0.9 and params.lr = '0.001'")
    assert [r.info.run_id for r in found] == [ids[2]]
    ordered = tracking.search_runs([experiment_id], "tags.kind = 'sweep'", order_by=["metrics.acc DESC"])
    assert [r.info.run_id for r in ordered] == ids[::-1]
    assert [r.info.run_id for r in tracking.search_runs([experiment_id], "attributes.status = 'FAILED'")] == [ids[0]]
    assert [r.info.run_id for r in tracking.search_runs([experiment_id], "status != 'FAILED'",
                                                        order_by=["start_time ASC"])] == ids[1:]
    assert [r.info.run_id for r in tracking.search_runs(
        [experiment_id], "tags.`mlflow.runName` = 'r1'")] == [ids[1]]
    first = tracking.search_runs([experiment_id], max_results=2, order_by=["attributes.start_time ASC"])
    rest = tracking.search_runs([experiment_id], max_results=2, order_by=["attributes.start_time ASC"],
                                page_token=first.token)
    assert [r.info.run_id for r in [*first, *rest]] == ids and rest.token is None
    frame = mlflow.search_runs([experiment_id], filter_string="params.lr != '0.1'", order_by=["params.lr ASC"])
    assert list(frame["run_id"]) == [ids[2], ids[1]]
    assert list(frame["metrics.acc"]) == pytest.approx([1.0, 0.8])
    # delete and restore, seen through run_view_type
    tracking.delete_run(ids[0])
    assert tracking.get_run(ids[0]).info.lifecycle_stage == "deleted"
    assert ids[0] not in {r.info.run_id for r in tracking.search_runs([experiment_id])}
    assert [r.info.run_id for r in tracking.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)] == [
        ids[0]]
    tracking.restore_run(ids[0])
    assert len(tracking.search_runs([experiment_id])) == 3


def test_experiments_lifecycle_tags_and_search(tracking: MlflowClient, unique: Callable[[str], str]) -> None:
    name = unique("exp")
    experiment_id = tracking.create_experiment(name)
    with pytest.raises(MlflowException, match="already exists") as taken:
        tracking.create_experiment(name)
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    tracking.set_experiment_tag(experiment_id, "team", "nlp")
    tracking.rename_experiment(experiment_id, name + "-renamed")
    got = tracking.get_experiment(experiment_id)
    assert got.name == name + "-renamed" and got.tags["team"] == "nlp" and got.lifecycle_stage == "active"
    tracking.delete_experiment_tag(experiment_id, "team")
    assert "team" not in tracking.get_experiment(experiment_id).tags
    found = tracking.search_experiments(filter_string=f"name LIKE '{name}%'")
    assert [e.experiment_id for e in found] == [experiment_id]
    tracking.delete_experiment(experiment_id)
    assert tracking.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert not tracking.search_experiments(filter_string=f"name = '{name}-renamed'")
    assert [e.experiment_id for e in tracking.search_experiments(
        view_type=ViewType.DELETED_ONLY, filter_string=f"name = '{name}-renamed'")] == [experiment_id]
    tracking.restore_experiment(experiment_id)
    assert tracking.get_experiment_by_name(name + "-renamed").lifecycle_stage == "active"
    # a project prefix puts the experiment in that trackd project
    project = unique("proj")
    in_project = tracking.create_experiment(f"{project}/models")
    assert tracking.get_experiment_by_name(f"{project}/models").experiment_id == in_project
    run_id = tracking.create_run(in_project).info.run_id
    assert [r.id for r in trackd.search_runs("models", project=project)] == [run_id]


def test_default_experiment_and_run_updates(tracking: MlflowClient) -> None:
    assert tracking.get_experiment("0").name == "Default"
    with mlflow.start_run() as run:  # no experiment set: MLflow's "0"
        mlflow.log_metric("x", float("nan"))
        mlflow.set_tag("to-delete", "1")
        mlflow.delete_tag("to-delete")
    got = tracking.get_run(run.info.run_id)
    assert got.info.experiment_id == tracking.get_experiment_by_name("Default").experiment_id
    assert math.isnan(got.data.metrics["x"]) and "to-delete" not in got.data.tags
    started = tracking.create_run("0", start_time=1_700_000_000_000)
    tracking.update_run(started.info.run_id, status="KILLED", name="renamed")
    tracking.set_terminated(started.info.run_id, end_time=1_700_000_001_000)  # already ended: a no-op
    got = tracking.get_run(started.info.run_id)
    assert (got.info.status, got.info.run_name, got.data.tags["mlflow.runName"]) == ("KILLED", "renamed", "renamed")
    assert got.info.start_time == 1_700_000_000_000
    ended = tracking.create_run("0", start_time=1_700_000_000_000)
    tracking.set_terminated(ended.info.run_id, "FINISHED", end_time=1_700_000_002_000)
    assert tracking.get_run(ended.info.run_id).info.end_time == 1_700_000_002_000


def test_an_mlflow_run_outlives_the_heartbeat_timeout_and_ends_on_kafka(
        tracking: MlflowClient, stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    run = tracking.create_run(tracking.create_experiment(unique("events")))
    time.sleep(HEARTBEAT_TIMEOUT_S + 1.5)  # MLflow sends no heartbeats: still RUNNING
    assert tracking.get_run(run.info.run_id).info.status == "RUNNING"
    tracking.log_param(run.info.run_id, "late", "1")
    tracking.set_terminated(run.info.run_id, "FINISHED")
    events = asyncio.run(collect_events(stack.kafka_bootstrap, lambda e: e.key == run.info.run_id, 2))
    ended = [events_pb2.RunEnded.FromString(e.value) for e in events if e.topic == "run.ended"]
    assert [e.status for e in ended] == [run_pb2.RUN_STATUS_FINISHED]
    assert {e.topic for e in events} == {"run.started", "run.ended"}


def test_datasets_history_paging_and_bulk_interval(tracking: MlflowClient, http: httpx.Client,
                                                    stack: EmbeddedStack) -> None:
    run = tracking.create_run("0")
    run_id = run.info.run_id
    dataset = Dataset(name="iris", digest="abc123", source_type="local", source='{"uri": "/data/iris"}')
    tracking.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train")])])
    tracking.log_batch(run_id, metrics=[Metric("m", float(s), 1000 + s, s) for s in range(10)])
    inputs = tracking.get_run(run_id).inputs.dataset_inputs
    assert [(d.dataset.name, d.dataset.digest, d.tags[0].value) for d in inputs] == [("iris", "abc123", "train")]
    assert not any(k.startswith("mlflow.trackd.") for k in tracking.get_run(run_id).data.tags)
    page = http.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "m", "max_results": 4}).json()
    assert [m["step"] for m in page["metrics"]] == [0, 1, 2, 3]
    after = http.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "m", "max_results": 4,
                                                     "page_token": page["next_page_token"]}).json()
    assert [m["step"] for m in after["metrics"]] == [4, 5, 6, 7]
    with httpx.Client(base_url=stack.web_url, timeout=30) as ui:
        bulk = ui.get("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", params={
            "run_ids": [run_id], "metric_key": "m", "start_step": 2, "end_step": 5, "max_results": 100}).json()
    assert [(m["step"], m["run_id"]) for m in bulk["metrics"]] == [(s, run_id) for s in range(2, 6)]


def test_history_longer_than_one_export_part_returns_every_point_whole_and_paged(
        tracking: MlflowClient, http: httpx.Client, stack: EmbeddedStack) -> None:
    """get-history reads the query service's ExportMetric stream (parts of 65,536 points), so a
    series longer than one gRPC message comes back whole: streamed as one body without
    max_results, and in the pages of 25,000 that MlflowClient.get_metric_history asks for (raw
    HTTP here: the client's own JSON-to-proto conversion of 70,000 points costs seconds; the
    quickstart test runs get_metric_history itself), each starting where the last ended."""
    run_id = tracking.create_run("0").info.run_id
    total = 70_000  # two export parts; written straight through the ingest service
    with grpc.insecure_channel(f"127.0.0.1:{stack.service_port('ingest')}") as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).LogMetrics(ingest_pb2.LogMetricsRequest(
            run_id=run_id, series=[ingest_pb2.MetricSeries(key="long", steps=range(total),
                                                           values=[s * 0.5 for s in range(total)],
                                                           timestamps_ms=[1000 + s for s in range(total)])]))
    query = {"run_id": run_id, "metric_key": "long"}
    whole = http.get("/metrics/get-history", params=query).json()["metrics"]
    assert [m["step"] for m in whole] == list(range(total))
    assert whole[-1] == {"key": "long", "value": (total - 1) * 0.5, "timestamp": 1000 + total - 1, "step": total - 1}
    steps: list[int] = []
    token = None
    while True:
        page = http.get("/metrics/get-history", params={**query, "max_results": 25_000,
                                                        **({"page_token": token} if token else {})}).json()
        steps += [m["step"] for m in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert steps == list(range(total))
    assert http.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "none"}).json() == {"metrics": []}


# -- bad input: MLflow's error JSON with the right code, never a 500, nothing written ------------

def _error(response: httpx.Response, code: str, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code and body["message"], body
    return body


def test_bad_input_gets_mlflow_errors_and_writes_nothing(tracking: MlflowClient, http: httpx.Client) -> None:
    run_id = tracking.create_run("0").info.run_id
    tracking.log_param(run_id, "lr", "0.1")
    missing = "0" * 32
    bad = http.post("/runs/log-batch", content=b"{not json", headers={"content-type": "application/json"})
    _error(bad, "BAD_REQUEST", 400)
    posts: list[tuple[str, dict[str, Any], str, int]] = [
        ("/runs/log-metric", {"run_id": run_id, "key": "m", "value": "high", "timestamp": 1}, "INVALID_PARAMETER_VALUE",
         400),
        ("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/log-metric", {"run_id": missing, "key": "m", "value": 1.0, "timestamp": 1},
         "RESOURCE_DOES_NOT_EXIST", 404),
        ("/runs/log-metric", {"run_id": "x/../y", "key": "m", "value": 1.0, "timestamp": 1},
         "RESOURCE_DOES_NOT_EXIST", 404),
        ("/runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.2"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/log-parameter", {"run_id": run_id, "key": "long", "value": "v" * 6001}, "INVALID_PARAMETER_VALUE",
         400),
        ("/runs/log-parameter", {"run_id": run_id, "key": "k" * 251, "value": "v"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/log-parameter", {"key": "k", "value": "v"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/set-tag", {"run_id": run_id, "key": 5, "value": "v"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/delete-tag", {"run_id": run_id, "key": "never-set"}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/runs/log-batch", {"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 1}] * 1001},
         "INVALID_PARAMETER_VALUE", 400),
        ("/runs/log-batch", {"run_id": run_id, "params": [{"key": f"p{i}", "value": "v"} for i in range(101)]},
         "INVALID_PARAMETER_VALUE", 400),
        ("/runs/log-batch", {"run_id": run_id, "tags": [{"key": f"t{i}", "value": "v"} for i in range(101)]},
         "INVALID_PARAMETER_VALUE", 400),
        # a good param and metric beside a conflicting param: nothing of the batch is written
        ("/runs/log-batch", {"run_id": run_id, "params": [{"key": "new", "value": "1"}, {"key": "lr", "value": "9"}],
                             "metrics": [{"key": "written", "value": 1, "timestamp": 1}]},
         "INVALID_PARAMETER_VALUE", 400),
        ("/runs/log-batch", {"run_id": run_id, "metrics": "many"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/log-inputs", {"run_id": run_id, "datasets": [{"dataset": {"name": "d"}}]}, "INVALID_PARAMETER_VALUE",
         400),
        ("/runs/update", {"run_id": run_id, "status": "SCHEDULED"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/update", {"run_id": run_id, "status": "DONE"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/update", {"run_id": missing}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/runs/create", {"experiment_id": missing}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/runs/create", {"experiment_id": "0", "start_time": "yesterday"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/search", {"experiment_ids": ["0"], "filter": "metrics.acc >>> 1"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/search", {"experiment_ids": ["0"], "max_results": 50_001}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/search", {"experiment_ids": ["0"], "run_view_type": "SOME"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/search", {"experiment_ids": ["0"], "page_token": "garbage!"}, "INVALID_PARAMETER_VALUE", 400),
        ("/runs/delete", {"run_id": missing}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/runs/restore", {"run_id": missing}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/experiments/create", {}, "INVALID_PARAMETER_VALUE", 400),
        ("/experiments/create", {"name": ["list"]}, "INVALID_PARAMETER_VALUE", 400),
        ("/experiments/create", {"name": "Default"}, "RESOURCE_ALREADY_EXISTS", 400),
        ("/experiments/update", {"experiment_id": missing, "new_name": "x"}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/experiments/delete", {"experiment_id": "nope"}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/experiments/restore", {"experiment_id": missing}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/experiments/set-experiment-tag", {"experiment_id": "0", "key": "k", "value": "v" * 5001},
         "INVALID_PARAMETER_VALUE", 400),
        ("/experiments/delete-experiment-tag", {"experiment_id": "0", "key": "never"}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/experiments/search", {"filter": "name ~ 'x'"}, "INVALID_PARAMETER_VALUE", 400),
        ("/experiments/search", {"order_by": ["size DESC"]}, "INVALID_PARAMETER_VALUE", 400),
    ]
    for path, body, code, status in posts:
        _error(http.post(path, json=body), code, status)
    gets: list[tuple[str, dict[str, Any], str, int]] = [
        ("/runs/get", {"run_id": missing}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/runs/get", {}, "INVALID_PARAMETER_VALUE", 400),
        ("/experiments/get", {"experiment_id": missing}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/experiments/get-by-name", {"experiment_name": "no-such-experiment-here"}, "RESOURCE_DOES_NOT_EXIST", 404),
        ("/metrics/get-history", {"run_id": run_id}, "INVALID_PARAMETER_VALUE", 400),
        ("/metrics/get-history", {"run_id": run_id, "metric_key": "m", "max_results": "ten"},
         "INVALID_PARAMETER_VALUE", 400),
        ("/metrics/get-history-bulk-interval", {"run_ids": [run_id] * 101, "metric_key": "m"},
         "INVALID_PARAMETER_VALUE", 400),
        ("/metrics/get-history-bulk-interval", {"run_ids": [run_id], "metric_key": "m", "start_step": 3},
         "INVALID_PARAMETER_VALUE", 400),
        ("/no/such/endpoint", {}, "ENDPOINT_NOT_FOUND", 404),
    ]
    for path, params, code, status in gets:
        _error(http.get(path, params=params), code, status)
    after = tracking.get_run(run_id)
    assert after.data.params == {"lr": "0.1"} and after.data.metrics == {}
    assert not [t for t in after.data.tags if t.startswith("t")]


def test_an_ended_run_refuses_resuming_with_invalid_state(tracking: MlflowClient, http: httpx.Client) -> None:
    run_id = tracking.create_run("0").info.run_id
    tracking.set_terminated(run_id)
    _error(http.post("/runs/update", json={"run_id": run_id, "status": "RUNNING"}), "INVALID_STATE", 400)
    _error(http.post("/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1, "timestamp": 1}),
           "INVALID_STATE", 400)


async def test_the_run_service_validates_client_times_and_names(runs: run_pb2_grpc.RunServiceStub) -> None:
    start = run_pb2.StartRunRequest(project_name="mlflow-rpc", experiment_name="times", unattended=True)
    start.start_time.FromMilliseconds(1_700_000_000_000)
    run = (await runs.StartRun(start)).run
    assert run.start_time.ToMilliseconds() == 1_700_000_000_000
    early = run_pb2.EndRunRequest(run_id=run.id, status=run_pb2.RUN_STATUS_FINISHED)
    early.end_time.FromMilliseconds(1_600_000_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await runs.EndRun(early)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await runs.UpdateRun(run_pb2.UpdateRunRequest(run_id=run.id, name=""))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    renamed = (await runs.UpdateRun(run_pb2.UpdateRunRequest(run_id=run.id, name="new name"))).run
    assert renamed.name == "new name"
    other = (await runs.StartRun(run_pb2.StartRunRequest(project_name="mlflow-rpc", experiment_name="taken"))).run
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await runs.UpdateExperiment(run_pb2.UpdateExperimentRequest(experiment_id=run.experiment_id, name="taken"))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS and other.experiment_id != run.experiment_id


def test_sklearn_autolog_logs_params_metrics_and_the_dataset(tracking: MlflowClient,
                                                             unique: Callable[[str], str]) -> None:
    """The tracking half of autologging (the model itself is the registry's and artifacts' part)."""
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment(unique("autolog"))
    mlflow.sklearn.autolog(log_models=False, log_datasets=True, silent=True)
    try:
        features, labels = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            LogisticRegression(C=0.5, max_iter=200).fit(features, labels)
    finally:
        mlflow.sklearn.autolog(disable=True)
    got = tracking.get_run(run.info.run_id)
    assert got.data.params["C"] == "0.5" and got.data.params["max_iter"] == "200"
    assert 0.9 < got.data.metrics["training_accuracy_score"] <= 1.0
    assert got.data.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert [d.dataset.source_type for d in got.inputs.dataset_inputs] == ["code"]
    assert got.info.status == "FINISHED"
