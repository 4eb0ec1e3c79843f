"""A series' points as a `trackd.ingest.v1.MetricSeries` message, encoded with numpy.

Setting a repeated field from Python costs about a microsecond a point (each number becomes a
Python object first); an export of 1,000,000 points spent most of its time there. Here the
message's bytes are written column by column in numpy (protobuf's wire format: packed varints for
the int64 steps and timestamps, little-endian doubles for the values, every bit kept) and parsed
back by protobuf's C parser, which reads them at memory speed. The result is the same message,
field for field, as the one the constructor builds (tests/unit/test_query_wire.py)."""

from __future__ import annotations

import numpy as np
from trackd_api.ingest.v1 import ingest_pb2

# field number << 3 | wire type (0: varint, 2: length-delimited) of MetricSeries' fields
_KEY, _CONTEXT, _STEPS, _VALUES, _TIMESTAMPS = 0x0A, 0x10, 0x1A, 0x22, 0x2A
_SEVEN = np.uint64(7)


def varints(values: np.ndarray) -> bytes:
    """int64 values as protobuf varints, back to back (negative numbers take 10 bytes, as int64's do)."""
    u = np.ascontiguousarray(values, "<i8").view("<u8")
    sizes = np.ones(len(u), np.uint8)
    for k in range(1, 10):
        longer = u >= (np.uint64(1) << np.uint64(7 * k))
        if not longer.any():
            break
        sizes += longer
    widest = int(sizes.max()) if len(u) else 0
    # one row per value, one column per 7-bit group; the groups a value has, read row by row, are its varint
    groups = np.empty((len(u), widest), np.uint8)
    rest = u.copy()
    for k in range(widest):
        groups[:, k] = (rest & np.uint64(0x7F)).astype(np.uint8) | ((sizes > k + 1).astype(np.uint8) << np.uint8(7))
        rest >>= _SEVEN
    if int(sizes.min()) == widest:  # all of one length (timestamps, usually): every group is used
        return bytes(groups.tobytes())
    return bytes(groups[np.arange(widest, dtype=np.uint8) < sizes[:, None]].tobytes())


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varints(np.array([len(payload)], np.int64)) + payload


def series_message(key: str, context: int, steps: np.ndarray, values: np.ndarray,
                   timestamps: np.ndarray) -> ingest_pb2.MetricSeries:
    """MetricSeries(key, context, steps, values, timestamps_ms) for a proto context number."""
    parts = [_field(_KEY, key.encode())] if key else []
    if context:
        parts.append(bytes([_CONTEXT]) + varints(np.array([context], np.int64)))
    if len(steps):
        parts += [_field(_STEPS, varints(steps)), _field(_VALUES, np.ascontiguousarray(values, "<f8").tobytes()),
                  _field(_TIMESTAMPS, varints(timestamps))]
    return ingest_pb2.MetricSeries.FromString(b"".join(parts))
