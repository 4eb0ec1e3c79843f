"""Reads of any size on the real stack: a series longer than one gRPC message can hold comes back
whole (every point, exactly) through get_metric_history and get_metric_histories, and with a
max_points above what one message holds; 5 runs of 3,000,000 points each read whole (the client's
peak memory printed)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import trackd
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

POINTS = 1_200_000  # past the ~985,000 points at which one GetMetricHistory answer failed


def value(step: int) -> float:
    return step * 0.5 - 7.25


def test_a_series_past_one_message_is_read_back_whole(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    with trackd.start_run(experiment=unique("long-reads"), system_metrics=False, capture_env=False) as run:
        for step in range(POINTS):
            run.log_metric("long", value(step), step=step, timestamp=1_700_000_000 + step / 1000)
        run.log_metric("short", 1.0, step=0)
        assert run.flush(120)
    started = time.monotonic()
    every = trackd.get_metric_history(run.id, "long")
    print(f"\n{len(every):,} points read in {time.monotonic() - started:.1f} s; client peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    assert len(every) == POINTS
    assert all(p.step == i and p.value == value(i) for i, p in enumerate(every))
    assert every[-1].timestamp == 1_700_000_000_000 + POINTS - 1
    del every

    # more than fits: every point; fewer: downsampled, keeping the first and the last
    assert [p.step for p in trackd.get_metric_history(run.id, "long", max_points=1_500_000)] == list(range(POINTS))
    thinned = trackd.get_metric_history(run.id, "long", max_points=400_000)
    assert 300_000 <= len(thinned) <= 400_000
    assert (thinned[0].step, thinned[-1].step) == (0, POINTS - 1)
    assert all(p.value == value(p.step) for p in thinned)
    window = trackd.get_metric_history(run.id, "long", start_step=999_000, end_step=1_150_000)
    assert [p.step for p in window] == list(range(999_000, 1_150_001))

    both = trackd.get_metric_histories([run.id], ["long", "short", "absent"], max_points=None)
    assert set(both) == {(run.id, "long"), (run.id, "short")}
    assert len(both[run.id, "long"]) == POINTS and both[run.id, "long"][-1].value == value(POINTS - 1)
    assert [p.value for p in both[run.id, "short"]] == [1.0]
    large = trackd.get_metric_histories([run.id], ["long"], max_points=1_500_000)
    assert len(large[run.id, "long"]) == POINTS


LONGEST = 3_000_000
RUNS = 5
BATCH = 100_000  # LogMetrics' limit per request


def _write_long_series(run_id: str) -> None:
    """LONGEST points of `long` in LogMetrics batches (the per-point SDK path would take minutes)."""
    stub = ingest_pb2_grpc.IngestServiceStub(trackd.Client().channel("ingest"))
    for first in range(0, LONGEST, BATCH):
        steps = range(first, first + BATCH)
        stub.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run_id, series=[ingest_pb2.MetricSeries(
            key="long", steps=steps, values=[value(s) for s in steps],
            timestamps_ms=[1_700_000_000_000 + s for s in steps])]), timeout=120)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.skipif(os.environ.get("TRACKD_TEST_LONG_READS") != "1",
                    reason="minutes and ~2.5 GiB of client memory: TRACKD_TEST_LONG_READS=1 runs it")
@pytest.mark.timeout(3600)
def test_a_3m_point_series_of_5_runs_is_read_back_whole(stack: EmbeddedStack,
                                                        unique: Callable[[str], str]) -> None:
    """Acceptance: a 3,000,000-point series read whole through get_metric_history, and 5 such runs
    through get_metric_histories; times and the client's peak RSS are printed (-s shows them).
    Opt-in (`TRACKD_TEST_LONG_READS=1 pytest -s tests/integration/test_long_reads.py`): it writes
    15,000,000 points and holds them all in the client at the end, beyond the suite's time budget."""
    experiment = unique("longest-reads")
    runs = [trackd.start_run(experiment, system_metrics=False, capture_env=False, console=False)
            for _ in range(RUNS)]
    started = time.monotonic()
    with ThreadPoolExecutor(RUNS) as pool:
        list(pool.map(_write_long_series, [r.id for r in runs]))
    written_s = time.monotonic() - started
    for run in runs:
        run.end()
    before = _peak_mib()
    print(f"\n{RUNS} runs × {LONGEST:,} points written in {written_s:.1f} s (LogMetrics, {BATCH:,} a request); "
          f"client peak RSS {before:.0f} MiB")

    started = time.monotonic()
    every = trackd.get_metric_history(runs[0].id, "long")
    one_s, after_one = time.monotonic() - started, _peak_mib()
    print(f"one series of {LONGEST:,} points read whole in {one_s:.1f} s; client peak RSS {after_one:.0f} MiB")
    assert len(every) == LONGEST
    assert all(p.step == i for i, p in enumerate(every))
    for i in (0, 1, 985_000, 2_999_999):
        assert every[i] == (i, value(i), 1_700_000_000_000 + i)
    del every

    started = time.monotonic()
    histories = trackd.get_metric_histories([r.id for r in runs], ["long"], max_points=None)
    all_s, after_all = time.monotonic() - started, _peak_mib()
    assert set(histories) == {(r.id, "long") for r in runs}
    for points in histories.values():
        assert len(points) == LONGEST and points[-1] == (LONGEST - 1, value(LONGEST - 1), 1_700_000_000_000
                                                         + LONGEST - 1)
        assert points[1_500_000].step == 1_500_000
    print(f"one series read whole in {one_s:.1f} s, {RUNS} in {all_s:.1f} s; client peak RSS "
          f"{before:.0f} MiB before the reads, {after_one:.0f} MiB after one, {after_all:.0f} MiB after {RUNS}")
