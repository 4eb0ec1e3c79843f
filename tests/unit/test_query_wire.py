"""services/query/wire.py: a series encoded with numpy is the message protobuf builds, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_services.query.wire import export_response, series_message

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
    sent = export_response(key, context, np.array(steps, np.int64), values, np.array(stamps, np.int64))
    assert sent == bytes(query_pb2.ExportMetricResponse(series=message).SerializeToString())
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


@pytest.mark.parametrize("first, stride", [(0, 1), (100, 2**20 + 1), (2**40, 2**45), (3, 2**52), (-5, 2**52)])
def test_ascending_steps_crossing_varint_lengths(first: int, stride: int) -> None:
    """Ascending steps are encoded in runs of one varint length: every boundary lands right."""
    steps = first + np.arange(2_000, dtype=np.int64) * stride
    stamps = np.full(2_000, 1_796_000_000_000, np.int64)
    values = np.linspace(0, 1, 2_000)
    message = series_message("acc", 0, steps, values, stamps)
    assert bytes(message.SerializeToString()) == _expected("acc", 0, steps.tolist(), values, stamps.tolist())
