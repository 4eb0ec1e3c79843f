"""The transactional outbox: at-least-once event delivery that survives broker outages.

`enqueue()` writes an event row in the caller's transaction, so the event exists if and only if
the state change committed. `OutboxRelay` publishes unsent rows in id order and marks them sent;
while the broker is down rows wait, and are published when it returns. One relay is active at a
time (a PostgreSQL advisory lock elects it among replicas) so one run's events keep their order.

The active relay exports its backlog (`trackd_outbox_backlog`, `trackd_outbox_oldest_unsent_seconds`),
what it published (`trackd_outbox_published_total{topic}`, `trackd_runs_ended_total{status}`) and
its failed attempts (`trackd_outbox_publish_failures_total`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import asyncpg
import prometheus_client
from aiokafka import AIOKafkaProducer
from google.protobuf.message import DecodeError
from opentelemetry import context as otel_context
from trackd_api.events.v1 import events_pb2
from trackd_api.run.v1 import run_pb2

from trackd_platform.config import KafkaSettings, PostgresSettings
from trackd_platform.event_contract import CONTENT_TYPE, EVENT_TYPES, RUN_ENDED, SIGNATURE_HEADER, signature
from trackd_platform.kafka import create_producer, ensure_topics
from trackd_platform.telemetry import context_from_traceparent, current_traceparent, kafka_instrumented

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "trackd_outbox"
_LEADER_LOCK = 0x6F7574  # "out"
BACKLOG_EVERY_S = 5.0  # how often the active relay counts unsent rows (a count scans the backlog)


async def enqueue(conn: asyncpg.Connection, *, topic: str, key: str, event_id: uuid.UUID, payload: bytes) -> None:
    """Record an event in the caller's transaction, with the current trace context."""
    await conn.execute(  # one round trip: the row, and a wake-up for the relay at commit
        """WITH event AS (INSERT INTO outbox (event_id, topic, key, event_type, payload, traceparent)
                          VALUES ($1, $2, $3, $4, $5, $6))
           SELECT pg_notify($7, '')""",
        event_id, topic, key, EVENT_TYPES[topic], payload, current_traceparent(), NOTIFY_CHANNEL,
    )


_closing: set[asyncio.Task[None]] = set()


def _close_later(producer: AIOKafkaProducer) -> None:
    """Stop a producer without waiting on it: stopping can hang as long as the broker does."""
    task = asyncio.create_task(_stop_quietly(producer))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 10)


class OutboxRelay:
    """Publishes the outbox to Kafka. `run()` loops until cancelled."""

    def __init__(
        self,
        *,
        postgres: PostgresSettings,
        kafka: KafkaSettings,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        send_timeout_s: float = 15.0,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self._postgres = postgres
        self._kafka = kafka
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._send_timeout_s = send_timeout_s
        self._wakeup = asyncio.Event()
        self._backlog_at = 0.0
        self._backlog = prometheus_client.Gauge(
            "trackd_outbox_backlog", "Events written but not yet published (active relay only)", registry=registry)
        self._oldest = prometheus_client.Gauge(
            "trackd_outbox_oldest_unsent_seconds", "Age of the oldest unpublished event (active relay only)",
            registry=registry)
        self._published = prometheus_client.Counter(
            "trackd_outbox_published", "Events published to Kafka", ["topic"], registry=registry)
        self._failures = prometheus_client.Counter(
            "trackd_outbox_publish_failures", "Publish attempts that failed (the rows are retried)",
            registry=registry)
        self._runs_ended = prometheus_client.Counter(
            "trackd_runs_ended", "Runs ended, by final status (counted when run.ended is published)",
            ["status"], registry=registry)

    async def run(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._postgres.dsn)
        try:
            # polling is the only way to wait for another session's advisory lock
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK):  # noqa: ASYNC110
                await asyncio.sleep(self._poll_interval_s * 5)  # another replica relays
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wakeup.set())
            log.info("outbox relay active")
            backoff = 0.5
            while True:
                await self._observe_backlog(conn)
                try:
                    while await self.publish_batch(conn) == self._batch_size:
                        pass
                    backoff = 0.5
                except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                    raise
                except Exception as exc:  # noqa: BLE001 — a broker failure: keep the rows, retry
                    self._failures.inc()
                    log.warning("outbox relay: broker unavailable (%s); retrying in %.1fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish up to one batch of unsent events, in id order; rows are marked sent only once
        the broker has acknowledged every one of them.

        Each batch uses a fresh producer. A long-lived one keeps partition metadata across a
        broker restart, and a broker restarted without its data (Tansu's memory storage)
        acknowledges writes to partitions of topics it no longer has: those events would be
        lost. Run events are few, so a connection per batch costs little."""
        async with conn.transaction():
            rows = await conn.fetch(
                """SELECT id, event_id, topic, key, event_type, payload, traceparent FROM outbox
                   WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE""",
                self._batch_size,
            )
            if not rows:
                return 0
            producer = create_producer(self._kafka)
            try:
                # One deadline over every broker call: a half-started broker can leave a
                # request unanswered, and the rows must then stay unsent and be retried.
                async with asyncio.timeout(self._send_timeout_s):
                    await producer.start()
                    await ensure_topics(self._kafka)
                    futures = [await self._send(producer, row) for row in rows]
                    await asyncio.gather(*futures)
            finally:
                _close_later(producer)
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
        for row in rows:
            self._published.labels(row["topic"]).inc()
            if row["topic"] == RUN_ENDED:
                self._runs_ended.labels(ended_status(bytes(row["payload"]))).inc()
        return len(rows)

    async def _observe_backlog(self, conn: asyncpg.Connection) -> None:
        if time.monotonic() - self._backlog_at < BACKLOG_EVERY_S:
            return
        self._backlog_at = time.monotonic()
        row = await conn.fetchrow(
            """SELECT count(*) AS unsent, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age
               FROM outbox WHERE sent_at IS NULL"""
        )
        self._backlog.set(row["unsent"])
        self._oldest.set(float(row["age"]))

    async def _send(self, producer: AIOKafkaProducer, row: asyncpg.Record) -> asyncio.Future[object]:
        # Continue the trace of the request that wrote the event, not the relay's own: the aiokafka
        # instrumentation (telemetry.setup_tracing) opens the producer span under it and writes
        # its `traceparent` header; without the instrumentation the row's own value is sent.
        token = otel_context.attach(context_from_traceparent(row["traceparent"]))
        try:
            headers = [
                ("ce_id", str(row["event_id"]).encode()),
                ("ce_type", row["event_type"].encode()),
                ("content-type", CONTENT_TYPE.encode()),
            ]
            if not kafka_instrumented() and row["traceparent"]:
                headers.append(("traceparent", row["traceparent"].encode()))
            if self._kafka.event_key:
                headers.append((SIGNATURE_HEADER, signature(
                    self._kafka.event_key, row["topic"], row["key"], str(row["event_id"]), bytes(row["payload"])
                ).encode()))
            future: asyncio.Future[object] = await producer.send(
                row["topic"], bytes(row["payload"]), key=row["key"].encode(), headers=headers
            )
            return future
        finally:
            otel_context.detach(token)


def ended_status(payload: bytes) -> str:
    """The final status a `run.ended` payload carries, e.g. "FAILED" ("UNKNOWN" if undecodable)."""
    try:
        status = events_pb2.RunEnded.FromString(payload).status
        name: str = run_pb2.RunStatus.Name(status)
        return name.removeprefix("RUN_STATUS_")
    except (DecodeError, ValueError):  # ValueError: an enum number this build does not know
        return "UNKNOWN"
