"""The model registry on the real stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import trackd
from trackd.cli import app
from trackd_api.artifact.v1 import registry_pb2, registry_pb2_grpc
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
