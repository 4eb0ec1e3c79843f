"""Fault drills for the model registry and the artifacts it points to (data integrity):

- 40 races, each two projects creating the first version of one new model name at the same
  moment: each project's model holds only its own project's versions — with per-project tokens
  (TRACKD_AUTH=on: two models of that name, one per project, neither visible to the other project:
  NOT_FOUND both ways) and with auth off (one model: the loser is FAILED_PRECONDITION);
- deleting an artifact that a model version points to is FAILED_PRECONDITION and deletes nothing;
- a blob is deleted from S3 only once the deletion of its last artifact is committed.

The auth-on drill runs an artifact service in this process (tests/faults/artifact_service.py),
since the session stack runs with auth off."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc, registry_pb2, registry_pb2_grpc
from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.config import PostgresSettings, StoresConfig
from trackd_platform.db import create_pool
from trackd_platform.s3 import s3_client
from trackd_platform.stack import HOST, EmbeddedStack
from trackd_services.artifact.blobs import BlobStore
from trackd_services.artifact.store import ArtifactStore

from tests.faults.artifact_service import artifact_service, service_env
from tests.stores import BUCKET, s3

pytestmark = pytest.mark.integration
RACES = 40
ADMIN_SECRET = "admin-" + uuid.uuid4().hex


@dataclass
class Project:
    name: str
    run_id: str
    token: str


async def make_project(stack: EmbeddedStack, unique: Callable[[str], str], runs: Any, tokens: Any,
                       artifacts: Any) -> Project:
    """A project with one run holding `model.bin`, and a WRITE token of it (made on the session
    stack, auth off)."""
    name = unique("proj")
    await runs.CreateProject(run_pb2.CreateProjectRequest(name=name), timeout=30)
    run = (await runs.StartRun(run_pb2.StartRunRequest(project_name=name, experiment_name="e"), timeout=30)).run
    content = f"weights of {name}".encode()
    header = artifact_pb2.UploadHeader(run_id=run.id, path="model.bin", type=2,
                                       expected_sha256=hashlib.sha256(content).hexdigest())
    await artifacts.UploadArtifact(iter([artifact_pb2.UploadArtifactRequest(header=header),
                                         artifact_pb2.UploadArtifactRequest(chunk=content)]), timeout=30)
    made = await tokens.CreateToken(auth_pb2.CreateTokenRequest(project=name, role=auth_pb2.ROLE_WRITE,
                                                                name="drill"), timeout=30)
    return Project(name, run.id, made.secret)


@pytest.fixture
async def session_stubs(stack: EmbeddedStack) -> AsyncIterator[tuple[Any, Any, Any, Any]]:
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('run')}") as run_channel, \
            grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('artifact')}") as artifact_channel:
        yield (run_pb2_grpc.RunServiceStub(run_channel), auth_pb2_grpc.TokenServiceStub(run_channel),
               artifact_pb2_grpc.ArtifactServiceStub(artifact_channel),
               registry_pb2_grpc.ModelRegistryServiceStub(artifact_channel))


def code(error: BaseException | Any) -> grpc.StatusCode:
    return error.code() if isinstance(error, grpc.aio.AioRpcError) else grpc.StatusCode.OK


async def test_forty_first_version_races_across_two_projects_keep_each_project_to_its_own_model(
    stack: EmbeddedStack, unique: Callable[[str], str], session_stubs: tuple[Any, Any, Any, Any],
    figure: Callable[[str], None],
) -> None:
    runs, tokens, artifacts, _ = session_stubs
    a = await make_project(stack, unique, runs, tokens, artifacts)
    b = await make_project(stack, unique, runs, tokens, artifacts)
    env = service_env(stack, TRACKD_AUTH="on", TRACKD_ADMIN_TOKEN=ADMIN_SECRET)
    async with artifact_service(env) as service, grpc.aio.insecure_channel(service.target) as channel:
        registry = registry_pb2_grpc.ModelRegistryServiceStub(channel)

        def as_(p: Project) -> tuple[tuple[str, str]]:
            return (("authorization", f"Bearer {p.token}"),)

        mixed, failed, unreadable = 0, [], []
        for _ in range(RACES):
            name = unique("race")
            answers = await asyncio.gather(*(registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
                name=name, run_id=p.run_id, path="model.bin"), metadata=as_(p), timeout=30) for p in (a, b)),
                return_exceptions=True)
            failed += [code(x) for x in answers if isinstance(x, BaseException)]
            for p in (a, b):  # each project sees its own model, holding its own version only
                try:
                    versions = (await registry.ListModelVersions(registry_pb2.ListModelVersionsRequest(name=name),
                                                                 metadata=as_(p), timeout=30)).versions
                except grpc.aio.AioRpcError as error:
                    unreadable.append(error.code())
                    continue
                mixed += {v.run_id for v in versions} != {p.run_id}
        # Existence never leaks across projects: NOT_FOUND both ways, and a name taken in one
        # project is free in the other.
        only_a = unique("only-a")
        await registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name=only_a),
                                             metadata=as_(a), timeout=30)
        probes = {
            "get": registry.GetRegisteredModel(registry_pb2.GetRegisteredModelRequest(name=only_a), metadata=as_(b)),
            "versions": registry.ListModelVersions(registry_pb2.ListModelVersionsRequest(name=only_a),
                                                   metadata=as_(b)),
            "alias": registry.SetModelAlias(registry_pb2.SetModelAliasRequest(name=only_a, alias="prod", version=1),
                                            metadata=as_(b)),
        }
        seen = {k: code(x) for k, x in zip(probes, await asyncio.gather(*probes.values(), return_exceptions=True),
                                           strict=True)}
        again = await asyncio.gather(
            registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name=only_a), metadata=as_(b)),
            registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name=only_a), metadata=as_(a)),
            return_exceptions=True)
        listed_b = (await registry.ListRegisteredModels(registry_pb2.ListRegisteredModelsRequest(
            name_contains=only_a), metadata=as_(b), timeout=30)).models
    figure(f"auth on: {RACES} races of two projects → {mixed} models holding another project's version, "
           f"{len(unreadable)} projects could not read the model they had just versioned "
           f"{sorted({c.name for c in unreadable})}, {len(failed)} creations refused "
           f"{sorted({c.name for c in failed})}; other project's model: { {k: v.name for k, v in seen.items()} }; "
           f"same name created in the other project: {[c.name for c in map(code, again)]}")
    assert mixed == 0 and failed == [] and unreadable == []
    assert seen == {"get": grpc.StatusCode.NOT_FOUND, "versions": grpc.StatusCode.NOT_FOUND,
                    "alias": grpc.StatusCode.NOT_FOUND}
    assert [code(x) for x in again] == [grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS]
    assert [m.name for m in listed_b] == [only_a]


async def test_first_version_races_with_auth_off_never_mix_projects(
    stack: EmbeddedStack, unique: Callable[[str], str], session_stubs: tuple[Any, Any, Any, Any],
    figure: Callable[[str], None],
) -> None:
    runs, tokens, artifacts, registry = session_stubs
    a = await make_project(stack, unique, runs, tokens, artifacts)
    b = await make_project(stack, unique, runs, tokens, artifacts)
    mixed, outcomes = 0, []
    for _ in range(RACES):
        name = unique("race")
        answers = await asyncio.gather(*(registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
            name=name, run_id=p.run_id, path="model.bin"), timeout=30) for p in (a, b)), return_exceptions=True)
        outcomes.append(tuple(sorted(code(x).name for x in answers)))
        versions = (await registry.ListModelVersions(registry_pb2.ListModelVersionsRequest(name=name),
                                                     timeout=30)).versions
        mixed += len({v.run_id for v in versions}) > 1
    figure(f"auth off: {RACES} races of two projects → {mixed} models mixing projects; outcomes "
           f"{ {o: outcomes.count(o) for o in set(outcomes)} }")
    assert mixed == 0
    assert set(outcomes) == {("FAILED_PRECONDITION", "OK")}


async def test_deleting_an_artifact_a_model_version_points_to_is_refused(
    stack: EmbeddedStack, unique: Callable[[str], str], session_stubs: tuple[Any, Any, Any, Any],
    figure: Callable[[str], None],
) -> None:
    runs, tokens, artifacts, registry = session_stubs
    p = await make_project(stack, unique, runs, tokens, artifacts)
    for path, content in (("dir/a.bin", b"a" * 100), ("dir/b.bin", b"b" * 100), ("other.bin", uuid.uuid4().bytes)):
        header = artifact_pb2.UploadHeader(run_id=p.run_id, path=path, type=2)
        await artifacts.UploadArtifact(iter([artifact_pb2.UploadArtifactRequest(header=header),
                                             artifact_pb2.UploadArtifactRequest(chunk=content)]), timeout=30)
    file_model, dir_model = unique("file-model"), unique("dir-model")
    await registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
        name=file_model, run_id=p.run_id, path="model.bin"), timeout=30)
    await registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
        name=dir_model, run_id=p.run_id, path="dir"), timeout=30)
    refused = {}
    for path in ("model.bin", "dir/a.bin"):
        try:
            await artifacts.DeleteArtifact(artifact_pb2.DeleteArtifactRequest(run_id=p.run_id, path=path), timeout=30)
            refused[path] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            refused[path] = error.code()
    listed = [a.path for a in (await artifacts.ListArtifacts(artifact_pb2.ListArtifactsRequest(
        run_id=p.run_id, recursive=True), timeout=30)).artifacts]
    sha = hashlib.sha256(f"weights of {p.name}".encode()).hexdigest()
    blobs = s3(stack).list_objects_v2(Bucket=BUCKET, Prefix=f"blobs/{sha[:2]}/{sha}").get("KeyCount", 0)
    figure(f"delete of an artifact a model version points to: {({k: v.name for k, v in refused.items()})}; "
           f"still listed {sorted(listed)}, blob kept: {blobs == 1}")
    assert refused == dict.fromkeys(("model.bin", "dir/a.bin"), grpc.StatusCode.FAILED_PRECONDITION)
    assert sorted(listed) == ["dir/a.bin", "dir/b.bin", "model.bin", "other.bin"] and blobs == 1
    # what no version points to still goes
    await artifacts.DeleteArtifact(artifact_pb2.DeleteArtifactRequest(run_id=p.run_id, path="other.bin"),
                                   timeout=30)


async def test_a_blob_is_deleted_only_after_the_deletion_of_its_last_artifact_is_committed(
    stack: EmbeddedStack, unique: Callable[[str], str], session_stubs: tuple[Any, Any, Any, Any],
) -> None:
    """The S3 client used for the deletion checks, at the moment the blob's DeleteObject is sent,
    that another PostgreSQL session already sees the artifact deleted."""
    runs, tokens, artifacts, _ = session_stubs
    p = await make_project(stack, unique, runs, tokens, artifacts)
    content = uuid.uuid4().bytes * 100
    sha = hashlib.sha256(content).hexdigest()
    header = artifact_pb2.UploadHeader(run_id=p.run_id, path="once.bin", type=1)
    await artifacts.UploadArtifact(iter([artifact_pb2.UploadArtifactRequest(header=header),
                                         artifact_pb2.UploadArtifactRequest(chunk=content)]), timeout=30)
    observer = await asyncpg.connect(stack.pg_dsn)
    seen: list[bool] = []

    class Watching:
        """The real client, but DeleteObject of the blob first asks `observer` what is committed."""

        def __init__(self, client: Any) -> None:
            self._client = client

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        async def delete_object(self, **kwargs: Any) -> Any:
            if kwargs.get("Key", "").endswith(sha):
                seen.append(bool(await observer.fetchval(
                    "SELECT deleted_at IS NOT NULL FROM artifacts WHERE run_id = $1 AND path = 'once.bin'",
                    uuid.UUID(p.run_id))))
            return await self._client.delete_object(**kwargs)

    config = StoresConfig.from_env(service_env(stack), service="artifact")
    pool = await create_pool(PostgresSettings(dsn=stack.pg_dsn, pool_max=2))
    try:
        async with s3_client(config.s3) as client:
            blobs = BlobStore(Watching(client), config.s3.bucket)
            await ArtifactStore(pool).delete(uuid.UUID(p.run_id), "once.bin", blobs)
    finally:
        await pool.close()
        await observer.close()
    assert seen == [True], "the blob went before the artifact's deletion was committed"
    assert s3(stack).list_objects_v2(Bucket=BUCKET, Prefix=f"blobs/{sha[:2]}/{sha}").get("KeyCount", 0) == 0
