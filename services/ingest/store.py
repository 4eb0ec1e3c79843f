"""PostgreSQL and Redis access for the ingest service."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT
from trackd_platform.cache_keys import committed_points, latest_metrics
from trackd_platform.errors import FailedPrecondition, InvalidArgument, NotFound
from trackd_platform.metric_series import (
    Summary,
    encode_latest,
    encode_summary,
    latest_field,
    run_summaries,
    summary_of,
)

from .domain import Chunk, merge, summarize, unpack

log = logging.getLogger(__name__)

RUNNING, CRASHED = 1, 5  # run statuses that accept points (a CRASHED run may still be flushing)
_SERIES_CACHE_MAX = 100_000


@dataclass(frozen=True)
class Committed:
    points: int
    duplicate: bool
    # each touched series' summary as committed (merged with earlier batches), keyed (key, context)
    summaries: dict[tuple[str, int], Summary] = field(default_factory=dict)


class MetricStore:
    """Writes batches of points, exactly once per (stream, sequence)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # (run, key, context) → series id: derivable from PostgreSQL, so safe to lose.
        self._series: OrderedDict[tuple[uuid.UUID, str, int], int] = OrderedDict()

    async def commit(
        self, run_id: uuid.UUID, chunks: Sequence[Chunk], *, stream_id: uuid.UUID | None = None, sequence: int = 0
    ) -> Committed:
        """One transaction: the points and, for a stream, its new sequence number. A sequence
        at or below the stream's committed one is a retry: acknowledged, not written again.
        `chunks` may be empty for a stream's batch whose series were all rejected: only the
        sequence is recorded."""
        async with self._pool.acquire() as conn:
            series_ids = await self._series_ids(conn, run_id, chunks)
            async with conn.transaction():
                if stream_id is not None:
                    row = await conn.fetchrow(
                        """INSERT INTO ingest_streams (stream_id, run_id, last_sequence) VALUES ($1, $2, 0)
                           ON CONFLICT (stream_id) DO UPDATE SET updated_at = now()
                           RETURNING run_id, last_sequence""",
                        stream_id, run_id,
                    )
                    if row["run_id"] != run_id:
                        raise InvalidArgument(f"stream {stream_id} belongs to another run: use one stream per run")
                    if sequence <= row["last_sequence"]:
                        return Committed(points=0, duplicate=True)
                await self._check_run(conn, run_id)
                summaries: dict[tuple[str, int], Summary] = {}
                if chunks:  # none: every series of a stream's batch was rejected; its sequence still counts
                    await conn.execute(
                        """INSERT INTO metric_chunks
                               (run_id, series_id, first_step, last_step, points, steps, vals, timestamps, overview)
                           SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::int[],
                                                    $6::bytea[], $7::bytea[], $8::bytea[], $9::bytea[])""",
                        run_id, series_ids, [c.first_step for c in chunks], [c.last_step for c in chunks],
                        [c.points for c in chunks], *zip(*(c.packed() for c in chunks), strict=True),
                    )
                    summaries = await _update_summaries(conn, run_id, series_ids, chunks)
                if stream_id is not None:
                    await conn.execute(
                        "UPDATE ingest_streams SET last_sequence = $2 WHERE stream_id = $1", stream_id, sequence
                    )
        return Committed(points=sum(c.points for c in chunks), duplicate=False, summaries=summaries)

    async def _check_run(self, conn: asyncpg.Connection, run_id: uuid.UUID) -> None:
        status = await conn.fetchval("SELECT status FROM runs WHERE id = $1", run_id)
        if status is None:
            raise NotFound(f"run {run_id.hex} does not exist")
        if status not in (RUNNING, CRASHED):
            raise FailedPrecondition(f"run {run_id.hex} has ended: metrics go to a RUNNING run")

    async def _series_ids(self, conn: asyncpg.Connection, run_id: uuid.UUID, chunks: Sequence[Chunk]) -> list[int]:
        wanted = [(run_id, c.key, c.context) for c in chunks]
        missing = list(dict.fromkeys(w for w in wanted if w not in self._series))
        if missing:
            keys, contexts = [m[1] for m in missing], [m[2] for m in missing]
            # a new series carries a copy of its run's params for search (migration 0022): the run row
            # held FOR KEY SHARE waits out a run service transaction logging params (FOR UPDATE), and
            # that one's refresh of the run's series waits for this one's commit
            async with conn.transaction():
                if not await conn.fetchval("SELECT 1 FROM runs WHERE id = $1 FOR KEY SHARE", run_id):
                    raise NotFound(f"run {run_id.hex} does not exist")
                await conn.execute(
                    """INSERT INTO metric_series (run_id, key, context, run_params)
                       SELECT $1, k, c, trackd_search_params($1) FROM unnest($2::text[], $3::smallint[]) AS w(k, c)
                       ON CONFLICT DO NOTHING""",
                    run_id, keys, contexts,
                )
            rows = await conn.fetch(
                """SELECT s.id, s.key, s.context FROM metric_series s
                   JOIN unnest($2::text[], $3::smallint[]) AS w(key, context)
                     ON s.key = w.key AND s.context = w.context
                   WHERE s.run_id = $1""",
                run_id, keys, contexts,
            )
            for row in rows:
                self._series[(run_id, row["key"], row["context"])] = row["id"]
            while len(self._series) > _SERIES_CACHE_MAX:
                self._series.popitem(last=False)
        return [self._series[w] for w in wanted]

    async def backfill_summaries(self) -> int:
        """Fill the summary columns of series written before they existed (migration 0005).
        Each series is locked while it is computed, so a concurrent commit waits for it."""
        done = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    """SELECT s.run_id, s.id FROM metric_series s WHERE s.points = 0
                         AND EXISTS (SELECT 1 FROM metric_chunks c WHERE c.run_id = s.run_id AND c.series_id = s.id)
                       LIMIT 1 FOR UPDATE SKIP LOCKED"""
                )
                if row is None:
                    return done
                chunks = [unpack(r["steps"], r["vals"], r["timestamps"]) for r in await conn.fetch(
                    """SELECT c.steps, c.vals, c.timestamps FROM metric_chunks c JOIN metric_series s
                         ON s.id = c.series_id AND s.run_id = c.run_id WHERE s.run_id = $1 AND s.id = $2""",
                    row["run_id"], row["id"])]
                await _update_summaries(conn, row["run_id"], [row["id"]] * len(chunks), chunks)
                done += 1

    async def queue_repair(self, run_id: uuid.UUID) -> None:
        await self._pool.execute(
            "INSERT INTO latest_cache_repairs (run_id) VALUES ($1) ON CONFLICT DO NOTHING", run_id
        )

    async def pending_repairs(self, limit: int = 100) -> list[uuid.UUID]:
        return [r["run_id"] for r in await self._pool.fetch(
            "SELECT run_id FROM latest_cache_repairs ORDER BY queued_at LIMIT $1", limit)]

    async def done_repair(self, run_id: uuid.UUID) -> None:
        await self._pool.execute("DELETE FROM latest_cache_repairs WHERE run_id = $1", run_id)

    async def summaries(self, run_id: uuid.UUID) -> dict[tuple[str, int], Summary]:
        """The latest-metric summary of every series of a run, as committed in PostgreSQL."""
        return await run_summaries(self._pool, run_id)


