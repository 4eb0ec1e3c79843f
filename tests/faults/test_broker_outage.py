"""Fault drill: the Kafka broker is down while 100 runs start and end. The outbox keeps every
event in PostgreSQL; once the broker is back all 200 arrive, and a consumer de-duplicating on
`ce_id` sees each exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest
from trackd_api.run.v1 import run_pb2
from trackd_api.run.v1.run_pb2_grpc import RunServiceStub
from trackd_platform.kafka import Event
from trackd_platform.stack import EmbeddedStack

from tests.conftest import collect_events

pytestmark = pytest.mark.integration

LIFECYCLES = 100


async def test_events_of_100_run_lifecycles_survive_a_broker_outage(
    stack: EmbeddedStack, runs: RunServiceStub, unique: Callable[[str], str], figure: Callable[[str], None]
) -> None:
    experiment = unique("broker-outage")
    kafka = stack.infra["kafka"]
    kafka.stop()  # a clean stop: Tansu keeps messages in memory, so this broker loses everything
    try:
        ids = []
        for _ in range(LIFECYCLES):
            run = (await runs.StartRun(run_pb2.StartRunRequest(project_name="events", experiment_name=experiment),
                                       timeout=30)).run
            await runs.EndRun(run_pb2.EndRunRequest(run_id=run.id, status=run_pb2.RUN_STATUS_FINISHED), timeout=30)
            ids.append(run.id)
        await asyncio.sleep(1.0)  # the relay tries, fails and keeps the rows
    finally:
        kafka.start()
        kafka.wait_ready(30)
    back = time.monotonic()
    wanted = set(ids)
    events: list[Event] = []
    while len({e.headers["ce_id"] for e in events}) < 2 * LIFECYCLES and time.monotonic() - back < 120:
        # all copies read so far, and more if some ce_id is still missing (a redelivery counts once)
        events = await collect_events(stack.kafka_bootstrap, lambda e: e.key in wanted,
                                      len(events) + 2 * LIFECYCLES - len({e.headers["ce_id"] for e in events}),
                                      timeout_s=60)
    delivered_after = time.monotonic() - back
    by_id: dict[str, set[tuple[str, str]]] = {}
    for event in events:
        by_id.setdefault(event.headers["ce_id"], set()).add((event.topic, event.key))
    assert all(len(v) == 1 for v in by_id.values()), "a ce_id names one event"
    unique_events = Counter(next(iter(v)) for v in by_id.values())
    assert set(unique_events) == {(t, i) for t in ("run.started", "run.ended") for i in ids}
    assert set(unique_events.values()) == {1}, "one event (one ce_id) per transition: redeliveries only"
    figure(f"{LIFECYCLES} lifecycles during the outage; {len(events)} messages read, {len(by_id)} distinct ce_id "
           f"(expected {2 * LIFECYCLES}), {len(events) - len(by_id)} redelivered copies; all delivered "
           f"{delivered_after:.1f}s after the broker was back")
