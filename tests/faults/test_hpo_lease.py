"""Drill: a worker that lost its trial's lease (it stalled past the lease, the trial was retried
and another worker took it) stops that trial at its next heartbeat and reports nothing, instead
of training on and failing its slot with ABORTED."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from trackd import hpo as sdk
from trackd._client import default_client
from trackd._hpo_worker import LEASE_LOST, call_objective, heartbeats
from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.stack import EmbeddedStack

from tests.conftest import HPO_LEASE_S

pytestmark = pytest.mark.integration


def test_a_worker_whose_lease_went_to_another_stops_its_trial(
    stack: EmbeddedStack, figure: Callable[[str], None]
) -> None:
    client = default_client()
    space = {"x": {"type": "float", "low": 0, "high": 1}}
    study = sdk.create_study(f"lease-{uuid.uuid4().hex[:8]}", search_space=space,
                             sampler="random", max_trials=1, retries_per_trial=1)
    acquire = lambda worker: sdk.call(client, "AcquireTrial", hpo_pb2.AcquireTrialRequest(  # noqa: E731
        study_id=study.id, worker=worker))
    stalled = acquire("stalled").trial  # and sends no heartbeat: its lease expires
    deadline = time.monotonic() + HPO_LEASE_S * 6
    while not (reply := acquire("other")).HasField("trial"):
        assert time.monotonic() < deadline, "the expired lease was never handed to another worker"
        time.sleep(0.5)
    assert reply.trial.id == stalled.id and reply.trial.attempt == 2
    # the stalled worker wakes up: its heartbeat learns the lease is gone and stops the trial
    stopped = threading.Event()
    woke = time.monotonic()
    with heartbeats(client, stalled, int(HPO_LEASE_S), on_stop=stopped.set) as lease:
        assert stopped.wait(HPO_LEASE_S * 2), "the heartbeat never stopped the trial"
    assert lease.lost.is_set()
    noticed = time.monotonic() - woke

    # and an objective that reports as it trains stops at its next report, reporting nothing
    reports: list[int] = []

    def objective(trial: sdk.Trial) -> float:
        for step in range(10_000):
            time.sleep(0.05)
            reports.append(step)
            if trial.report(step, 1.0 / (step + 1)):
                raise sdk.TrialPruned()
        return 1.0

    assert call_objective(client, objective, {"x": {}}, stalled, int(HPO_LEASE_S)) == LEASE_LOST
    assert len(reports) == 1
    sdk.call(client, "CompleteTrial", hpo_pb2.CompleteTrialRequest(trial_id=reply.trial.id, worker="other",
                                                                   values=[0.5]))
    assert [t.state for t in sdk.list_trials(study.name)] == ["COMPLETE"]
    figure(f"a stalled worker whose trial went to another: its heartbeat stopped the trial {noticed:.1f}s after "
           f"waking (lease {HPO_LEASE_S:.0f}s), its objective stopped at the first report; the other completed it")
