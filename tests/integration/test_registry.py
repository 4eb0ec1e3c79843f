"""The model registry on the real stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import trackd
from trackd.cli import app
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc, registry_pb2, registry_pb2_grpc
from trackd_platform.stack import HOST, EmbeddedStack
from typer.testing import CliRunner

pytestmark = pytest.mark.integration


@pytest.fixture
async def registry(stack: EmbeddedStack) -> AsyncIterator[registry_pb2_grpc.ModelRegistryServiceStub]:
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('artifact')}") as channel:
        yield registry_pb2_grpc.ModelRegistryServiceStub(channel)


def test_register_versions_aliases_and_snapshot(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique("bert-sentiment")
    (tmp_path / "model_dir").mkdir()
    (tmp_path / "model_dir" / "weights.bin").write_bytes(b"w" * 1000)
    (tmp_path / "model_dir" / "config.json").write_text("{}")
    with trackd.start_run(unique("bert"), capture_env=False, system_metrics=False) as run:
        run.log_metric("val_acc", 0.91, step=3)
        assert run.flush(30)
        first = run.log_model(tmp_path / "model_dir", name=name, metadata={"framework": "pytorch"})
    assert first.version == 1 and first.metadata == {"framework": "pytorch"}
    assert first.metrics == {"val_acc": 0.91}
    second = trackd.register_model(name, run_id=run.id, path="model/weights.bin")
    assert second.version == 2 and second.sha256 != first.sha256
    trackd.set_model_alias(name, "champion", 1)
    assert trackd.get_model_version(name, "champion").version == 1
    trackd.set_model_alias(name, "champion", 2)  # moved
    assert trackd.get_model_version(name, "champion").version == 2
    assert trackd.get_model_version(name, 1).aliases == []
    with pytest.raises(trackd.errors.NotFound, match="log the model first"):
        trackd.register_model(name, run_id=run.id, path="nothing/here")
    with pytest.raises(trackd.errors.NotFound):
        trackd.set_model_alias(name, "champion", 99)
    with pytest.raises(trackd.errors.InvalidArgument):
        trackd.set_model_alias(name, "v3", 1)  # reserved: looks like a version
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "ls", name], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "champion→v2" in listed.output
    shown = runner.invoke(app, ["models", "show", name], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "val_acc=0.91" in shown.output
    assert runner.invoke(app, ["models", "alias", name, "staging", "1"]).exit_code == 0
    assert trackd.get_model_version(name, "staging").version == 1


async def test_concurrent_alias_moves_leave_one_consistent_answer(
    stack: EmbeddedStack, registry: registry_pb2_grpc.ModelRegistryServiceStub, unique: Callable[[str], str]
) -> None:
    name = unique("race")
    with trackd.start_run(unique("race"), capture_env=False, system_metrics=False) as run:
        run.log_text("m", "m.txt")
    for _ in range(5):
        await registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(name=name, run_id=run.id,
                                                                                 path="m.txt"))
    await asyncio.gather(*(registry.SetModelAlias(registry_pb2.SetModelAliasRequest(
        name=name, alias="prod", version=1 + i % 5)) for i in range(40)))
    model = (await registry.GetRegisteredModel(registry_pb2.GetRegisteredModelRequest(name=name))).model
    by_alias = (await registry.GetModelVersion(registry_pb2.GetModelVersionRequest(name=name, alias="prod"))).version
    assert model.aliases["prod"] == by_alias.version and list(by_alias.aliases) == ["prod"]
    holders = [v for v in (await registry.ListModelVersions(registry_pb2.ListModelVersionsRequest(name=name))).versions
               if "prod" in v.aliases]
    assert len(holders) == 1 and model.latest_version == 5


async def test_search_and_bad_input(
    registry: registry_pb2_grpc.ModelRegistryServiceStub, unique: Callable[[str], str]
) -> None:
    prefix = unique("search")
    await registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(
        name=f"{prefix}-a", tags={"team": "nlp"}))
    await registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(
        name=f"{prefix}-b", tags={"team": "vision"}))
    found = await registry.ListRegisteredModels(registry_pb2.ListRegisteredModelsRequest(
        name_contains=prefix, tags={"team": "nlp"}))
    assert [m.name for m in found.models] == [f"{prefix}-a"]
    cases = [
        (registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name=f"{prefix}-a")),
         grpc.StatusCode.ALREADY_EXISTS),
        (registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name="bad name!")),
         grpc.StatusCode.INVALID_ARGUMENT),
        (registry.GetRegisteredModel(registry_pb2.GetRegisteredModelRequest(name=f"{prefix}-zzz")),
         grpc.StatusCode.NOT_FOUND),
        (registry.GetModelVersion(registry_pb2.GetModelVersionRequest(name=f"{prefix}-a")),
         grpc.StatusCode.INVALID_ARGUMENT),
        (registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
            name=f"{prefix}-a", run_id="0" * 32, path="x")), grpc.StatusCode.NOT_FOUND),
        (registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
            name=f"{prefix}-a", run_id="0" * 32, path="../x")), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == code


async def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def test_update_rename_and_delete(
    stack: EmbeddedStack, registry: registry_pb2_grpc.ModelRegistryServiceStub, unique: Callable[[str], str]
) -> None:
    name, other = unique("edit"), unique("edit-other")
    with trackd.start_run(unique("edit"), capture_env=False, system_metrics=False) as run:
        run.log_text("m", "m.txt")
    await registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name=other))
    for _ in range(3):
        await registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
            name=name, run_id=run.id, path="m.txt", metadata={"keep": "1", "drop": "2"}))
    await registry.SetModelAlias(registry_pb2.SetModelAliasRequest(name=name, alias="prod", version=3))

    updated = (await registry.UpdateRegisteredModel(registry_pb2.UpdateRegisteredModelRequest(
        name=name, description="sentiment", set_tags={"team": "nlp", "x": "1"}, delete_tag_keys=["x"]))).model
    assert (updated.description, dict(updated.tags)) == ("sentiment", {"team": "nlp"})
    kept = (await registry.UpdateRegisteredModel(registry_pb2.UpdateRegisteredModelRequest(name=name))).model
    assert kept.description == "sentiment", "an unset description stays"
    version = (await registry.UpdateModelVersion(registry_pb2.UpdateModelVersionRequest(
        name=name, version=2, set_metadata={"stage": "qa"}, delete_metadata_keys=["drop"]))).version
    assert dict(version.metadata) == {"keep": "1", "stage": "qa"}

    renamed = unique("edit-renamed")
    model = (await registry.RenameRegisteredModel(registry_pb2.RenameRegisteredModelRequest(
        name=name, new_name=renamed))).model
    assert (model.name, dict(model.aliases), model.latest_version) == (renamed, {"prod": 3}, 3)
    assert await _code(registry.GetRegisteredModel(registry_pb2.GetRegisteredModelRequest(name=name))) \
        == grpc.StatusCode.NOT_FOUND
    by_alias = (await registry.GetModelVersion(registry_pb2.GetModelVersionRequest(name=renamed, alias="prod")))
    assert (by_alias.version.name, by_alias.version.version) == (renamed, 3)

    await registry.DeleteModelVersion(registry_pb2.DeleteModelVersionRequest(name=renamed, version=3))
    model = (await registry.GetRegisteredModel(registry_pb2.GetRegisteredModelRequest(name=renamed))).model
    assert (model.latest_version, dict(model.aliases)) == (2, {}), "the alias went with its version"
    again = (await registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
        name=renamed, run_id=run.id, path="m.txt"))).version
    assert again.version == 4, "a deleted version's number is not given out again"

    bad = [
        (registry.RenameRegisteredModel(registry_pb2.RenameRegisteredModelRequest(name=renamed, new_name=other)),
         grpc.StatusCode.ALREADY_EXISTS),
        (registry.RenameRegisteredModel(registry_pb2.RenameRegisteredModelRequest(name=renamed, new_name="bad name")),
         grpc.StatusCode.INVALID_ARGUMENT),
        (registry.UpdateRegisteredModel(registry_pb2.UpdateRegisteredModelRequest(
            name=renamed, set_tags={f"k{i}": "v" for i in range(101)})), grpc.StatusCode.INVALID_ARGUMENT),
        (registry.UpdateRegisteredModel(registry_pb2.UpdateRegisteredModelRequest(
            name=renamed, description="d" * 5001)), grpc.StatusCode.INVALID_ARGUMENT),
        (registry.UpdateModelVersion(registry_pb2.UpdateModelVersionRequest(name=renamed, version=0)),
         grpc.StatusCode.INVALID_ARGUMENT),
        (registry.UpdateModelVersion(registry_pb2.UpdateModelVersionRequest(name=renamed, version=3)),
         grpc.StatusCode.NOT_FOUND),
        (registry.DeleteModelVersion(registry_pb2.DeleteModelVersionRequest(name=renamed, version=3)),
         grpc.StatusCode.NOT_FOUND),
        (registry.DeleteRegisteredModel(registry_pb2.DeleteRegisteredModelRequest(name=unique("nope"))),
         grpc.StatusCode.NOT_FOUND),
    ]
    for call, code in bad:
        assert await _code(call) == code
    model = (await registry.GetRegisteredModel(registry_pb2.GetRegisteredModelRequest(name=renamed))).model
    assert (model.description, dict(model.tags), model.latest_version) == ("sentiment", {"team": "nlp"}, 4), \
        "refused requests changed nothing"

    await registry.DeleteRegisteredModel(registry_pb2.DeleteRegisteredModelRequest(name=renamed))
    assert await _code(registry.ListModelVersions(registry_pb2.ListModelVersionsRequest(name=renamed))) \
        == grpc.StatusCode.NOT_FOUND
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('artifact')}") as channel:
        artifacts = artifact_pb2_grpc.ArtifactServiceStub(channel)
        # no version holds the artifact any more: it may go
        await artifacts.DeleteArtifact(artifact_pb2.DeleteArtifactRequest(run_id=run.id, path="m.txt"))
