"""Subscribing to run lifecycle events: `async for event in trackd.events.subscribe(...)`."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from trackd_api.events.v1 import events_pb2
from trackd_platform.config import KafkaSettings
from trackd_platform.event_contract import RUN_ENDED, RUN_STARTED, TOPICS, authentic, to_event

from trackd._settings import ClientSettings

log = logging.getLogger(__name__)
DECODERS: dict[str, type[Message]] = {RUN_STARTED: events_pb2.RunStarted, RUN_ENDED: events_pb2.RunEnded}


@dataclass(frozen=True)
class RunEvent:
    topic: str
    run_id: str  # the message key
    event_id: str  # the `ce_id` header: de-duplicate on it (delivery is at-least-once)
    type: str
    message: Any  # events_pb2.RunStarted or events_pb2.RunEnded
    headers: dict[str, str]
    partition: int
    offset: int


async def subscribe(
    topics: Sequence[str] = TOPICS,
    *,
    group_id: str | None = None,
    from_beginning: bool = False,
    bootstrap: str | None = None,
) -> AsyncIterator[RunEvent]:
    """Decoded events from `run.started` / `run.ended`. With a `group_id`, consumers share the
    partitions and resume from committed offsets; without, this reader sees every partition.
    With TRACKD_EVENT_KEY set (the servers' key), events without its signature are skipped: only
    what trackd's run service published comes through."""
    unknown = set(topics) - set(DECODERS)
    if unknown:
        raise ValueError(f"unknown topics {sorted(unknown)}; trackd publishes {list(DECODERS)}")
    try:  # the Kafka client is an extra: a training node that only logs does not need it
        from trackd_platform.kafka import create_consumer, records
    except ImportError as exc:
        raise ImportError(f"trackd.events needs a Kafka client ({exc}): pip install 'trackd[events]'") from None
    settings = KafkaSettings(bootstrap=bootstrap or ClientSettings.from_env().kafka_bootstrap,
                             event_key=os.environ.get("TRACKD_EVENT_KEY", ""))
    consumer = await create_consumer(settings, tuple(topics), group_id=group_id, from_beginning=from_beginning)
    try:
        async for message in records(consumer, assigned=group_id is None):
            event = to_event(message)
            if not authentic(event, settings.event_key):
                log.warning("skipped a %s event (partition %d, offset %d) without a valid trackd-signature",
                            event.topic, event.partition, event.offset)
                continue
            decoded = DECODERS[event.topic]()
            decoded.ParseFromString(event.value)
            yield RunEvent(
                topic=event.topic, run_id=event.key, event_id=event.headers.get("ce_id", ""),
                type=event.headers.get("ce_type", ""), message=decoded, headers=event.headers,
                partition=event.partition, offset=event.offset,
            )
    finally:
        await consumer.stop()
