"""The ModelRegistryService servicer."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable

import asyncpg
from trackd_api.artifact.v1 import registry_pb2, registry_pb2_grpc
from trackd_platform.auth import current_principal
from trackd_platform.errors import InvalidArgument
from trackd_platform.ids import parse_id
from trackd_platform.metric_series import run_summaries
from trackd_platform.paging import decode_token, encode_token, page_size
from trackd_platform.rpc_types import Context
from trackd_platform.timestamps import timestamp

from . import domain
from .registry import (
    ModelVersion,
    RegisteredModel,
    RegistryStore,
    Scope,
    validate_alias,
    validate_name,
)

DESCRIPTION_MAX = 5_000
CONTEXT_SUFFIX = {"0": "", "1": "@train", "2": "@eval", "3": "@test"}


def _model(m: RegisteredModel) -> registry_pb2.RegisteredModel:
    return registry_pb2.RegisteredModel(name=m.name, description=m.description, tags=m.tags, aliases=m.aliases,
                                        latest_version=m.latest_version, create_time=timestamp(m.created_at))


def _version(v: ModelVersion) -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(name=v.name, version=v.version, run_id=v.run_id, path=v.path, sha256=v.sha256,
                                     metadata=v.metadata, metrics=v.metrics, aliases=v.aliases,
                                     create_time=timestamp(v.created_at),
                                     inputs=[registry_pb2.ModelVersionInput(
                                         uri=i["uri"], digest=i["digest"], context=i["context"],
                                         rows=-1 if i["rows"] is None else i["rows"]) for i in v.inputs])


def _scope() -> Scope:
    """The caller's project for a project token; None (every project) for the admin or auth off."""
    principal = current_principal.get()
    return None if principal.admin else principal.project_id


