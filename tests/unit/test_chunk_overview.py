"""A chunk's overview (trackd_platform.chunks): compressed, bit for bit the points it picks, and
overviews written before compression (three raw arrays) still read."""

from __future__ import annotations

import numpy as np
import pytest
from trackd_platform.chunks import MIN_OVERVIEW, OVERVIEW_BLOCK, pack_overview, unpack_overview


def _points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.arange(1_000, 1_000 + n, dtype=np.int64)
    values = (1 / (1 + steps / 500) + rng.normal(0, 0.02, n)).astype(np.float32).astype(np.float64)
    return steps, values, 1_796_000_000_000 + np.cumsum(rng.integers(80, 120, n))


def _raw_overview(steps: np.ndarray, values: np.ndarray, stamps: np.ndarray) -> bytes:
    """The overview as written before it was compressed: the same points, three raw arrays."""
    s, v, t = unpack_overview(pack_overview(steps, values, stamps) or b"")
    return s.astype("<i8").tobytes() + v.astype("<f8").tobytes() + t.astype("<i8").tobytes()


@pytest.mark.parametrize("n", [MIN_OVERVIEW, 100, OVERVIEW_BLOCK * 3 + 5, 50_000])
def test_the_overview_holds_first_last_and_every_block_extreme(n: int) -> None:
    steps, values, stamps = _points(n)
    s, v, t = unpack_overview(pack_overview(steps, values, stamps) or b"")
    assert s[0] == steps[0] and s[-1] == steps[-1]
    for lo in range(0, n, OVERVIEW_BLOCK):
        block = slice(lo, lo + OVERVIEW_BLOCK)
        for pick in (lo + int(values[block].argmin()), lo + int(values[block].argmax())):
            at = int(np.searchsorted(s, steps[pick]))
            assert (s[at], v[at].tobytes(), t[at]) == (steps[pick], values[pick].tobytes(), stamps[pick])


def test_a_large_overview_is_compressed_well_below_raw() -> None:
    steps, values, stamps = _points(50_000)
    packed = pack_overview(steps, values, stamps) or b""
    assert len(packed) % 24 != 0  # the compressed format
    assert len(packed) < len(_raw_overview(steps, values, stamps)) / 2


def test_finite_special_values_come_back_bit_for_bit() -> None:
    bits = [0x8000_0000_0000_0000, 0x0000_0000_0000_0001, 0x000F_FFFF_FFFF_FFFF, 0x8000_0000_0000_0001,
            0x7FEF_FFFF_FFFF_FFFF, 0xFFEF_FFFF_FFFF_FFFF, 0x0000_0000_0000_0000]
    steps, values, stamps = _points(4 * OVERVIEW_BLOCK)
    values = values.copy()
    for i, b in enumerate(bits):  # one per block or first / last: each is picked
        values[[0, OVERVIEW_BLOCK + 3, 2 * OVERVIEW_BLOCK + 7, 3 * OVERVIEW_BLOCK + 9, 5, 200, 300][i]] = \
            np.array([b], "<u8").view("<f8")[0]
    s, v, _ = unpack_overview(pack_overview(steps, values, stamps) or b"")
    stored = {int(step): int(value) for step, value in zip(s, v.view("<u8"), strict=True)}
    expected = {int(steps[i]): int(values[i:i + 1].view("<u8")[0]) for i in range(len(steps))}
    assert all(expected[step] == value for step, value in stored.items())
    assert {0x8000_0000_0000_0000, 0x7FEF_FFFF_FFFF_FFFF, 0xFFEF_FFFF_FFFF_FFFF} <= set(stored.values())


@pytest.mark.parametrize("n", [MIN_OVERVIEW, 1_000, 20_000])
def test_overviews_written_before_compression_read_unchanged(n: int) -> None:
    steps, values, stamps = _points(n, seed=n)
    raw = _raw_overview(steps, values, stamps)
    assert len(raw) % 24 == 0
    old, new = unpack_overview(raw), unpack_overview(pack_overview(steps, values, stamps) or b"")
    for a, b in zip(old, new, strict=True):
        assert a.tobytes() == b.tobytes()


def test_a_broken_overview_is_refused() -> None:
    steps, values, stamps = _points(5_000)
    packed = pack_overview(steps, values, stamps) or b""
    with pytest.raises(ValueError):
        unpack_overview(packed[: len(packed) // 2] + (b"" if (len(packed) // 2) % 24 else b"\x00"))
    with pytest.raises(ValueError):
        unpack_overview(b"\x07" + packed[1:])


def test_no_overview_for_short_chunks_or_non_finite_values() -> None:
    steps, values, stamps = _points(MIN_OVERVIEW - 1)
    assert pack_overview(steps, values, stamps) is None
    steps, values, stamps = _points(1_000)
    values = values.copy()
    values[10] = np.inf
    assert pack_overview(steps, values, stamps) is None
