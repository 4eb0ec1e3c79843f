"""The preemption drill: a training script SIGKILLed at step 40,000 of 100,000 and started again
by its "scheduler" with the same resume key ends as one FINISHED run whose steps 0–99,999 are
each stored exactly once (what the killed process left in its spool is delivered by the restart
before it reads where to pick up)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trackd
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

TOTAL, KILL_AT = 100_000, 40_000

# The pattern README.md documents: resume by key, then log from the last stored step + 1.
SCRIPT = """
import sys, threading, time, trackd

experiment, key, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
with trackd.start_run(experiment, resume_key=key, system_metrics=False, capture_env=False) as run:
    last = run.last_step("loss")
    first = 0 if last is None else last + 1
    print(f"run {run.id} resumed={run.resumed} from step {first}", flush=True)
    for step in range(first, TOTAL):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
        if step % 500 == 0:
            time.sleep(0.01)  # a training step's work: ~1 s to step 40,000, batches spooled and sent meanwhile
        if step == stop_at:
            print(f"at step {step}", flush=True)
            threading.Event().wait()  # SIGKILLed here by the test
"""


def train(stack: EmbeddedStack, tmp_path: Path, experiment: str, key: str, stop_at: int) -> subprocess.Popen[str]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.replace("TOTAL", str(TOTAL)))
    env = {**os.environ, **stack.client_env(), "TRACKD_SPOOL_DIR": str(tmp_path / "spool"),
           "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0", "TRACKD_HEARTBEAT_INTERVAL_S": "1"}
    return subprocess.Popen([sys.executable, str(script), experiment, key, str(stop_at)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_script_restarted_with_its_resume_key_stores_every_step_once(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str]) -> None:
    experiment, key = unique("preempted"), unique("job")
    first = train(stack, tmp_path, experiment, key, KILL_AT)
    try:
        assert first.stdout is not None
        started = first.stdout.readline()
        assert "resumed=False from step 0" in started, started + first.stderr.read() if first.stderr else ""
        assert first.stdout.readline().strip() == f"at step {KILL_AT}"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    run_id = started.split()[1]
    assert trackd.get_run(run_id).status in ("RUNNING", "CRASHED")

    second = train(stack, tmp_path, experiment, key, -1)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"run {run_id} resumed=True" in out
    resumed_from = int(out.split("from step ")[1].split()[0])
    assert 0 < resumed_from <= KILL_AT + 1  # what was stored (the killed process's spool included)
    print(f"\nrestarted: {out.strip()}")

    runs = trackd.list_runs(experiment)
    assert [r.id for r in runs] == [run_id] and runs[0].status == "FINISHED"
    steps = [p.step for p in trackd.get_metric_history(run_id, "loss")]
    assert steps == list(range(TOTAL))  # in order, each exactly once
