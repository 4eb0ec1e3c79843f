"""Channels to the services, addressed as ARCHITECTURE.md says: `localhost` and the default
ports, `TRACKD_TARGET` for a gateway, `TRACKD_<SERVICE>_TARGET` per service (several addresses
balanced with gRPC's round_robin). `TRACKD_TOKEN` is sent as `authorization: Bearer …` on every call,
streams included; `TRACKD_TLS_CA_FILE` switches the channels to TLS (docs/auth.md)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from trackd_api.artifact.v1 import artifact_pb2_grpc
from trackd_api.hpo.v1 import hpo_pb2_grpc
from trackd_api.query.v1 import query_pb2_grpc
from trackd_api.run.v1 import run_pb2_grpc
from trackd_platform.tls import channel_credentials

from trackd._settings import ClientSettings
from trackd.errors import from_rpc_error

T = TypeVar("T")

_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
RETRY_AFTER = "retry-after-ms"  # trailing metadata of a rate-limited call (trackd_platform.access)


class _Details(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self.method, self.timeout, self.credentials = details.method, details.timeout, details.credentials
        self.wait_for_ready, self.compression = details.wait_for_ready, details.compression
        self.metadata = metadata


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call (metadata, so plain-text channels inside a
    cluster work too; call credentials would demand TLS)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _Details(details, (*(details.metadata or ()), self._header))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def retry_after_s(error: grpc.RpcError) -> float | None:
    """The server's hint, in seconds, when `error` is a rate-limit refusal that carries one."""
    if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_AFTER:
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                return None
    return None


def _traced(channel: grpc.Channel) -> grpc.Channel:
    """`channel` carrying the caller's trace context to the services (W3C traceparent metadata)
    when OpenTelemetry's gRPC instrumentation is installed (`trackd[tracing]`); as is without it."""
    try:
        from opentelemetry.instrumentation.grpc import client_interceptor, grpcext
    except ImportError:
        return channel
    return grpcext.intercept_channel(channel, client_interceptor())  # type: ignore[no-any-return]


class Client:
    """Holds one channel per service; thread-safe; cheap to share."""

    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings.from_env()
        self._channels: dict[str, grpc.Channel] = {}
        self._raw: list[grpc.Channel] = []
        self._lock = threading.Lock()

    def channel(self, service: str) -> grpc.Channel:
        with self._lock:
            if service not in self._channels:
                options = [("grpc.service_config", _SERVICE_CONFIG),
                           ("grpc.max_receive_message_length", 16 * 1024 * 1024)]
                target = self.settings.target(service)
                raw = (grpc.secure_channel(target, channel_credentials(self.settings.tls_ca_file), options=options)
                       if self.settings.tls_ca_file else grpc.insecure_channel(target, options=options))
                self._raw.append(raw)
                channel = grpc.intercept_channel(raw, _Bearer(self.settings.token)) if self.settings.token else raw
                self._channels[service] = _traced(channel)
            return self._channels[service]

    @property
    def runs(self) -> run_pb2_grpc.RunServiceStub:
        return run_pb2_grpc.RunServiceStub(self.channel("run"))

    @property
    def artifacts(self) -> artifact_pb2_grpc.ArtifactServiceStub:
        return artifact_pb2_grpc.ArtifactServiceStub(self.channel("artifact"))

    @property
    def hpo(self) -> hpo_pb2_grpc.HpoServiceStub:
        return hpo_pb2_grpc.HpoServiceStub(self.channel("hpo"))

    @property
    def query(self) -> query_pb2_grpc.QueryServiceStub:
        return query_pb2_grpc.QueryServiceStub(self.channel("query"))

    def call(self, service: str, method: Callable[..., T], request: Any, *, timeout: float | None = None) -> T:
        """Invoke one RPC with a deadline, raising the SDK's errors. A rate-limited call (its
        `retry-after-ms` hint) is retried after the wait the server asked for, within the deadline."""
        deadline = time.monotonic() + (timeout or self.settings.rpc_timeout_s)
        while True:
            try:
                return method(request, timeout=max(0.1, deadline - time.monotonic()))
            except grpc.RpcError as error:
                wait = retry_after_s(error)
                if wait is None or time.monotonic() + wait >= deadline:
                    raise from_rpc_error(error, self.settings.target(service)) from None
                time.sleep(wait)

    def close(self) -> None:
        with self._lock:
            for channel in self._raw:
                channel.close()
            self._raw.clear()
            self._channels.clear()


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process's client, built from the environment on first use (like `mlflow`'s)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default
