"""Regressions found by running MLflow's own REST tracking tests (mlflow's
tests/tracking/test_rest_tracking.py) against trackd: each test here is one of its checks that
trackd failed, over raw HTTP or the real (pinned) mlflow client against the real stack. The whole
upstream run — what passes, what is out of scope and why — is in docs/mlflow.md, "MLflow's own REST
tracking tests"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import EmbeddedStack

from tests.conftest import AUTH_ADMIN_SECRET

pytestmark = pytest.mark.integration
API = "/api/2.0/mlflow"


@pytest.fixture
def http(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.web_url, timeout=30) as client:
        yield client


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _refused(response: httpx.Response, *phrases: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    for phrase in phrases:
        assert phrase in response.json()["message"]


def _experiment(http: httpx.Client, name: str) -> str:
    experiment_id: str = _ok(http.post(f"{API}/experiments/create", json={"name": name}))["experiment_id"]
    return experiment_id


def _run(http: httpx.Client, experiment_id: str, **fields: Any) -> dict[str, Any]:
    run: dict[str, Any] = _ok(http.post(f"{API}/runs/create", json={"experiment_id": experiment_id, **fields}))["run"]
    return run


def test_create_experiment_refuses_a_mistyped_artifact_location(
        http: httpx.Client, unique: Callable[[str], str]) -> None:
    name = unique("artifact-location")
    _refused(http.post(f"{API}/experiments/create", json={"name": name, "artifact_location": 9.0}),
             "Invalid value 9.0 for parameter 'artifact_location'")
    assert http.get(f"{API}/experiments/get-by-name", params={"experiment_name": name}).status_code == 404


def test_search_experiments_always_finds_the_default_experiment(
        http: httpx.Client, unique: Callable[[str], str]) -> None:
    """MLflow's server always has "Default"; trackd creates it on first use, and a search is one.
    The test sets the current Default aside (a rename) so that none exists, then puts it back."""
    old = _ok(http.get(f"{API}/experiments/get", params={"experiment_id": "0"}))["experiment"]["experiment_id"]
    aside = unique("default-aside")
    _ok(http.post(f"{API}/experiments/update", json={"experiment_id": old, "new_name": aside}))
    try:
        found = _ok(http.post(f"{API}/experiments/search", json={"filter": "name = 'Default'"}))["experiments"]
        assert [e["name"] for e in found] == ["Default"]
        assert found[0]["experiment_id"] != old
        _ok(http.post(f"{API}/experiments/update", json={"experiment_id": found[0]["experiment_id"],
                                                         "new_name": unique("default-new")}))
    finally:
        _ok(http.post(f"{API}/experiments/update", json={"experiment_id": old, "new_name": "Default"}))


def test_param_and_tag_values_must_be_strings_and_the_run_id_is_checked_first(
        http: httpx.Client, unique: Callable[[str], str]) -> None:
    run_id = _run(http, _experiment(http, unique("values")))["info"]["run_id"]
    for path in ("/runs/set-tag", "/runs/log-parameter"):
        _refused(http.post(API + path, json={"run_id": 31, "key": "k", "value": 41}),
                 "Invalid value 31 for parameter 'run_id' supplied")
        _refused(http.post(API + path, json={"run_id": run_id, "key": "k", "value": 41}),
                 "Invalid value 41 for parameter 'value' supplied")
    _refused(http.post(f"{API}/runs/log-batch", json={"run_id": run_id, "params": [{"key": "p", "value": 1.5}]}),
             "Invalid value 1.5 for parameter 'value' supplied")
    data = _ok(http.get(f"{API}/runs/get", params={"run_id": run_id}))["run"]["data"]
    assert "params" not in data or data["params"] == []
    assert "k" not in {t["key"] for t in data["tags"]}


def test_log_batch_names_the_metric_without_a_timestamp(http: httpx.Client, unique: Callable[[str], str]) -> None:
    run_id = _run(http, _experiment(http, unique("batch")))["info"]["run_id"]
    metrics = [{"key": "ok", "value": 1.0, "timestamp": 1}, {"key": "mae", "value": 2.5}]
    _refused(http.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}),
             "Missing value for required parameter 'metrics[1].timestamp'")
    _ok(http.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": metrics[:1]}))


async def test_a_parent_run_id_tag_naming_no_trackd_run_is_kept_as_a_tag(
        stack: EmbeddedStack, runs: run_pb2_grpc.RunServiceStub, unique: Callable[[str], str]) -> None:
    """MLflow does not check `mlflow.parentRunId`; trackd links the runs only when the parent exists."""
    async with httpx.AsyncClient(base_url=stack.web_url + API, timeout=30) as http:
        experiment_id = _ok(await http.post("/experiments/create", json={"name": unique("parent-tag")}))[
            "experiment_id"]
        run = _ok(await http.post("/runs/create", json={
            "experiment_id": experiment_id, "start_time": 456,
            "tags": [{"key": "mlflow.parentRunId", "value": "7"}, {"key": "mlflow.user", "value": "username"}]}))["run"]
        fetched = _ok(await http.get("/runs/get", params={"run_id": run["info"]["run_id"]}))["run"]
        for shown in (run, fetched):
            assert {t["key"]: t["value"] for t in shown["data"]["tags"]}["mlflow.parentRunId"] == "7"
            assert shown["info"]["user_id"] == "username" and shown["info"]["start_time"] == 456
        child = _ok(await http.post("/runs/create", json={
            "experiment_id": experiment_id, "tags": [{"key": "mlflow.parentRunId", "value": run["info"]["run_id"]}]}))
    found = await runs.GetRun(run_pb2.GetRunRequest(run_id=run["info"]["run_id"]))
    assert found.run.parent_run_id == ""
    found = await runs.GetRun(run_pb2.GetRunRequest(run_id=child["run"]["info"]["run_id"]))
    assert found.run.parent_run_id == run["info"]["run_id"]


def test_get_history_bulk_interval_refuses_zero_results_and_too_many_runs(http: httpx.Client) -> None:
    url = f"{API}/metrics/get-history-bulk-interval"
    _refused(http.get(url, params={"run_ids": ["123"], "metric_key": "key", "max_results": 0}),
             "max_results must be between 1 and 2500")
    _refused(http.get(url, params={"run_ids": [f"id_{i}" for i in range(101)], "metric_key": "key"}),
             "GetMetricHistoryBulkInterval request must specify at most 100 run_ids.")


def test_get_history_bulk_orders_by_run_then_time_and_caps_the_total(
        http: httpx.Client, unique: Callable[[str], str]) -> None:
    experiment_id = _experiment(http, unique("bulk"))
    run_ids = sorted(_run(http, experiment_id)["info"]["run_id"] for _ in range(2))
    points = [{"key": "m", "timestamp": 2, "step": 3, "value": 12.0}, {"key": "m", "timestamp": 1, "step": 3,
                                                                        "value": 12.0},
              {"key": "m", "timestamp": 1, "step": 2, "value": 10.0}, {"key": "m", "timestamp": 1, "step": 3,
                                                                        "value": 11.0}]
    for run_id in reversed(run_ids):
        _ok(http.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": points}))
    in_order = sorted(points, key=lambda p: (p["timestamp"], p["step"], p["value"]))
    url = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
    got = _ok(http.get(url, params={"run_id": list(reversed(run_ids)), "metric_key": "m"}))["metrics"]
    assert got == [{**p, "run_id": r} for r in run_ids for p in in_order]
    got = _ok(http.get(url, params={"run_id": run_ids, "metric_key": "m", "max_results": 5}))["metrics"]
    assert got == [{**p, "run_id": r} for r in run_ids for p in in_order][:5]
    _refused(http.get(url, params={"metric_key": "m"}), "must specify at least one run_id")
    _refused(http.get(url, params={"run_id": [f"id_{i}" for i in range(101)], "metric_key": "m"}),
             "cannot specify more than 100 run_ids")
    _refused(http.get(url, params={"run_id": run_ids}), "must specify a metric_key")
    _refused(http.get(url, params={"run_id": run_ids, "metric_key": "m", "max_results": "many"}), "max_results")
    _refused(http.get(url, params={"run_id": run_ids, "metric_key": "m", "max_results": 25_001}),
             "max_results must be between 1 and 25000")
    assert http.get(url, params={"run_id": ["f" * 32], "metric_key": "m"}).status_code == 404


def test_artifacts_list_and_download_of_the_whole_run(
        http: httpx.Client, stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's REST `artifacts/list` (its UI's file browser) and `download_artifacts(run_id, ".")`
    (which lists and fetches `<root>/.` and `./<file>`)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=stack.web_url)
    run_id = client.create_run(client.create_experiment(unique("art"))).info.run_id
    source = tmp_path / "src"
    source.mkdir()
    (source / "my.file").write_text("Hello, World!")
    client.log_artifact(run_id, str(source / "my.file"))
    client.log_artifacts(run_id, str(source), "dir")

    listing = _ok(http.get(f"{API}/artifacts/list", params={"run_id": run_id}))
    assert listing["root_uri"].endswith(f"/{run_id}/artifacts")
    assert {(f["path"], f["is_dir"]) for f in listing["files"]} == {("my.file", False), ("dir", True)}
    inner = _ok(http.get(f"{API}/artifacts/list", params={"run_id": run_id, "path": "dir"}))["files"]
    assert inner == [{"path": "dir/my.file", "is_dir": False, "file_size": 13}]
    bad = http.get(f"{API}/artifacts/list", params={"run_id": run_id, "path": "../path"})
    assert (bad.status_code, bad.json()) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"})
    _refused(http.get(f"{API}/artifacts/list", params={"path": "dir"}), "'run_id'")
    assert http.get(f"{API}/artifacts/list", params={"run_id": "f" * 32}).status_code == 404

    whole = Path(download_artifacts(run_id=run_id, artifact_path=".", tracking_uri=stack.web_url,
                                    dst_path=str(tmp_path / "out")))
    assert (whole / "my.file").read_text() == "Hello, World!"
    assert (whole / "dir" / "my.file").read_text() == "Hello, World!"


def test_search_experiments_with_a_project_token_shows_its_project(
        auth_stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    """With auth on, a token that may not create the Default experiment still searches: it sees
    its project's experiments (the Default experiment's creation is skipped, not an error)."""
    admin = (("authorization", f"Bearer {AUTH_ADMIN_SECRET}"),)
    with grpc.insecure_channel(f"127.0.0.1:{auth_stack.service_port('run')}") as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        project = runs.CreateProject(run_pb2.CreateProjectRequest(name=unique("proj")), metadata=admin,
                                     timeout=30).project
        runs.CreateExperiment(run_pb2.CreateExperimentRequest(project_id=project.id, name="e"), metadata=admin,
                              timeout=30)
        reader = auth_pb2_grpc.TokenServiceStub(channel).CreateToken(auth_pb2.CreateTokenRequest(
            project=project.name, role=auth_pb2.ROLE_READ, name="test"), metadata=admin, timeout=30).secret
    with httpx.Client(base_url=auth_stack.web_url + API, timeout=30,
                      headers={"authorization": f"Bearer {reader}"}) as http:
        found = _ok(http.get("/experiments/search", params={"max_results": 100}))["experiments"]
    assert [e["name"] for e in found] == [f"{project.name}/e"]


def test_search_datasets_summarises_the_runs_inputs(http: httpx.Client, unique: Callable[[str], str]) -> None:
    """MLflow's UI's `experiments/search-datasets`: each distinct (experiment, name, digest, context)."""
    experiment_id = _experiment(http, unique("datasets"))
    url = "/ajax-api/2.0/mlflow/experiments/search-datasets"
    assert _ok(http.post(url, json={"experiment_ids": [experiment_id]})) == {"dataset_summaries": []}
    dataset = {"name": "name1", "digest": "digest1", "source_type": "local", "source": "s"}
    for _ in range(2):  # the same dataset in two runs is one summary
        run_id = _run(http, experiment_id)["info"]["run_id"]
        _ok(http.post(f"{API}/runs/log-inputs", json={"run_id": run_id, "datasets": [
            {"dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": "training"}]},
            {"dataset": {**dataset, "name": "name2", "digest": "digest2"}}]}))
    found = _ok(http.post(url, json={"experiment_ids": [experiment_id]}))["dataset_summaries"]
    assert sorted(found, key=lambda d: d["name"]) == [
        {"experiment_id": experiment_id, "name": "name1", "digest": "digest1", "context": "training"},
        {"experiment_id": experiment_id, "name": "name2", "digest": "digest2", "context": ""}]
    _refused(http.post(url, json={}), "SearchDatasets request must specify at least one experiment_id.")
    _refused(http.post(url, json={"experiment_ids": [f"id_{i}" for i in range(21)]}),
             "SearchDatasets request cannot specify more than 20 experiment_ids")
    assert http.post(url, json={"experiment_ids": ["f" * 32]}).status_code == 404
    _refused(http.post(url, json={"experiment_ids": "x"}), "experiment_ids")
    _refused(http.post(url, json={"experiment_ids": [7]}), "experiment_ids")


def test_upload_artifact_writes_one_file_of_the_run(http: httpx.Client, unique: Callable[[str], str]) -> None:
    """MLflow's UI's `upload-artifact`: the raw body into the run's artifacts, MLflow's messages for
    what is missing."""
    run = _run(http, _experiment(http, unique("upload")))["info"]
    url = "/ajax-api/2.0/mlflow/upload-artifact"
    _refused(http.post(url, params={}), "Request must specify run_uuid.")
    _refused(http.post(url, params={"run_uuid": run["run_id"]}), "Request must specify path.")
    _refused(http.post(url, params={"run_uuid": run["run_id"], "path": "../test.txt"}), "Invalid path")
    _refused(http.post(url, params={"run_uuid": run["run_id"], "path": "test.txt"}), "Request must specify data.")
    _refused(http.post(url, params={"run_uuid": run["run_id"], "path": "big.bin"}, content=b"x" * (10 * 2**20 + 1)),
             "Max size is 10MB")
    assert http.post(url, params={"run_uuid": "f" * 32, "path": "t.txt"}, content=b"hi").status_code == 404
    _ok(http.post(url, params={"run_uuid": run["run_id"], "path": "test.txt"}, content=b"hello world"))
    got = http.get(f"/api/2.0/mlflow-artifacts/artifacts/{run['experiment_id']}/{run['run_id']}/artifacts/test.txt")
    assert (got.status_code, got.content) == (200, b"hello world")
    listing = _ok(http.get(f"{API}/artifacts/list", params={"run_id": run["run_id"]}))["files"]
    assert [f["path"] for f in listing] == ["test.txt"]
