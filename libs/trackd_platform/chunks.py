"""How a metric chunk's integer columns (steps and timestamps) are stored: written by the ingest
service, read by the query service. One module, so both agree on the bytes.

A column is one of:

- raw: little-endian int64, its length a multiple of 8 — every chunk written before this format,
  and chunks of fewer than MIN_COMPRESSED points (pcodec's header would outweigh them);
- pcodec: a tag byte, then pcodec's standalone encoding (lossless), then one pad byte when that
  would otherwise make the length a multiple of 8. Tag 0x01: no pad; 0x02: one trailing pad byte.
  The length alone tells the two apart, so old chunks read unchanged, with no migration.

Regular steps take ~0 bytes a point this way and millisecond timestamps ~0.5 (24 → ~8 bytes a
point with the raw float64 values), so a million-point series reads a third of the bytes. Values
stay raw float64 here: bit for bit, NaN payloads included."""

from __future__ import annotations

import numpy as np
from pcodec import ChunkConfig, standalone

MIN_COMPRESSED = 64
_PLAIN, _PADDED = b"\x01", b"\x02"


def pack_ints(values: np.ndarray) -> bytes:
    """An int64 column as stored (see the module docstring)."""
    values = np.ascontiguousarray(values, dtype="<i8")
    if len(values) < MIN_COMPRESSED:
        return values.tobytes()
    encoded = standalone.simple_compress(values, ChunkConfig())
    if (len(encoded) + 1) % 8:
        return _PLAIN + encoded
    return _PADDED + encoded + b"\x00"


def unpack_ints(data: bytes) -> np.ndarray:
    """The int64 column of `pack_ints`' bytes, or of raw bytes written before it (read-only when raw)."""
    if len(data) % 8 == 0:
        return np.frombuffer(data, "<i8")
    tag, body = data[:1], data[1:]
    if tag == _PADDED:
        body = body[:-1]
    elif tag != _PLAIN:
        raise ValueError(f"unknown chunk column tag {tag!r}")
    return np.asarray(standalone.simple_decompress(body), dtype=np.int64)
