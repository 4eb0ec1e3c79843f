"""Reads of any size on the real stack: a series longer than one gRPC message can hold comes back
whole (every point, exactly) through get_metric_history and get_metric_histories, and with a
max_points above what one message holds."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import pytest
import trackd
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
