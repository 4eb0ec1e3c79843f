"""A whole-series export resumes after its call ends mid-way (the server ends a slow reader's call):
every point once, in order; a downsampled export, or a call that made no progress, is not resumed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from trackd._query import _export
from trackd.errors import Unavailable
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2


class _Ended(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the client took no message for 3 s"


class _Query:
    """ExportMetric over steps 0–9 in parts of 2; each call ends after `parts_per_call` parts."""

    def __init__(self, parts_per_call: int) -> None:
        self.parts_per_call, self.starts = parts_per_call, []

    def ExportMetric(self, request: query_pb2.ExportMetricRequest, timeout: float) -> Iterator[Any]:  # noqa: N802
        start = request.start_step if request.HasField("start_step") else 0
        self.starts.append(start)
        for sent, first in enumerate(range(start, 10, 2)):
            if sent == self.parts_per_call:
                raise _Ended()
            steps = list(range(first, min(first + 2, 10)))
            yield query_pb2.ExportMetricResponse(series=ingest_pb2.MetricSeries(
                key="k", steps=steps, values=[float(s) for s in steps], timestamps_ms=steps))


class _Client:
    def __init__(self, query: _Query) -> None:
        self.query = query
        self.settings = type("S", (), {"target": staticmethod(lambda service: "here")})()


def test_a_whole_export_resumes_after_the_last_step_received() -> None:
    query = _Query(parts_per_call=2)
    parts = list(_export(_Client(query), query_pb2.ExportMetricRequest(run_id="r", key="k")))  # type: ignore[arg-type]
    assert [p.step for part in parts for p in part] == list(range(10))
    assert query.starts == [0, 4, 8]


def test_no_resume_without_progress_or_for_a_downsampled_export() -> None:
    with pytest.raises(Unavailable):
        list(_export(_Client(_Query(parts_per_call=0)), query_pb2.ExportMetricRequest(run_id="r", key="k")))  # type: ignore[arg-type]
    query = _Query(parts_per_call=1)
    with pytest.raises(Unavailable):
        list(_export(_Client(query), query_pb2.ExportMetricRequest(run_id="r", key="k", max_points=5)))  # type: ignore[arg-type]
    assert query.starts == [0]
