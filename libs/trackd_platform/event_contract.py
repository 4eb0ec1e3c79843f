"""The run-event contract as consumers read it, without a Kafka client: the topics, the headers,
the HMAC signature (`trackd-signature`) and one message as an `Event`. The SDK's `trackd.events`
and the services' `trackd_platform.kafka` both use it; only the latter needs aiokafka."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

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
