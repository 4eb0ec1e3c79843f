"""MLflow's own client against trackd's web service: the mlflow-artifacts proxy (upload, list,
download, delete), logged models (`mlflow.sklearn.log_model`, autolog), and the model registry
(`register_model`, aliases, `models:/<name>@<alias>` and `models:/<name>/<version>`), with bad
input answered by MLflow's error JSON. The runs are started through trackd's SDK where the test
is about artifacts or the registry, so these tests do not depend on MLflow's run endpoints."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trackd
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

mlflow = pytest.importorskip("mlflow")

API = "/api/2.0/mlflow"


@pytest.fixture
def tracking(stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """MLflow's client pointed at trackd's web service, with nothing of the host's MLflow settings."""
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.web_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    monkeypatch.chdir(tmp_path)
    # MLflow infers a model's pip requirements in a subprocess that imports it (tens of seconds on
    # a busy machine); what it infers is no concern of trackd's
    monkeypatch.setattr(mlflow.models, "infer_pip_requirements", lambda *a, fallback=None, **k: fallback or [])
    mlflow.set_tracking_uri(stack.web_url)
    mlflow.set_registry_uri(stack.web_url)
    yield stack.web_url
    mlflow.set_tracking_uri(None)


@pytest.fixture
def http(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.web_url, timeout=30) as client:
        yield client


