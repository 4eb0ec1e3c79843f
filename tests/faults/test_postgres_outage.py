"""Drill: PostgreSQL down for longer than the heartbeat timeout. Live runs, whose heartbeats
failed only because nothing could be written, stay RUNNING; a run whose client really died
during the outage is still CRASHED, one timeout after PostgreSQL is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import trackd
from trackd_api.run.v1 import run_pb2
from trackd_platform.stack import EmbeddedStack

from tests.conftest import HEARTBEAT_TIMEOUT_S

pytestmark = pytest.mark.integration

OUTAGE_S = HEARTBEAT_TIMEOUT_S * 2.5


def status(run_id: str) -> int:
    client = trackd._client.default_client()
    return client.call("run", client.runs.GetRun, run_pb2.GetRunRequest(run_id=run_id), timeout=30).run.status


async def test_live_runs_survive_a_postgres_outage_longer_than_the_heartbeat_timeout(
    stack: EmbeddedStack, unique: Callable[[str], str], figure: Callable[[str], None]
) -> None:
    live = [trackd.start_run(experiment=unique("pg-outage"), system_metrics=False) for _ in range(3)]
    abandoned = trackd.start_run(experiment=unique("pg-outage"), system_metrics=False)
    abandoned._stop.set()  # its process "dies" with the outage: no heartbeat ever again
    postgres = stack.infra["postgres"]
    postgres.stop()
    stopped = time.monotonic()
    try:
        await asyncio.sleep(OUTAGE_S)
    finally:
        postgres.start()
        await asyncio.to_thread(postgres.wait_ready, 60)
    outage = time.monotonic() - stopped
    await asyncio.sleep(HEARTBEAT_TIMEOUT_S * 2)  # heartbeats resume; the detector's grace runs out
    statuses = {run.id: await asyncio.to_thread(status, run.id) for run in [*live, abandoned]}
    assert [statuses[r.id] for r in live] == [run_pb2.RUN_STATUS_RUNNING] * 3, "live runs are not CRASHED"
    assert statuses[abandoned.id] == run_pb2.RUN_STATUS_CRASHED, "a run that stopped beating still is"
    for run in live:
        assert run.end().status == "FINISHED"
    figure(f"PostgreSQL down {outage:.1f}s (heartbeat timeout {HEARTBEAT_TIMEOUT_S:.0f}s): 3 of 3 live runs "
           f"RUNNING afterwards and FINISHED by their clients; the abandoned run CRASHED")
