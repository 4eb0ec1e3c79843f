"""Coverage of MLflow's own client against trackd: every public method of `mlflow.MlflowClient` is
either exercised by a test of tests/integration/test_mlflow_*.py against trackd's web service, or
listed as out of scope with the reason (docs/mlflow.md, "Client coverage"); a method a newer mlflow
adds fails the first test until it is placed. The second test exercises what the other files do
not: the artifact helpers (text, dict, figure, image, table, stream), run outputs, a logged model's
single artifact and listing, copying a model version, and the stages MLflow still lists."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration
mlflow = pytest.importorskip("mlflow")

HERE = Path(__file__).resolve().parent

# Public methods of MlflowClient served by trackd's MLflow API, each called in a test_mlflow_* file.
COVERED = {
    # experiments
    "create_experiment", "get_experiment", "get_experiment_by_name", "search_experiments", "rename_experiment",
    "delete_experiment", "restore_experiment", "set_experiment_tag", "delete_experiment_tag",
    # runs, params, tags, metrics, inputs and outputs
    "create_run", "get_run", "update_run", "set_terminated", "delete_run", "restore_run", "search_runs",
    "get_parent_run", "log_metric", "log_batch", "log_param", "set_tag", "delete_tag", "log_inputs", "log_outputs",
    "get_metric_history",
    # artifacts (the mlflow-artifacts proxy)
    "log_artifact", "log_artifacts", "list_artifacts", "download_artifacts", "log_text", "log_dict", "log_figure",
    "log_image", "log_table", "load_table", "log_stream",
    # logged models
    "create_logged_model", "get_logged_model", "finalize_logged_model", "delete_logged_model",
    "set_logged_model_tags", "delete_logged_model_tag", "log_model_params", "search_logged_models",
    "log_model_artifact", "log_model_artifacts", "list_logged_model_artifacts",
    # the model registry
    "create_registered_model", "get_registered_model", "rename_registered_model", "update_registered_model",
    "delete_registered_model", "search_registered_models", "set_registered_model_tag", "delete_registered_model_tag",
    "set_registered_model_alias", "delete_registered_model_alias", "get_model_version_by_alias",
    "create_model_version", "get_model_version", "update_model_version", "delete_model_version",
    "search_model_versions", "get_model_version_download_uri", "set_model_version_tag", "delete_model_version_tag",
    "get_latest_versions", "copy_model_version", "get_model_version_stages",
}
# The fluent API over the endpoints above (mlflow.<name>), each called in a test_mlflow_* file.
FLUENT = {
    "set_experiment", "create_experiment", "get_experiment", "get_experiment_by_name", "search_experiments",
    "delete_experiment", "restore_experiment", "set_experiment_tag", "set_experiment_tags",
    "start_run", "end_run", "active_run", "last_active_run", "get_run", "get_parent_run", "search_runs",
    "delete_run", "restore_run", "log_metric", "log_metrics", "log_param", "log_params", "set_tag", "set_tags",
    "delete_tag", "log_input", "get_artifact_uri", "log_artifact", "log_artifacts", "log_text", "log_dict",
    "log_figure", "log_image", "log_table", "load_table", "log_stream", "register_model",
    "search_registered_models", "search_model_versions",
}
_PROMPTS = "the prompt registry (GenAI prompts), not in the issue's scope"
_TRACES = "GenAI tracing (the traces API, /api/3.0/mlflow/traces), not in the issue's scope"
_MCP = "MLflow's MCP server registry, not in the issue's scope"
_DATASETS = "GenAI evaluation datasets (/api/3.0/mlflow/datasets); run inputs (log_inputs) are served"
_WORKSPACES = "MLflow workspaces (multi-tenancy); trackd's projects and tokens play that part"
_WEBHOOKS = "registry webhooks; trackd publishes registry and run events on Kafka instead"
OUT_OF_SCOPE = {
    "transition_model_version_stage": "stages are deprecated since MLflow 2.9 (aliases replace them); trackd serves "
                                      "aliases and answers ENDPOINT_NOT_FOUND for transition-stage",
    "tracking_uri": "a property of the client, no endpoint",
    "get_workspace_store_uri": _WORKSPACES,
    **dict.fromkeys(("create_prompt", "create_prompt_version", "delete_prompt", "delete_prompt_alias",
                     "delete_prompt_tag", "delete_prompt_version", "delete_prompt_version_tag",
                     "detach_prompt_from_run",
                     "get_prompt", "get_prompt_version", "get_prompt_version_by_alias", "link_prompt_version_to_model",
                     "link_prompt_version_to_run", "link_prompt_versions_to_trace", "list_logged_prompts",
                     "load_prompt", "parse_prompt_uri", "register_prompt", "search_prompt_versions", "search_prompts",
                     "set_prompt_alias", "set_prompt_tag", "set_prompt_version_tag"), _PROMPTS),
    **dict.fromkeys(("start_trace", "end_trace", "start_span", "end_span", "get_trace", "search_traces",
                     "delete_traces", "set_trace_tag", "delete_trace_tag", "link_traces_to_run",
                     "unlink_traces_from_run"), _TRACES),
    **dict.fromkeys(("create_mcp_access_endpoint", "create_mcp_server", "create_mcp_server_version",
                     "delete_mcp_access_endpoint", "delete_mcp_server", "delete_mcp_server_alias",
                     "delete_mcp_server_tag", "delete_mcp_server_version", "delete_mcp_server_version_tag",
                     "get_latest_mcp_server_version", "get_mcp_access_endpoint", "get_mcp_server",
                     "get_mcp_server_version", "get_mcp_server_version_by_alias", "refresh_mcp_server_version_tools",
                     "search_mcp_access_endpoints", "search_mcp_server_versions", "search_mcp_servers",
                     "set_mcp_server_alias", "set_mcp_server_tag", "set_mcp_server_version_tag",
                     "update_mcp_access_endpoint", "update_mcp_server", "update_mcp_server_version"), _MCP),
    **dict.fromkeys(("create_dataset", "get_dataset", "delete_dataset", "search_datasets", "set_dataset_tags",
                     "delete_dataset_tag", "add_dataset_to_experiments", "remove_dataset_from_experiments"),
                    _DATASETS),
    **dict.fromkeys(("create_workspace", "get_workspace", "list_workspaces", "update_workspace", "delete_workspace"),
                    _WORKSPACES),
    **dict.fromkeys(("create_webhook", "get_webhook", "list_webhooks", "update_webhook", "delete_webhook",
                     "test_webhook"), _WEBHOOKS),
}


def _test_sources() -> str:
    return "\n".join(p.read_text() for p in sorted(HERE.glob("test_mlflow_*.py")) if p.name != Path(__file__).name) \
        + _own_calls()


def _own_calls() -> str:
    """This file's calls, without the lists above (which name every method)."""
    text = Path(__file__).read_text()
    return text[text.index("def test_the_rest_of_the_client"):]


