"""Ingest validation, packing and the latest-metric summaries (pure logic)."""

from __future__ import annotations

import math
from itertools import permutations

import pytest
from trackd_api.ingest.v1 import ingest_pb2
from trackd_platform.errors import InvalidArgument
from trackd_platform.metric_series import decode_summary, encode_summary
from trackd_services.ingest.domain import Chunk, merge, split_batch, summarize, to_chunks, unpack


def chunk(steps: list[int], values: list[float], stamps: list[int] | None = None) -> Chunk:
    message = ingest_pb2.MetricSeries(key="k", steps=steps, values=values, timestamps_ms=stamps or [])
    return to_chunks([message], now_ms=1000)[0]


def test_packing_round_trips_exactly() -> None:
    original = chunk([3, 1, 2], [math.nan, -math.inf, 0.1], [7, 8, 9])
    back = unpack(*original.packed()[:3])
    assert list(back.steps) == [3, 1, 2] and list(back.timestamps) == [7, 8, 9]
    assert math.isnan(back.values[0]) and back.values[1] == -math.inf and back.values[2] == 0.1


def test_missing_timestamps_take_the_server_time() -> None:
    assert list(chunk([0, 1], [1.0, 2.0]).timestamps) == [1000, 1000]


def test_summary_is_the_same_whatever_order_batches_arrive_in() -> None:
    batches = [chunk([0, 1], [5.0, 4.0], [1, 2]), chunk([2], [math.nan], [3]), chunk([3, 4], [1.0, 9.0], [4, 5])]
    results = set()
    for order in permutations(batches):
        total = None
        for c in order:
            total = merge(total, summarize(c))
        assert total is not None
        results.add((total.step, total.value, total.min, total.max, total.count))
    assert results == {(4, 9.0, 1.0, 9.0, 5)}


def test_summaries_survive_the_cache_encoding() -> None:
    s = summarize(chunk([0, 1], [math.inf, -math.inf], [1, 2]))
    assert decode_summary(encode_summary(s)) == s


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ([], "at least one series"),
        ([ingest_pb2.MetricSeries(key="", steps=[0], values=[1.0])], "must not be empty"),
        ([ingest_pb2.MetricSeries(key="k", steps=[0, 1], values=[1.0])], "same, non-zero length"),
        ([ingest_pb2.MetricSeries(key="k", steps=[], values=[])], "same, non-zero length"),
        ([ingest_pb2.MetricSeries(key="k", context=7, steps=[0], values=[1.0])], "unknown context"),
    ],
)
def test_bad_batches(series: list[ingest_pb2.MetricSeries], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        to_chunks(series)


def test_summary_takes_the_latest_timestamp_among_the_highest_steps_and_skips_nan() -> None:
    s = summarize(chunk([5, 9, 9, 2, 9], [1.0, math.nan, 7.0, -3.0, 2.0], [1, 30, 10, 5, 20]))
    assert (s.step, s.timestamp, math.isnan(s.value), s.min, s.max, s.count) == (9, 30, True, -3.0, 7.0, 5)
    only_nan = summarize(chunk([0, 1], [math.nan, math.nan], [1, 2]))
    assert math.isnan(only_nan.min) and math.isnan(only_nan.max) and only_nan.count == 2


def test_a_chunk_knows_its_series_position_in_the_batch() -> None:
    ok = ingest_pb2.MetricSeries(key="a", steps=[4, 2], values=[1.0, 2.0])
    bad = ingest_pb2.MetricSeries(key="", steps=[0], values=[1.0])
    chunks = to_chunks([ok]) + split_batch([bad, ok])[0]
    assert [c.source for c in chunks] == [0, 1] and (chunks[1].first_step, chunks[1].last_step) == (2, 4)
