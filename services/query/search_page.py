"""A SearchRuns reply built straight from its page's rows (`QueryStore.search`), in place.

A page is 100 runs of ~20 params and ~10 latest metrics each: building `Run` records, datetimes
and separate messages that were then copied into the reply took about as long as the page's
query. Here each row fills its `SearchResult` where it stands: times come from PostgreSQL as
integer epoch microseconds (`*_us`), ids as UUIDs written as hex, params and tags in one map
update, latest metrics as one repeated-field append each. The messages are the ones
`run_records.run_to_proto` builds from the same run, environment packages left out
(tests/unit/test_query_search_page.py compares them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.json_format import ParseDict
from google.protobuf.timestamp_pb2 import Timestamp
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2

# A row of a page: the columns `store._PAGE_ROWS` selects, by name.
PageRow = Mapping[str, Any]
# The columns of a row's latest metrics, one array each, in LatestMetric's field order.
METRIC_COLUMNS = ("metric_keys", "contexts", "steps", "last_values", "stamps", "mins", "maxs", "counts")
_MICROS = 1_000_000


def search_reply(rows: Sequence[PageRow], token: str, *, now_us: int) -> query_pb2.SearchRunsResponse:
    """The reply for a page of rows, in their order. `now_us` (epoch microseconds) ends the
    duration of runs that have not ended."""
    response = query_pb2.SearchRunsResponse(next_page_token=token)
    add = response.results.add
    for row in rows:
        result = add()
        fill_run(result.run, row, now_us)
        add_latest(result.metrics, row)
    return response


def fill_run(run: run_pb2.Run, row: PageRow, now_us: int) -> None:
    """`run` (empty) as `run_to_proto` builds it: source, environment and the start and heartbeat
    times always set, the end time when the run has ended."""
    run.id = row["id"].hex
    run.experiment_id = row["experiment_id"].hex
    run.project_id = row["project_id"].hex
    run.name = row["name"]
    run.status = row["status"]
    start, end = row["start_us"], row["end_us"]
    _set_time(run.start_time, start)
    if end is not None:
        _set_time(run.end_time, end)
    # as timedelta.total_seconds() * 1000 truncates (run_records.Run.duration_ms)
    run.duration_ms = max(0, int(((now_us if end is None else end) - start) / _MICROS * 1000))
    if row["param_keys"]:
        run.params.update(zip(row["param_keys"], row["param_values"], strict=True))
    if row["tag_keys"]:
        run.tags.update(zip(row["tag_keys"], row["tag_values"], strict=True))
    run.notes = row["notes"]
    run.source.SetInParent()  # present even when empty, as run_to_proto sets it
    if row["source"]:
        ParseDict(row["source"], run.source, ignore_unknown_fields=True)
    run.environment.SetInParent()
    if row["environment"]:
        ParseDict(row["environment"], run.environment, ignore_unknown_fields=True)
    if row["parent_run_id"] is not None:
        run.parent_run_id = row["parent_run_id"].hex
    run.user = row["user_name"]
    run.deleted = row["deleted"]
    _set_time(run.last_heartbeat_time, row["heartbeat_us"])


def add_latest(into: Any, row: PageRow) -> None:
    """A row's latest metrics appended to the repeated LatestMetric field `into`, in row order."""
    add = into.add
    for key, context, step, value, stamp, low, high, count in zip(*(row[c] or () for c in METRIC_COLUMNS),
                                                                   strict=True):
        add(key=key, context=context, step=step, value=value, timestamp_ms=stamp, min=low, max=high, count=count)


def _set_time(field: Timestamp, micros: int) -> None:
    seconds, rest = divmod(micros, _MICROS)
    field.seconds = seconds
    field.nanos = rest * 1000
    field.SetInParent()  # present even at the epoch itself
