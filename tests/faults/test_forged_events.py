"""Drill: anybody who reaches the broker can write to `run.ended` (Tansu has no per-client
credentials to give). A forged "this trial's run FAILED" used to make the hpo service retry a
trial that was training fine. The run service's relay now signs each event with the key in
TRACKD_HOME/credentials.json (header `trackd-signature`, HMAC-SHA256); the hpo service ignores
events without a valid signature and counts them, and still acts on real ones."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from trackd import hpo as sdk
from trackd._client import default_client
from trackd_api.events.v1 import events_pb2
from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.kafka import RUN_ENDED, SIGNATURE_HEADER, signature
from trackd_platform.stack import EmbeddedStack

from tests.conftest import HPO_LEASE_S
from tests.integration.test_observability import scrape, value

pytestmark = pytest.mark.integration


async def test_a_forged_run_ended_is_ignored_and_a_real_one_still_retries_the_trial(
    stack: EmbeddedStack, figure: Callable[[str], None]
) -> None:
    client = default_client()
    space = {"x": {"type": "float", "low": 0, "high": 1}}
    study = sdk.create_study(f"forged-{uuid.uuid4().hex[:8]}", search_space=space, sampler="random",
                             max_trials=1, retries_per_trial=1)
    trial = sdk.call(client, "AcquireTrial", hpo_pb2.AcquireTrialRequest(study_id=study.id, worker="w1")).trial
    port = stack.metrics_port("hpo")
    before = value(scrape(port), "trackd_hpo_forged_events_total")

    payload = events_pb2.RunEnded(run_id=trial.run_id, status=run_pb2.RUN_STATUS_FAILED).SerializeToString()
    event_id = str(uuid.uuid4())
    headers = [("ce_id", event_id.encode()), ("ce_type", b"trackd.events.v1.RunEnded")]
    wrong_key = signature("not-the-key", RUN_ENDED, trial.run_id, event_id, payload)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for extra in ([], [(SIGNATURE_HEADER, wrong_key.encode())]):  # unsigned; signed with another key
            await producer.send_and_wait(RUN_ENDED, payload, key=trial.run_id.encode(), headers=headers + extra)
    finally:
        await producer.stop()

    # the hpo service's consumer may be rejoining its group (a drill that ran before on this stack killed a
    # member, which the broker drops after its 10 s session timeout): a poll, over as soon as both are seen
    deadline = time.monotonic() + 60
    while (ignored := value(scrape(port), "trackd_hpo_forged_events_total") - before) < 2:
        assert time.monotonic() < deadline, f"{ignored:.0f} of 2 forged events seen by the hpo service"
        sdk.call(client, "HeartbeatTrial", hpo_pb2.HeartbeatTrialRequest(trial_id=trial.id, worker="w1"))
        await asyncio.sleep(0.5)
    assert [t.state for t in sdk.list_trials(study.name)] == ["RUNNING"]
    sdk.call(client, "HeartbeatTrial", hpo_pb2.HeartbeatTrialRequest(trial_id=trial.id, worker="w1"))

    # the real thing: the run service ends the trial's run FAILED; its signed event retries the trial
    client.call("run", client.runs.EndRun, run_pb2.EndRunRequest(run_id=trial.run_id,
                                                                 status=run_pb2.RUN_STATUS_FAILED))
    ended = time.monotonic()
    while not (reply := sdk.call(client, "AcquireTrial", hpo_pb2.AcquireTrialRequest(
            study_id=study.id, worker="w2"))).HasField("trial"):
        assert time.monotonic() - ended < HPO_LEASE_S, "the signed run.ended did not retry the trial in time"
        await asyncio.sleep(0.2)
    assert (reply.trial.id, reply.trial.attempt) == (trial.id, 2)
    figure(f"2 forged run.ended (unsigned, wrong key) ignored and counted, the trial kept RUNNING; the run "
           f"service's signed one retried it {time.monotonic() - ended:.1f}s after EndRun")
