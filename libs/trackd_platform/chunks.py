"""How a metric chunk's columns (int64 steps and timestamps, float64 values) are stored: written
by the ingest service, read by the query service. One module, so both agree on the bytes.

A column is one of:

- raw: little-endian int64 or float64, its length a multiple of 8 — every chunk written before
  this format (values were always raw before), chunks of fewer than MIN_COMPRESSED points
  (pcodec's header would outweigh them), and columns pcodec does not shrink (random float64);
- pcodec: a tag byte, then pcodec's standalone encoding, then one pad byte when that would
  otherwise make the length a multiple of 8. Tag 0x01: no pad; 0x02: one trailing pad byte.
  The length alone tells the two apart — it is the chunk's format version — so old chunks read
  unchanged, with no migration. The encoding names its own number type (int64 or float64).

pcodec is lossless bit for bit on float64 too: every NaN payload, ±Inf, -0.0, subnormals and the
extremes come back with the bits they were written with (tests/unit/test_chunks.py holds it to
that). Regular steps take ~0 bytes a point, millisecond timestamps ~0.5 and float32-origin values
(a loss curve) ~3: a realistic point takes ~4 bytes where raw columns took 24. Random float64
values stay raw (8 bytes a point).

A chunk's overview (its row's `overview` column) lets a long series be drawn without reading every
point: the chunk's first and last point and, per block of OVERVIEW_BLOCK points, the point of the
block's minimum and of its maximum — about 1/64 of the points, every extreme among them. It is
three little-endian arrays back to back (int64 steps, float64 values, int64 timestamps) in
(step, timestamp) order. Chunks of fewer than MIN_OVERVIEW points, or holding NaN or ±Inf, have
none: readers read them whole."""

from __future__ import annotations

import numpy as np
from pcodec import ChunkConfig, standalone

MIN_COMPRESSED = 64
OVERVIEW_BLOCK = 128
MIN_OVERVIEW = 16
_PLAIN, _PADDED = b"\x01", b"\x02"


def pack_ints(values: np.ndarray) -> bytes:
    """An int64 column as stored (see the module docstring)."""
    return _pack(np.ascontiguousarray(values, dtype="<i8"))


def unpack_ints(data: bytes) -> np.ndarray:
    """The int64 column of `pack_ints`' bytes, or of raw bytes written before it (read-only when raw)."""
    return _unpack(data, np.dtype("<i8"))


def pack_floats(values: np.ndarray) -> bytes:
    """A float64 column as stored (see the module docstring): every value's bits kept."""
    return _pack(np.ascontiguousarray(values, dtype="<f8"))


def unpack_floats(data: bytes) -> np.ndarray:
    """The float64 column of `pack_floats`' bytes, or of raw bytes written before it (read-only when raw)."""
    return _unpack(data, np.dtype("<f8"))


def _pack(values: np.ndarray) -> bytes:
    raw: bytes = values.tobytes()
    if len(values) < MIN_COMPRESSED:
        return raw
    encoded: bytes = standalone.simple_compress(values, ChunkConfig())
    if len(encoded) + 2 >= len(raw):  # incompressible: raw is as small and faster to read
        return raw
    if (len(encoded) + 1) % 8:
        return _PLAIN + encoded
    return _PADDED + encoded + b"\x00"


def _unpack(data: bytes, dtype: np.dtype) -> np.ndarray:
    if len(data) % 8 == 0:
        return np.frombuffer(data, dtype)
    tag, body = data[:1], data[1:]
    if tag == _PADDED:
        body = body[:-1]
    elif tag != _PLAIN:
        raise ValueError(f"unknown chunk column tag {tag!r}")
    decoded = standalone.simple_decompress(body)
    if decoded.dtype != dtype:
        raise ValueError(f"chunk column holds {decoded.dtype}, {dtype} expected")
    return np.asarray(decoded)


def pack_overview(steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> bytes | None:
    """A chunk's overview (see the module docstring), or None when it has none."""
    n = len(values)
    if n < MIN_OVERVIEW or not np.isfinite(values).all():
        return None
    if not (steps[1:] >= steps[:-1]).all():  # blocks are runs of neighbouring steps
        order = np.lexsort((timestamps, steps))
        steps, values, timestamps = steps[order], values[order], timestamps[order]
    full = n - n % OVERVIEW_BLOCK
    picks = [np.array([0, n - 1])]
    if full:
        blocks = values[:full].reshape(-1, OVERVIEW_BLOCK)
        starts = np.arange(0, full, OVERVIEW_BLOCK)
        picks += [starts + blocks.argmin(axis=1), starts + blocks.argmax(axis=1)]
    if full < n:
        picks.append(np.array([full + values[full:].argmin(), full + values[full:].argmax()]))
    index = np.unique(np.concatenate(picks))  # sorted: the chunk's order
    return (np.ascontiguousarray(steps[index], "<i8").tobytes() + np.ascontiguousarray(values[index], "<f8").tobytes()
            + np.ascontiguousarray(timestamps[index], "<i8").tobytes())


def unpack_overview(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values, timestamps) of `pack_overview`'s bytes."""
    k = len(data) // 24
    return (np.frombuffer(data, "<i8", k, 0), np.frombuffer(data, "<f8", k, 8 * k),
            np.frombuffer(data, "<i8", k, 16 * k))