def test_every_public_client_method_is_exercised_or_out_of_scope() -> None:
    public = {name for name in dir(mlflow.MlflowClient) if not name.startswith("_")}
    assert not COVERED & OUT_OF_SCOPE.keys()
    assert public == COVERED | OUT_OF_SCOPE.keys(), (
        f"unplaced: {sorted(public - COVERED - OUT_OF_SCOPE.keys())}; "
        f"gone from mlflow: {sorted((COVERED | OUT_OF_SCOPE.keys()) - public)}")
    sources = _test_sources()
    uncalled = sorted(name for name in COVERED if not re.search(rf"\.{name}\(", sources))
    assert not uncalled, f"MlflowClient methods no test_mlflow_* test calls: {uncalled}"
    unfluent = sorted(name for name in FLUENT
                      if not callable(getattr(mlflow, name, None)) or not re.search(rf"mlflow\.{name}\(", sources))
    assert not unfluent, f"fluent functions missing or not called as mlflow.<name>(…): {unfluent}"


@pytest.fixture
def tracking(stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(stack.web_url)
    mlflow.set_registry_uri(stack.web_url)
    try:
        yield stack.web_url
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def test_the_rest_of_the_client_against_trackd(tracking: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    import matplotlib
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelOutput

    matplotlib.use("Agg")
    from matplotlib import pyplot

    client = MlflowClient()
    mlflow.set_experiment(unique("mlflow-coverage"))
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_dict({"a": [1, 2]}, "config.json")
        figure, axes = pyplot.subplots()
        axes.plot([0, 1], [1, 0])
        mlflow.log_figure(figure, "plots/line.png")
        pyplot.close(figure)
        mlflow.log_image(np.zeros((4, 4, 3), dtype=np.uint8), "images/black.png")
        mlflow.log_table({"x": [1, 2], "y": ["a", "b"]}, "tables/t.json")
        mlflow.log_stream(io.BytesIO(b"\x00\x01stream"), "bin/stream.bin")
    run_id = run.info.run_id
    listed = {a.path for a in client.list_artifacts(run_id)}
    assert {"notes", "config.json", "plots", "images", "tables", "bin"} <= listed, listed
    local = Path(client.download_artifacts(run_id, "", str(tmp_path / "down")))
    assert (local / "notes/hello.txt").read_text() == "hello"
    assert (local / "bin/stream.bin").read_bytes() == b"\x00\x01stream"
    assert (local / "plots/line.png").read_bytes()[:4] == b"\x89PNG"
    assert (local / "images/black.png").read_bytes()[:4] == b"\x89PNG"
    table = mlflow.load_table("tables/t.json", run_ids=[run_id])
    assert table["x"].tolist() == [1, 2] and table["y"].tolist() == ["a", "b"]

    experiment_id = run.info.experiment_id
    source = client.create_run(experiment_id).info.run_id
    logged = client.create_logged_model(experiment_id, name="net", source_run_id=source)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 10)
    client.log_model_artifact(logged.model_id, str(weights))
    assert [a.path for a in client.list_logged_model_artifacts(logged.model_id)] == ["weights.bin"]
    client.log_outputs(source, [LoggedModelOutput(logged.model_id, step=3)])
    outputs = client.get_run(source).outputs
    assert [(o.model_id, o.step) for o in outputs.model_outputs] == [(logged.model_id, 3)]

    name, copy = unique("coverage-model"), unique("coverage-copy")
    client.create_registered_model(name)
    client.create_model_version(name, f"models:/{logged.model_id}", run_id=source)
    copied = client.copy_model_version(f"models:/{name}/1", copy)
    assert (copied.name, copied.version) == (copy, "1")
    assert client.get_model_version_download_uri(copy, "1") == client.get_model_version_download_uri(name, "1")
    assert client.get_model_version_stages(name, "1") == ["None", "Staging", "Production", "Archived"]
    client.set_terminated(source)
    assert [m.name for m in mlflow.search_registered_models(filter_string=f"name = '{copy}'")] == [copy]
    assert [v.version for v in mlflow.search_model_versions(filter_string=f"name = '{copy}'")] == ["1"]


def test_the_fluent_api_over_experiments_runs_and_artifacts(tracking: str, tmp_path: Path,
                                                            unique: Callable[[str], str]) -> None:
    import numpy as np
    from mlflow.data.numpy_dataset import from_numpy

    name = unique("fluent")
    experiment_id = mlflow.create_experiment(name)
    assert mlflow.get_experiment(experiment_id).name == name
    mlflow.set_experiment(experiment_id=experiment_id)
    mlflow.set_experiment_tag("team", "a")
    mlflow.set_experiment_tags({"stage": "dev"})
    found = mlflow.search_experiments(filter_string=f"name = '{name}'")
    assert [(e.name, e.tags["team"], e.tags["stage"]) for e in found] == [(name, "a", "dev")]
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "b.txt").write_text("b")
    (tmp_path / "a.txt").write_text("a")
    with mlflow.start_run() as parent:
        with mlflow.start_run(nested=True) as child:
            pass
        mlflow.log_input(from_numpy(np.zeros((2, 2)), name="zeros"), context="train")
        mlflow.log_artifact(str(tmp_path / "a.txt"))
        mlflow.log_artifacts(str(tmp_path / "files"), "files")
        uri = mlflow.get_artifact_uri()
    parent_id, child_id = parent.info.run_id, child.info.run_id
    assert uri == f"mlflow-artifacts:/{experiment_id}/{parent_id}/artifacts"
    assert mlflow.last_active_run().info.run_id == parent_id
    assert mlflow.get_parent_run(child_id).info.run_id == parent_id
    shown = mlflow.get_run(parent_id)
    assert [d.dataset.name for d in shown.inputs.dataset_inputs] == ["zeros"]
    assert sorted(a.path for a in mlflow.MlflowClient().list_artifacts(parent_id)) == ["a.txt", "files"]
    mlflow.delete_run(child_id)
    assert mlflow.get_run(child_id).info.lifecycle_stage == "deleted"
    mlflow.restore_run(child_id)
    mlflow.delete_experiment(experiment_id)
    assert mlflow.get_experiment(experiment_id).lifecycle_stage == "deleted"
    mlflow.restore_experiment(experiment_id)
    assert mlflow.get_experiment(experiment_id).lifecycle_stage == "active"
