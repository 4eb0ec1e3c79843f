"""Resuming runs on the real stack: by id (a RUNNING or CRASHED run; CRASHED becomes RUNNING
again, with a resumed `run.started`), by resume key (the first start creates, later ones
reattach, per experiment), auto-numbered steps continuing, and ended runs refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import trackd
from trackd.errors import FailedPrecondition, InvalidArgument
from trackd_api.events.v1 import events_pb2
from trackd_platform.stack import EmbeddedStack

from tests.integration.conftest import HEARTBEAT_TIMEOUT_S, collect_events

pytestmark = pytest.mark.integration


def abandon(run: trackd.Run) -> None:
    """What a killed process leaves: its points delivered, no more heartbeats, no end."""
    assert run.flush(30)
    run._stop.set()


def wait_for_status(run_id: str, status: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while trackd.get_run(run_id).status != status:
        assert time.monotonic() < deadline, f"run {run_id} is {trackd.get_run(run_id).status}, not {status}"
        time.sleep(0.25)


async def test_a_crashed_run_resumed_by_id_runs_again_and_its_steps_continue(
        stack: EmbeddedStack, unique: Callable[[str], str]) -> None:
    first = trackd.start_run(experiment=unique("resume"), params={"lr": 0.1}, system_metrics=False)
    for _ in range(10):
        first.log_metric("loss", 1.0)  # auto-numbered: steps 0–9
    first.log_metric("acc", 0.5, step=41, context="eval")
    abandon(first)
    wait_for_status(first.id, "CRASHED", HEARTBEAT_TIMEOUT_S + 20)

    with trackd.start_run(run_id=first.id, params={"lr": 0.1}, tags={"attempt": "2"}, system_metrics=False) as run:
        assert run.resumed and run.id == first.id
        info = trackd.get_run(run.id)
        assert info.status == "RUNNING" and info.end_time is None and info.tags["attempt"] == "2"
        assert run.last_step("loss") == 9 and run.last_step("acc", context="eval") == 41
        assert run.last_step("acc") is None
        for _ in range(5):
            run.log_metric("loss", 2.0)  # continues at 10
        await asyncio.sleep(HEARTBEAT_TIMEOUT_S + 2)  # heartbeats continue: not CRASHED again
        assert trackd.get_run(run.id).status == "RUNNING"
    assert [p.step for p in trackd.get_metric_history(run.id, "loss")] == list(range(15))
    assert trackd.get_run(run.id).status == "FINISHED"

    with pytest.raises(FailedPrecondition, match="ended FINISHED"):
        trackd.start_run(run_id=run.id)
    with pytest.raises(InvalidArgument, match="lr"):  # a param keeps its value
        trackd.start_run(run_id=trackd.start_run(experiment=unique("resume"), params={"lr": 1}).id, params={"lr": 2})

    events = await collect_events(stack.kafka_bootstrap, lambda e: e.key == run.id, 4)
    started = [events_pb2.RunStarted.FromString(e.value) for e in events if e.topic == "run.started"]
    assert sorted(s.resumed for s in started) == [False, True]
    assert sum(e.topic == "run.ended" for e in events) == 2  # CRASHED, then FINISHED


def test_a_resume_key_creates_once_then_reattaches_within_its_experiment(unique: Callable[[str], str]) -> None:
    experiment, key = unique("resume-key"), unique("job")
    first = trackd.start_run(experiment=experiment, resume_key=key, system_metrics=False)
    assert not first.resumed
    first.log_metric("loss", 0.0, step=0)
    abandon(first)  # still RUNNING (not yet judged CRASHED): a restarted job reattaches all the same

    second = trackd.start_run(experiment=experiment, resume_key=key, system_metrics=False)
    assert second.resumed and second.id == first.id and second.last_step("loss") == 0
    second.log_metric("loss", 1.0)
    second.end()
    assert [p.step for p in trackd.get_metric_history(first.id, "loss")] == [0, 1]

    elsewhere = trackd.start_run(experiment=unique("resume-key"), resume_key=key, system_metrics=False)
    assert not elsewhere.resumed and elsewhere.id != first.id  # keys are per experiment
    elsewhere.end()
    with pytest.raises(FailedPrecondition, match="cannot resume"):
        trackd.start_run(experiment=experiment, resume_key=key)
    assert len(trackd.list_runs(experiment)) == 1
