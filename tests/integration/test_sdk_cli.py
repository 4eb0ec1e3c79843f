"""The SDK and the CLI as a user drives them, against the real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest
import trackd
from trackd.cli import app
from trackd_platform.stack import EmbeddedStack
from typer.testing import CliRunner

pytestmark = pytest.mark.integration


def test_start_run_as_in_the_readme(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    experiment = unique("lr-sweep")
    with trackd.start_run(experiment=experiment, project="llm-7b", name="lr-1e4",
                          params={"model": {"hidden": 4096}, "lr": 1e-4, "seed": np.int64(7),
                                  "dropout": np.float32(0.5), "layers": [1, 2]},
                          tags={"team": "nlp"}) as run:
        run.log_params({"batch_size": 32})
        run.set_tags({"stage": "baseline"})
        assert trackd.get_run(run.id).status == "RUNNING"
    info = trackd.get_run(run.id)
    assert info.status == "FINISHED" and info.name == "lr-1e4"
    assert info.params == {"model.hidden": "4096", "lr": "0.0001", "seed": "7", "dropout": "0.5",
                           "layers": "[1, 2]", "batch_size": "32"}
    assert info.tags == {"team": "nlp", "stage": "baseline"}
    assert info.environment["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert "numpy" in info.environment["packages"] and info.environment["cpu_count"] >= 1
    assert info.source["entry_point"]
    assert [r.id for r in trackd.list_runs(experiment, project="llm-7b")] == [run.id]


def test_an_exception_ends_the_run_failed_and_propagates(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    with pytest.raises(ZeroDivisionError):
        with trackd.start_run(unique("boom"), capture_env=False) as run:
            1 / 0  # noqa: B018
    assert trackd.get_run(run.id).status == "FAILED"


def test_without_with_and_errors(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    run = trackd.start_run(unique("plain"), capture_env=False, params={"lr": 0.1})
    with pytest.raises(trackd.errors.InvalidArgument, match="params cannot change"):
        run.log_params({"lr": 0.2})
    assert run.end("KILLED").status == "KILLED"
    with pytest.raises(trackd.errors.FailedPrecondition):
        run.end()
    with pytest.raises(trackd.errors.FailedPrecondition):
        run.log_params({"other": 1})
    with pytest.raises(trackd.errors.NotFound):
        trackd.get_run("f" * 32)
    with pytest.raises(ValueError, match="status must be one of"):
        run.end("DONE")


def test_cli_tables(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    experiment = unique("cli")
    with trackd.start_run(experiment, project="cli-proj", name="shown", params={"lr": 3}, capture_env=False) as run:
        pass
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "list", "--experiment", experiment, "--project", "cli-proj"],
                           env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    assert run.id in listed.output and "FINISHED" in listed.output and "lr=3" in listed.output
    shown = runner.invoke(app, ["runs", "show", run.id], env={"COLUMNS": "250"})
    assert shown.exit_code == 0 and "param lr" in shown.output and "shown" in shown.output
    assert runner.invoke(app, ["runs", "delete", run.id]).exit_code == 0
    hidden = runner.invoke(app, ["runs", "list", "--experiment", experiment, "--project", "cli-proj"],
                           env={"COLUMNS": "250"})
    assert run.id not in hidden.output
    assert runner.invoke(app, ["runs", "restore", run.id]).exit_code == 0
    assert trackd.get_run(run.id).deleted is False
    projects = runner.invoke(app, ["projects", "list"], env={"COLUMNS": "250"})
    assert "cli-proj" in projects.output
    experiments = runner.invoke(app, ["experiments", "list", "--project", "cli-proj"], env={"COLUMNS": "250"})
    assert experiment in experiments.output
    missing = runner.invoke(app, ["runs", "show", "0" * 32])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_events_tail_prints_live_events(stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    # --from-beginning: a slow subscription cannot miss the run's first event.
    tail = subprocess.Popen([sys.executable, "-m", "trackd.cli", "events", "tail", "--json", "--from-beginning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        time.sleep(1)
        run = trackd.start_run(unique("tail"), capture_env=False)
        run.end()
        lines: list[str] = []
        deadline = time.monotonic() + 30
        assert tail.stdout is not None
        while time.monotonic() < deadline and sum(run.id in line for line in lines) < 2:
            lines.append(tail.stdout.readline())
        mine = [line for line in lines if run.id in line]
        assert len(mine) == 2, lines
        # two topics: Kafka orders events within a partition only, so either may come first
        assert sorted(json.loads(line)["topic"] for line in mine) == ["run.ended", "run.started"], mine
    finally:
        tail.terminate()
        tail.wait(10)
