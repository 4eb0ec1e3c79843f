"""Comparing runs in a real headless Chromium against the real stack: the compare page (params
that differ, a line per run, brushing parallel coordinates), the experiment page's Compare button
and charts panel, the CSV downloads, and bad input as 400/404 pages.

One stack (the session's) and one browser page for the module; the runs are logged once."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import trackd
from playwright.sync_api import Browser, expect
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.stack import EmbeddedStack

from tests.ui.conftest import Watched

pytestmark = pytest.mark.ui


def log_series(run_id: str, series: dict[str, tuple[list[int], list[float]]]) -> None:
    """LogMetrics straight to ingest, every series in one call: when it returns, the points are
    committed (acknowledged)."""
    now = int(time.time() * 1000)
    with grpc.insecure_channel(os.environ["TRACKD_INGEST_TARGET"]) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run_id, series=[
            ingest_pb2.MetricSeries(key=key, steps=steps, values=values, timestamps_ms=[now + s for s in steps])
            for key, (steps, values) in series.items()]), timeout=10)


@dataclass
class Runs:
    experiment_id: str
    ids: list[str]  # in the order they were started
    params: list[dict[str, object]]


@pytest.fixture(scope="module")
def three(stack: EmbeddedStack) -> Runs:
    """Three runs: lr and optimizer differ, batch_size and model do not; train/loss of 100 steps."""
    name = f"cmp-{uuid.uuid4().hex[:6]}"
    params: list[dict[str, object]] = [
        {"lr": 1e-4, "batch_size": 64, "optimizer": "adamw", "model": "resnet50"},
        {"lr": 3e-4, "batch_size": 64, "optimizer": "adamw", "model": "resnet50"},
        {"lr": 1e-2, "batch_size": 64, "optimizer": "sgd", "model": "resnet50"}]
    ids = []
    for i, p in enumerate(params):
        run = trackd.start_run(experiment=name, name=f"{name}-r{i}", params=p, system_metrics=False)
        steps = list(range(100))
        log_series(run.id, {"train/loss": (steps, [2.0 / (1 + s * (i + 1) / 10) for s in steps]),
                            "val_acc": ([0, 50, 99], [0.5, 0.6 + 0.05 * i, 0.7 + 0.05 * i])})
        run.end()
        ids.append(run.id)
    return Runs(trackd.get_run(ids[0]).experiment_id, ids, params)


@pytest.fixture(scope="module")
def sweep(stack: EmbeddedStack) -> Runs:
    """A realistic sweep of eight runs for the screenshots and the grouped panel."""
    rng = np.random.default_rng(11)
    name = f"vit-sweep-{uuid.uuid4().hex[:4]}"
    ids, params = [], []
    grid = [(3e-4, 64, "adamw", 0.1), (1e-3, 64, "adamw", 0.1), (3e-3, 128, "sgd", 0.0), (1e-4, 32, "adamw", 0.2),
            (1e-3, 128, "lion", 0.1), (3e-4, 256, "sgd", 0.2), (3e-4, 128, "lion", 0.0), (1e-3, 32, "sgd", 0.1)]
    for i, (lr, batch, optimizer, dropout) in enumerate(grid):
        p: dict[str, object] = {"lr": lr, "batch_size": batch, "optimizer": optimizer, "dropout": dropout,
                                "model": "vit-b16", "epochs": 30}
        run = trackd.start_run(experiment=name, project="vision", name=f"vit-{optimizer}-lr{lr:g}-bs{batch}",
                               params=p, system_metrics=False)
        steps = np.arange(0, 3000, 10)
        speed = 350 + 140 * i
        loss = 2.2 * np.exp(-steps / speed) + 0.3 + 0.02 * i + rng.normal(0, 0.04, len(steps))
        acc = 0.88 - 0.7 * np.exp(-steps / (speed * 1.3)) - 0.015 * i + rng.normal(0, 0.012, len(steps))
        log_series(run.id, {"train/loss": (steps.tolist(), loss.tolist()), "train/acc": (steps.tolist(), acc.tolist()),
                            "eval/loss": (steps[::15].tolist(), (loss[::15] + 0.08).tolist()),
                            "eval/acc": (steps[::15].tolist(), (acc[::15] - 0.03).tolist())})
        run.end()
        ids.append(run.id)
        params.append(p)
    return Runs(trackd.get_run(ids[0]).experiment_id, ids, params)


@pytest.fixture(scope="module")
def shared(stack: EmbeddedStack, browser: Browser) -> Iterator[Watched]:
    """One page for the module (the tests visit different URLs in turn)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    watched = Watched(page, stack.web_url)
    page.on("dialog", lambda dialog: (watched.dialogs.append(f"{dialog.type}: {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    yield watched
    context.close()
    assert not watched.errors and not watched.dialogs


def compare_url(ids: list[str], extra: str = "") -> str:
    return f"/compare?runs={','.join(ids)}{extra}"


def test_the_compare_page_marks_exactly_the_params_that_differ(shared: Watched, three: Runs) -> None:
    assert shared.goto(compare_url(three.ids)) == 200
    page = shared.page
    marked = page.locator("#params-table tbody tr.differs").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert sorted(marked) == ["lr", "optimizer"]
    assert sorted(page.locator("#params-table tbody tr.same").evaluate_all("rows => rows.map(r => r.dataset.key)")) \
        == ["batch_size", "model"]
    # the columns are the runs, in the link's order; latest metrics side by side
    assert [h.strip() for h in page.locator("#params-table th.run-col").all_inner_texts()] == \
        [f"{trackd.get_run(i).name}" for i in three.ids]
    expect(page.locator("#metrics-table tr[data-key='val_acc'] td.num")).to_have_text(["0.7", "0.75", "0.8"])

    page.check("#diff-only")
    expect(page.locator("#params-table tbody tr:visible")).to_have_count(2)
    assert page.locator("#params-table tbody tr:visible").evaluate_all("rows => rows.map(r => r.dataset.key)") \
        == ["lr", "optimizer"]
    expect(page).to_have_url(re.compile(r"diff=1"))
    page.reload()  # the switch is in the URL
    expect(page.locator("#params-table tbody tr:visible")).to_have_count(2)
    expect(page.locator("#diff-only")).to_be_checked()


def test_each_chart_has_one_line_per_run_and_the_smoothing_is_in_the_url(shared: Watched, three: Runs) -> None:
    assert shared.goto(compare_url(three.ids)) == 200
    page = shared.page
    page.wait_for_selector("body[data-charts-ready='1']")
    charts = page.locator("#charts figure.chart")
    assert sorted(charts.evaluate_all("els => els.map(e => e.dataset.key)")) == ["train/loss", "val_acc"]
    assert charts.evaluate_all("els => els.map(e => e.dataset.lines)") == ["3", "3"]
    assert page.locator("figure.chart[data-key='train/loss']").get_attribute("data-points") == "300"
    loss = page.locator("figure.chart[data-key='train/loss']")
    with page.expect_download() as svg:
        loss.locator(".chart-actions button", has_text="SVG").click()
    drawing = Path(svg.value.path()).read_text()
    assert drawing.startswith("<svg") and drawing.count("<path ") == 3 and trackd.get_run(three.ids[2]).name in drawing
    with page.expect_download() as png:
        loss.locator(".chart-actions button", has_text="PNG").click()
    assert Path(png.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.locator("#smoothing").evaluate("e => { e.value = '0.6'; e.dispatchEvent(new Event('input')); }")
    expect(page).to_have_url(re.compile(r"smooth=0\.6"))
    page.reload()
    page.wait_for_selector("body[data-charts-ready='1']")
    expect(page.locator("#smoothing-value")).to_have_text("0.6")
    assert charts.evaluate_all("els => els.map(e => e.dataset.lines)") == ["3", "3"]


def test_brushing_a_parallel_coordinates_axis_narrows_the_highlighted_runs(shared: Watched, three: Runs) -> None:
    assert shared.goto(compare_url(three.ids, "&metric=val_acc")) == 200
    page = shared.page
    page.wait_for_selector("#compare[data-ready='1']")
    canvas = page.locator("#parcoords canvas")
    expect(canvas).to_have_attribute("data-highlighted", "3")
    axes = page.request.get(shared.base + f"/api/compare/parcoords?runs={','.join(three.ids)}"
                            f"&experiments={three.experiment_id}&metric=val_acc").json()["axes"]
    assert [a["name"] for a in axes] == ["batch_size", "lr", "model", "optimizer", "val_acc"]
    names = json.loads(canvas.get_attribute("data-axes") or "[]")
    assert names == ["lr", "optimizer", "val_acc"], "the params with one value are left out"
    canvas.scroll_into_view_if_needed()  # the mouse acts in the viewport
    box = canvas.bounding_box()
    assert box is not None
    # the geometry of parcoords.js: axes spread between 56 px from the left and 84 px from the right,
    # values between 34 px from the top and 26 px from the bottom; lr spans 1e-4 … 1e-2 on a log axis
    x = box["x"] + 56 + (box["width"] - 56 - 84) * names.index("lr") / (len(names) - 1)
    top, bottom = box["y"] + 34, box["y"] + box["height"] - 26
    page.mouse.move(x, top - 2)
    page.mouse.down()
    page.mouse.move(x, (top + bottom) / 2, steps=5)  # the upper half: lr above 1e-3, only the third run
    page.mouse.up()
    expect(canvas).to_have_attribute("data-highlighted", "1")
    expect(page.locator("#compare")).to_have_attribute("data-highlighted", three.ids[2])
    expect(page.locator("#highlight-count")).to_have_text("1 of 3 runs highlighted")
    expect(page.locator("#run-legend li.dim")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"b\.lr="))
    page.reload()  # the brush is in the URL
    page.wait_for_selector("#compare[data-ready='1']")
    expect(canvas).to_have_attribute("data-highlighted", "1")
    page.click("#clear-brushes")
    expect(page.locator("#highlight-count")).to_have_text("3 of 3 runs highlighted")


def test_the_experiment_pages_compare_button_opens_the_selected_runs(shared: Watched, three: Runs) -> None:
    assert shared.goto(f"/experiments/{three.experiment_id}") == 200
    page = shared.page
    shown = page.locator("#runs-table tbody tr[data-run-id]").evaluate_all("rows => rows.map(r => r.dataset.runId)")
    assert sorted(shown) == sorted(three.ids)
    for run_id in shown[:2]:
        page.check(f"input[name=run_ids][value='{run_id}']")
    page.click("#compare-selected")
    expect(page).to_have_url(shared.base + compare_url(shown[:2]))
    expect(page.locator("h1.page-title")).to_have_text("Compare 2 runs")


def test_the_charts_panel_groups_runs_by_a_param_with_a_band(shared: Watched, sweep: Runs) -> None:
    path = f"/experiments/{sweep.experiment_id}?chart=train/loss&group=optimizer"
    assert shared.goto(path) == 200
    page = shared.page
    figure = page.locator("#overlay-chart")
    expect(figure).to_have_attribute("data-ready", "1")
    expect(figure).to_have_attribute("data-bands", "3")  # adamw, lion, sgd
    expect(page.locator("#overlay-legend")).to_contain_text("optimizer = sgd · 3 runs")
    found = page.request.get(shared.base + f"/api/experiments/{sweep.experiment_id}/overlay?key=train/loss"
                             f"&group=optimizer&runs={','.join(sweep.ids)}").json()
    by_value = {g["value"]: g for g in found["groups"]}
    assert sorted(by_value) == ["adamw", "lion", "sgd"]
    assert sorted(by_value["sgd"]["run_ids"]) == sorted(i for i, p in zip(sweep.ids, sweep.params, strict=True)
                                                         if p["optimizer"] == "sgd")
    sgd = by_value["sgd"]
    assert all(lo <= m <= hi for lo, m, hi in zip(sgd["min"], sgd["mean"], sgd["max"], strict=True))
    assert any(hi - lo > 0.01 for lo, hi in zip(sgd["min"], sgd["max"], strict=True)), "a band, not a line"
    page.select_option("#overlay-group", "")  # ungrouped: a line per run
    expect(figure).to_have_attribute("data-bands", "0")
    expect(figure).to_have_attribute("data-lines", str(len(sweep.ids)))
    expect(page).to_have_url(re.compile(r"chart=train/loss"))


def test_the_csv_downloads_have_the_right_rows(shared: Watched, three: Runs, tmp_path: Path) -> None:
    page = shared.page
    assert shared.goto(f"/experiments/{three.experiment_id}?filter=params.optimizer+%3D+'adamw'") == 200
    with page.expect_download() as info:
        page.click("#runs-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert sorted(r["run_id"] for r in rows) == sorted(three.ids[:2])
    assert {r["params.optimizer"] for r in rows} == {"adamw"}
    assert {float(r["metrics.val_acc"]) for r in rows} == {0.7, 0.75}

    everything = page.request.get(shared.base + f"/experiments/{three.experiment_id}/runs.csv?order=params.lr+DESC")
    assert everything.status == 200 and everything.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(everything.text())))
    assert [r["run_id"] for r in table] == list(reversed(three.ids))
    assert page.request.get(shared.base + f"/experiments/{three.experiment_id}/runs.csv?filter=nonsense+%3E").status \
        == 400

    series = page.request.get(shared.base + f"/runs/{three.ids[1]}/metrics/train/loss.csv")
    assert series.status == 200
    points = list(csv.DictReader(io.StringIO(series.text())))
    assert [int(p["step"]) for p in points] == list(range(100))
    assert [float(p["value"]) for p in points] == [2.0 / (1 + s * 2 / 10) for s in range(100)]
    assert page.request.get(shared.base + f"/runs/{three.ids[1]}/metrics/nothing.csv").status == 404
    assert shared.goto(f"/runs/{three.ids[1]}") == 200  # a run's chart links its series' CSV
    page.wait_for_selector("body[data-charts-ready='1']")
    link = page.locator("figure.chart[data-key='train/loss'] .chart-actions a").get_attribute("href") or ""
    assert page.request.get(shared.base + link).text() == series.text()


def test_bad_input_is_a_page_with_the_reason(shared: Watched, three: Runs) -> None:
    page = shared.page
    unknown = uuid.uuid4().hex
    assert shared.goto(compare_url([three.ids[0], unknown])) == 404
    expect(page.locator(".error-message")).to_contain_text(unknown)
    assert shared.goto(compare_url([str(uuid.uuid4()) for _ in range(101)])) == 400
    expect(page.locator(".error-message")).to_contain_text("At most 100 runs")
    assert shared.goto(compare_url([three.ids[0], "not-a-run"])) == 400
    expect(page.locator(".error-message")).to_contain_text("'not-a-run' is not a run id")
    dashed = [str(uuid.UUID(i)) for i in three.ids]  # ids spelled with dashes, one twice: the same three runs
    assert shared.goto(compare_url([*dashed, three.ids[0]])) == 200
    page.wait_for_selector("body[data-charts-ready='1']")
    expect(page.locator("h1.page-title")).to_have_text("Compare 3 runs")
    assert page.locator("#charts figure.chart").evaluate_all("els => els.map(e => e.dataset.lines)") == ["3", "3"]
    assert shared.goto(compare_url([three.ids[0]])) == 400
    assert shared.goto("/compare") == 400
    bad = page.request.get(shared.base + f"/api/compare/series?runs={three.ids[0]}&key=train/loss&context=nope")
    assert bad.status == 400 and "context" in bad.json()["message"]
    assert page.request.get(shared.base + f"/runs/{three.ids[0]}/metrics/train/loss.csv?context=bogus").status == 400


def test_screenshots_of_compare_and_the_charts_panel(shared: Watched, sweep: Runs) -> None:
    """For the README (`make screenshots` keeps them in docs/images)."""
    page = shared.page
    shared.goto(compare_url(sweep.ids, "&metric=eval/acc&sx=lr&cx=lr&cy=batch_size"))
    page.wait_for_selector("body[data-charts-ready='1']")
    page.wait_for_selector("#compare[data-ready='1']")
    shared.shot("compare")
    page.locator(".analysis-tools").evaluate("e => window.scrollTo(0, e.getBoundingClientRect().top + scrollY - 16)")
    shared.shot("compare-analysis")
    shared.goto(f"/experiments/{sweep.experiment_id}?chart=eval/acc&group=optimizer"
                "&metrics=eval/acc,eval/loss&params=lr,batch_size,optimizer,dropout&order_by=metrics.eval/acc+DESC")
    expect(page.locator("#overlay-chart")).to_have_attribute("data-ready", "1")
    shared.shot("experiment-charts")
