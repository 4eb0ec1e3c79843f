"""SearchRuns' reply built from page rows (search_page.py) holds the messages run_to_proto and
the latest-metric messages built before it (from a `Run` and summary tuples), byte for byte in
protobuf's deterministic (key-ordered) serialization."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from trackd_api.query.v1 import query_pb2
from trackd_platform.run_records import Run, RunStatus, run_to_proto
from trackd_platform.vocabulary import MetricContext
from trackd_services.query.search_page import METRIC_COLUMNS, search_reply

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 5, 30, 0, 250_001, tzinfo=UTC)
SOURCE = {"repository": "git@example.com:lab/model.git", "commit": "ab12" * 10, "branch": "main", "dirty": True,
          "entry_point": "train.py", "future_field": 3}
ENVIRONMENT = {"python_version": "3.12.1", "platform": "Linux-6.1-x86_64", "hostname": "gpu-7", "cpu_count": 32,
               "memory_bytes": 270_000_000_000, "gpus": [{"model": "A100", "memory_bytes": 85_000_000_000}],
               "frameworks": {"torch": "2.4.0"}, "cuda_version": "12.4", "unknown": "ignored"}


def _micros(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // timedelta(microseconds=1)


def _row(run: Run, metrics: list[tuple[str, int, int, float, int, float, float, int]]) -> dict[str, Any]:
    """The page query's row for `run` (what PostgreSQL sends for it: NULL arrays when it has none)."""
    columns = list(zip(*metrics, strict=True)) if metrics else [None] * len(METRIC_COLUMNS)
    return {
        "id": run.id, "experiment_id": run.experiment_id, "project_id": run.project_id, "name": run.name,
        "status": int(run.status), "start_us": _micros(run.start_time), "end_us": _micros(run.end_time),
        "heartbeat_us": _micros(run.last_heartbeat), "parent_run_id": run.parent_run_id, "user_name": run.user,
        "source": run.source, "deleted": run.deleted, "notes": run.notes, "environment": run.environment,
        "param_keys": list(run.params) or None, "param_values": list(run.params.values()) or None,
        "tag_keys": list(run.tags) or None, "tag_values": list(run.tags.values()) or None,
        **{name: list(values) if values else None for name, values in zip(METRIC_COLUMNS, columns, strict=True)},
    }


def _page() -> list[tuple[Run, list[tuple[str, int, int, float, int, float, float, int]]]]:
    """A realistic page: finished runs of 20 params and 10 metrics (the bench's), and the odd ones."""
    experiment, project = uuid.uuid4(), uuid.uuid4()
    page = []
    for i in range(30):
        start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC) + timedelta(minutes=i, microseconds=i * 37_011)
        end = start + timedelta(hours=1, microseconds=i * 999)
        run = Run(id=uuid.uuid4(), experiment_id=experiment, project_id=project, name=f"run-{i}",
                  status=RunStatus.FINISHED, start_time=start, end_time=end, last_heartbeat=end, parent_run_id=None,
                  user="bench", notes="", source={}, environment={}, deleted=False,
                  params={f"p{k}": f"v{(i * k) % 10}" for k in range(20)})
        metrics = [(f"m{k}", 0, 0, (i * 7 + k) / 97, _micros(end) // 1000, (i + k) / 97, (i + k) / 97, 1)
                   for k in range(10)]
        page.append((run, metrics))
    odd = [
        # everything set: tags, notes, source, environment, a parent, deleted, several contexts, NaN
        Run(id=uuid.uuid4(), experiment_id=experiment, project_id=project, name="ünïcode ✓ run",
            status=RunStatus.FAILED, start_time=datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
            end_time=datetime(2000, 1, 1, tzinfo=UTC), last_heartbeat=datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC),
            parent_run_id=uuid.uuid4(), user="ada", notes="# Notes\nwith *markdown*", source=SOURCE,
            environment=ENVIRONMENT, deleted=True, params={"lr": "1e-4", "": "empty key"},
            tags={"priority": "p0", "mlflow.runName": "x"}),
        # at the epoch itself, ending before it started (duration 0), nothing logged
        Run(id=uuid.uuid4(), experiment_id=experiment, project_id=project, name="epoch",
            status=RunStatus.KILLED, start_time=EPOCH, end_time=EPOCH - timedelta(microseconds=1),
            last_heartbeat=EPOCH, parent_run_id=None, user="", notes="", source={}, environment={}, deleted=False),
        # still running: its duration runs to now
        Run(id=uuid.uuid4(), experiment_id=experiment, project_id=project, name="running",
            status=RunStatus.RUNNING, start_time=NOW - timedelta(seconds=12.3456789), end_time=None,
            last_heartbeat=NOW, parent_run_id=None, user="bob", notes="", source={"branch": "dev"},
            environment={}, deleted=False, tags={"t": "1"}),
    ]
    odd_metrics = [("acc", 2, 7, math.nan, 1, math.nan, math.nan, 3), ("acc", 3, -5, -0.0, -1, -math.inf, math.inf, 1),
                   ("loss", 1, 2**62, 1e-300, 2**40, 5e-324, 1.7976931348623157e308, 2**40)]
    page[3:3] = [(odd[0], odd_metrics), (odd[1], []), (odd[2], odd_metrics[:1])]
    return page


