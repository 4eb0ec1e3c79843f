"""Fault drill: the HPO controller SIGKILLed twice while 8 worker processes run a study (moved
from tests/integration/test_hpo.py). Trials,
leases and results live in PostgreSQL; the launcher restarts the controller, workers wait it out,
and the study finishes with every trial counted once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trackd
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration


SLOW_TRAIN = """
import time
import trackd
trial = trackd.hpo.current_trial()
for step in range(3):
    trial.report(step, trial.params["x"] + step)
    time.sleep(0.2)
trial.complete(trial.params["x"] ** 2)
"""


def test_40_trials_on_8_worker_processes_survive_two_controller_kills(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str], figure: Callable[[str], None]) -> None:
    name = unique("drill")
    trackd.hpo.create_study(name, search_space={"x": {"type": "float", "low": -3, "high": 3}}, sampler="tpe",
                            max_trials=40, parallelism=8, seed=5)
    script = tmp_path / "train.py"
    script.write_text(SLOW_TRAIN)
    trackd_cli = str(Path(sys.executable).with_name("trackd"))
    workers = [subprocess.Popen([trackd_cli, "hpo", "worker", name, "--", sys.executable, str(script)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(8)]
    controller = stack.services["hpo"]
    for at in (10, 25):
        deadline = time.monotonic() + 120
        while sum(t.state == "COMPLETE" for t in trackd.hpo.list_trials(name)) < at:
            assert time.monotonic() < deadline, "the study stopped making progress"
            time.sleep(0.2)
        controller.kill()  # SIGKILL; the launcher restarts it
    outputs = [w.communicate(timeout=300)[0].decode() for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    trials = trackd.hpo.list_trials(name)
    assert [t.number for t in trials] == list(range(40)), outputs
    assert [t.state for t in trials] == ["COMPLETE"] * 40, [(t.number, t.state, t.attempt) for t in trials]
    assert all(t.value == pytest.approx(t.params["x"] ** 2) for t in trials)
    assert trackd.hpo.get_study(name).state == "FINISHED"
    assert controller.restarts >= 2
    figure(f"40 trials by 8 worker processes, controller SIGKILLed twice; {len(trials)} trials, all COMPLETE, "
           f"{sum(t.attempt > 1 for t in trials)} retried, study FINISHED")
