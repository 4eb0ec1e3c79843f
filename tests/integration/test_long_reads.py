"""Reads of any size on the real stack (issue 18, acceptance 3): 5 runs of 3,000,000 points each,
read whole through get_metric_history (one series) and get_metric_histories (all five), every
point exact; a max_points above what one message holds; a step window. The client's peak memory
during the reads is printed in the test output and held to what the arrays need.

The series are written with LogMetrics, 100,000 points a request, the requests' columns encoded with
numpy once for the five runs (the SDK's per-point `log_metric` would take minutes for 15,000,000
points; the write path has tests of its own)."""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import trackd
from trackd_api.ingest.v1 import ingest_pb2
from trackd_platform.stack import EmbeddedStack
from trackd_services.query.wire import series_message

pytestmark = pytest.mark.integration

LONGEST = 3_000_000
RUNS = 5
BATCH = 100_000  # LogMetrics' limit of points per request
EPOCH_MS = 1_700_000_000_000
MIB = 1024 * 1024


def values_of(steps: np.ndarray) -> np.ndarray:
    return steps * 0.5 - 7.25


def _batches() -> list[bytes]:
    """The series as serialized LogMetricsRequests without a run id, BATCH points each: encoded
    once for all the runs (a run id's serialized request prepended makes the request of that run)."""
    batches = []
    for first in range(0, LONGEST, BATCH):
        steps = np.arange(first, first + BATCH, dtype=np.int64)
        series = series_message("long", 0, steps, values_of(steps), steps + EPOCH_MS)
        batches.append(ingest_pb2.LogMetricsRequest(series=[series]).SerializeToString())
    return batches


def _write(run_id: str, batches: list[bytes]) -> None:
    client = trackd.Client()
    try:
        log_metrics = client.channel("ingest").unary_unary(  # the requests' bytes sent as they are
            "/trackd.ingest.v1.IngestService/LogMetrics", request_serializer=None,
            response_deserializer=ingest_pb2.LogMetricsResponse.FromString)
        head = ingest_pb2.LogMetricsRequest(run_id=run_id).SerializeToString()
        for batch in batches:  # serialized messages concatenated: one message with the fields of both
            assert log_metrics(head + batch, timeout=120).points_written == BATCH
    finally:
        client.close()


@dataclass(frozen=True)
class LongRuns:
    ids: list[str]
    written_s: float


@pytest.fixture(scope="module")
def long_runs(stack: EmbeddedStack) -> Iterator[LongRuns]:
    """RUNS ended runs with LONGEST points of `long` each; the first also has one point of `short`."""
    experiment = f"long-reads-{time.time_ns()}"
    runs = [trackd.start_run(experiment, system_metrics=False, capture_env=False, console=False)
            for _ in range(RUNS)]
    started = time.monotonic()
    batches = _batches()
    with ThreadPoolExecutor(RUNS) as pool:
        list(pool.map(_write, [r.id for r in runs], [batches] * RUNS))
    del batches
    written_s = time.monotonic() - started
    runs[0].log_metric("short", 1.0, step=0)
    for run in runs:
        run.end()
    yield LongRuns([r.id for r in runs], written_s)


def _rss_peak_mib() -> float:
    """This process's resident-set high-water mark since the last `_reset_rss_peak` (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def _reset_rss_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS


def assert_whole(history: trackd.MetricHistory) -> None:
    """Every point of a `long` series, exactly, in step order."""
    steps = np.arange(LONGEST, dtype=np.int64)
    assert len(history) == LONGEST
    assert np.array_equal(history.steps, steps)
    assert np.array_equal(history.values, values_of(steps))
    assert np.array_equal(history.timestamps, steps + EPOCH_MS)


def test_5_runs_of_3m_points_are_read_back_whole_in_bounded_client_memory(
        long_runs: LongRuns, figure: Callable[[str], None]) -> None:
    """Acceptance: a 3,000,000-point series read whole through get_metric_history, and 5 of them
    through get_metric_histories. The client holds numpy columns, 24 bytes a point: its peak
    Python-and-numpy heap (tracemalloc) stays within the arrays it returns plus one series'
    parts on top; its peak RSS (VmHWM) is printed beside it."""
    ids = long_runs.ids
    _reset_rss_peak()
    rss_before = _rss_peak_mib()
    tracemalloc.start()
    try:
        started = time.monotonic()
        one = trackd.get_metric_history(ids[0], "long")
        one_s, one_peak = time.monotonic() - started, tracemalloc.get_traced_memory()[1]
        assert_whole(one)
        del one
        tracemalloc.reset_peak()
        started = time.monotonic()
        histories = trackd.get_metric_histories(ids, ["long", "short", "absent"], max_points=None)
        all_s, all_peak = time.monotonic() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rss_peak = _rss_peak_mib()

    assert set(histories) == {(r, "long") for r in ids} | {(ids[0], "short")}
    assert [(p.step, p.value) for p in histories[ids[0], "short"]] == [(0, 1.0)]
    for run_id in ids:
        assert_whole(histories[run_id, "long"])
    held = sum(h.nbytes for h in histories.values())
    assert held == RUNS * LONGEST * 24 + 24
    series_bytes = LONGEST * 24
    figure(f"{RUNS} runs × {LONGEST:,} points written in {long_runs.written_s:.1f} s (LogMetrics, {BATCH:,} "
           f"a request); one series read whole in {one_s:.1f} s, client heap peak {one_peak / MIB:.0f} MiB "
           f"(its arrays: {series_bytes / MIB:.0f} MiB); {RUNS} series read whole in {all_s:.1f} s, client heap "
           f"peak {all_peak / MIB:.0f} MiB (the arrays held: {held / MIB:.0f} MiB); client RSS {rss_before:.0f} "
           f"MiB before the reads, peak {rss_peak:.0f} MiB during them")
    # the arrays returned, one series' parts and their joined copy (transiently), a little for the stream
    assert one_peak <= 2 * series_bytes + 32 * MIB
    assert all_peak <= held + 2 * series_bytes + 32 * MIB  # 5 × 3 M: ≤ 550 MiB; Point objects took ~2.5 GiB
    assert rss_peak - rss_before <= all_peak / MIB + 256


def test_max_points_past_one_message_and_a_window_of_a_long_series(long_runs: LongRuns) -> None:
    run_id = long_runs.ids[1]
    first, last = 1_000_000, 1_299_999  # a window of 300,000 points: past one message (100,000)
    window = trackd.get_metric_history(run_id, "long", start_step=first, end_step=last)
    assert np.array_equal(window.steps, np.arange(first, last + 1))
    assert window[0] == (first, values_of(np.int64(first)), EPOCH_MS + first)

    # a max_points above what the window holds: every point; below it: downsampled, first and last kept
    every = trackd.get_metric_history(run_id, "long", max_points=400_000, start_step=first, end_step=last)
    assert every == window
    thinned = trackd.get_metric_history(run_id, "long", max_points=200_000, start_step=first, end_step=last)
    assert 150_000 <= len(thinned) <= 200_000
    assert (thinned[0].step, thinned[-1].step) == (first, last)
    assert np.array_equal(thinned.values, values_of(thinned.steps))
    assert np.array_equal(thinned.timestamps, thinned.steps + EPOCH_MS)

