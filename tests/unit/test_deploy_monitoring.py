"""deploy/base/monitoring: the Prometheus alert rules and the Grafana dashboard parse, cover what
issue 7 asks for, and name only series the code exports.

PromQL is parsed with `promql-parser` (the Rust parser behind GreptimeDB, as a wheel). The series
the code exports are read from its source: every `prometheus_client.Counter / Gauge / Histogram`
created with a literal `trackd_*` name under libs/ and services/ (the hpo service's and the web
UI's included: services/web defines its `trackd_web_*` series the same way).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from trackd_platform.config import SERVICES

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "base" / "monitoring"
SUFFIXES = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count")}
BUILTIN = {"up"}  # Prometheus' own per-target series


def exported_series() -> set[str]:
    """Series names `/metrics` can show, from the metric constructors in the code."""
    found = set()
    for path in [*(ROOT / "libs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        if "trackd_api" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            kind = node.func.attr
            names = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "name")]
            if kind in SUFFIXES and names and isinstance(names[0], ast.Constant):
                name = str(names[0].value)
                if name.startswith("trackd_"):
                    base = name.removesuffix("_total") if kind == "Counter" else name
                    found |= {base + suffix for suffix in SUFFIXES[kind]}
    return found


def series_in(expr: str) -> set[str]:
    promql_parser.parse(expr)  # raises ValueError with the position on a syntax error
    # metric names: identifiers not followed by `(` (functions) and not label names (`name=`)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?=\s*[{\[)\s]|$)", _strip_labels(expr)))
    return {n for n in names if n.startswith("trackd_") or n in BUILTIN}


def _strip_labels(expr: str) -> str:
    """`expr` without label matchers, strings, `by (...)` / `without (...)` lists and durations."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return re.sub(r"\[[^\]]*\]", "[]", expr)


def grafana_to_promql(expr: str) -> str:
    """A Grafana panel query with its dashboard variables filled in, as Prometheus would get it."""
    return expr.replace("$__rate_interval", "5m").replace("$service", ".*")


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    found = [rule for group in data["groups"] for rule in group["rules"]]
    assert found, "alerts.yaml has no rules"
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return data


@pytest.fixture(scope="module")
def exported() -> set[str]:
    found = exported_series()
    # the edge interceptor's series: if this fails, the reader above is what broke
    assert {"trackd_rpc_total", "trackd_rpc_seconds_bucket"} <= found, sorted(found)
    return found


def test_the_series_reader_reads_promql() -> None:
    assert series_in('sum by (service) (rate(trackd_rpc_total{code!="OK"}[5m])) / up') == {"trackd_rpc_total", "up"}
    assert series_in("histogram_quantile(0.99, sum by (le) (rate(trackd_rpc_seconds_bucket[5m])))") == {
        "trackd_rpc_seconds_bucket"
    }
    with pytest.raises(ValueError):
        series_in("rate(trackd_rpc_total[5m)")


def test_every_rule_is_a_well_formed_alert(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{rule['alert']}: `for` {rule.get('for')!r}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_expression_parses_and_names_exported_series(
    rules: list[dict[str, Any]], dashboard: dict[str, Any], exported: set[str]
) -> None:
    expressions = {f"alert {r['alert']}": r["expr"] for r in rules}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expressions[f"panel {panel['title']!r} {target['refId']}"] = grafana_to_promql(target["expr"])
    for where, expr in expressions.items():
        try:
            names = series_in(expr)
        except ValueError as exc:
            pytest.fail(f"{where}: PromQL does not parse: {exc}\n{expr}")
        assert names, f"{where}: names no series"
        unknown = names - exported - BUILTIN
        assert not unknown, f"{where}: {sorted(unknown)} are exported by no metric in libs/ or services/"


@pytest.mark.parametrize(
    ("topic", "series"),
    [
        ("a service down", {"up"}),
        ("run failure rate", {"trackd_runs_ended_total"}),
        ("outbox backlog growing", {"trackd_outbox_backlog"}),
        ("ingest errors", {"trackd_rpc_total"}),
        ("web UI server errors", {"trackd_web_requests_total"}),
    ],
)
def test_the_alerts_issue_7_asks_for_exist(rules: list[dict[str, Any]], topic: str, series: set[str]) -> None:
    matching = [r["alert"] for r in rules if series <= series_in(r["expr"])]
    assert matching, f"no alert on {topic} (uses {series})"
    if topic == "ingest errors":
        assert any("IngestService" in r["expr"] for r in rules if r["alert"] in matching)
    if topic == "web UI server errors":
        assert any(re.search(r'status=~"5', r["expr"]) for r in rules if r["alert"] in matching), matching


def test_an_alert_fires_when_any_service_has_no_pod_scraped(rules: list[dict[str, Any]]) -> None:
    """`up` with no series at all (no pod, or the scrape job drops them) is caught per service."""
    absent = {
        service for rule in rules
        for service in re.findall(r'absent\(up\{[^}]*service="([a-z]+)"[^}]*\}\)', rule["expr"])
    }
    assert absent == {*SERVICES, "web"}, f"absent(up{{service=...}}) covers {sorted(absent)}"


def test_the_dashboard_shows_what_issue_7_lists(dashboard: dict[str, Any]) -> None:
    shown: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            shown |= series_in(grafana_to_promql(target["expr"]))
    wanted = {
        "trackd_rpc_total",  # requests by method and status
        "trackd_rpc_seconds_bucket",  # latency histograms
        "trackd_ingest_points_total",  # points/s
        "trackd_ingest_batch_points_bucket",  # batch sizes
        "trackd_outbox_backlog",
        "trackd_hpo_ready_trials",  # trial queue depth
        "trackd_hpo_lease_expiries_total",
        "trackd_query_latest_cache_total",  # cache hit rate
    }
    assert wanted <= shown, f"the dashboard does not show {sorted(wanted - shown)}"


def test_the_dashboard_shows_the_web_ui(dashboard: dict[str, Any]) -> None:
    shown: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in series_in(grafana_to_promql(target["expr"])):
                shown.setdefault(name, set()).add(target["expr"])
    wanted = {
        "trackd_web_requests_total": "by (status)",  # request rate by status
        "trackd_web_request_seconds_bucket": "histogram_quantile(0.95",  # p95 latency
        "trackd_web_live_viewers": "",
        "trackd_web_live_subscriptions": "",
    }
    for name, shape in wanted.items():
        assert any(shape in expr for expr in shown.get(name, ())), (
            f"no dashboard query shows {name} ({shape or 'any'}): {sorted(shown.get(name, ()))}"
        )


def test_the_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        used = set(re.findall(r"\$(\w+)", json.dumps(panel["targets"]))) - {"__rate_interval"}
        assert used <= variables, f"{panel['title']}: undefined variables {used - variables}"
