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

Columns are compressed at pcodec level COMPRESSION_LEVEL (of 0–12): level 8, pcodec's default,
compresses ~4× slower for ~4 % fewer bytes, and ingest compresses every point it commits.

A chunk's overview (its row's `overview` column) lets a long series be drawn without reading every
point: the chunk's first and last point and, per block of OVERVIEW_BLOCK points, the point of the
block's minimum and of its maximum — about 1/64 of the points, every extreme among them, in
(step, timestamp) order. Two formats, told apart by length:

- raw (written before the compressed one): three little-endian arrays back to back (int64 steps,
  float64 values, int64 timestamps), its length a multiple of 24;
- compressed: tag byte 0x03, three little-endian uint32 lengths, then the steps, values and
  timestamps each as a column above (raw or pcodec), then one pad byte when the length would
  otherwise be a multiple of 24. ~0.1 byte a point of the chunk instead of ~0.4.

Chunks of fewer than MIN_OVERVIEW points, or holding NaN or ±Inf, have none: readers read them
whole."""

from __future__ import annotations

import numpy as np
from pcodec import ChunkConfig, standalone

MIN_COMPRESSED = 64
COMPRESSION_LEVEL = 2
OVERVIEW_BLOCK = 128
MIN_OVERVIEW = 16
MIN_COMPRESSED_OVERVIEW = 8  # overview points from which pcodec's headers pay for themselves
_PLAIN, _PADDED, _OVERVIEW = b"\x01", b"\x02", b"\x03"
_CONFIG = ChunkConfig(compression_level=COMPRESSION_LEVEL)


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


def _pack(values: np.ndarray, at_least: int = MIN_COMPRESSED) -> bytes:
    raw: bytes = values.tobytes()
    if len(values) < at_least:
        return raw
    encoded: bytes = standalone.simple_compress(values, _CONFIG)
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
    columns = (_pack(np.ascontiguousarray(steps[index], "<i8"), MIN_COMPRESSED_OVERVIEW),
               _pack(np.ascontiguousarray(values[index], "<f8"), MIN_COMPRESSED_OVERVIEW),
               _pack(np.ascontiguousarray(timestamps[index], "<i8"), MIN_COMPRESSED_OVERVIEW))
    packed = _OVERVIEW + np.array([len(c) for c in columns], "<u4").tobytes() + b"".join(columns)
    return packed + b"\x00" if len(packed) % 24 == 0 else packed


def unpack_overview(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values, timestamps) of `pack_overview`'s bytes, in either format."""
    if len(data) % 24 == 0:
        k = len(data) // 24
        return (np.frombuffer(data, "<i8", k, 0), np.frombuffer(data, "<f8", k, 8 * k),
                np.frombuffer(data, "<i8", k, 16 * k))
    if data[:1] != _OVERVIEW:
        raise ValueError(f"unknown chunk overview tag {data[:1]!r}")
    a, b, c = (int(x) for x in np.frombuffer(data, "<u4", 3, 1))
    steps, values, stamps = data[13:13 + a], data[13 + a:13 + a + b], data[13 + a + b:13 + a + b + c]
    if len(stamps) != c:
        raise ValueError("chunk overview is cut short")
    found = unpack_ints(steps), unpack_floats(values), unpack_ints(stamps)
    if not len(found[0]) == len(found[1]) == len(found[2]):
        raise ValueError("chunk overview columns differ in length")
    return found
