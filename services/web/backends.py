"""The web service's gRPC clients: one asyncio channel per service, addressed as the SDK addresses
them (TRACKD_TARGET / TRACKD_<SERVICE>_TARGET), with trace context carried into every call.

A call is made on behalf of the browser's caller: `Caller.metadata` carries its bearer token (the
request's `Authorization` header, else the session cookie /login set, else the web process's
TRACKD_TOKEN), so the web service never has more rights than the caller."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from starlette.exceptions import HTTPException
from starlette.requests import Request
from trackd_api.artifact.v1 import artifact_pb2_grpc, registry_pb2_grpc
from trackd_api.auth.v1 import auth_pb2_grpc
from trackd_api.hpo.v1 import hpo_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2_grpc
from trackd_api.run.v1 import run_data_pb2_grpc, run_pb2_grpc
from trackd_platform.config import CallerSettings
from trackd_platform.tls import channel_credentials

_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SESSION_COOKIE = "trackd_session"  # the token /login accepted (HttpOnly, SameSite=Strict)
PAGE_TIMEOUT_S = 10.0  # the deadline of a call made to render a page or answer a data request


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: gRPC metadata to send with each call."""

    token: str = field(default="", repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


class Backends:
    """Stubs of the services the web service reads and writes through (ingest: MLflow's metric writes)."""

    def __init__(self, settings: CallerSettings) -> None:
        self._settings = settings
        self._channels: list[grpc.aio.Channel] = []
        run_channel = self._channel("run")
        self.runs = run_pb2_grpc.RunServiceStub(run_channel)
        self.tokens = auth_pb2_grpc.TokenServiceStub(run_channel)  # login asks what a token may do
        self.run_data = run_data_pb2_grpc.RunDataServiceStub(run_channel)  # console logs, media
        self.query = query_pb2_grpc.QueryServiceStub(self._channel("query"))
        self.artifacts = artifact_pb2_grpc.ArtifactServiceStub(self._channel("artifact"))
        self.hpo = hpo_pb2_grpc.HpoServiceStub(self._channel("hpo"))
        self.ingest = ingest_pb2_grpc.IngestServiceStub(self._channel("ingest"))
        self.registry = registry_pb2_grpc.ModelRegistryServiceStub(self._channel("artifact"))

    def _channel(self, service: str) -> grpc.aio.Channel:
        options = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.keepalive_time_ms", 30_000),
                   # a service that comes back is used again within seconds (pages answer 503 meanwhile)
                   ("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 2_000)]
        target = self._settings.target(service)
        interceptors = aio_client_interceptors()
        channel = (grpc.aio.secure_channel(target, channel_credentials(self._settings.tls_ca_file), options=options,
                                           interceptors=interceptors)
                   if self._settings.tls_ca_file
                   else grpc.aio.insecure_channel(target, options=options, interceptors=interceptors))
        self._channels.append(channel)
        return channel

    def caller(self, request: Request) -> Caller:
        """The request's bearer token, else its session's, else the process's own (single-user set-ups)."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return Caller(header[7:].strip())
        if session := request.cookies.get(SESSION_COOKIE, ""):
            return Caller(session)
        return Caller(self._settings.token)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def page_call(method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req, caller: Caller, *,
                    not_found: str = "") -> Resp:
    """One RPC for a page, as `caller`, with the page deadline; with `not_found`, an unknown or
    malformed id is a 404 page saying `not_found`. Other errors go to the app's handlers."""
    try:
        return await method(request, metadata=caller.metadata, timeout=PAGE_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        if not_found and error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise HTTPException(404, not_found) from None
        raise
