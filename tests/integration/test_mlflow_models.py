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
    run = trackd.start_run(experiment=unique("mlflow-art"), system_metrics=False)
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
    run = trackd.start_run(experiment=unique("mlflow-art-bad"), system_metrics=False)
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
