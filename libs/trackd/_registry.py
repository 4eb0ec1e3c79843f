"""The model registry from the SDK."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trackd_api.artifact.v1 import registry_pb2, registry_pb2_grpc

from trackd._client import Client, default_client


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str
    path: str
    sha256: str
    metadata: dict[str, str]
    metrics: dict[str, float]
    aliases: list[str]
    # the inputs its run logged (uri, digest, context, rows: None when unknown): its lineage
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_proto(cls, v: registry_pb2.ModelVersion) -> ModelVersion:
        return cls(name=v.name, version=v.version, run_id=v.run_id, path=v.path, sha256=v.sha256,
                   metadata=dict(v.metadata), metrics=dict(v.metrics), aliases=list(v.aliases),
                   inputs=[{"uri": i.uri, "digest": i.digest, "context": i.context,
                            "rows": i.rows if i.rows >= 0 else None} for i in v.inputs])


def _stub(client: Client) -> registry_pb2_grpc.ModelRegistryServiceStub:
    return registry_pb2_grpc.ModelRegistryServiceStub(client.channel("artifact"))


def register_model(name: str, *, run_id: str, path: str, metadata: Mapping[str, Any] | None = None,
                   client: Client | None = None) -> ModelVersion:
    """Register the run's artifact at `path` (a file or directory) as the next version of `name`."""
    client = client or default_client()
    request = registry_pb2.CreateModelVersionRequest(
        name=name, run_id=run_id, path=path, metadata={k: str(v) for k, v in (metadata or {}).items()})
    return ModelVersion.from_proto(client.call("artifact", _stub(client).CreateModelVersion, request).version)


def set_model_alias(name: str, alias: str, version: int, *, client: Client | None = None) -> None:
    client = client or default_client()
    client.call("artifact", _stub(client).SetModelAlias,
                registry_pb2.SetModelAliasRequest(name=name, alias=alias, version=version))


def get_model_version(name: str, alias_or_version: str | int, *, client: Client | None = None) -> ModelVersion:
    client = client or default_client()
    if isinstance(alias_or_version, int) or str(alias_or_version).isdigit():
        request = registry_pb2.GetModelVersionRequest(name=name, version=int(alias_or_version))
    else:
        request = registry_pb2.GetModelVersionRequest(name=name, alias=str(alias_or_version))
    return ModelVersion.from_proto(client.call("artifact", _stub(client).GetModelVersion, request).version)


def list_model_versions(name: str, *, client: Client | None = None) -> list[ModelVersion]:
    client = client or default_client()
    response = client.call("artifact", _stub(client).ListModelVersions,
                           registry_pb2.ListModelVersionsRequest(name=name))
    return [ModelVersion.from_proto(v) for v in response.versions]


def list_models(name_contains: str = "", *, tags: Mapping[str, str] | None = None,
                client: Client | None = None) -> list[registry_pb2.RegisteredModel]:
    client = client or default_client()
    found, token = [], ""
    while True:
        response = client.call("artifact", _stub(client).ListRegisteredModels, registry_pb2.ListRegisteredModelsRequest(
            name_contains=name_contains, tags=dict(tags or {}), page_token=token))
        found += list(response.models)
        token = response.next_page_token
        if not token:
            return found
