"""Fault drills: the Kafka broker is down while 100 runs start and end. The outbox keeps every
event in PostgreSQL; once the broker is back all 200 arrive, and a consumer de-duplicating on
`ce_id` sees each exactly once. And consumers that were following the broker before it lost its
log (Tansu keeps it in memory) follow the new one: the hpo service and `trackd_platform.kafka.records`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from trackd_api.run.v1 import run_pb2
from trackd_api.run.v1.run_pb2_grpc import RunServiceStub
from trackd_platform.config import KafkaSettings
from trackd_platform.kafka import LOG_CHECK_S, RUN_ENDED, Event, create_consumer, records
from trackd_platform.stack import EmbeddedStack

from tests.conftest import collect_events
from tests.integration.test_observability import scrape, value

pytestmark = pytest.mark.integration

LIFECYCLES = 100
AFTER = 16  # messages sent after the broker lost its log
BATCHED = 40  # messages sent in one batch a partition


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


async def send(bootstrap: str, count: int, prefix: str) -> None:
    """`count` unsigned run.ended messages: events only the hpo service's signature check sees."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(RUN_ENDED, b"", key=f"{prefix}-{i}".encode())
    finally:
        await producer.stop()


async def test_consumers_follow_a_broker_that_lost_its_log(stack: EmbeddedStack, figure: Callable[[str], None]) -> None:
    """Before the fix, a consumer positioned at offset ~30 waited for the new log to reach 30 again,
    and did not read the partitions the topic gained when it was created again: the hpo service
    missed run.ended events (it retries a trial at once when its run FAILED) meanwhile."""
    settings = KafkaSettings(bootstrap=stack.kafka_bootstrap, event_key="")
    consumer = await create_consumer(settings, (RUN_ENDED,), group_id=None, from_beginning=False)
    try:
        await send(stack.kafka_bootstrap, 90, "before")  # every partition's position well past 3
        received = [m.key async for m in _first(records(consumer, assigned=True), 90)]
        assert len(received) == 90
        kafka = stack.infra["kafka"]
        kafka.stop()
        kafka.start()
        kafka.wait_ready(30)
        port = stack.metrics_port("hpo")
        forged_before = value(scrape(port), "trackd_hpo_forged_events_total")
        back = time.monotonic()
        await send(stack.kafka_bootstrap, AFTER, "after")  # on every partition, new ones too
        after = [m.key async for m in _first(records(consumer, assigned=True), AFTER, timeout_s=30)]
        followed = time.monotonic() - back
        partitions = consumer.partitions_for_topic(RUN_ENDED) or set()
        assert {tp.partition for tp in consumer.assignment()} == partitions
    finally:
        await consumer.stop()
    assert sorted(after) == sorted(f"after-{i}".encode() for i in range(AFTER))
    deadline = time.monotonic() + 30
    while (seen := value(scrape(port), "trackd_hpo_forged_events_total") - forged_before) < AFTER:
        assert time.monotonic() < deadline, f"the hpo service saw {seen:.0f} of the {AFTER} sent after the restart"
        await asyncio.sleep(0.5)
    figure(f"a consumer 90 messages into the log before the broker lost it read the {AFTER} sent after (on "
           f"{len(partitions)} partitions) {followed:.1f}s later; the hpo service counted them too")


async def test_a_consumer_idle_after_a_batch_of_several_records_reads_nothing_twice(
    stack: EmbeddedStack, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """Tansu reports the end of a log whose last batch holds several records as that batch's first
    offset + 1. Before the fix, a consumer idle for LOG_CHECK_S after such a batch took its position,
    past that end, for a lost log and read its partitions again from their beginning: the hpo
    service and `trackd events tail` got every event again after each burst of outbox events."""
    topic = unique("batched")
    consumer = await create_consumer(KafkaSettings(bootstrap=stack.kafka_bootstrap, event_key=""), (topic,),
                                     group_id=None, from_beginning=True)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=200)
    await producer.start()
    try:
        sent = [await producer.send(topic, b"", key=f"batch-{i}".encode()) for i in range(BATCHED)]
        await asyncio.gather(*sent)  # one batch a partition, sent once the linger is over
        messages = records(consumer, assigned=True)
        first = [m.key async for m in _first(messages, BATCHED)]
        ends = await consumer.end_offsets(list(consumer.assignment()))
        short = [tp for tp in consumer.assignment() if await consumer.position(tp) > ends[tp]]
        assert short, "the premise: the broker reports the end of a log whose last batch holds several records short"

        async def one_more_after_idling() -> None:
            await asyncio.sleep(2 * LOG_CHECK_S + 1)  # the consumer checks the log at least once meanwhile
            await producer.send_and_wait(topic, b"", key=b"last")

        late = asyncio.create_task(one_more_after_idling())
        then = [m.key async for m in _first(messages, 1, timeout_s=30)]
        await late
    finally:
        await producer.stop()
        await consumer.stop()
    assert sorted(first) == sorted(f"batch-{i}".encode() for i in range(BATCHED))
    assert then == [b"last"], "the next message after idling is the new one, not the log read again"
    assert not [r for r in caplog.records if "lost its data" in r.getMessage()]


async def _first(messages: Any, count: int, *, timeout_s: float = 15) -> Any:
    async with asyncio.timeout(timeout_s):
        async for message in messages:
            yield message
            count -= 1
            if count == 0:
                return
