"""Each study's ready queue: a Redis Stream of trials sampled ahead of time, read by workers'
AcquireTrial calls through one consumer group, so handing out a trial costs a stream read and
one PostgreSQL update instead of a sampler call.

Redis holds only what can be rebuilt: the trials themselves are WAITING rows in PostgreSQL.
An entry names a trial id; whoever reads it still has to claim the row (WAITING → RUNNING) in
PostgreSQL, so a duplicate or stale entry is harmless. A lost entry is found again: the
controller rebuilds a study's stream from PostgreSQL on start and whenever its length disagrees
with the WAITING rows, and AcquireTrial falls back to PostgreSQL when the stream is empty or
Redis is down. Keys carry the study id as a hash tag (cluster-safe)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger(__name__)

GROUP = "workers"

# A stream entry as this client reads it: the client speaks RESP2 and does not decode responses
# (trackd_platform.redis.create_redis), so ids, fields and values are bytes: (id, {b"trial": hex}).
Entry = tuple[bytes, dict[bytes, bytes]]


def _trial_id(entry: Entry) -> uuid.UUID:
    return uuid.UUID(hex=entry[1][b"trial"].decode())


def _first_read(found: list[list[Any]]) -> Entry | None:
    """The first entry of an XREADGROUP answer for one stream: RESP2 gives one [stream key,
    [entry, …]] pair per stream, and an empty list when no entry is new."""
    if not found or not found[0][1]:
        return None
    return cast(Entry, found[0][1][0])


def stream_key(study_id: uuid.UUID) -> str:
    return f"trackd:hpo:{{{study_id.hex}}}:ready"


class ReadyQueue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def push(self, study_id: uuid.UUID, trial_ids: Sequence[uuid.UUID], *, replace: bool = False) -> bool:
        """Append trials (in order); with `replace`, the stream holds exactly these afterwards.
        False when Redis is unreachable (the PostgreSQL fallback serves until the next rebuild)."""
        key = stream_key(study_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if replace:
                    pipe.delete(key)
                for trial_id in trial_ids:
                    pipe.xadd(key, {"trial": trial_id.hex})
                await pipe.execute()
            if replace or trial_ids:
                await self._ensure_group(key)
        except RedisError as exc:
            log.warning("ready queue of study %s not updated (%s); PostgreSQL serves until it is rebuilt",
                        study_id.hex, exc)
            return False
        return True

    async def _ensure_group(self, key: str) -> None:
        try:
            # "0": the group starts at the beginning, so entries added before it are not skipped.
            await self._redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def pop(self, study_id: uuid.UUID, worker: str) -> tuple[bytes, uuid.UUID] | None:
        """The next entry for this worker (entry id, trial id), or None when the stream is empty,
        missing or Redis is unreachable."""
        try:
            # RESP2: a list (see _first_read), not the map RESP3 would give
            found = cast(list[list[Any]], await self._redis.xreadgroup(GROUP, worker, {stream_key(study_id): ">"},
                                                                       count=1))
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return None
            log.warning("ready queue of study %s unreadable: %s", study_id.hex, exc)
            return None
        except RedisError as exc:
            log.warning("ready queue of study %s unreadable: %s", study_id.hex, exc)
            return None
        if (entry := _first_read(found)) is None:
            return None
        return entry[0], _trial_id(entry)

    async def done(self, study_id: uuid.UUID, entry_id: bytes) -> None:
        """The entry's trial was claimed in PostgreSQL (or was stale): acknowledge and drop it."""
        key = stream_key(study_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(key, GROUP, entry_id)
                pipe.xdel(key, entry_id)
                await pipe.execute()
        except RedisError:
            pass  # a leftover entry is stale and skipped when read again; rebuilds drop it

    async def trial_ids(self, study_id: uuid.UUID) -> list[uuid.UUID] | None:
        """The trials the stream names, in order (None when Redis is unreachable)."""
        try:
            entries = cast(list[Entry], await self._redis.xrange(stream_key(study_id)))  # bytes, never None
        except RedisError:
            return None
        return [_trial_id(entry) for entry in entries]

    async def drop(self, study_id: uuid.UUID) -> None:
        try:
            await self._redis.delete(stream_key(study_id))
        except RedisError:
            pass
