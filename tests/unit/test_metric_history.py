"""MetricHistory, what get_metric_history returns: numpy columns that read like the list of Points
it replaces (len, indexing, slices, iteration, equality with lists of points or tuples)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trackd import MetricHistory, Point
from trackd._history import from_series
from trackd_api.ingest.v1 import ingest_pb2


def history(n: int, first: int = 0) -> MetricHistory:
    steps = np.arange(first, first + n)
    return MetricHistory(steps, steps * 0.5, steps + 1_700_000_000_000)


def test_it_reads_like_the_list_of_points_it_replaces() -> None:
    h = history(5)
    as_list = [Point(s, s * 0.5, s + 1_700_000_000_000) for s in range(5)]
    assert len(h) == 5 and bool(h) and not MetricHistory()
    assert h[0] == as_list[0] and h[-1] == (4, 2.0, 1_700_000_000_004)
    assert (h[2].step, h[2].value, h[2].timestamp) == (2, 1.0, 1_700_000_000_002)
    assert type(h[1].step) is int and type(h[1].value) is float and type(h[1].timestamp) is int
    assert list(h) == as_list and h == as_list and as_list == h and h == [tuple(p) for p in as_list]
    assert h != as_list[:4] and h != [*as_list[:4], Point(4, 2.5, 1_700_000_000_004)]
    assert MetricHistory() == [] and [] == MetricHistory()
    assert [p.step for p in h] == [0, 1, 2, 3, 4] and [p.step for p in reversed(h)] == [4, 3, 2, 1, 0]
    assert h[1:3] == as_list[1:3] and isinstance(h[1:3], MetricHistory) and h[::-2] == as_list[::-2]
    assert as_list[3] in h and (3, 1.0, 1_700_000_000_003) not in h and "x" not in h
    assert h.index(as_list[2]) == 2 and h.count(as_list[2]) == 1
    with pytest.raises(IndexError):
        h[5]
    with pytest.raises(TypeError):
        hash(h)


def test_the_columns_are_read_only_numpy_arrays_of_24_bytes_a_point() -> None:
    h = history(1000, first=7)
    assert (h.steps.dtype, h.values.dtype, h.timestamps.dtype) == (np.int64, np.float64, np.int64)
    assert h.nbytes == 24_000 and h.steps[0] == 7 and h.values[-1] == 1006 * 0.5
    with pytest.raises(ValueError):
        h.steps[0] = 1
    with pytest.raises(ValueError, match="one length"):
        MetricHistory([1, 2], [1.0], [1, 2])
    with pytest.raises(ValueError, match="one-dimensional"):
        MetricHistory([[1]], [[1.0]], [[1]])


def test_equality_of_two_histories_compares_the_columns_nan_equal_to_nan() -> None:
    nan = MetricHistory([1, 2], [math.nan, 1.0], [5, 6])
    assert nan == MetricHistory([1, 2], [math.nan, 1.0], [5, 6])
    assert nan != MetricHistory([1, 2], [math.nan, 1.0], [5, 7])
    assert history(3) != history(3, first=1) and history(3) != history(4)
    assert history(3) != "abc" and history(3) != 3


def test_iteration_spans_blocks_without_losing_or_repeating_a_point() -> None:
    h = history(200_001)
    assert sum(1 for _ in h) == 200_001
    assert [p.step for p in h][65_535:65_538] == [65_535, 65_536, 65_537]


def test_concatenate_joins_parts_in_order_and_skips_empty_ones() -> None:
    parts = [history(3), MetricHistory(), history(2, first=3)]
    joined = MetricHistory.concatenate(iter(parts))
    assert joined == history(5) and MetricHistory.concatenate([]) == []
    assert MetricHistory.concatenate([parts[0]]) is parts[0]


def test_a_series_message_decodes_into_the_columns_bit_for_bit() -> None:
    values = [0.1, -0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308]
    series = ingest_pb2.MetricSeries(key="k", steps=[-3, 0, 1, 2**40, 2**62, 9], values=values,
                                     timestamps_ms=[0, 1, -1, 2**63 - 1, -(2**63), 1_700_000_000_000])
    h = from_series(ingest_pb2.MetricSeries.FromString(series.SerializeToString()))
    assert h.steps.tolist() == list(series.steps) and h.timestamps.tolist() == list(series.timestamps_ms)
    assert h.values.tobytes() == np.array(values, "<f8").tobytes()
    assert from_series(ingest_pb2.MetricSeries()) == []


def test_to_frame_has_the_three_columns() -> None:
    pd = pytest.importorskip("pandas")
    frame = history(3).to_frame()
    assert list(frame.columns) == ["step", "value", "timestamp"] and frame["step"].tolist() == [0, 1, 2]
    assert isinstance(frame, pd.DataFrame)
