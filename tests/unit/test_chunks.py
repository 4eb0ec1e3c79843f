"""The stored form of a chunk's int64 columns: lossless both ways, and old (raw) chunks read as before."""

from __future__ import annotations

import numpy as np
import pytest
from trackd_platform.chunks import MIN_COMPRESSED, pack_ints, unpack_ints

INT64 = np.iinfo(np.int64)


@pytest.mark.parametrize("values", [
    np.arange(100_000, dtype=np.int64),  # regular steps
    1_796_000_000_000 + np.cumsum(np.random.default_rng(0).integers(1, 50, 5_000)),  # millisecond timestamps
    np.array([INT64.min, INT64.max, -1, 0, 1] * 20, dtype=np.int64),  # the extremes
    np.random.default_rng(1).integers(INT64.min, INT64.max, 1_000, dtype=np.int64),  # noise
    np.arange(MIN_COMPRESSED - 1, dtype=np.int64),  # too short to compress: raw
    np.arange(0, dtype=np.int64),
])
def test_every_int64_column_comes_back_bit_for_bit(values: np.ndarray) -> None:
    packed = pack_ints(values)
    assert np.array_equal(unpack_ints(packed), values)
    assert (len(packed) % 8 == 0) == (len(values) < MIN_COMPRESSED), "the length tells raw from compressed"


def test_columns_written_before_compression_read_unchanged() -> None:
    raw = np.arange(10_000, dtype="<i8").tobytes()
    assert np.array_equal(unpack_ints(raw), np.arange(10_000))


def test_regular_steps_and_timestamps_shrink() -> None:
    steps = np.arange(50_000, dtype=np.int64)
    stamps = 1_796_000_000_000 + steps * 37
    assert len(pack_ints(steps)) < 1_000 and len(pack_ints(stamps)) < 1_000  # from 400,000 bytes each
