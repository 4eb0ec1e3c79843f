"""The compare module's pure parts: run id lists, CompareRuns → the page, the experiment page's
panel state and CSV link."""

from __future__ import annotations

import uuid

import pytest
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_services.web import views
from trackd_services.web.compare import (
    MAX_COMPARED,
    compare_view,
    experiment_panel,
    lower_is_better,
    parse_run_ids,
    run_id_filter,
)


def test_run_ids_keep_their_order_without_duplicates() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert parse_run_ids(f" {a.hex},{b},{a}, {a.hex.upper()}") == [a.hex, b.hex]


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "at least 2"), (uuid.UUID(int=1).hex, "at least 2"), (f"{uuid.UUID(int=2)},nope", "'nope' is not a run id"),
    (",".join(uuid.UUID(int=i).hex for i in range(MAX_COMPARED + 1)), f"At most {MAX_COMPARED} runs"),
])
def test_bad_run_id_lists_are_400_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(HTTPException) as caught:
        parse_run_ids(raw)
    assert caught.value.status_code == 400 and reason in caught.value.detail


def test_the_filter_names_exactly_the_runs() -> None:
    assert run_id_filter(["a1", "b2"]) == "attributes.run_id IN ('a1', 'b2')"


def test_compare_view_marks_differences_and_the_best_value() -> None:
    found = query_pb2.CompareRunsResponse(
        runs=[run_pb2.Run(id="r1", name="one", status=run_pb2.RUN_STATUS_FINISHED), run_pb2.Run(id="r2")],
        params=[query_pb2.ComparedParam(key="lr", differs=True, values=[
                    query_pb2.ParamCell(present=True, value="0.1"), query_pb2.ParamCell(present=False)]),
                query_pb2.ComparedParam(key="model", values=[
                    query_pb2.ParamCell(present=True, value="m"), query_pb2.ParamCell(present=True, value="m")])],
        metrics=[query_pb2.ComparedMetric(key="val/loss", context=ingest_pb2.METRIC_CONTEXT_EVAL, differs=True, values=[
                     query_pb2.MetricCell(present=True, value=0.5), query_pb2.MetricCell(present=True, value=0.25)]),
                 query_pb2.ComparedMetric(key="system/cpu", differs=True, values=[
                     query_pb2.MetricCell(present=True, value=1.0), query_pb2.MetricCell(present=False)])])
    view = compare_view(found)
    assert [r["name"] for r in view["runs"]] == ["one", "r2"]  # a run without a name: its id's start
    assert [(p["key"], p["differs"], p["values"]) for p in view["params"]] == [
        ("lr", True, ["0.1", ""]), ("model", False, ["m", "m"])]
    loss = view["metrics"][0]
    assert (loss["label"], loss["best"], loss["values"]) == ("val/loss@eval", 0.25, ["0.5", "0.25"])
    assert [m["label"] for m in view["charts"]] == ["val/loss@eval"]  # system metrics are not charted
    assert view["data"]["metrics"]["system/cpu"] == [1.0, None]


def test_lower_is_better_for_losses_and_errors_only() -> None:
    assert lower_is_better("train/loss") and lower_is_better("val_error")
    assert not lower_is_better("eval/acc") and not lower_is_better("loss_scale/acc")


def test_the_experiment_panel_reads_its_state_and_links_the_csv_of_the_search() -> None:
    keys = query_pb2.ListRunKeysResponse(param_keys=["lr", "optimizer"], metric_keys=[
        query_pb2.MetricKey(key="acc", context=ingest_pb2.METRIC_CONTEXT_EVAL), query_pb2.MetricKey(key="loss")])
    table = views.TableQuery.parse({"filter": "params.lr > 0", "order_by": "metrics.acc DESC", "page_size": "25"})
    found = experiment_panel(QueryParams("chart=acc&ctx=eval&group=optimizer"), keys, "/experiments/e", table)
    assert (found["overlay"]["key"], found["overlay"]["context"], found["overlay"]["group"]) == ("acc", "eval",
                                                                                                 "optimizer")
    assert [m["label"] for m in found["overlay"]["metrics"]] == ["acc@eval", "loss"]
    assert found["csv_url"] == "/experiments/e/runs.csv?filter=params.lr+%3E+0&order=metrics.acc+DESC"
    unknown = experiment_panel(QueryParams("chart=nope&group=nope"), keys, "/experiments/e", views.TableQuery())
    assert (unknown["overlay"]["key"], unknown["overlay"]["group"], unknown["csv_url"]) == ("", "",
                                                                                            "/experiments/e/runs.csv")
