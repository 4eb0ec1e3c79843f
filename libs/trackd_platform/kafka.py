"""Kafka: the event contract (topics, headers) and client factories."""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from trackd_platform.config import KafkaSettings

log = logging.getLogger(__name__)

RUN_STARTED = "run.started"
RUN_ENDED = "run.ended"
TOPICS = (RUN_STARTED, RUN_ENDED)
CONTENT_TYPE = "application/x-protobuf"
# CloudEvents-style type names, carried in the `ce_type` header.
EVENT_TYPES = {RUN_STARTED: "trackd.events.v1.RunStarted", RUN_ENDED: "trackd.events.v1.RunEnded"}


# HMAC-SHA256 (hex) of an event by the run service's relay, with the key TRACKD_EVENT_KEY: a
# consumer holding the key can tell trackd's events from ones anybody who reaches the broker wrote.
SIGNATURE_HEADER = "trackd-signature"


def signature(key: str, topic: str, event_key: str, event_id: str, payload: bytes) -> str:
    """The `trackd-signature` of an event: its topic, message key, `ce_id` and payload, each
    length-prefixed so no two events sign alike."""
    mac = hmac.new(key.encode(), digestmod="sha256")
    for part in (topic.encode(), event_key.encode(), event_id.encode(), payload):
        mac.update(len(part).to_bytes(8, "big") + part)
    return mac.hexdigest()


def authentic(event: Event, key: str) -> bool:
    """Whether `event` carries the signature `key` gives it (True when no key is configured)."""
    if not key:
        return True
    expected = signature(key, event.topic, event.key, event.headers.get("ce_id", ""), event.value)
    return hmac.compare_digest(event.headers.get(SIGNATURE_HEADER, ""), expected)


@dataclass(frozen=True)
class Event:
    """One message as read from a topic, before the value is decoded."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int


def create_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        request_timeout_ms=10_000,
        linger_ms=5,
    )


async def ensure_topics(settings: KafkaSettings, topics: tuple[str, ...] = TOPICS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await _create_missing(admin, settings, topics)
    finally:
        await asyncio.wait_for(admin.close(), 5)


async def _create_missing(admin: AIOKafkaAdminClient, settings: KafkaSettings, topics: tuple[str, ...]) -> None:
    existing = set(await admin.list_topics())
    missing = [NewTopic(t, settings.partitions, 1) for t in topics if t not in existing]
    if missing:
        try:
            await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass  # another replica won the race


async def create_consumer(
    settings: KafkaSettings,
    topics: tuple[str, ...],
    *,
    group_id: str | None,
    from_beginning: bool,
) -> AIOKafkaConsumer:
    """A started consumer. With a group id it joins the group (committed offsets win over
    `from_beginning`); without one it is assigned every partition directly — the topics are
    created first, so a topic nobody has written to yet is not taken for a single partition."""
    if not group_id:
        await ensure_topics(settings, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group_id is not None,
    )
    await consumer.start()
    try:
        if group_id:
            consumer.subscribe(list(topics))
        else:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(await _partitions(consumer, topic))
            ]
            consumer.assign(partitions)
            if from_beginning:
                await consumer.seek_to_beginning(*partitions)
            else:
                await consumer.seek_to_end(*partitions)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    found = consumer.partitions_for_topic(topic)
    if not found:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
    return set(found or {0})


def to_event(message: Any) -> Event:
    """`message` is an aiokafka `ConsumerRecord` (untyped)."""
    headers = {k: v.decode(errors="replace") for k, v in (getattr(message, "headers", None) or ())}
    key = getattr(message, "key", b"") or b""
    return Event(
        topic=message.topic,
        key=key.decode(errors="replace"),
        value=message.value or b"",
        headers=headers,
        partition=message.partition,
        offset=message.offset,
    )
