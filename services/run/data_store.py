"""PostgreSQL access for RunDataService: console log chunks (run_logs, run_log_usage), media
items (run_media) and inputs (run_inputs) of runs. Limits are in data_domain. JSON columns go
through the pool's json codec (trackd_platform.db): Python values in, Python values out."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from trackd_platform.errors import FailedPrecondition, NotFound, ResourceExhausted
from trackd_platform.ids import format_id

from .data_domain import (
    INPUTS_PER_RUN_MAX,
    LOG_READ_MAX_BYTES,
    LOG_RUN_MAX_BYTES,
    MEDIA_PER_RUN_MAX,
    LogChunk,
    MediaItem,
    RunInput,
)


async def _require_run(conn: asyncpg.Connection, run_id: uuid.UUID, *, write: bool) -> None:
    deleted = await conn.fetchval("SELECT deleted_at IS NOT NULL FROM runs WHERE id = $1", run_id)
    if deleted is None:
        raise NotFound(f"run {format_id(run_id)} does not exist")
    if deleted and write:
        raise FailedPrecondition(f"run {format_id(run_id)} is deleted: restore it first")


def _media(row: asyncpg.Record) -> MediaItem:
    return MediaItem(row["key"], row["step"], row["kind"], row["artifact_path"], row["sha256"],
                     list(row["edges"]) if row["edges"] is not None else None,
                     list(row["counts"]) if row["counts"] is not None else None,
                     dict(row["info"]), row["logged_at"])


def _input(row: asyncpg.Record) -> RunInput:
    return RunInput(row["uri"], row["digest"], row["schema"],
                    row["rows"] if row["rows"] is not None else -1, row["context"], row["run_id"], row["logged_at"])


class RunDataStore:
    def __init__(self, pool: asyncpg.Pool, *, log_max_bytes: int = LOG_RUN_MAX_BYTES) -> None:
        self._pool = pool
        self._log_max = log_max_bytes

    # -- console logs -------------------------------------------------------------------------

    async def append_logs(self, run_id: uuid.UUID, writer_id: str, chunks: list[LogChunk]) -> tuple[int, int]:
        """Store the chunks not stored yet ((run, writer, seq) once); past the run's limit drop its
        oldest chunks. One transaction, serialized per run (its usage row is locked), so positions
        follow commit order. Returns (stored, dropped) bytes of the run."""
        async with self._pool.acquire() as conn, conn.transaction():
            await _require_run(conn, run_id, write=True)
            await conn.execute("INSERT INTO run_log_usage (run_id) VALUES ($1) ON CONFLICT DO NOTHING", run_id)
            usage = await conn.fetchrow(
                "SELECT stored_bytes, dropped_bytes FROM run_log_usage WHERE run_id = $1 FOR UPDATE", run_id)
            stored, dropped = usage["stored_bytes"], usage["dropped_bytes"]
            if chunks:
                added = await conn.fetchval(
                    """WITH new AS (
                           INSERT INTO run_logs (run_id, writer_id, seq, stream, text, bytes, logged_at)
                           SELECT $1, $2, c.seq, c.stream, c.text, octet_length(c.text), coalesce(c.at, now())
                           FROM unnest($3::bigint[], $4::smallint[], $5::text[], $6::timestamptz[])
                                AS c (seq, stream, text, at)
                           ORDER BY c.seq
                           ON CONFLICT (run_id, writer_id, seq) DO NOTHING RETURNING bytes)
                       SELECT coalesce(sum(bytes), 0) FROM new""",
                    run_id, writer_id, [c.seq for c in chunks], [c.stream for c in chunks],
                    [c.text for c in chunks], [c.time for c in chunks])
                stored += added
            if stored > self._log_max:
                removed = await conn.fetchval(
                    """WITH old AS (
                           SELECT position, sum(bytes) OVER (ORDER BY position) - bytes AS before
                           FROM run_logs WHERE run_id = $1),
                       gone AS (
                           DELETE FROM run_logs WHERE position IN (SELECT position FROM old WHERE before < $2)
                           RETURNING bytes)
                       SELECT coalesce(sum(bytes), 0) FROM gone""",
                    run_id, stored - self._log_max)
                stored, dropped = stored - removed, dropped + removed
            await conn.execute("UPDATE run_log_usage SET stored_bytes = $2, dropped_bytes = $3 WHERE run_id = $1",
                               run_id, stored, dropped)
            return stored, dropped

    async def read_logs(self, run_id: uuid.UUID, after: int, limit: int, tail_bytes: int
                        ) -> tuple[list[LogChunk], int]:
        """Chunks after position `after` (or the last `tail_bytes` of the log), oldest first, and
        the bytes dropped from the log's start."""
        async with self._pool.acquire() as conn:
            await _require_run(conn, run_id, write=False)
            if tail_bytes > 0:
                start = await conn.fetchval(
                    """SELECT min(position) FROM (
                           SELECT position, sum(bytes) OVER (ORDER BY position DESC) AS upto
                           FROM run_logs WHERE run_id = $1 AND position > $2) t WHERE upto <= $3""",
                    run_id, after, tail_bytes)
                after = max(after, start - 1) if start is not None else after
            rows = await conn.fetch(  # whole chunks up to LOG_READ_MAX_BYTES (at least one)
                """SELECT * FROM (
                       SELECT position, seq, stream, text, logged_at, bytes,
                              sum(bytes) OVER (ORDER BY position) AS upto
                       FROM run_logs WHERE run_id = $1 AND position > $2 ORDER BY position LIMIT $3) t
                   WHERE upto - bytes < $4 ORDER BY position""", run_id, after, limit, LOG_READ_MAX_BYTES)
            dropped = await conn.fetchval("SELECT dropped_bytes FROM run_log_usage WHERE run_id = $1", run_id)
        return ([LogChunk(r["seq"], r["stream"], r["text"], r["logged_at"], r["position"]) for r in rows],
                dropped or 0)

    # -- media --------------------------------------------------------------------------------

    async def log_media(self, run_id: uuid.UUID, item: MediaItem) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await _require_run(conn, run_id, write=True)
            count = await conn.fetchval("SELECT count(*) FROM run_media WHERE run_id = $1", run_id)
            if count >= MEDIA_PER_RUN_MAX and not await conn.fetchval(
                    "SELECT true FROM run_media WHERE run_id = $1 AND key = $2 AND step = $3",
                    run_id, item.key, item.step):
                raise ResourceExhausted(f"run {format_id(run_id)} has {count} media items; the limit is "
                                        f"{MEDIA_PER_RUN_MAX}")
            await conn.execute(
                """INSERT INTO run_media (run_id, key, step, kind, artifact_path, sha256, edges, counts, info)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
                   ON CONFLICT (run_id, key, step) DO UPDATE SET kind = EXCLUDED.kind,
                       artifact_path = EXCLUDED.artifact_path, sha256 = EXCLUDED.sha256, edges = EXCLUDED.edges,
                       counts = EXCLUDED.counts, info = EXCLUDED.info, logged_at = now()""",
                run_id, item.key, item.step, item.kind, item.artifact_path, item.sha256, item.edges, item.counts,
                item.info or {})

    async def list_media(self, run_id: uuid.UUID, key: str) -> list[MediaItem]:
        async with self._pool.acquire() as conn:
            await _require_run(conn, run_id, write=False)
            rows = await conn.fetch(
                """SELECT * FROM run_media WHERE run_id = $1 AND ($2 = '' OR key = $2)
                   ORDER BY key, step LIMIT $3""", run_id, key, MEDIA_PER_RUN_MAX)
        return [_media(r) for r in rows]

    # -- inputs -------------------------------------------------------------------------------

    async def log_inputs(self, run_id: uuid.UUID, inputs: list[RunInput]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await _require_run(conn, run_id, write=True)
            await conn.execute("SELECT id FROM runs WHERE id = $1 FOR UPDATE", run_id)  # counts below hold
            for given in inputs:
                await conn.execute(
                    """INSERT INTO run_inputs (run_id, uri, digest, schema, rows, context)
                       VALUES ($1, $2, $3, $4::jsonb, $5, $6)
                       ON CONFLICT (run_id, uri, digest, context)
                       DO UPDATE SET schema = coalesce(EXCLUDED.schema, run_inputs.schema),
                                     rows = coalesce(EXCLUDED.rows, run_inputs.rows)""",
                    run_id, given.uri, given.digest, given.schema,
                    None if given.rows < 0 else given.rows, given.context)
            count = await conn.fetchval("SELECT count(*) FROM run_inputs WHERE run_id = $1", run_id)
            if count > INPUTS_PER_RUN_MAX:
                raise ResourceExhausted(f"run {format_id(run_id)} would have {count} inputs; the limit is "
                                        f"{INPUTS_PER_RUN_MAX}")

    async def list_inputs(self, run_id: uuid.UUID) -> list[RunInput]:
        async with self._pool.acquire() as conn:
            await _require_run(conn, run_id, write=False)
            rows = await conn.fetch("SELECT * FROM run_inputs WHERE run_id = $1 ORDER BY id", run_id)
        return [_input(r) for r in rows]

    async def find_by_input(self, digest: str, uri: str, limit: int, before: int | None
                            ) -> tuple[list[RunInput], int | None]:
        """Inputs with this digest (and uri when given) of runs not deleted, newest first; and the
        position for the next page (None: no more)."""
        rows: list[Any] = await self._pool.fetch(
            """SELECT i.* FROM run_inputs i JOIN runs r ON r.id = i.run_id AND r.deleted_at IS NULL
               WHERE i.digest = $1 AND ($2 = '' OR i.uri = $2) AND ($3::bigint IS NULL OR i.id < $3)
               ORDER BY i.id DESC LIMIT $4""", digest, uri, before, limit)
        return [_input(r) for r in rows], rows[-1]["id"] if len(rows) == limit else None
