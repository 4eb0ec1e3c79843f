"""A series' points as protobuf wire bytes: a `trackd.ingest.v1.MetricSeries` message, or a
whole `ExportMetricResponse` that the server sends as it is.

The bytes are written with numpy by trackd_platform.series_wire (setting a repeated field from
Python costs about a microsecond a point; an export of 1,000,000 points spent most of its time
there). `series_message` parses them back with protobuf's C parser (memory speed); ExportMetric
sends `export_response`'s bytes without building a message at all (see `pre_encoded`): a parse, a
copy into the response and a serialization per part were most of a full export's time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc
import numpy as np
from trackd_api.ingest.v1 import ingest_pb2
from trackd_platform.series_wire import field, series_bytes, series_parts

_EXPORT_SERIES = 0x0A  # ExportMetricResponse.series (field 1, a message)


def series_message(key: str, context: int, steps: np.ndarray, values: np.ndarray,
                   timestamps: np.ndarray) -> ingest_pb2.MetricSeries:
    """MetricSeries(key, context, steps, values, timestamps_ms) for a proto context number."""
    return ingest_pb2.MetricSeries.FromString(series_bytes(key, context, steps, values, timestamps))


def export_response(key: str, context: int, steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> bytes:
    """The wire bytes of ExportMetricResponse(series=MetricSeries(…)): what `pre_encoded` sends as is."""
    return b"".join(field(_EXPORT_SERIES, series_parts(key, context, steps, values, timestamps)))


class _Server(Protocol):
    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None: ...
    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None: ...


def _as_is(response: Any) -> bytes:
    """A response that is already wire bytes goes out unchanged; a message is serialized."""
    return response if isinstance(response, bytes) else bytes(response.SerializeToString())


def pre_encoded(add: Callable[[Any, Any], None], methods: frozenset[str]) -> Callable[[Any, Any], None]:
    """The generated `add_…Servicer_to_server` with `methods` (by name) allowed to answer wire bytes
    as well as messages: their handlers' response serializer passes bytes through."""

    def add_to(servicer: Any, server: _Server) -> None:
        class Adding:
            def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
                # the generated code registers the same handlers by name too; those are the ones looked up
                server.add_generic_rpc_handlers(handlers)

            def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
                server.add_registered_method_handlers(service, {
                    name: h._replace(response_serializer=_as_is) if name in methods else h
                    for name, h in handlers.items()})

        add(servicer, Adding())

    return add_to
