"""Channels to the services, addressed as ARCHITECTURE.md says: `localhost` and the default
ports, `TRACKD_TARGET` for a gateway, `TRACKD_<SERVICE>_TARGET` per service (several addresses
balanced with gRPC's round_robin)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from opentelemetry.instrumentation.grpc import client_interceptor, grpcext
from trackd_api.artifact.v1 import artifact_pb2_grpc
from trackd_api.hpo.v1 import hpo_pb2_grpc
from trackd_api.query.v1 import query_pb2_grpc
from trackd_api.run.v1 import run_pb2_grpc
from trackd_platform.config import ClientSettings

from trackd.errors import from_rpc_error

T = TypeVar("T")

_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


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
                raw = grpc.insecure_channel(
                    self.settings.target(service),
                    options=[("grpc.service_config", _SERVICE_CONFIG),
                             ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
                )
                # Carries the caller's trace context to the services (W3C traceparent metadata).
                self._raw.append(raw)
                self._channels[service] = grpcext.intercept_channel(raw, client_interceptor())
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
        """Invoke one unary RPC with a deadline, raising the SDK's errors."""
        try:
            return method(request, timeout=timeout or self.settings.rpc_timeout_s)
        except grpc.RpcError as error:
            raise from_rpc_error(error, self.settings.target(service)) from None

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