def _artifact_repo(run: trackd.Run, tracking_uri: str):  # type: ignore[no-untyped-def]
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts",
                                   tracking_uri=tracking_uri)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_artifacts_round_trip_through_the_proxy(tracking: str, tmp_path: Path,
                                                unique: Callable[[str], str]) -> None:
    run = trackd.start_run(experiment=unique("mlflow-art"), capture_env=False, system_metrics=False)
    repo = _artifact_repo(run, tracking)
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "notes.txt").write_text("hello\n")
    (source / "sub" / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    (source / "sub" / "empty.txt").write_bytes(b"")
    single = tmp_path / "single.json"
    single.write_text('{"a": 1}')

    repo.log_artifact(str(single))
    repo.log_artifacts(str(source), "data")

    root = {(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts()}
    assert root == {("single.json", False, 8), ("data", True, None)}
    assert {f.path for f in repo.list_artifacts("data")} == {"data/notes.txt", "data/sub"}
    sub = {f.path: f.file_size for f in repo.list_artifacts("data/sub")}
    assert sub == {"data/sub/big.bin": 5 * 1024 * 1024 + 123, "data/sub/empty.txt": 0}

    (tmp_path / "out").mkdir()
    (tmp_path / "one").mkdir()
    out = Path(repo.download_artifacts("data", str(tmp_path / "out")))
    for relative in ("notes.txt", "sub/big.bin", "sub/empty.txt"):
        assert _digest(out / relative) == _digest(source / relative), relative
    assert Path(repo.download_artifacts("single.json", str(tmp_path / "one"))).read_text() == '{"a": 1}'

    # trackd's SDK sees the same files, so they show on the run's page
    listed = {a.path: a.size for a in trackd.list_artifacts(run.id, recursive=True)}
    assert listed["data/sub/big.bin"] == 5 * 1024 * 1024 + 123

    repo.delete_artifacts("data/sub")
    assert {f.path for f in repo.list_artifacts("data")} == {"data/notes.txt"}
    run.end()


def test_bad_artifact_requests_are_mlflow_errors(tracking: str, http: httpx.Client,
                                                 unique: Callable[[str], str]) -> None:
    run = trackd.start_run(experiment=unique("mlflow-art-bad"), capture_env=False, system_metrics=False)
    base = f"/api/2.0/mlflow-artifacts/artifacts/{run.experiment_id}/{run.id}/artifacts"
    cases = [
        ("GET", f"{base}/missing.txt", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/1/not-a-run/artifacts/x", 400, "INVALID_PARAMETER_VALUE"),
        ("PUT", f"{base}/../escape.txt", 400, "INVALID_PARAMETER_VALUE"),
        ("PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/{'0' * 32}/artifacts/x.txt", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("DELETE", f"{base}/missing.txt", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts?path=x/y", 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/api/2.0/mlflow-artifacts/nothing-here", 404, "ENDPOINT_NOT_FOUND"),
    ]
    for method, path, status, code in cases:
        response = http.request(method, path, content=b"data" if method == "PUT" else None)
        assert (response.status_code, response.json()["error_code"]) == (status, code), (method, path)
    http.put(f"{base}/same.txt", content=b"one")
    conflict = http.put(f"{base}/same.txt", content=b"two")
    assert (conflict.status_code, conflict.json()["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    assert http.put(f"{base}/same.txt", content=b"one").status_code == 200  # the same content: a no-op
    multipart = http.post(f"/api/2.0/mlflow-artifacts/mpu/create/{run.experiment_id}/{run.id}/artifacts/x.bin",
                          json={"path": "x.bin", "num_parts": 2})
    assert multipart.json()["message"].startswith("Multipart upload is not supported")
    assert {a.path for a in trackd.list_artifacts(run.id, recursive=True)} == {"same.txt"}, "nothing else written"
    run.end()


def _data(seed: int = 0):  # type: ignore[no-untyped-def]
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(int) + (x[:, 3] > 1).astype(int)
    return x, y


def test_autolog_register_alias_and_load_predicts_the_same(tracking: str, unique: Callable[[str], str]) -> None:
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    mlflow.set_experiment(unique("mlflow-autolog"))
    mlflow.sklearn.autolog(log_input_examples=False, log_model_signatures=True, silent=True)
    try:
        with mlflow.start_run() as active:
            model = LogisticRegression(C=0.5, max_iter=200).fit(x, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    run_id = active.info.run_id
    run = MlflowClient().get_run(run_id)
    assert run.data.params["C"] == "0.5" and run.data.params["max_iter"] == "200"
    assert "training_accuracy_score" in run.data.metrics

    # the logged model: MLflow 3's LoggedModel of the run, its files in the run's trackd artifacts
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert [m.source_run_id for m in logged] == [run_id]
    model_id = logged[0].model_id
    assert mlflow.get_logged_model(model_id).name == "model"
    files = {a.path for a in trackd.list_artifacts(run_id, f"models/{model_id}", recursive=True)}
    assert f"models/{model_id}/MLmodel" in files

    name = unique("iris-like")
    version = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert (version.version, version.run_id) == ("1", run_id)
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", version.version)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_registered_model(name).aliases == {"champion": "1"}

    expected = model.predict(x)
    for uri in (f"models:/{name}@champion", f"models:/{name}/1", f"models:/{model_id}"):
        loaded = mlflow.pyfunc.load_model(uri)
        assert (loaded.predict(x) == expected).all(), uri

    # trackd's SDK sees the version MLflow registered
    seen = trackd.get_model_version(name, "champion")
    assert (seen.version, seen.run_id, seen.path) == (1, run_id, f"models/{model_id}")
    client.delete_registered_model_alias(name, "champion")
    assert client.get_registered_model(name).aliases == {}


def test_log_model_in_a_run_and_register_by_model_uri(tracking: str, unique: Callable[[str], str]) -> None:
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    x, y = _data(1)
    model = LogisticRegression(max_iter=100).fit(x, y)
    mlflow.set_experiment(unique("mlflow-logmodel"))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="clf", params={"note": "first"}, serialization_format="cloudpickle")
    name = unique("by-model-id")
    version = mlflow.register_model(info.model_uri, name)
    client = MlflowClient()
    assert client.get_model_version(name, version.version).source == info.model_uri
    assert client.get_model_version_download_uri(name, "1").endswith(f"/artifacts/models/{info.model_id}")
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert [m.name for m in client.search_registered_models(f"name = '{name}'")] == [name]
    assert client.get_latest_versions(name)[0].version == "1"
    client.set_logged_model_tags(info.model_id, {"team": "a"})
    client.delete_logged_model_tag(info.model_id, "team")
    assert "team" not in client.get_logged_model(info.model_id).tags
    assert client.get_logged_model(info.model_id).params["note"] == "first"
    loaded = mlflow.sklearn.load_model(f"models:/{name}/1")
    assert (loaded.predict(x) == model.predict(x)).all()


def test_bad_registry_and_logged_model_requests_are_mlflow_errors(tracking: str, http: httpx.Client,
                                                                  unique: Callable[[str], str]) -> None:
    run = trackd.start_run(experiment=unique("mlflow-reg-bad"), capture_env=False, system_metrics=False)
    name = unique("bad")
    cases = [
        ("POST", "/registered-models/create", {}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/registered-models/create", {"name": 5}, 400, "INVALID_PARAMETER_VALUE"),
        ("GET", f"/registered-models/get?name={name}", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"/model-versions/get?name={name}&version=x", None, 400, "INVALID_PARAMETER_VALUE"),
        ("GET", f"/model-versions/get?name={name}&version=1", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "/registered-models/search?filter=bogus", None, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/model-versions/create", {"name": name, "source": "s3://elsewhere/x"}, 400,
         "INVALID_PARAMETER_VALUE"),
        ("POST", "/model-versions/create",
         {"name": name, "source": f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts/nothing"}, 404,
         "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/registered-models/alias", {"name": name, "alias": "x", "version": "1"}, 404,
         "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "/logged-models/m-nope", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"/logged-models/m-{run.id}-000000000000", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/logged-models", {"experiment_id": run.experiment_id}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/logged-models", {"experiment_id": run.experiment_id, "source_run_id": "0" * 32}, 404,
         "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/logged-models", {"experiment_id": run.experiment_id, "source_run_id": run.id,
                                    "params": [{"value": "no key"}]}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/logged-models/search", {"experiment_ids": [run.experiment_id], "filter": "metrics.x > 1"}, 400,
         "INVALID_PARAMETER_VALUE"),
    ]
    taken = unique("taken")
    assert http.post(f"{API}/registered-models/create", json={"name": taken}).status_code == 200
    named = unique("named")
    assert http.post(f"{API}/registered-models/create", json={"name": named}).status_code == 200
    cases += [
        ("POST", "/registered-models/create", {"name": taken}, 400, "RESOURCE_ALREADY_EXISTS"),
        ("POST", "/registered-models/rename", {"name": named, "new_name": taken}, 400, "RESOURCE_ALREADY_EXISTS"),
        ("POST", "/registered-models/rename", {"name": named}, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", "/registered-models/update", {"name": named, "description": 5}, 400, "INVALID_PARAMETER_VALUE"),
        ("DELETE", "/registered-models/delete", {"name": unique("nope")}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/registered-models/set-tag", {"name": named, "key": "trackd.mlflow.source", "value": "x"}, 400,
         "INVALID_PARAMETER_VALUE"),
        ("DELETE", "/registered-models/delete-tag", {"name": named, "key": "absent"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/registered-models/get-latest-versions", {"name": unique("nope")}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"/registered-models/alias?name={named}&alias=absent", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("DELETE", "/registered-models/alias", {"name": named, "alias": "absent"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/registered-models/alias", {"name": named, "alias": "v1", "version": "1"}, 400,
         "INVALID_PARAMETER_VALUE"),
        ("PATCH", "/model-versions/update", {"name": named, "version": "0", "description": "x"}, 400,
         "INVALID_PARAMETER_VALUE"),
        ("DELETE", "/model-versions/delete", {"name": named, "version": "1"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/model-versions/set-tag", {"name": named, "version": "1", "key": "k", "value": "v"}, 404,
         "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"/model-versions/get-download-uri?name={named}&version=1", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "/model-versions/search?filter=version > 1", None, 400, "INVALID_PARAMETER_VALUE"),
        ("GET", "/model-versions/search?max_results=-1", None, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", f"/logged-models/m-{run.id}-000000000000", {"status": "LOGGED_MODEL_READY"}, 404,
         "RESOURCE_DOES_NOT_EXIST"),
        ("PATCH", f"/logged-models/m-{run.id}-000000000000/tags", {"tags": "x"}, 400, "INVALID_PARAMETER_VALUE"),
        ("DELETE", f"/logged-models/m-{run.id}-000000000000", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "/logged-models/search", {}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/runs/outputs", {"run_id": run.id, "models": [{"model_id": f"m-{'1' * 32}-000000000000"}]}, 400,
         "INVALID_PARAMETER_VALUE"),
        ("POST", "/runs/outputs", {"run_id": run.id, "models": [{"model_id": f"m-{run.id}-000000000000"}]}, 404,
         "RESOURCE_DOES_NOT_EXIST"),
    ]
    for method, path, body, status, code in cases:
        response = http.request(method, API + path, json=body)
        assert (response.status_code, response.json().get("error_code")) == (status, code), (method, path, body)
    assert http.get(f"{API}/registered-models/get", params={"name": name}).status_code == 404, "nothing registered"
    model = http.get(f"{API}/registered-models/get", params={"name": named}).json()["registered_model"]
    assert (model.get("tags", []), model.get("aliases", []), model.get("latest_versions", [])) == ([], [], []), \
        "refused requests changed nothing"
    assert http.get(f"{API}/registered-models/get", params={"name": taken}).status_code == 200
    assert trackd.list_artifacts(run.id, recursive=True) == [], "no logged model written"
    run.end()


def test_the_rest_of_the_registry_and_logged_models_through_mlflow_client(tracking: str,
                                                                          unique: Callable[[str], str]) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    experiment_id = client.create_experiment(unique("mlflow-client"))
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    logged = client.create_logged_model(experiment_id, name="net", source_run_id=run_id, params={"lr": "0.1"})
    client.log_model_params(logged.model_id, {"layers": "3"})
    assert client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY).status == LoggedModelStatus.READY
    fetched = client.get_logged_model(logged.model_id)
    assert fetched.params == {"lr": "0.1", "layers": "3"} and fetched.source_run_id == run_id
    model_dir = Path("model-files")  # the fixture's cwd is the test's tmp_path
    model_dir.mkdir()
    (model_dir / "weights.txt").write_text("w")
    client.log_model_artifacts(logged.model_id, str(model_dir))

    name, renamed = unique("client-model"), unique("client-renamed")
    client.create_registered_model(name, tags={"team": "a"}, description="first")
    version = client.create_model_version(name, f"models:/{logged.model_id}", run_id=run_id,
                                          tags={"stage": "qa"}, description="v1")
    assert (version.version, version.tags, version.description) == ("1", {"stage": "qa"}, "v1")
    client.update_registered_model(name, description="second")
    client.set_registered_model_tag(name, "owner", "me")
    client.delete_registered_model_tag(name, "team")
    client.rename_registered_model(name, renamed)
    model = client.get_registered_model(renamed)
    assert (model.name, model.description, model.tags) == (renamed, "second", {"owner": "me"})
    client.update_model_version(renamed, "1", description="better")
    client.set_model_version_tag(renamed, "1", "checked", "yes")
    client.delete_model_version_tag(renamed, "1", "stage")
    shown = client.get_model_version(renamed, "1")
    assert (shown.description, shown.tags) == ("better", {"checked": "yes"})
    assert [m.name for m in client.search_registered_models(f"name LIKE '%{renamed[-10:]}%'")] == [renamed]
    assert [v.version for v in client.search_model_versions(f"run_id = '{run_id}'")] == ["1"]

    with pytest.raises(MlflowException) as caught:  # a registered version keeps its files
        client.delete_logged_model(logged.model_id)
    assert caught.value.error_code == "INVALID_STATE"
    client.delete_model_version(renamed, "1")
    assert client.search_model_versions(f"name = '{renamed}'") == []
    client.delete_registered_model(renamed)
    with pytest.raises(MlflowException) as caught:
        client.get_registered_model(renamed)
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.delete_logged_model(logged.model_id)
    with pytest.raises(MlflowException) as caught:
        client.get_logged_model(logged.model_id)
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.set_terminated(run_id)
