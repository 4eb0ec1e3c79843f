"""The web service's pure gRPC-to-view conversions."""

from __future__ import annotations

import math

from trackd_api.artifact.v1 import artifact_pb2
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_services.web import views
from trackd_services.web.runs import render_markdown


def test_table_state_round_trips_through_the_url() -> None:
    table = views.TableQuery.parse({"filter": "metrics.a > 1", "order_by": "metrics.a DESC", "view": "all",
                                    "params": "lr, model,lr", "page_size": "25", "page_token": "abc"})
    assert table.params == ("lr", "model") and table.page_size == 25 and table.view_type == run_pb2.VIEW_TYPE_ALL
    url = table.url("/experiments/e")
    assert "page_token" not in url, "changing the view returns to the first page"
    again = views.TableQuery.parse(dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&")))
    assert again.view == "all" and again.page_size == 25
    assert "page_token=xyz" in table.url("/e", page_token="xyz")


def test_bad_table_state_falls_back_to_defaults() -> None:
    many = ",".join(f"k{i}" for i in range(500))
    table = views.TableQuery.parse({"view": "bogus", "page_size": "-3", "params": many})
    assert table.view == "active" and table.page_size == views.DEFAULT_PAGE_SIZE
    assert len(table.params) == views.MAX_COLUMNS


def test_sorting_toggles_and_starts_high_for_metrics() -> None:
    table = views.TableQuery()
    assert "metrics.loss+DESC" in table.sort_url("/e", "metrics.loss")
    assert "attributes.name+ASC" in table.sort_url("/e", "attributes.name")
    sorted_desc = views.TableQuery(order_by="metrics.loss DESC")
    assert "metrics.loss+ASC" in sorted_desc.sort_url("/e", "metrics.loss")
    assert sorted_desc.sort_mark("metrics.loss") == "▼" and sorted_desc.sort_mark("metrics.acc") == ""
    assert table.sort_mark("attributes.start_time") == "▼", "newest first by default"


def test_keys_with_odd_characters_are_quoted_for_the_grammar() -> None:
    assert views.quote_key("metrics", "train/loss") == "metrics.train/loss"
    assert views.quote_key("params", "a b`c") == "params.`a b``c`"


def test_values_durations_and_sizes_read_well() -> None:
    assert views.format_value(math.nan) == "NaN" and views.format_value(-math.inf) == "-Inf"
    assert views.format_value(0.123456) == "0.1235" and views.format_value(1.5e-7) == "1.5e-07"
    assert views.format_value(3.0) == "3"
    assert views.format_duration(1500) == "1.5s" and views.format_duration(3_725_000) == "1h 02m"
    assert views.format_bytes(1536) == "1.5 KiB" and views.format_bytes(12) == "12 B"


def test_filter_error_position_is_read_from_the_message() -> None:
    assert views.filter_error_position("expected a value at character 12 (near 'x')") == 12
    assert views.filter_error_position("page_token is malformed") is None


def test_charts_group_by_prefix_with_system_metrics_apart() -> None:
    latest = [query_pb2.LatestMetric(key=k, context=c) for k, c in [
        ("train/loss", 1), ("train/loss", 2), ("eval/acc", 0), ("lr", 0), ("system/cpu_percent", 0)]]
    groups = views.chart_groups(latest)
    assert list(groups.groups) == ["", "eval", "train"]
    assert groups.groups["train"][0].contexts == [1, 2]
    assert [c.key for c in groups.system] == ["system/cpu_percent"]
    assert groups.count == 3


def test_series_json_turns_nan_and_inf_into_gaps_listed_apart() -> None:
    series = ingest_pb2.MetricSeries(key="loss", context=ingest_pb2.METRIC_CONTEXT_EVAL, steps=[1, 2, 3, 4],
                                     values=[0.5, math.nan, math.inf, -math.inf], timestamps_ms=[10, 20, 30, 40])
    found = views.series_json(series, total_points=10, downsampled=True)
    assert found["values"] == [0.5, None, None, None] and found["context"] == "eval"
    assert found["special"] == [[2, "NaN"], [3, "+Inf"], [4, "-Inf"]]
    assert found["total"] == 10 and found["downsampled"]


def test_artifact_tree_lists_each_directory_once_before_its_files() -> None:
    artifacts = [artifact_pb2.Artifact(path=p, size_bytes=10) for p in ["b.txt", "d/x.png", "d/e/y.csv", "d/a.md"]]
    tree = views.artifact_tree(artifacts)
    assert [(e.path, e.depth, e.is_dir) for e in tree] == [
        ("b.txt", 0, False), ("d", 0, True), ("d/a.md", 1, False), ("d/e", 1, True), ("d/e/y.csv", 2, False),
        ("d/x.png", 1, False)]
    assert [e.preview for e in tree if not e.is_dir] == ["text", "markdown", "csv", "image"]


def test_markdown_never_lets_html_or_script_links_through() -> None:
    html = render_markdown("**bold** <script>alert(1)</script> <img src=x onerror=alert(1)> [x](javascript:alert(1))")
    assert "<strong>bold</strong>" in html
    assert "<script>" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html
