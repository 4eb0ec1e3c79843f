"""services/query/wire.py: a series encoded with numpy is the message protobuf builds, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trackd_api.ingest.v1 import ingest_pb2
from trackd_services.query.wire import series_message

INT64 = st.integers(-(2**63), 2**63 - 1)
BITS = st.integers(0, 2**64 - 1)  # every float64, NaN payloads, ±Inf, -0.0 and subnormals included


def _expected(key: str, context: int, steps: list[int], values: np.ndarray, stamps: list[int]) -> bytes:
    return bytes(ingest_pb2.MetricSeries(key=key, context=context, steps=steps, values=values.tolist(),  # type: ignore[arg-type]
                                         timestamps_ms=stamps).SerializeToString())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(INT64, BITS, INT64), max_size=40), st.text(max_size=300), st.sampled_from([0, 1, 2, 3]))
def test_any_points_encode_as_protobuf_does(points: list[tuple[int, int, int]], key: str, context: int) -> None:
    steps = [p[0] for p in points]
    values = np.array([p[1] for p in points], np.uint64).view(np.float64)
    stamps = [p[2] for p in points]
    message = series_message(key, context, np.array(steps, np.int64), values, np.array(stamps, np.int64))
    assert bytes(message.SerializeToString()) == _expected(key, context, steps, values, stamps)
    assert np.array(message.values, np.float64).view(np.uint64).tolist() == values.view(np.uint64).tolist()


@pytest.mark.parametrize("n", [1, 127, 128, 16_384, 65_536])
def test_long_series_and_every_varint_length(n: int) -> None:
    steps = np.arange(n, dtype=np.int64) * 7 - 3
    stamps = 1_796_000_000_000 + np.arange(n, dtype=np.int64)
    shifts = np.array([1 << (7 * k) for k in range(9)] + [2**63 - 1], np.int64)
    steps[: min(n, len(shifts))] = shifts[:n]
    values = np.sin(np.arange(n, dtype=np.float64))
    message = series_message("loss", 1, steps, values, stamps)
    assert bytes(message.SerializeToString()) == _expected("loss", 1, steps.tolist(), values, stamps.tolist())