# Whether the incoming point is the series' latest; written against the target row `s` (not a
# joined copy) so a concurrent update re-evaluates it on the row version it waited for.
_NEWER = "(s.last_step IS NULL OR (n.step, n.ts) >= (s.last_step, s.last_ts))"


async def _update_summaries(
    conn: asyncpg.Connection, run_id: uuid.UUID, series_ids: Sequence[int], chunks: Sequence[Chunk]
) -> dict[tuple[str, int], Summary]:
    """Merge the chunks into their series' (all of run `run_id`) summary columns; returns the
    merged summaries. Rows are updated in id order so two transactions touching the same series
    cannot deadlock."""
    merged: dict[int, Summary] = {}
    for series_id, chunk in zip(series_ids, chunks, strict=True):
        merged[series_id] = merge(merged.get(series_id), summarize(chunk))
    ids = sorted(merged)
    rows = [merged[i] for i in ids]
    updated = await conn.fetch(
        f"""UPDATE metric_series s SET
               last_step  = CASE WHEN {_NEWER} THEN n.step ELSE s.last_step END,
               last_value = CASE WHEN {_NEWER} THEN n.value ELSE s.last_value END,
               last_ts    = CASE WHEN {_NEWER} THEN n.ts ELSE s.last_ts END,
               min_value  = LEAST(s.min_value, n.min),
               max_value  = GREATEST(s.max_value, n.max),
               points     = s.points + n.count
           FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::bigint[], $5::float8[], $6::float8[],
                       $7::bigint[]) AS n(id, step, value, ts, min, max, count)
           WHERE s.run_id = $8 AND s.id = n.id
           RETURNING s.key, s.context, s.last_step, s.last_value, s.last_ts, s.min_value, s.max_value, s.points""",
        ids, [r.step for r in rows], [r.value for r in rows], [r.timestamp for r in rows],
        [None if math.isnan(r.min) else r.min for r in rows], [None if math.isnan(r.max) else r.max for r in rows],
        [r.count for r in rows], run_id,
    )
    return {(r["key"], r["context"]): summary_of(r) for r in updated}