def _before(page: list[tuple[Run, list[tuple[str, int, int, float, int, float, float, int]]]], token: str
            ) -> query_pb2.SearchRunsResponse:
    """The reply as SearchRuns built it from `Run` records (run_to_proto) before search_page.py."""
    response = query_pb2.SearchRunsResponse(next_page_token=token)
    for run, metrics in page:
        result = response.results.add(run=run_to_proto(run))
        result.run.environment.ClearField("packages")
        for key, context, step, value, stamp, low, high, count in metrics:
            result.metrics.add(key=key, context=MetricContext(context).proto, step=step, value=value,
                               timestamp_ms=stamp, min=low, max=high, count=count)
    return response


@pytest.mark.parametrize("token", ["", "next-page-token"])
def test_the_reply_from_rows_is_the_reply_from_runs_byte_for_byte(token: str) -> None:
    page = _page()
    built = search_reply([_row(run, metrics) for run, metrics in page], token, now_us=_micros(NOW) or 0)
    expected = _before(page, token)
    running = expected.results[5].run
    assert running.name == "running" and not running.HasField("end_time")
    running.duration_ms = page[5][0].duration_ms(NOW)  # run_to_proto reads the clock itself
    # map entries are written in hash-table order, which a copy of the same message changes too
    # (the old path's own copy of run_to_proto's message did): compared in key order
    assert built.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert query_pb2.SearchRunsResponse.FromString(built.SerializeToString()) == expected
    assert built.results[5].run.duration_ms == 12_345
    assert built.results[4].run.HasField("start_time") and built.results[4].run.HasField("source")


def test_an_empty_page_is_only_its_token() -> None:
    assert search_reply([], "t", now_us=0) == query_pb2.SearchRunsResponse(next_page_token="t")


def test_every_latest_metric_lands_on_its_run() -> None:
    """A page that starts and ends with runs without metrics, keys of 1 and 250 bytes and
    non-ASCII ones, every context, steps and counts of every varint length, negative ones."""
    page = _page()[:3]
    long_key, unicode_key = "k" * 250, "ünïcode ✓ métrique"
    steps = [0, 1, 127, 128, 2**14, 2**35, 2**56 - 1, 2**56, 2**63 - 1, -1, -(2**63)]
    metrics = [(long_key if i % 3 == 0 else unicode_key if i % 3 == 1 else "x", i % 4, step,
                float(i) / 3, step, -float(i), math.inf, max(step, 0)) for i, step in enumerate(steps)]
    page = [(page[0][0], []), (page[1][0], metrics), (page[2][0], metrics[:1])]
    bare = replace(page[0][0], id=uuid.uuid4())
    page.append((bare, []))
    built = search_reply([_row(run, m) for run, m in page], "", now_us=0)
    assert [len(r.metrics) for r in built.results] == [0, len(steps), 1, 0]
    assert built == _before(page, "")
    assert built.results[1].metrics[0].key == long_key and built.results[1].metrics[1].key == unicode_key
    assert [m.step for m in built.results[1].metrics] == steps
