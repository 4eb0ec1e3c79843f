"""The study and model registry pages in a real headless Chromium against the real stack: a study
run by trackd.hpo.optimize shows every trial and the best value best_trials gives; pause, resume
and stop from the browser; a registered model's page, and an alias moved in the browser (after
its confirmation) is what trackd.get_model_version answers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trackd
from playwright.sync_api import expect
from trackd.hpo import Trial, TrialPruned
from trackd_platform.stack import EmbeddedStack

from tests.ui.conftest import Watched

pytestmark = pytest.mark.ui
SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
         "layers": {"type": "int", "low": 1, "high": 4},
         "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}


def objective(trial: Trial) -> float:
    lr, layers = trial.suggest_float("lr", 1e-4, 1e-1, log=True), trial.suggest_int("layers", 1, 4)
    penalty = 0.05 if trial.suggest_categorical("optimizer", ["adam", "sgd"]) == "sgd" else 0.0
    loss = 1.0
    for step in range(6):
        loss = (abs(lr - 0.01) * 20 + 0.1 * abs(layers - 2) + penalty) + 0.5 / (step + 1)
        if trial.report(step, loss):
            raise TrialPruned()
    return loss


@dataclass
class Optimized:
    name: str
    id: str


@pytest.fixture(scope="module")
def study(stack: EmbeddedStack) -> Optimized:
    name = f"ui-study-{uuid.uuid4().hex[:6]}"
    info = trackd.hpo.create_study(name, search_space=SPACE, metric="loss", sampler="tpe",
                                   pruner="median", parallelism=2, max_trials=8,  # nothing sampled after the 8th
                                   pruner_options={"n_startup_trials": 3, "n_warmup_steps": 2}, seed=7)
    trackd.hpo.optimize(objective, study=name, n_trials=8, n_workers=2, processes=False, show_progress=False)
    return Optimized(name, info.id)


@dataclass
class Registered:
    name: str
    run_id: str


@pytest.fixture(scope="module")
def model(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    name = f"ui-model-{uuid.uuid4().hex[:6]}"
    folder = Path(tmp_path_factory.mktemp("model"))
    (folder / "weights.bin").write_bytes(b"w" * 2000)
    with trackd.start_run("ui-models", name=f"{name}-train", capture_env=False, system_metrics=False) as run:
        run.log_metric("val_acc", 0.91, step=3)
        run.log_metric("val_loss", 0.27, step=3)
        assert run.flush(30)
        run.log_model(folder, name=name, metadata={"framework": "pytorch"})
    trackd.register_model(name, run_id=run.id, path="model/weights.bin", metadata={"stage": "candidate"})
    trackd.set_model_alias(name, "champion", 1)
    return Registered(name, run.id)


def test_the_study_page_shows_every_trial_and_the_best_value(web: Watched, study: Optimized) -> None:
    trials = trackd.hpo.list_trials(study.name)
    best = trackd.hpo.best_trials(study.name)
    assert web.goto(f"/studies/{study.id}") == 200
    root = web.page.locator("#study")
    expect(root).to_have_attribute("data-ready", "1")
    expect(web.page.locator("#trials-table tbody tr")).to_have_count(len(trials))
    # the table draws the rows in view of those it holds (all of them here)
    expect(web.page.locator("#trials-table")).to_have_attribute("data-rows", str(len(trials)))
    shown_best = float(web.page.locator("[data-best-value]").first.get_attribute("data-best-value") or "nan")
    assert shown_best == best[0].value
    assert web.page.locator(f"#trial-{best[0].number} td").first.inner_text().startswith("★")
    ended = [t for t in trials if t.state in ("COMPLETE", "PRUNED")]
    expect(web.page.locator("#history-chart")).to_have_attribute("data-points", str(len(ended)))
    expect(web.page.locator("#intermediate-chart")).to_have_attribute("data-curves", str(len(ended)))
    pruned = sum(t.state == "PRUNED" for t in trials)
    expect(web.page.locator("#intermediate-chart")).to_have_attribute("data-pruned", str(pruned))
    # fANOVA: the first call imports optuna and scikit-learn
    expect(web.page.locator("#importance-chart")).to_have_attribute("data-params", "3", timeout=60_000)
    counts = {s: sum(t.state == s for t in trials) for s in ("COMPLETE", "PRUNED")}
    for state, count in counts.items():
        expect(web.page.locator(f"[data-count={state}]")).to_have_text(str(count))
    # sortable: by the objective, best first (minimized), and the order is in the URL
    web.page.locator("#trials-table th", has_text="loss").click()
    expect(web.page).to_have_url(f"{web.base}/studies/{study.id}?sort=value0")
    first = web.page.locator("#trials-table tbody tr").first
    expect(first).to_have_id(f"trial-{best[0].number}")
    first.locator("a", has_text="run").click()
    expect(web.page.locator("h1.page-title")).to_contain_text(f"{study.name} #{best[0].number}")
    web.goto(f"/studies/{study.id}")
    expect(root).to_have_attribute("data-ready", "1")
    web.page.set_viewport_size({"width": 1440, "height": 1480})  # the charts, for the README
    expect(root).to_have_attribute("data-ready", "1")
    expect(web.page.locator("#importance-chart")).to_have_attribute("data-params", "3")
    web.page.wait_for_timeout(1500)  # redrawn at the new width
    web.shot("study")
    assert not web.errors, web.errors


def test_a_two_objective_study_shows_its_pareto_front(web: Watched) -> None:
    name = f"ui-pareto-{uuid.uuid4().hex[:6]}"
    space = {"x": {"type": "float", "low": 0, "high": 5}, "y": {"type": "float", "low": 0, "high": 3}}
    info = trackd.hpo.create_study(name, search_space=space, directions=["minimize", "minimize"],
                                   metric=["latency", "error"], sampler="nsga2", max_trials=16, parallelism=2, seed=3)

    def two(t: Trial) -> tuple[float, float]:
        x, y = t.suggest_float("x", 0, 5), t.suggest_float("y", 0, 3)
        return x ** 2 + y ** 2, (x - 5) ** 2 + (y - 3) ** 2

    trackd.hpo.optimize(two, study=name, n_trials=16, n_workers=2, processes=False, show_progress=False)
    front = trackd.hpo.best_trials(name)
    assert web.goto(f"/studies/{info.id}") == 200
    expect(web.page.locator("#study")).to_have_attribute("data-ready", "1")
    expect(web.page.locator("#pareto-chart")).to_have_attribute("data-front", str(len(front)))
    expect(web.page.locator("#best-trials h2")).to_contain_text(f"Pareto front ({len(front)} trials)")
    stars = web.page.locator("#trials-table tbody td.num", has_text="★")
    expect(stars).to_have_count(len(front))
    web.page.select_option("#pareto-x", "1")  # the axes swap
    web.page.select_option("#pareto-y", "0")
    expect(web.page.locator("#pareto-chart")).to_have_attribute("data-front", str(len(front)))
    web.page.evaluate("document.getElementById('parcoords-chart').scrollIntoView({block: 'start'})")
    web.shot("study-pareto")
    assert not web.errors, web.errors


def test_pause_resume_and_stop_from_the_browser(web: Watched) -> None:
    name = f"ui-ctl-{uuid.uuid4().hex[:6]}"
    info = trackd.hpo.create_study(name, search_space={"x": {"type": "float", "low": 0, "high": 1}}, max_trials=50)
    assert web.goto(f"/studies/{info.id}") == 200
    state = web.page.locator("#study-state .state-name")
    expect(state).to_have_text("RUNNING")
    expect(web.page.locator("#study-resume")).to_be_hidden()
    web.page.click("#study-pause")
    expect(state).to_have_text("PAUSED")
    assert trackd.hpo.get_study(name).state == "PAUSED"
    web.page.click("#study-resume")
    expect(state).to_have_text("RUNNING")
    assert trackd.hpo.get_study(name).state == "RUNNING"
    web.page.click("#study-stop")
    expect(state).to_have_text("STOPPED")
    assert trackd.hpo.get_study(name).state == "STOPPED"
    expect(web.page.locator("#study-actions button:visible")).to_have_count(0)
    assert web.goto("/studies") == 200
    expect(web.page.locator("#studies-table tr", has_text=name)).to_contain_text("STOPPED")


def test_the_study_page_follows_a_running_study(web: Watched) -> None:
    name = f"ui-live-{uuid.uuid4().hex[:6]}"
    info = trackd.hpo.create_study(name, search_space={"x": {"type": "float", "low": 0, "high": 1}},
                                   sampler="random", max_trials=4, seed=1)
    assert web.goto(f"/studies/{info.id}") == 200
    expect(web.page.locator("#study")).to_have_attribute("data-ready", "1")
    expect(web.page.locator("[data-count=COMPLETE]")).to_have_text("0")
    worker = threading.Thread(target=lambda: trackd.hpo.optimize(
        lambda t: t.suggest_float("x", 0, 1), study=name, n_trials=4, processes=False, show_progress=False))
    worker.start()
    try:  # no reload: the page polls
        expect(web.page.locator("[data-count=COMPLETE]")).to_have_text("4", timeout=30_000)
        expect(web.page.locator("#study-state .state-name")).to_have_text("FINISHED", timeout=15_000)
        expect(web.page.locator("#trials-table tbody tr")).to_have_count(4)
        expect(web.page.locator("#history-chart")).to_have_attribute("data-points", "4")
    finally:
        worker.join(60)


def test_the_models_pages_and_an_alias_moved_after_confirming(web: Watched, model: Registered) -> None:
    assert web.goto("/models") == 200
    row = web.page.locator(f"tr[data-model='{model.name}']")
    expect(row).to_contain_text("v2")
    expect(row).to_contain_text("@champion")
    web.shot("models")
    row.locator("td.name a").click()
    expect(web.page.locator("#v1 .aliases-cell")).to_have_text("@champion")
    expect(web.page.locator("#v1")).to_contain_text("0.91")
    expect(web.page.locator(f"#v1 a[href='/runs/{model.run_id}']")).to_have_count(1)
    expect(web.page.locator("#v2")).to_contain_text("stage=candidate")
    web.page.fill("#alias-name", "champion")
    web.page.select_option("#alias-version", "2")
    web.page.click("#alias-submit")
    dialog = web.page.locator("#alias-confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("version 1 → version 2")
    web.shot("models-alias-confirm")
    web.page.click("#alias-cancel")  # cancelled: nothing moved
    expect(dialog).to_be_hidden()
    assert trackd.get_model_version(model.name, "champion").version == 1
    web.page.click("#alias-submit")
    web.page.click("#alias-confirm-button")
    expect(web.page.locator("#moved-notice")).to_be_visible()
    expect(web.page.locator("#v2 .aliases-cell")).to_have_text("@champion")
    assert trackd.get_model_version(model.name, "champion").version == 2
    web.shot("models-detail")
    assert not web.errors, web.errors


def test_bad_input_is_a_page_with_the_reason(web: Watched, model: Registered) -> None:
    for path, status in ((f"/studies/{uuid.uuid4()}", 404), ("/studies/no-such-study", 404),
                         (f"/api/studies/{uuid.uuid4()}/intermediate", 404), ("/models/no-such-model", 404)):
        assert web.goto(path) == status, path
    web.goto("/models")
    csrf = next(c["value"] for c in web.page.context.cookies() if c["name"] == "trackd_csrf")
    answer = web.page.request.post(f"{web.base}/models/{model.name}/alias", form={
        "csrf": csrf, "alias": "champion", "version": "two", "confirm": "yes"})
    assert answer.status == 400 and "version number" in answer.text()
    answer = web.page.request.post(f"{web.base}/models/{model.name}/alias", form={
        "alias": "champion", "version": "1", "confirm": "yes"})  # no CSRF token
    assert answer.status == 403
    answer = web.page.request.post(f"{web.base}/studies/{uuid.uuid4()}/explode", form={"csrf": csrf})
    assert answer.status == 404


@pytest.fixture(autouse=True)
def _on_the_stack(stack: EmbeddedStack) -> Iterator[None]:
    yield
