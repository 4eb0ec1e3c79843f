"""The stored form of a chunk's columns (int64 steps and timestamps, float64 values): lossless bit
for bit both ways, and old (raw) chunks read as before."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trackd_platform.chunks import MIN_COMPRESSED, pack_floats, pack_ints, unpack_floats, unpack_ints

INT64 = np.iinfo(np.int64)
# float64 values as their bits: the ones a float comparison would blur
SPECIAL_BITS = {
    "quiet NaN": 0x7FF8_0000_0000_0000,
    "negative quiet NaN": 0xFFF8_0000_0000_0000,
    "NaN with payload 1": 0x7FF8_0000_0000_0001,
    "NaN with a high payload": 0x7FFF_FFFF_FFFF_FFFF,
    "negative NaN with a payload": 0xFFF0_0000_DEAD_BEEF,
    "signalling NaN": 0x7FF0_0000_0000_0001,
    "signalling NaN, other payload": 0x7FF4_0000_0000_0000,
    "+Inf": 0x7FF0_0000_0000_0000,
    "-Inf": 0xFFF0_0000_0000_0000,
    "+0.0": 0x0000_0000_0000_0000,
    "-0.0": 0x8000_0000_0000_0000,
    "smallest subnormal": 0x0000_0000_0000_0001,
    "largest subnormal": 0x000F_FFFF_FFFF_FFFF,
    "negative subnormal": 0x8000_0000_0000_0001,
    "smallest normal": 0x0010_0000_0000_0000,
    "float64 max": 0x7FEF_FFFF_FFFF_FFFF,
    "float64 min": 0xFFEF_FFFF_FFFF_FFFF,
}


def _bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, "<f8").view("<u8")


def _compressed(packed: bytes) -> bool:
    return len(packed) % 8 != 0


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
    if len(values) < MIN_COMPRESSED:
        assert not _compressed(packed)


def test_columns_written_before_compression_read_unchanged() -> None:
    raw = np.arange(10_000, dtype="<i8").tobytes()
    assert np.array_equal(unpack_ints(raw), np.arange(10_000))


def test_regular_steps_and_timestamps_shrink() -> None:
    steps = np.arange(50_000, dtype=np.int64)
    stamps = 1_796_000_000_000 + steps * 37
    assert len(pack_ints(steps)) < 1_000 and len(pack_ints(stamps)) < 1_000  # from 400,000 bytes each


@pytest.mark.parametrize("name", SPECIAL_BITS)
def test_every_special_float64_comes_back_bit_for_bit(name: str) -> None:
    """Each special value alone (raw: a short chunk), among a loss curve (compressed) and
    repeated (a column of one value), keeps its exact bits."""
    special = np.array([SPECIAL_BITS[name]], "<u8").view("<f8")
    curve = (1.0 / np.arange(1, 1_000)).astype(np.float32).astype(np.float64)
    for values in (special, np.concatenate([curve[:500], special, curve[500:]]), np.repeat(special, 500)):
        packed = pack_floats(values)
        assert np.array_equal(_bits(unpack_floats(packed)), _bits(values)), name
    assert _compressed(pack_floats(np.concatenate([curve, special]))), "the mixed column is stored compressed"


def test_all_special_float64s_together_come_back_bit_for_bit() -> None:
    bits = np.array(list(SPECIAL_BITS.values()) * 10, "<u8")
    np.random.default_rng(2).shuffle(bits)
    values = bits.view("<f8")
    packed = pack_floats(values)
    assert _compressed(packed)
    assert np.array_equal(_bits(unpack_floats(packed)), bits)


def test_float_columns_written_before_compression_read_unchanged() -> None:
    """Values were raw little-endian float64 in every chunk written before: they read as they were."""
    bits = np.array(list(SPECIAL_BITS.values()) * 20, "<u8")
    assert np.array_equal(_bits(unpack_floats(bits.tobytes())), bits)
    assert np.array_equal(unpack_floats(np.linspace(0, 1, 1_000).tobytes()), np.linspace(0, 1, 1_000))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=600), st.integers(0, 2**64 - 1), st.integers(0, 600))
def test_any_float64_bit_patterns_come_back_bit_for_bit(random: list[int], repeated: int, times: int) -> None:
    """Random bit patterns (incompressible: stored raw) and a repeated one (compressed) together."""
    bits = np.array(random + [repeated] * times, "<u8")
    assert np.array_equal(_bits(unpack_floats(pack_floats(bits.view("<f8")))), bits)


def test_realistic_values_shrink_random_ones_stay_raw() -> None:
    loss = (2.5 * np.exp(-np.arange(10_000) / 3_000) + np.random.default_rng(3).normal(0, 0.05, 10_000))
    float32_origin = loss.astype(np.float32).astype(np.float64)
    assert len(pack_floats(float32_origin)) < 4 * len(loss)  # from 8 bytes a point
    noise = np.random.default_rng(4).integers(0, 2**64 - 1, 10_000, dtype=np.uint64).view("<f8")
    packed = pack_floats(noise)
    assert not _compressed(packed) and len(packed) == 8 * len(noise)


def test_a_column_of_the_other_type_is_refused() -> None:
    with pytest.raises(ValueError, match="float64"):
        unpack_ints(pack_floats(np.linspace(0, 1, 1_000)))