class RegistryServicer(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self, registry: RegistryStore, pool: asyncpg.Pool) -> None:
        self._registry = registry
        self._pool = pool  # the metric summaries a version snapshots (trackd_platform.metric_series)

    async def CreateRegisteredModel(
        self, request: registry_pb2.CreateRegisteredModelRequest, context: Context
    ) -> registry_pb2.CreateRegisteredModelResponse:
        model = await self._registry.create_model(_scope(), validate_name(request.name), request.description,
                                                  domain.validate_metadata(request.tags))
        return registry_pb2.CreateRegisteredModelResponse(model=_model(model))

    async def GetRegisteredModel(
        self, request: registry_pb2.GetRegisteredModelRequest, context: Context
    ) -> registry_pb2.GetRegisteredModelResponse:
        return registry_pb2.GetRegisteredModelResponse(
            model=_model(await self._registry.get_model(_scope(), validate_name(request.name))))

    async def ListRegisteredModels(
        self, request: registry_pb2.ListRegisteredModelsRequest, context: Context
    ) -> registry_pb2.ListRegisteredModelsResponse:
        limit = page_size(request.page_size)
        after = decode_token(request.page_token, arity=2, kinds=(str, str)) or ["", ""]
        found = await self._registry.list_models(_scope(), name_contains=request.name_contains,
                                                 tags=dict(request.tags), limit=limit, after=(after[0], after[1]))
        return registry_pb2.ListRegisteredModelsResponse(
            models=[_model(m) for m, _ in found],
            next_page_token=encode_token([found[-1][0].name, found[-1][1]]) if len(found) == limit else "")

    async def CreateModelVersion(
        self, request: registry_pb2.CreateModelVersionRequest, context: Context
    ) -> registry_pb2.CreateModelVersionResponse:
        name = validate_name(request.name)
        run_id = parse_id("run_id", request.run_id)
        path = domain.validate_path(request.path.rstrip("/"))
        metadata = domain.validate_metadata(request.metadata)
        version = await self._registry.create_version(_scope(), name, run_id, path, metadata,
                                                      await self._latest_metrics(run_id))
        return registry_pb2.CreateModelVersionResponse(version=_version(version))

    async def _latest_metrics(self, run_id: uuid.UUID) -> dict[str, float]:
        """The run's latest value of each metric (`key@context` outside the default context),
        from PostgreSQL: what ingest acknowledged is there, whatever state the Redis cache is in."""
        latest = await run_summaries(self._pool, run_id)
        return {key + CONTEXT_SUFFIX.get(str(context), ""): s.value for (key, context), s in latest.items()
                if math.isfinite(s.value)}

    async def GetModelVersion(
        self, request: registry_pb2.GetModelVersionRequest, context: Context
    ) -> registry_pb2.GetModelVersionResponse:
        if not request.version and not request.alias:
            raise InvalidArgument("give a version number or an alias")
        version = await self._registry.get_version(_scope(), validate_name(request.name), version=request.version,
                                                   alias=validate_alias(request.alias) if request.alias else "")
        return registry_pb2.GetModelVersionResponse(version=_version(version))

    async def ListModelVersions(
        self, request: registry_pb2.ListModelVersionsRequest, context: Context
    ) -> registry_pb2.ListModelVersionsResponse:
        versions = await self._registry.list_versions(_scope(), validate_name(request.name))
        return registry_pb2.ListModelVersionsResponse(versions=[_version(v) for v in versions])

    async def SetModelAlias(
        self, request: registry_pb2.SetModelAliasRequest, context: Context
    ) -> registry_pb2.SetModelAliasResponse:
        if request.version <= 0:
            raise InvalidArgument("version numbers start at 1")
        await self._registry.set_alias(_scope(), validate_name(request.name), validate_alias(request.alias),
                                       request.version)
        return registry_pb2.SetModelAliasResponse()

    async def DeleteModelAlias(
        self, request: registry_pb2.DeleteModelAliasRequest, context: Context
    ) -> registry_pb2.DeleteModelAliasResponse:
        await self._registry.delete_alias(_scope(), validate_name(request.name), validate_alias(request.alias))
        return registry_pb2.DeleteModelAliasResponse()

    async def UpdateRegisteredModel(
        self, request: registry_pb2.UpdateRegisteredModelRequest, context: Context
    ) -> registry_pb2.UpdateRegisteredModelResponse:
        description = request.description if request.HasField("description") else None
        if description is not None and len(description) > DESCRIPTION_MAX:
            raise InvalidArgument(f"a description is at most {DESCRIPTION_MAX} characters")
        model = await self._registry.update_model(
            _scope(), validate_name(request.name), description=description,
            set_tags=domain.validate_metadata(request.set_tags), delete_tags=_keys(request.delete_tag_keys))
        return registry_pb2.UpdateRegisteredModelResponse(model=_model(model))

    async def RenameRegisteredModel(
        self, request: registry_pb2.RenameRegisteredModelRequest, context: Context
    ) -> registry_pb2.RenameRegisteredModelResponse:
        model = await self._registry.rename_model(_scope(), validate_name(request.name),
                                                  validate_name(request.new_name))
        return registry_pb2.RenameRegisteredModelResponse(model=_model(model))

    async def DeleteRegisteredModel(
        self, request: registry_pb2.DeleteRegisteredModelRequest, context: Context
    ) -> registry_pb2.DeleteRegisteredModelResponse:
        await self._registry.delete_model(_scope(), validate_name(request.name))
        return registry_pb2.DeleteRegisteredModelResponse()

    async def UpdateModelVersion(
        self, request: registry_pb2.UpdateModelVersionRequest, context: Context
    ) -> registry_pb2.UpdateModelVersionResponse:
        version = await self._registry.update_version(
            _scope(), validate_name(request.name), _version_number(request.version),
            set_metadata=domain.validate_metadata(request.set_metadata),
            delete_keys=_keys(request.delete_metadata_keys))
        return registry_pb2.UpdateModelVersionResponse(version=_version(version))

    async def DeleteModelVersion(
        self, request: registry_pb2.DeleteModelVersionRequest, context: Context
    ) -> registry_pb2.DeleteModelVersionResponse:
        await self._registry.delete_version(_scope(), validate_name(request.name), _version_number(request.version))
        return registry_pb2.DeleteModelVersionResponse()


def _version_number(version: int) -> int:
    if version <= 0:
        raise InvalidArgument("version numbers start at 1")
    return version


def _keys(keys: Iterable[str]) -> list[str]:
    found = list(keys)
    if len(found) > domain.METADATA_MAX or any(not k or len(k) > 250 for k in found):
        raise InvalidArgument(f"at most {domain.METADATA_MAX} keys to delete, each 1–250 characters")
    return found
