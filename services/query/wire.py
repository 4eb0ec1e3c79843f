"""A series' points as protobuf wire bytes, encoded with numpy: a `trackd.ingest.v1.MetricSeries`
message, or a whole `ExportMetricResponse` that the server sends as it is.

Setting a repeated field from Python costs about a microsecond a point (each number becomes a
Python object first); an export of 1,000,000 points spent most of its time there. Here the
message's bytes are written column by column in numpy (protobuf's wire format: packed varints for
the int64 steps and timestamps, little-endian doubles for the values, every bit kept). They are the
same bytes, field for field, as protobuf's own serializer writes (tests/unit/test_query_wire.py).
`series_message` parses them back with protobuf's C parser (memory speed); ExportMetric sends
`export_response`'s bytes without building a message at all (see `pre_encoded`): a parse, a copy
into the response and a serialization per part were most of a full export's time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc
import numpy as np
from trackd_api.ingest.v1 import ingest_pb2

# field number << 3 | wire type (0: varint, 2: length-delimited) of MetricSeries' fields
_KEY, _CONTEXT, _STEPS, _VALUES, _TIMESTAMPS = 0x0A, 0x10, 0x1A, 0x22, 0x2A
_EXPORT_SERIES = 0x0A  # ExportMetricResponse.series (field 1, a message)
# a varint of k bytes holds values below 2 ** (7 k): the bounds, as unsigned 64-bit integers
_BOUNDS = np.array([1 << (7 * k) for k in range(1, 10)], np.uint64)
_SHIFTS = [np.uint64(7 * k) for k in range(10)]
_LOW7, _MORE = np.uint64(0x7F), np.uint64(0x80)
_SPREAD = 8  # values of up to 8 groups (below 2 ** 56) are spread into one uint64, a group a byte
# the continuation bits of a k-byte varint spread that way: 0x80 in every byte but its last
_CONTINUE = np.array([sum(0x80 << (8 * i) for i in range(k - 1)) for k in range(_SPREAD + 1)], np.uint64)
Buffer = bytes | memoryview


def _width(value: int) -> int:
    return int(np.searchsorted(_BOUNDS, np.uint64(value), "right")) + 1


def _spread(u: np.ndarray, width: int) -> np.ndarray:
    """Values of `width` ≤ 8 groups as their varints, back to back (`width` bytes each)."""
    spread = u & _LOW7
    for k in range(1, width):
        spread |= (u << np.uint64(k)) & np.uint64(0x7F << (8 * k))
    spread |= _CONTINUE[width]
    spread = spread.astype("<u8", copy=False)
    if width in (1, 2, 4, 8):  # the low bytes of each: a narrowing cast
        return spread.astype(f"<u{width}").view(np.uint8)
    # the first `width` bytes of each 8: copied as items of that size (faster than a 2-D slice)
    return np.ndarray((len(u),), dtype=f"V{width}", buffer=spread, strides=(8,)).copy().view(np.uint8)


def _varint_parts(values: np.ndarray) -> list[Buffer]:
    """The varints of int64 `values`, back to back, as buffers to join."""
    u = np.ascontiguousarray(values, "<i8").view("<u8")
    if not len(u):
        return []
    low, high = _width(int(u.min())), _width(int(u.max()))
    if high <= _SPREAD:
        if low == high:  # all of one length (timestamps, usually)
            return [_spread(u, high).data]
        if bool((u[1:] >= u[:-1]).all()):  # ascending (steps, usually): runs of one length each
            cuts = [0, *np.searchsorted(u, _BOUNDS[low - 1:high - 1], "left").tolist(), len(u)]
            return [_spread(u[a:b], w).data
                    for w, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False), start=low) if b > a]
    return [_any_varints(u, high)]


def _any_varints(u: np.ndarray, widest: int) -> bytes:
    # one row per value, one column per 7-bit group; the groups a value has, read row by row, are its varint
    sizes = np.searchsorted(_BOUNDS, u, "right").astype(np.uint8) + np.uint8(1)
    groups = np.empty((len(u), widest), np.uint8)
    for k in range(widest):
        part = ((u >> _SHIFTS[k]) & _LOW7 if k else u & _LOW7).astype(np.uint8)
        groups[:, k] = part | ((sizes > k + 1).astype(np.uint8) << np.uint8(7))
    return bytes(groups[np.arange(widest, dtype=np.uint8) < sizes[:, None]].tobytes())


def _length(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: list[Buffer]) -> list[Buffer]:
    return [bytes([tag]) + _length(sum(len(p) for p in payload)), *payload]


def _series_parts(key: str, context: int, steps: np.ndarray, values: np.ndarray,
                  timestamps: np.ndarray) -> list[Buffer]:
    parts = _field(_KEY, [key.encode()]) if key else []
    if context:
        parts.append(bytes([_CONTEXT]) + _length(context))
    if len(steps):
        parts += [*_field(_STEPS, _varint_parts(steps)),
                  *_field(_VALUES, [np.ascontiguousarray(values, "<f8").data.cast("B")]),
                  *_field(_TIMESTAMPS, _varint_parts(timestamps))]
    return parts


def series_bytes(key: str, context: int, steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> bytes:
    """The wire bytes of MetricSeries(key, context, steps, values, timestamps_ms), for a proto context number."""
    return b"".join(_series_parts(key, context, steps, values, timestamps))


def series_message(key: str, context: int, steps: np.ndarray, values: np.ndarray,
                   timestamps: np.ndarray) -> ingest_pb2.MetricSeries:
    """MetricSeries(key, context, steps, values, timestamps_ms) for a proto context number."""
    return ingest_pb2.MetricSeries.FromString(series_bytes(key, context, steps, values, timestamps))


def export_response(key: str, context: int, steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> bytes:
    """The wire bytes of ExportMetricResponse(series=MetricSeries(…)): what `pre_encoded` sends as is."""
    return b"".join(_field(_EXPORT_SERIES, _series_parts(key, context, steps, values, timestamps)))


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
