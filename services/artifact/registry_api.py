"""The ModelRegistryService servicer."""

from __future__ import annotations

import math
import uuid
from typing import Any

from trackd_api.artifact.v1 import registry_pb2, registry_pb2_grpc
from trackd_platform.auth import current_principal
from trackd_platform.errors import InvalidArgument, NotFound
from trackd_platform.ids import parse_id
from trackd_platform.paging import decode_token, encode_token, page_size
from trackd_platform.timestamps import timestamp
from trackd_services.artifact import domain
from trackd_services.artifact.registry import (
    ModelVersion,
    RegisteredModel,
    RegistryStore,
    manifest_digest,
    validate_alias,
    validate_name,
)
from trackd_services.artifact.store import ArtifactStore
from trackd_services.ingest.store import MetricStore

CONTEXT_SUFFIX = {"0": "", "1": "@train", "2": "@eval", "3": "@test"}


def _model(m: RegisteredModel) -> registry_pb2.RegisteredModel:
    return registry_pb2.RegisteredModel(name=m.name, description=m.description, tags=m.tags, aliases=m.aliases,
                                        latest_version=m.latest_version, create_time=timestamp(m.created_at))


def _version(v: ModelVersion) -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(name=v.name, version=v.version, run_id=v.run_id, path=v.path, sha256=v.sha256,
                                     metadata=v.metadata, metrics=v.metrics, aliases=v.aliases,
                                     create_time=timestamp(v.created_at))


class RegistryServicer(registry_pb2_grpc.ModelRegistryServiceServicer):  # type: ignore[misc]
    def __init__(self, registry: RegistryStore, artifacts: ArtifactStore, metrics: MetricStore) -> None:
        self._registry = registry
        self._artifacts = artifacts
        self._metrics = metrics  # the latest values a version snapshots

    async def CreateRegisteredModel(self, request: Any, context: Any) -> registry_pb2.CreateRegisteredModelResponse:
        model = await self._registry.create_model(validate_name(request.name), request.description,
                                                  domain.validate_metadata(request.tags),
                                                  project_id=current_principal.get().project_id)
        return registry_pb2.CreateRegisteredModelResponse(model=_model(model))

    async def GetRegisteredModel(self, request: Any, context: Any) -> registry_pb2.GetRegisteredModelResponse:
        return registry_pb2.GetRegisteredModelResponse(
            model=_model(await self._registry.get_model(validate_name(request.name))))

    async def ListRegisteredModels(self, request: Any, context: Any) -> registry_pb2.ListRegisteredModelsResponse:
        limit = page_size(request.page_size)
        after = decode_token(request.page_token, arity=1)
        models = await self._registry.list_models(name_contains=request.name_contains, tags=dict(request.tags),
                                                  limit=limit, after=str(after[0]) if after else "")
        return registry_pb2.ListRegisteredModelsResponse(
            models=[_model(m) for m in models],
            next_page_token=encode_token([models[-1].name]) if len(models) == limit else "")

    async def CreateModelVersion(self, request: Any, context: Any) -> registry_pb2.CreateModelVersionResponse:
        name = validate_name(request.name)
        run_id = parse_id("run_id", request.run_id)
        path = domain.validate_path(request.path.rstrip("/"))
        sha256 = await self._digest(run_id, path)
        version = await self._registry.create_version(name, run_id, path, sha256,
                                                      domain.validate_metadata(request.metadata),
                                                      await self._latest_metrics(run_id))
        return registry_pb2.CreateModelVersionResponse(version=_version(version))

    async def _digest(self, run_id: uuid.UUID, path: str) -> str:
        """Register only from an existing artifact: a file, or a directory of them."""
        try:
            return (await self._artifacts.get(run_id, path)).sha256
        except NotFound:
            files = await self._artifacts.list(run_id, path + "/", limit=100_000, after="")
            if not files:
                raise NotFound(f"run {run_id.hex} has no artifact at {path!r}: log the model first") from None
            return manifest_digest([(f.path, f.sha256) for f in files])

    async def _latest_metrics(self, run_id: uuid.UUID) -> dict[str, float]:
        """The run's latest value of each metric (`key@context` outside the default context),
        from PostgreSQL: what ingest acknowledged is there, whatever state the Redis cache is in."""
        latest = await self._metrics.summaries(run_id)
        return {key + CONTEXT_SUFFIX.get(str(context), ""): s.value for (key, context), s in latest.items()
                if math.isfinite(s.value)}

    async def GetModelVersion(self, request: Any, context: Any) -> registry_pb2.GetModelVersionResponse:
        if not request.version and not request.alias:
            raise InvalidArgument("give a version number or an alias")
        version = await self._registry.get_version(validate_name(request.name), version=request.version,
                                                   alias=validate_alias(request.alias) if request.alias else "")
        return registry_pb2.GetModelVersionResponse(version=_version(version))

    async def ListModelVersions(self, request: Any, context: Any) -> registry_pb2.ListModelVersionsResponse:
        versions = await self._registry.list_versions(validate_name(request.name))
        return registry_pb2.ListModelVersionsResponse(versions=[_version(v) for v in versions])

    async def SetModelAlias(self, request: Any, context: Any) -> registry_pb2.SetModelAliasResponse:
        if request.version <= 0:
            raise InvalidArgument("version numbers start at 1")
        await self._registry.set_alias(validate_name(request.name), validate_alias(request.alias), request.version)
        return registry_pb2.SetModelAliasResponse()

    async def DeleteModelAlias(self, request: Any, context: Any) -> registry_pb2.DeleteModelAliasResponse:
        await self._registry.delete_alias(validate_name(request.name), validate_alias(request.alias))
        return registry_pb2.DeleteModelAliasResponse()
