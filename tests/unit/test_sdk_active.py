"""The module-level API's rules without a server: which rank logs, where a rank comes from, what
log() and finish() do on the active run, and rank-prefixed system metrics."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import trackd
from trackd import _active
from trackd._run import Run
from trackd._settings import LaunchEnv
from trackd.errors import FailedPrecondition


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int | None]] = []
        self.ended: str | None = None
        self.detached = False

    def log_metrics(self, data: dict[str, float], step: int | None = None, **_: Any) -> None:
        self.logged.append((dict(data), step))

    def end(self, status: str = "FINISHED") -> str:
        self.ended = status
        return status

    def detach(self) -> None:
        self.detached = True


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """start_run replaced: each call's arguments, answered with a FakeRun."""
    calls: list[dict[str, Any]] = []

    def fake_start_run(experiment: str, **kwargs: Any) -> FakeRun:
        calls.append({"experiment": experiment, **kwargs})
        return FakeRun()

    monkeypatch.setattr(_active, "start_run", fake_start_run)
    for name in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "torch.distributed", raising=False)
    yield calls
    _active.finish()


def test_the_launcher_environment_names_the_rank_and_the_job() -> None:
    assert LaunchEnv.from_env({}) is None
    assert LaunchEnv.from_env({"RANK": "x"}) is None
    assert LaunchEnv.from_env({"RANK": "3", "WORLD_SIZE": "8", "TORCHELASTIC_RUN_ID": "none",
                               "SLURM_JOB_ID": "77"}) == LaunchEnv(3, 8, "77")
    assert LaunchEnv.from_env({"RANK": "0", "TORCHELASTIC_RUN_ID": "abc"}) == LaunchEnv(0, 1, "abc")


def test_an_initialized_torch_distributed_wins_over_the_environment(
        monkeypatch: pytest.MonkeyPatch, started: list[dict[str, Any]]) -> None:
    assert _active.current_rank() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _active.current_rank() == _active.Rank(1, 2)
    dist = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: True, get_rank=lambda: 5,
                                 get_world_size=lambda: 6)
    monkeypatch.setitem(sys.modules, "torch.distributed", dist)
    assert _active.current_rank() == _active.Rank(5, 6)


def test_log_and_finish_act_on_the_active_run(started: list[dict[str, Any]]) -> None:
    with pytest.raises(FailedPrecondition, match=r"trackd.init\(\)"):
        trackd.log({"loss": 1.0})
    run = trackd.init("exp", params={"lr": 0.1})
    assert isinstance(run, FakeRun) and trackd.active_run() is run
    assert started[0]["experiment"] == "exp" and started[0]["rank"] is None
    trackd.log({"loss": 1.0}, step=3)
    trackd.log({"loss": 0.5})
    assert run.logged == [({"loss": 1.0}, 3), ({"loss": 0.5}, None)]
    assert trackd.finish("KILLED") == "KILLED" and run.ended == "KILLED"
    assert trackd.active_run() is None and trackd.finish() is None
    again = trackd.init("exp")
    newer = trackd.init("exp")  # the active run is finished first
    assert isinstance(again, FakeRun) and again.ended == "FINISHED" and trackd.active_run() is newer


def test_only_rank_0_logs_unless_all_ranks(monkeypatch: pytest.MonkeyPatch,
                                           started: list[dict[str, Any]]) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert trackd.init("exp") is None and started == []
    trackd.log({"loss": 1.0})  # nothing, no error
    assert trackd.finish() is None

    # every rank: one run shared through the job id; rank 1 detaches, rank 0 would end it
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-9")
    run = trackd.init("exp", all_ranks=True)
    assert started[-1]["resume_key"] == "job-9" and started[-1]["rank"] == 1
    assert isinstance(run, FakeRun)
    assert trackd.finish() is None and run.detached and run.ended is None

    # no job id: each rank its own run, tagged with its rank
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    own = trackd.init("exp", all_ranks=True, tags={"team": "nlp"})
    assert started[-1]["resume_key"] is None and started[-1]["tags"] == {"team": "nlp", "rank": 1}
    assert isinstance(own, FakeRun)
    trackd.finish()
    assert own.ended == "FINISHED"


def test_a_ranks_system_metrics_carry_its_rank() -> None:
    fake = FakeRun()
    logger = Run._rank_logger(fake, 3)  # type: ignore[arg-type]
    logger({"system/cpu_percent": 5.0, "system/gpu.0.power_w": 70.0})
    assert fake.logged == [({"system/rank3/cpu_percent": 5.0, "system/rank3/gpu.0.power_w": 70.0}, None)]
