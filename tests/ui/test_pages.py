"""The web UI in a real headless Chromium against the real stack: what a user sees and does."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from urllib.parse import quote

import grpc
import matplotlib
import numpy as np
import pytest
import trackd
from playwright.sync_api import expect
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.stack import EmbeddedStack

from tests.ui.conftest import ROOT, Watched

matplotlib.use("Agg")

pytestmark = pytest.mark.ui


def experiment_id(name: str, project: str = "default") -> str:
    return trackd.search_runs([name], project=project, max_results=1)[0].experiment_id


def shown_run_ids(web: Watched) -> list[str]:
    # a click on a link returns once the next page has started loading: its table may be half parsed
    web.page.wait_for_load_state()
    return [r.get_attribute("data-run-id") or "" for r in web.page.locator("#runs-table tbody tr[data-run-id]").all()]


def log_points(run_id: str, key: str, steps: list[int], values: list[float]) -> None:
    """LogMetrics straight to ingest: when it returns, the points are committed (acknowledged)."""
    with grpc.insecure_channel(os.environ["TRACKD_INGEST_TARGET"]) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run_id, series=[
            ingest_pb2.MetricSeries(key=key, steps=steps, values=values,
                                    timestamps_ms=[int(time.time() * 1000)] * len(steps))]), timeout=10)


def test_home_lists_experiments_with_counts_and_the_jump_box_finds_a_run(web: Watched) -> None:
    project, name = f"ui-{uuid.uuid4().hex[:6]}", f"home-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        trackd.start_run(experiment=name, project=project, name=f"{name}-r{i}", system_metrics=False).end()
    live = trackd.start_run(experiment=name, project=project, name=f"{name}-live", system_metrics=False)
    try:
        assert web.goto("/") == 200
        row = web.page.locator(f"section[data-project='{project}'] tr", has_text=name)
        expect(row.locator("td").nth(1)).to_have_text("4")
        expect(row.locator("td").nth(2)).to_have_text("1")
        web.page.fill("form.jump input", f"{name}-r1")
        web.page.press("form.jump input", "Enter")
        expect(web.page.locator("h1.page-title")).to_contain_text(f"{name}-r1")
        web.page.fill("form.jump input", name)
        web.page.press("form.jump input", "Enter")
        expect(web.page).to_have_url(re.compile(r"/experiments/"))
    finally:
        live.end()
    assert not web.errors and not web.dialogs


def test_the_filter_shows_exactly_what_search_runs_returns(web: Watched) -> None:
    name = f"filter-{uuid.uuid4().hex[:6]}"
    models = ["bert-base", "bert-large", "roberta", "bert-tiny", "gpt2", "bert-base", "distilbert"]
    for i, model in enumerate(models):
        with trackd.start_run(experiment=name, name=f"r{i}", params={"model": model}, system_metrics=False) as run:
            run.log_metric("val_auc", 0.6 + 0.05 * i, step=0)
    expression = "metrics.val_auc > 0.8 AND params.model LIKE 'bert%'"
    expected = {r.id for r in trackd.search_runs([name], expression)}
    assert expected and len(expected) < len(models)
    path = f"/experiments/{experiment_id(name)}"
    assert web.goto(path) == 200
    assert len(shown_run_ids(web)) == len(models), "every run logged with the SDK is in the table"
    web.page.fill("#filter", expression)
    web.page.click("#table-form button[type=submit]")
    expect(web.page.locator("#runs-table tbody tr[data-run-id]")).to_have_count(len(expected))
    assert set(shown_run_ids(web)) == expected
    assert "filter=" in web.page.url, "the filter is in the URL"
    web.page.reload()
    assert set(shown_run_ids(web)) == expected, "the link reproduces the view"


def test_sort_by_a_metric_and_page_through(web: Watched) -> None:
    name = f"paging-{uuid.uuid4().hex[:6]}"
    for i in range(30):
        with trackd.start_run(experiment=name, name=f"s{i:02d}", params={"i": str(i)}, system_metrics=False) as run:
            run.log_metric("score", float((i * 7) % 30), step=0)
    by_score = [r.id for r in trackd.search_runs([name], order_by=["metrics.score DESC"])]
    assert web.goto(f"/experiments/{experiment_id(name)}?metrics=score&page_size=25") == 200
    web.page.click("th a[data-sort='metrics.score']")  # metrics sort highest first
    expect(web.page.locator("th a[data-sort='metrics.score'] .sort")).to_have_text("▼")
    first = shown_run_ids(web)
    assert first == by_score[:25]
    assert "order_by=metrics.score" in web.page.url
    web.page.click("#next-page")
    expect(web.page.locator("#runs-table tbody tr[data-run-id]")).to_have_count(5)
    assert shown_run_ids(web) == by_score[25:]
    web.page.click("#first-page")
    assert shown_run_ids(web) == by_score[:25]
    web.page.click("th a[data-sort='metrics.score']")  # again: lowest first
    assert shown_run_ids(web)[:5] == by_score[::-1][:5]


def test_delete_and_restore_selected_runs(web: Watched) -> None:
    name = f"delete-{uuid.uuid4().hex[:6]}"
    runs = [trackd.start_run(experiment=name, name=f"d{i}", system_metrics=False) for i in range(3)]
    for run in runs:
        run.end()
    path = f"/experiments/{experiment_id(name)}"
    web.goto(path)
    web.page.check(f"input[name=run_ids][value='{runs[0].id}']")
    expect(web.page.locator("#selected-count")).to_have_text("1 selected")
    web.page.click("button[formaction='/runs-action/delete']")
    expect(web.page.locator("#runs-table tbody tr[data-run-id]")).to_have_count(2)
    assert trackd.search_runs([name], view="deleted")[0].id == runs[0].id
    web.goto(path + "?view=deleted")
    web.page.check(f"input[name=run_ids][value='{runs[0].id}']")
    web.page.click("button[formaction='/runs-action/restore']")
    assert len(trackd.search_runs([name])) == 3


def test_a_malformed_filter_is_a_400_with_the_error_at_its_position(web: Watched) -> None:
    name = f"badfilter-{uuid.uuid4().hex[:6]}"
    trackd.start_run(experiment=name, system_metrics=False).end()
    status = web.goto(f"/experiments/{experiment_id(name)}?filter={quote('metrics.loss > AND params.x = 1')}")
    assert status == 400
    error = web.page.locator("#filter-error")
    expect(error).to_contain_text("at character 16")
    assert web.page.locator("#filter-error .caret").inner_text().splitlines()[1].index("^") == 15


def test_unknown_ids_are_404_pages(web: Watched) -> None:
    for path in (f"/runs/{uuid.uuid4()}", f"/experiments/{uuid.uuid4()}", "/runs/not-an-id", "/nowhere"):
        assert web.goto(path) == 404, path
        expect(web.page.locator(".error-code")).to_have_text("404")


def test_run_page_shows_params_tags_source_and_one_chart_per_key(web: Watched) -> None:
    name = f"runpage-{uuid.uuid4().hex[:6]}"
    keys = ["train/loss", "train/acc", "eval/loss", "lr"]
    with trackd.start_run(experiment=name, name="overview", params={"model": {"hidden": 256}, "lr": 0.001},
                          tags={"team": "vision"}, system_metrics=False) as run:
        for step in range(500):
            for i, key in enumerate(keys):
                run.log_metric(key, 1.0 / (step + 1 + i), step=step)
        run.log_metric("eval/loss", 0.5, step=0, context="eval")
        run.log_metric("train/loss", float("nan"), step=500)
        run.set_notes("# Findings\nThe **wider** model wins.")
    assert web.goto(f"/runs/{run.id}") == 200
    web.page.wait_for_selector("body[data-charts-ready='1']")
    charts = web.page.locator("figure.chart")
    assert sorted(charts.evaluate_all("els => els.map(e => e.dataset.key)")) == sorted(keys)
    for key in keys:
        points = int(web.page.locator(f"figure.chart[data-key='{key}']").get_attribute("data-points") or 0)
        assert points > 0, key
    expect(web.page.locator("figure.chart[data-key='train/loss'] .chart-note")).to_contain_text("NaN")
    expect(web.page.locator("h2.group-title").first).to_contain_text("metrics")  # "lr": no prefix, first
    web.page.click("a.tab[href$='tab=overview']")
    params = web.page.locator("#params-table")
    expect(params).to_contain_text("model.hidden")
    expect(params).to_contain_text("256")
    expect(web.page.locator("#tags-table")).to_contain_text("vision")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    expect(web.page.locator(".source")).to_contain_text(commit)
    expect(web.page.locator("#notes h1")).to_have_text("Findings")
    web.page.fill("input.table-search[data-table='params-table']", "hidden")
    expect(params.locator("tr:visible")).to_have_count(1)
    web.page.fill("#tag-form input[name=key]", "stage")
    web.page.fill("#tag-form input[name=value]", "final")
    web.page.click("#tag-form button")
    expect(web.page.locator("#tags-table")).to_contain_text("final")
    assert trackd.get_run(run.id).tags["stage"] == "final"
    assert not web.errors


def test_a_point_logged_after_the_page_opened_appears_live(web: Watched) -> None:
    name = f"live-{uuid.uuid4().hex[:6]}"
    run = trackd.start_run(experiment=name, name="live", system_metrics=False)
    try:
        log_points(run.id, "loss", list(range(100)), [1.0 / (s + 1) for s in range(100)])
        web.goto(f"/runs/{run.id}")
        expect(web.page.locator("#live-state")).to_have_text("● live")
        web.page.wait_for_selector("body[data-charts-ready='1']")
        chart = web.page.locator("figure.chart[data-key='loss']")
        expect(chart).to_have_attribute("data-points", "100")
        log_points(run.id, "loss", [100], [0.001])
        acked = time.monotonic()
        expect(chart).to_have_attribute("data-points", "101", timeout=2000)
        assert time.monotonic() - acked < 2.0
        log_points(run.id, "accuracy", [0, 1], [0.5, 0.6])  # a key the page had not seen
        expect(web.page.locator("figure.chart[data-key='accuracy']")).to_have_attribute("data-points", "2",
                                                                                      timeout=2000)
    finally:
        run.end()
    expect(web.page.locator("#status-badge")).to_have_text("FINISHED", timeout=15000)
    assert not web.errors


def test_zooming_fetches_the_range_again_at_full_resolution(web: Watched) -> None:
    name = f"zoom-{uuid.uuid4().hex[:6]}"
    run = trackd.start_run(experiment=name, name="zoom", system_metrics=False)
    log_points(run.id, "signal", list(range(20_000)), list(np.sin(np.arange(20_000) / 50.0)))
    run.end()
    web.goto(f"/runs/{run.id}")
    web.page.wait_for_selector("body[data-charts-ready='1']")
    chart = web.page.locator("figure.chart[data-key='signal']")
    drawn = int(chart.get_attribute("data-points") or 0)
    assert 0 < drawn < 2000, "downsampled to the chart's width"
    expect(chart.locator(".chart-note")).to_contain_text("of 20,000 points")
    over = chart.locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    with web.page.expect_response(lambda r: "/history?" in r.url and "start=" in r.url) as zoomed:
        web.page.mouse.move(box["x"] + box["width"] * 0.40, box["y"] + box["height"] / 2)
        web.page.mouse.down()
        web.page.mouse.move(box["x"] + box["width"] * 0.408, box["y"] + box["height"] / 2, steps=5)
        web.page.mouse.up()
    body = zoomed.value.json()
    assert not body["downsampled"], "a narrow range comes at full resolution"
    assert body["steps"] == list(range(body["steps"][0], body["steps"][-1] + 1)), "every step of the range"
    expect(chart).to_have_attribute("data-zoomed", re.compile(r"\d+-\d+"))


def test_an_image_artifact_previews(web: Watched) -> None:
    from matplotlib import pyplot as plt

    name = f"artifacts-{uuid.uuid4().hex[:6]}"
    with trackd.start_run(experiment=name, name="pics", system_metrics=False) as run:
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1, 2], [2, 0, 1])
        run.log_figure(fig, "plots/curve.png")
        plt.close(fig)
        run.log_text("a,b\n1,2\n3,4\n", "data/table.csv")
    web.goto(f"/runs/{run.id}?tab=artifacts")
    expect(web.page.locator("table.tree")).to_contain_text("curve.png")
    web.page.click("a[data-path='plots/curve.png']")
    image = web.page.locator("#preview img.preview-image")
    expect(image).to_be_visible()
    web.page.wait_for_function("() => document.querySelector('#preview img').naturalWidth > 0")
    web.page.click("a[data-path='data/table.csv']")
    expect(web.page.locator("#preview table.csv td").first).to_have_text("1")


def test_hostile_strings_render_as_text(web: Watched) -> None:
    script = "<script>window.__pwned = 1; alert('script')</script>"
    image = "<img src=x onerror=\"window.__pwned = 2; alert('img')\">"
    name = f"xss-{uuid.uuid4().hex[:6]}"
    with trackd.start_run(experiment=name, name=f"run {script}", params={"p": image}, tags={"t": script},
                          system_metrics=False) as run:
        run.set_notes(f"notes {script} and {image} and [link](javascript:alert('link'))")
        run.log_metric(f"m{image}", 1.0, step=0)
        run.log_text(f"text {script}", f"odd {image}.txt")
    pages = ["/", f"/experiments/{experiment_id(name)}?params=p&tags=t", f"/runs/{run.id}",
             f"/runs/{run.id}?tab=overview", f"/runs/{run.id}?tab=artifacts"]
    for path in pages:
        assert web.goto(path) == 200, path
        if "tab=" not in path and path.startswith("/runs/"):
            web.page.wait_for_selector("body[data-charts-ready='1']")
        assert web.page.evaluate("() => window.__pwned") is None, path
    text = web.page.locator("main").inner_text()
    assert f"odd {image}.txt" in text
    web.page.locator("a[data-path]", has_text="odd ").click()
    expect(web.page.locator("#preview pre")).to_have_text(f"text {script}")
    web.goto(f"/runs/{run.id}?tab=overview")
    expect(web.page.locator("h1.page-title")).to_contain_text(f"run {script}")
    expect(web.page.locator("#params-table")).to_contain_text(image)
    expect(web.page.locator("#notes")).to_contain_text(script)
    assert web.page.locator("#notes a[href^='javascript']").count() == 0
    assert web.page.evaluate("() => window.__pwned") is None
    assert not web.dialogs, web.dialogs


def test_with_the_query_service_down_pages_say_so_and_web_stays_up(web: Watched, stack: EmbeddedStack) -> None:
    name = f"down-{uuid.uuid4().hex[:6]}"
    trackd.start_run(experiment=name, system_metrics=False).end()
    path = f"/experiments/{experiment_id(name)}"
    query, web_process = stack.services["query"], stack.web
    assert web_process is not None
    pid = web_process.pid
    query.stop()
    try:
        assert web.goto(path) == 503
        expect(web.page.locator("h1")).to_have_text("Service unavailable")
        expect(web.page.locator(".error-message")).to_contain_text("make up")
        assert web.goto("/healthz") == 200
    finally:
        query.start()
        query.wait_ready(60)
    back = time.monotonic()
    while web.goto(path) != 200:  # the web service reconnects within its 2 s back-off
        assert time.monotonic() - back < 10, "the page did not come back with the query service"
        time.sleep(0.5)
    assert web_process.pid == pid and web_process.restarts == 0


def test_screenshots_of_a_sweep(web: Watched) -> None:
    """A realistic sweep, photographed for the README (`make screenshots` keeps them in docs/images)."""
    from matplotlib import pyplot as plt

    rng = np.random.default_rng(7)
    name, project = f"resnet-sweep-{uuid.uuid4().hex[:4]}", "vision"
    runs = []
    for i, (lr, batch, optimizer) in enumerate([(3e-4, 64, "adamw"), (1e-3, 64, "adamw"), (3e-3, 128, "sgd"),
                                                (1e-4, 32, "adamw"), (1e-3, 128, "lion"), (3e-4, 256, "sgd")]):
        run = trackd.start_run(experiment=name, project=project, name=f"resnet50-lr{lr:g}-bs{batch}",
                               params={"lr": lr, "batch_size": batch, "optimizer": optimizer, "model": "resnet50",
                                       "epochs": 30}, tags={"dataset": "imagenet-100", "stage": "sweep"},
                               system_metrics=False)
        steps = np.arange(0, 3000, 5)
        speed = 400 + 150 * i
        loss = 2.3 * np.exp(-steps / speed) + 0.25 + rng.normal(0, 0.03, len(steps))
        acc = 0.9 - 0.75 * np.exp(-steps / (speed * 1.3)) - 0.02 * i + rng.normal(0, 0.01, len(steps))
        log_points(run.id, "train/loss", steps.tolist(), loss.tolist())
        log_points(run.id, "train/acc", steps.tolist(), acc.tolist())
        log_points(run.id, "train/lr", steps.tolist(), (lr * np.cos(np.pi * steps / 6000)).tolist())
        eval_steps = steps[::20]
        log_points(run.id, "eval/loss", eval_steps.tolist(), (loss[::20] + 0.1).tolist())
        log_points(run.id, "eval/acc", eval_steps.tolist(), (acc[::20] - 0.03).tolist())
        sampled = steps[::10]
        log_points(run.id, "system/gpu_utilization", sampled.tolist(), (85 + rng.normal(0, 5, len(sampled))).tolist())
        log_points(run.id, "system/cpu_percent", sampled.tolist(), (40 + rng.normal(0, 8, len(sampled))).tolist())
        runs.append(run)
    for other, count in (("bert-finetune", 4), ("gpt2-pretrain", 2), ("tokenizer-ablation", 3)):
        for i in range(count):
            trackd.start_run(experiment=f"{other}-{name[-4:]}", project="nlp", name=f"{other}-{i}",
                             system_metrics=False).end("FAILED" if i == 1 else "FINISHED")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.imshow(rng.random((10, 10)), cmap="viridis")
    ax.set_title("confusion matrix")
    runs[0].log_figure(fig, "eval/confusion.png")
    plt.close(fig)
    runs[0].log_text("# resnet50 sweep\n\nBest so far: **lr 3e-4**, AdamW.", "README.md")
    runs[0].set_notes("Baseline for the **imagenet-100** sweep. Warm-up 5 epochs, cosine decay.")
    for run in runs[1:-1]:
        run.end()
    try:
        web.goto("/")
        web.shot("home")
        web.goto(f"/experiments/{runs[0].experiment_id}?metrics=eval/acc,eval/loss,train/loss"
                 "&params=lr,batch_size,optimizer&tags=stage&order_by=metrics.eval/acc+DESC")
        web.shot("experiment")
        web.goto(f"/runs/{runs[0].id}")
        web.page.wait_for_selector("body[data-charts-ready='1']")
        web.shot("run")
        web.goto(f"/runs/{runs[0].id}?tab=artifacts")
        web.page.click("a[data-path='eval/confusion.png']")
        web.page.wait_for_function("() => document.querySelector('#preview img')?.naturalWidth > 0")
        web.shot("artifacts")
    finally:
        runs[0].end()
        runs[-1].end("FAILED")
    assert not web.errors and not web.dialogs
