"""`trackd report` on the real stack: the README, readable PNGs, and the series the charts draw."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import pytest
import trackd
from trackd import _report
from trackd.cli import app
from trackd_platform.stack import EmbeddedStack
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

STEPS = 20
# name → params: lr spans three decades and drives the loss; width and opt cycle independently of it
SWEEP = {
    "r1-tiny-lr": {"lr": 1e-5, "width": 64, "opt": "sgd"},
    "r2": {"lr": 3e-5, "width": 128, "opt": "adam"},
    "r3": {"lr": 1e-4, "width": 32, "opt": "adamw"},
    "r4": {"lr": 3e-4, "width": 64, "opt": "sgd"},
    "r5": {"lr": 1e-3, "width": 128, "opt": "adam"},
    "r6": {"lr": 3e-3, "width": 32, "opt": "adamw"},
    "r7": {"lr": 1e-2, "width": 64, "opt": "sgd"},
    "r8-big-lr": {"lr": 3e-2, "width": 128, "opt": "adam"},
}


def curve(params: dict[str, float | str]) -> list[float]:
    """A decaying loss whose floor grows with log10(lr); opt and width add a little."""
    lr, width = float(params["lr"]), float(params["width"])
    floor = 0.05 + 0.25 * (math.log10(lr) + 5) + (0.02 if params["opt"] == "sgd" else 0.0) + 1 / width
    return [floor + 2.0 * math.exp(-step / 4) for step in range(STEPS)]


@pytest.fixture(scope="module")
def sweep(stack: EmbeddedStack) -> Iterator[tuple[str, dict[str, str], dict[str, list[float]]]]:
    experiment = f"report-{time.time_ns()}"
    ids, logged = {}, {}
    for name, params in SWEEP.items():
        values = curve(params)
        with trackd.start_run(experiment=experiment, name=name, params=params, system_metrics=False) as run:
            for step, value in enumerate(values):
                run.log_metric("val_loss", value, step=step)
                run.log_metric("train_acc", 1 - value / 3, step=step)
                run.log_metric("system/cpu_percent", 50.0, step=step)
        ids[name], logged[name] = run.info.id, values
    yield experiment, ids, logged


def ranked(logged: dict[str, list[float]]) -> list[str]:
    return sorted(logged, key=lambda name: logged[name][-1])


def test_report_writes_readme_and_readable_charts(sweep: tuple[str, dict[str, str], dict[str, list[float]]],
                                                  tmp_path: Path) -> None:
    experiment, ids, logged = sweep
    result = CliRunner().invoke(app, ["report", experiment, "--out", str(tmp_path), "--metric", "val_loss"])
    assert result.exit_code == 0, result.output
    readme = (tmp_path / "README.md").read_text()
    best = ranked(logged)[0]
    assert f"**{best}**" in readme and ids[best] in readme
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["learning_curves.png", "parallel_coordinates.png", "param_importance.png", "val_loss_vs_lr.png"]
    assert all(f"]({name})" in readme for name in pngs)
    top = re.search(r"## Top 5 runs by val_loss\n\n(.*?)\n\n", readme, re.S)
    assert top is not None
    assert [row.split(" | ")[1] for row in top.group(1).splitlines()[2:]] == ranked(logged)[:5]
    for name in pngs:
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > 200 and image.shape[1] > 200, name
        assert image[..., :3].std() > 0.01, f"{name} is blank"


def test_default_metric_skips_system_metrics_and_errors_exit_1(
        sweep: tuple[str, dict[str, str], dict[str, list[float]]], tmp_path: Path) -> None:
    experiment, _, _ = sweep
    data = _report.collect(experiment)
    assert data.metric == "train_acc" and data.direction == "max"  # system/cpu_percent comes first by name
    runner = CliRunner()
    missing = runner.invoke(app, ["report", f"no-such-{time.time_ns()}", "--out", str(tmp_path)])
    assert missing.exit_code == 1 and "does not exist" in " ".join(missing.output.split())
    unknown = runner.invoke(app, ["report", experiment, "--out", str(tmp_path), "--metric", "nope"])
    assert unknown.exit_code == 1 and "val_loss" in unknown.output  # the message lists the metrics
    assert not (tmp_path / "README.md").exists()


def test_charts_draw_the_logged_series(sweep: tuple[str, dict[str, str], dict[str, list[float]]]) -> None:
    experiment, ids, logged = sweep
    data = _report.collect(experiment, metric="val_loss", top=3)
    top = ranked(logged)[:3]

    learning = _report.learning_curves_figure(data).axes[0]
    assert [line.get_label() for line in learning.lines] == top
    for line, name in zip(learning.lines, top, strict=True):
        assert list(line.get_xdata()) == list(range(STEPS))
        assert list(line.get_ydata()) == pytest.approx(logged[name])
    assert learning.get_xlabel() == "step" and "val_loss" in learning.get_ylabel() and learning.get_title()
    assert learning.get_legend() is not None

    figure = _report.parallel_coordinates_figure(data)
    pc = figure.axes[0]
    assert len(pc.lines) == len(SWEEP)  # one polyline per run
    assert {line.get_label() for line in pc.lines} == set(SWEEP)
    assert all(len(line.get_xdata()) == 4 for line in pc.lines)  # lr, opt, width, val_loss
    assert all(0 <= y <= 1 for line in pc.lines for y in line.get_ydata())
    assert len(figure.axes) == 2  # the colorbar
    labels = [t.get_text() for t in pc.texts]
    assert {"adam", "adamw", "sgd", "1e-05", "0.01", "32", "64", "128"} <= set(labels)

    assert data.importance is not None and next(iter(data.importance)) == "lr"
    assert _report.scatter_param(data) == "lr"
    scatter = _report.scatter_figure(data, "lr").axes[0]
    assert scatter.get_xscale() == "log"
    points = scatter.collections[0].get_offsets()
    by_lr = {float(p["lr"]): logged[n][-1] for n, p in SWEEP.items()}
    assert sorted(points[:, 0]) == pytest.approx(sorted(by_lr))
    assert [y for _, y in sorted(map(tuple, points))] == pytest.approx([by_lr[x] for x in sorted(by_lr)])

    bars = _report.importance_figure(data).axes[0]
    assert [t.get_text() for t in bars.get_yticklabels()][-1] == "lr"  # most important on top


def test_param_importance_needs_two_runs(stack: EmbeddedStack, tmp_path: Path) -> None:
    experiment = f"report-single-{time.time_ns()}"
    with trackd.start_run(experiment=experiment, name="only", params={"lr": 0.1}, system_metrics=False) as run:
        for step in range(5):
            run.log_metric("loss", 1 / (step + 1), step=step)
    result = CliRunner().invoke(app, ["report", experiment, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    readme = (tmp_path / "README.md").read_text()
    assert "_Not available:" in readme and "**only**" in readme
    assert not (tmp_path / "param_importance.png").exists()
    assert (tmp_path / "learning_curves.png").exists() and (tmp_path / "loss_vs_lr.png").exists()
