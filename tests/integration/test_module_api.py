"""trackd.init / log / finish on the real stack, each script its own process as users run them:
the active run's metrics and end, an unfinished script's run ended at exit (FAILED after an
uncaught exception), and torch.distributed's ranks (RANK / WORLD_SIZE as torchrun sets them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trackd
from trackd.errors import NotFound
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

SCRIPT = """
import sys, time, trackd

experiment, ending, all_ranks = sys.argv[1], sys.argv[2], sys.argv[3] == "all"
run = trackd.init(experiment, all_ranks=all_ranks, capture_env=False)
print(run.id if run else "no run", flush=True)
for step in range(5):
    trackd.log({"loss": 1.0 / (step + 1)}, step=step)
trackd.log({"acc": 0.9})
time.sleep(1.0)  # a few system metric samples
if ending == "finish":
    trackd.finish()
elif ending == "raise":
    raise RuntimeError("diverged")
"""


def script(stack: EmbeddedStack, tmp_path: Path, experiment: str, ending: str, ranks: str = "",
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    full = {**os.environ, **stack.client_env(), "TRACKD_SPOOL_DIR": str(tmp_path / "spool"),
            "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0.3", **(env or {})}
    for name in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        if name not in (env or {}):
            full.pop(name, None)
    return subprocess.run([sys.executable, str(path), experiment, ending, ranks], env=full, capture_output=True,
                          text=True, timeout=120, check=False)


def test_init_log_finish_and_the_end_at_exit(stack: EmbeddedStack, tmp_path: Path,
                                              unique: Callable[[str], str]) -> None:
    experiment = unique("module-api")
    done = script(stack, tmp_path, experiment, "finish")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[0]
    info = trackd.get_run(run_id)
    assert info.status == "FINISHED"
    assert [p.step for p in trackd.get_metric_history(run_id, "loss")] == list(range(5))
    assert [(p.step, p.value) for p in trackd.get_metric_history(run_id, "acc")] == [(0, 0.9)]
    assert "system/cpu_percent" in trackd.get_latest_metrics(run_id)

    forgot = script(stack, tmp_path, experiment, "none")  # no finish(): ended at exit
    assert forgot.returncode == 0, forgot.stderr
    assert trackd.get_run(forgot.stdout.split()[0]).status == "FINISHED"
    crashed = script(stack, tmp_path, experiment, "raise")
    assert crashed.returncode == 1 and "diverged" in crashed.stderr
    assert trackd.get_run(crashed.stdout.split()[0]).status == "FAILED"


def test_only_rank_0_logs_unless_all_ranks_and_each_ranks_system_metrics_carry_it(
        stack: EmbeddedStack, tmp_path: Path, unique: Callable[[str], str]) -> None:
    experiment = unique("ranks")
    other = script(stack, tmp_path, experiment, "finish", env={"RANK": "1", "WORLD_SIZE": "2"})
    assert other.returncode == 0, other.stderr
    assert other.stdout.split()[:2] == ["no", "run"]
    with pytest.raises(NotFound):  # rank 1 alone made nothing, not even the experiment
        trackd.list_runs(experiment)

    job = {"WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": unique("job")}
    ranks = [script(stack, tmp_path, experiment, "finish", "all", env={**job, "RANK": str(r)}) for r in (1, 0)]
    assert all(r.returncode == 0 for r in ranks), [r.stderr for r in ranks]
    (run,) = trackd.list_runs(experiment)  # one run, shared through the job id; rank 0 ended it
    assert run.status == "FINISHED" and {r.stdout.split()[0] for r in ranks} == {run.id}
    latest = trackd.get_latest_metrics(run.id)
    assert "system/rank0/cpu_percent" in latest and "system/rank1/cpu_percent" in latest
    assert "system/cpu_percent" not in latest