# Stores committed summaries (PostgreSQL merged them) unless the hash already holds a later one:
# a series' point count only grows, so the higher count is the later commit, whatever order
# replicas reach Redis in.
_STORE_NEWER = """
for i = 1, #ARGV, 3 do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if not raw or cjson.decode(raw).count < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 1
"""


class LatestCache:
    """The Redis latest-metric cache and live fan-out. Redis being down never fails a write: the
    run is queued for repair (in PostgreSQL) and a circuit breaker skips Redis for a while."""

    def __init__(self, redis: aioredis.Redis, store: MetricStore, *, retry_after_s: float = 2.0) -> None:
        self._redis = redis
        self._store = store
        self._store_newer = redis.register_script(_STORE_NEWER)
        self._retry_after_s = retry_after_s
        self._down_until = 0.0

    async def update(self, run_id: uuid.UUID, summaries: dict[tuple[str, int], Summary], published: bytes) -> None:
        """Store the committed summaries of a run's series and publish its new points."""
        if time.monotonic() < self._down_until:
            await self._store.queue_repair(run_id)
            return
        try:
            args = [x for (key, context), s in summaries.items()
                    for x in (latest_field(key, context), s.count, encode_summary(s))]
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._store_newer(keys=[latest_metrics(run_id)], args=args, client=pipe)
                pipe.publish(committed_points(run_id), published)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self._retry_after_s
            log.warning("Redis unavailable (%s): latest-metric cache of run %s queued for repair", exc, run_id.hex)
            await self._store.queue_repair(run_id)

    async def repair_pending(self) -> int:
        """Rebuild the cache of every queued run from PostgreSQL; returns how many were repaired."""
        if time.monotonic() < self._down_until:
            return 0
        repaired = 0
        for run_id in await self._store.pending_repairs():
            summaries = await self._store.summaries(run_id)
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(latest_metrics(run_id))
                    if summaries:
                        # redis types a hash's fields invariantly: a dict[str, str] is not its mapping type
                        fields: dict[FieldT, EncodableT] = {f: v for f, v in encode_latest(summaries).items()}
                        pipe.hset(latest_metrics(run_id), mapping=fields)
                    await pipe.execute()
            except (TimeoutError, RedisError, OSError):
                self._down_until = time.monotonic() + self._retry_after_s
                return repaired
            await self._store.done_repair(run_id)
            repaired += 1
        if repaired:
            log.info("repaired the latest-metric cache of %d runs", repaired)
        return repaired
