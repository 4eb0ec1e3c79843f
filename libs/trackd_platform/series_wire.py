"""A metric series as protobuf wire bytes, written with numpy: the bytes of a
`trackd.ingest.v1.MetricSeries` (and of the messages that hold one) without a Python object a point.

Setting a repeated field from Python costs about a microsecond a point (each number becomes a
Python object first). Here the message is written column by column in numpy, protobuf's wire
format by hand: packed varints for the int64 steps and timestamps, little-endian doubles for the
values, every bit kept. They are the same bytes, field for field, as protobuf's own serializer
writes (tests/unit/test_query_wire.py, tests/unit/test_sdk_metric_batches.py). The query service
sends exports this way; the SDK's batcher writes its StreamMetrics batches this way."""

from __future__ import annotations

import numpy as np

# field number << 3 | wire type (0: varint, 2: length-delimited) of MetricSeries' fields
_KEY, _CONTEXT, _STEPS, _VALUES, _TIMESTAMPS = 0x0A, 0x10, 0x1A, 0x22, 0x2A
# StreamMetricsRequest: stream_id (1), sequence (2), run_id (3), series (4, a MetricSeries each)
_STREAM_ID, _SEQUENCE, _RUN_ID, _SERIES = 0x0A, 0x10, 0x1A, 0x22
# a varint of k bytes holds values below 2 ** (7 k): the bounds, as unsigned 64-bit integers
_BOUNDS = np.array([1 << (7 * k) for k in range(1, 10)], np.uint64)
_SHIFTS = [np.uint64(7 * k) for k in range(10)]
_LOW7 = np.uint64(0x7F)
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


def field(tag: int, payload: list[Buffer]) -> list[Buffer]:
    return [bytes([tag]) + _length(sum(len(p) for p in payload)), *payload]


def series_parts(key: str, context: int, steps: np.ndarray, values: np.ndarray,
                 timestamps: np.ndarray) -> list[Buffer]:
    """MetricSeries(key, context, steps, values, timestamps_ms)'s wire bytes, as buffers to join."""
    parts = field(_KEY, [key.encode()]) if key else []
    if context:
        parts.append(bytes([_CONTEXT]) + _length(context))
    if len(steps):
        parts += [*field(_STEPS, _varint_parts(steps)),
                  *field(_VALUES, [np.ascontiguousarray(values, "<f8").data.cast("B")]),
                  *field(_TIMESTAMPS, _varint_parts(timestamps))]
    return parts


def series_bytes(key: str, context: int, steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> bytes:
    """The wire bytes of MetricSeries(key, context, steps, values, timestamps_ms), for a proto context number."""
    return b"".join(series_parts(key, context, steps, values, timestamps))


def stream_batch(run_id: str, series: list[list[Buffer]]) -> bytes:
    """A StreamMetricsRequest's bytes without its stream_id and sequence: the run and its series
    (each `series_parts`). What the SDK spools; `stream_header` + these are the whole request."""
    return b"".join([*field(_RUN_ID, [run_id.encode()]), *(b for parts in series for b in field(_SERIES, parts))])


def stream_header(stream_id: str, sequence: int) -> bytes:
    """The stream_id and sequence fields that go before a `stream_batch` (protobuf writes fields
    in number order, and these are 1 and 2): together, the request protobuf itself would write."""
    return b"".join([*field(_STREAM_ID, [stream_id.encode()]), bytes([_SEQUENCE]) + _length(sequence)])
