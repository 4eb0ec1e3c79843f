"""PostgreSQL access for the artifact service: artifact records, the blobs they share, and direct
uploads handed out.

Blob lifetime: a blob (`blobs/<sha256>` in S3) lives while a live artifact refers to it. Deleting
the last such artifact queues the blob in `blob_collections` in the same transaction; only once
that transaction is committed is the blob deleted from S3 (`collect`), under the digest's advisory
lock that `record` takes too, so a new artifact of the same content either sees the blob and keeps
it alive, or finds it gone and is asked to upload again. A collection a crash interrupted is
retried by the sweeper.
"""

from __future__ import annotations

import builtins  # `list` below is a method
import logging
import uuid

import asyncpg
from trackd_platform.errors import AlreadyExists, FailedPrecondition, NotFound

from .blobs import BlobStore
from .domain import Artifact

log = logging.getLogger(__name__)


def _artifact(row: asyncpg.Record) -> Artifact:
    return Artifact(run_id=row["run_id"].hex, path=row["path"], size=row["size"], sha256=row["sha256"],
                    type=row["type"], metadata=dict(row["metadata"]), created_at=row["created_at"])


def digest_lock(sha256: str) -> int:
    return int(sha256[:15], 16)  # an advisory lock key per digest


class ArtifactStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def check_run(self, run_id: uuid.UUID) -> None:
        deleted = await self._pool.fetchval("SELECT deleted_at IS NOT NULL FROM runs WHERE id = $1", run_id)
        if deleted is None:
            raise NotFound(f"run {run_id.hex} does not exist")
        if deleted:
            raise FailedPrecondition(f"run {run_id.hex} is deleted: restore it before logging artifacts")

    async def record(self, run_id: uuid.UUID, path: str, sha256: str, size: int, type_: int,
                     metadata: dict[str, str], blobs: BlobStore) -> Artifact:
        """Record an uploaded blob under (run, path). The same content again is a no-op; other
        content at a live path is ALREADY_EXISTS."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", digest_lock(sha256))
            if not await blobs.exists(sha256):  # collected since the upload checked: upload again
                raise FailedPrecondition("the blob was collected during the upload; retry the upload")
            existing = await conn.fetchrow(
                "SELECT * FROM artifacts WHERE run_id = $1 AND path = $2 FOR UPDATE", run_id, path
            )
            if existing is not None and existing["deleted_at"] is None:
                if existing["sha256"] == sha256:
                    return _artifact(existing)
                raise AlreadyExists(f"artifact {path!r} exists with other content; log it under another path")
            row = await conn.fetchrow(
                """INSERT INTO artifacts (run_id, path, sha256, size, type, metadata) VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (run_id, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size,
                       type = excluded.type, metadata = excluded.metadata, created_at = now(), deleted_at = NULL
                   RETURNING *""",
                run_id, path, sha256, size, type_, metadata,
            )
            return _artifact(row)

    async def get(self, run_id: uuid.UUID, path: str) -> Artifact:
        row = await self._pool.fetchrow(
            "SELECT * FROM artifacts WHERE run_id = $1 AND path = $2 AND deleted_at IS NULL", run_id, path
        )
        if row is None:
            raise NotFound(f"run {run_id.hex} has no artifact {path!r}")
        return _artifact(row)

    async def list(self, run_id: uuid.UUID, prefix: str, *, limit: int, after: str) -> list[Artifact]:
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._pool.fetch(
            """SELECT * FROM artifacts WHERE run_id = $1 AND deleted_at IS NULL AND path LIKE $2
                 AND path > $3 ORDER BY path LIMIT $4""",
            run_id, pattern, after, limit,
        )
        return [_artifact(r) for r in rows]

    async def delete(self, run_id: uuid.UUID, path: str, blobs: BlobStore) -> None:
        """Soft-delete. FAILED_PRECONDITION while a model version points to the artifact (the file,
        or a directory holding it): a registered version keeps its content. The blob goes, after
        the commit, when no live artifact refers to it any more."""
        async with self._pool.acquire() as conn, conn.transaction():
            # the row lock orders this against CreateModelVersion, which locks the rows it registers
            sha256 = await conn.fetchval(
                "SELECT sha256 FROM artifacts WHERE run_id = $1 AND path = $2 AND deleted_at IS NULL FOR UPDATE",
                run_id, path)
            if sha256 is None:
                raise NotFound(f"run {run_id.hex} has no artifact {path!r}")
            version = await conn.fetchrow(
                """SELECT m.name, v.version FROM model_versions v JOIN registered_models m ON m.id = v.model_id
                   WHERE v.run_id = $1 AND (v.path = $2 OR starts_with($2, v.path || '/'))
                   ORDER BY m.name, v.version LIMIT 1""", run_id, path)
            if version is not None:
                raise FailedPrecondition(
                    f"artifact {path!r} is registered as version {version['version']} of model {version['name']!r}; "
                    "a registered model version keeps its artifact")
            await conn.execute("UPDATE artifacts SET deleted_at = now() WHERE run_id = $1 AND path = $2", run_id, path)
            queued = await self._queue_if_unreferenced(conn, sha256)
        if queued:
            await self.collect(sha256, blobs)

    async def discard(self, sha256: str, blobs: BlobStore) -> None:
        """A blob an upload published but did not record (refused, failed or cancelled): deleted
        unless an artifact refers to it by now."""
        async with self._pool.acquire() as conn, conn.transaction():
            queued = await self._queue_if_unreferenced(conn, sha256)
        if queued:
            await self.collect(sha256, blobs)

    @staticmethod
    async def _queue_if_unreferenced(conn: asyncpg.Connection, sha256: str) -> bool:
        if await conn.fetchval("SELECT 1 FROM artifacts WHERE sha256 = $1 AND deleted_at IS NULL LIMIT 1", sha256):
            return False
        await conn.execute("INSERT INTO blob_collections (sha256) VALUES ($1) ON CONFLICT DO NOTHING", sha256)
        return True

    async def collect(self, sha256: str, blobs: BlobStore) -> bool:
        """Delete a queued blob from S3 if still no live artifact refers to it, then dequeue it;
        False when S3 could not be reached (the sweeper retries)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", digest_lock(sha256))
                live = await conn.fetchval(
                    "SELECT 1 FROM artifacts WHERE sha256 = $1 AND deleted_at IS NULL LIMIT 1", sha256)
                if not live:
                    await blobs.delete(sha256)
                await conn.execute("DELETE FROM blob_collections WHERE sha256 = $1", sha256)
        except Exception as exc:  # noqa: BLE001 — S3 or PostgreSQL away: the queued row stays, the sweeper retries
            log.warning("collecting blob %s failed (%s: %s); the sweeper retries", sha256, type(exc).__name__, exc)
            return False
        return True

    async def queued_collections(self, *, older_than_s: float, limit: int) -> builtins.list[str]:
        rows = await self._pool.fetch(
            """SELECT sha256 FROM blob_collections WHERE queued_at < now() - make_interval(secs => $1)
               ORDER BY queued_at LIMIT $2""", older_than_s, limit)
        return [r["sha256"] for r in rows]

    # -- direct uploads handed out -------------------------------------------------------------

    async def add_direct_upload(self, key: str, upload_id: str, run_id: uuid.UUID, expires_s: int) -> None:
        await self._pool.execute(
            """INSERT INTO direct_uploads (upload_key, upload_id, run_id, expires_at)
               VALUES ($1, $2, $3, now() + make_interval(secs => $4))""", key, upload_id, run_id, float(expires_s))

    async def direct_upload(self, key: str, run_id: uuid.UUID, *, grace_s: float) -> str:
        """The multipart upload id ('' for a single PUT) of a direct upload handed out for this
        run and not yet expired (its URLs' expiry plus `grace_s`); NOT_FOUND otherwise."""
        upload_id = await self._pool.fetchval(
            """SELECT upload_id FROM direct_uploads WHERE upload_key = $1 AND run_id = $2
                 AND expires_at + make_interval(secs => $3) > now()""", key, run_id, grace_s)
        if upload_id is None:
            raise NotFound("no direct upload of this run has that upload_key (or it expired and was removed): "
                           "ask CreatePresignedUrl for a new one")
        return str(upload_id)

    async def remove_direct_upload(self, key: str) -> None:
        await self._pool.execute("DELETE FROM direct_uploads WHERE upload_key = $1", key)

    async def expired_direct_uploads(self, *, grace_s: float, limit: int) -> builtins.list[tuple[str, str]]:
        """(key, upload id) of direct uploads whose URLs expired more than `grace_s` ago."""
        rows = await self._pool.fetch(
            """SELECT upload_key, upload_id FROM direct_uploads
               WHERE expires_at < now() - make_interval(secs => $1) ORDER BY expires_at LIMIT $2""", grace_s, limit)
        return [(r["upload_key"], r["upload_id"]) for r in rows]

    async def direct_upload_keys(self, keys: builtins.list[str]) -> set[str]:
        """Which of `keys` are direct uploads still handed out (the sweeper leaves those to their expiry)."""
        rows = await self._pool.fetch("SELECT upload_key FROM direct_uploads WHERE upload_key = ANY($1::text[])", keys)
        return {r["upload_key"] for r in rows}
