"""Kafka client factories for the services (producer, consumer, topics). The event contract itself
(topics, headers, signature, `Event`) is `trackd_platform.event_contract`, re-exported here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IllegalStateError, TopicAlreadyExistsError

from trackd_platform.config import KafkaSettings
from trackd_platform.event_contract import (  # noqa: F401  (re-exported for the services)
    CONTENT_TYPE,
    EVENT_TYPES,
    RUN_ENDED,
    RUN_STARTED,
    SIGNATURE_HEADER,
    TOPICS,
    Event,
    authentic,
    signature,
    to_event,
)

log = logging.getLogger(__name__)

LOG_CHECK_S = 2.0  # a consumer that received nothing this long checks that the broker did not lose its log
LOG_PROBE_MS = 1_000  # how long that check waits for the last record read to come back


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


async def records(consumer: AIOKafkaConsumer, *, assigned: bool) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The consumer's messages, as `async for message in consumer` gives them, with two repairs for
    a broker that lost its log (the embedded Tansu keeps it in memory: a restart empties it, and
    the topics are created again, maybe with more partitions). After LOG_CHECK_S without a message:
    partitions whose last record read is gone (offsets start from 0 again: the consumer would
    wait, deaf, until the log grew back to its old offset) are read again from their beginning —
    all the new log holds was written after the broker came back; and a consumer `assigned` its
    partitions by hand (no group) also takes the partitions the topic gained, from their beginning."""
    checked: dict[TopicPartition, tuple[int, int]] = {}  # (position, end) whose last record was found kept
    empty: set[TopicPartition] = set()  # partitions whose last probe brought nothing back
    while True:
        batch = await consumer.getmany(timeout_ms=int(LOG_CHECK_S * 1000))
        for messages in batch.values():
            for message in messages:
                yield message
        if batch or not (partitions := consumer.assignment()):
            continue
        unread: list[ConsumerRecord[bytes, bytes]] = []
        try:
            if assigned:
                partitions = await _take_new_partitions(consumer, partitions)
            ends = await consumer.end_offsets(list(partitions))
            for tp in partitions:
                if (position := await consumer.position(tp)) <= ends[tp] or checked.get(tp) == (position, ends[tp]):
                    empty.discard(tp)
                    continue
                kept, after = await _last_read_kept(consumer, tp, position)
                unread += after
                if kept is None and tp not in empty:  # nothing came back in time: looked at again next time
                    empty.add(tp)
                    consumer.seek(tp, position)
                    continue
                empty.discard(tp)
                if kept:
                    checked[tp] = (await consumer.position(tp), ends[tp])
                    continue
                log.warning("the broker's log of %s is shorter than what was read (the broker lost its data); "
                            "reading it from its beginning", _names([tp]))
                await consumer.seek_to_beginning(tp)
        except IllegalStateError:  # the group took a partition away meanwhile: the others are checked next time
            pass
        for message in unread:
            yield message


async def _last_read_kept(consumer: AIOKafkaConsumer, tp: TopicPartition,
                          position: int) -> tuple[bool | None, list[ConsumerRecord[bytes, bytes]]]:
    """Whether the broker still holds the last record read from `tp` (the one before `position`),
    read again; with the records after it that the read brought (not yielded yet). None when the
    read brought nothing back in LOG_PROBE_MS (a busy broker, or a log that is gone: asked again
    the next time before it is taken for lost). A position past the end the broker reports is not
    proof of a lost log: Tansu reports the first offset of a log's last batch + 1 as its end, short
    of the truth when that batch holds several records."""
    consumer.seek(tp, position - 1)
    found = (await consumer.getmany(tp, timeout_ms=LOG_PROBE_MS)).get(tp, [])
    if not found:
        return None, []
    if not any(m.offset == position - 1 for m in found):
        return False, []
    return True, [m for m in found if m.offset >= position]


async def _take_new_partitions(consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> set[TopicPartition]:
    await consumer._client.force_metadata_update()
    current = {TopicPartition(t, p) for t in {tp.topic for tp in partitions}
               for p in consumer.partitions_for_topic(t) or ()}
    if not (new := current - partitions):
        return partitions
    log.warning("%s appeared (the broker created the topic again); reading from its beginning", _names(new))
    positions = {tp: await consumer.position(tp) for tp in partitions}
    consumer.assign(sorted(partitions | new))  # a new assignment: every position is set again
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    await consumer.seek_to_beginning(*new)
    return partitions | new


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions))
