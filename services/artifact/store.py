"""S3 and PostgreSQL access for the artifact service."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from botocore.exceptions import ClientError
from trackd_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from trackd_services.artifact.domain import MAX_ARTIFACT_BYTES, PART_BYTES, Artifact, blob_key

log = logging.getLogger(__name__)
READ_CHUNK = 1024 * 1024


class BlobUpload:
    """Streams one upload into S3 while hashing it. Parts go out as they fill, so memory stays
    bounded by the part size. With the digest announced up front the parts go straight to the
    blob's final key; otherwise to a temporary key, copied once the digest is known. Nothing is
    visible in the bucket until `finish()` has checked size and digest; `abort()` leaves no
    multipart upload behind."""

    def __init__(self, client: Any, bucket: str, *, expected_sha256: str, expected_size: int,
                 store: bool = True) -> None:
        self._client = client
        self._store = store  # False: the blob exists already; only hash and count
        self._bucket = bucket
        self._expected_sha256 = expected_sha256
        self._expected_size = expected_size
        self._key = blob_key(expected_sha256) if expected_sha256 else f"tmp/{uuid.uuid4().hex}"
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._inflight: asyncio.Future[Any] | None = None
        self.size = 0

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_ARTIFACT_BYTES:
            raise InvalidArgument(f"artifacts are at most {MAX_ARTIFACT_BYTES // 1024**3} GiB")
        if self._expected_size and self.size > self._expected_size:
            raise InvalidArgument(f"more bytes than the {self._expected_size} declared")
        self._hash.update(data)
        if not self._store:
            return
        self._buffer += data
        if len(self._buffer) >= PART_BYTES:
            await self._flush_part()

    async def _flush_part(self) -> None:
        # Each S3 call runs as its own task, shielded from the RPC's cancellation, and records
        # its result itself: `abort()` then knows of every multipart upload that was created.
        self._inflight = asyncio.ensure_future(self._upload_part(bytes(self._buffer)))
        self._buffer.clear()
        await asyncio.shield(self._inflight)

    async def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            created = await self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        part = await self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def finish(self) -> str:
        """Check and publish the blob; returns its sha256."""
        digest = self._hash.hexdigest()
        if self._expected_size and self.size != self._expected_size:
            raise InvalidArgument(f"the upload ended after {self.size} of {self._expected_size} declared bytes")
        if self._expected_sha256 and digest != self._expected_sha256:
            raise InvalidArgument(f"sha256 mismatch: got {digest}, expected {self._expected_sha256}")
        final = blob_key(digest)
        if not self._store:
            return digest
        if self._upload_id is None:  # small: one PUT, straight to its final key
            await self._client.put_object(Bucket=self._bucket, Key=final, Body=bytes(self._buffer))
            self._buffer.clear()
            return digest
        if self._buffer:
            await self._flush_part()
        await self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None
        if self._key != final:
            await self._client.copy({"Bucket": self._bucket, "Key": self._key}, self._bucket, final)
            await self._client.delete_object(Bucket=self._bucket, Key=self._key)
        return digest

    async def abort(self) -> None:
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await self._inflight
        if self._upload_id is not None:
            with contextlib.suppress(ClientError):
                await self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None
        self._buffer.clear()


class BlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    async def begin(self, *, expected_sha256: str, expected_size: int) -> BlobUpload:
        """An upload; content announced by its digest and already stored is only verified."""
        store = not (expected_sha256 and await self.exists(expected_sha256))
        return BlobUpload(self._client, self.bucket, expected_sha256=expected_sha256,
                          expected_size=expected_size, store=store)

    async def exists(self, sha256: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=blob_key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise Unavailable(f"S3 is unavailable: {exc}") from exc
        return True

    async def read(self, sha256: str, offset: int, length: int) -> AsyncIterator[bytes]:
        byte_range = f"bytes={offset}-{offset + length - 1}" if length else f"bytes={offset}-"
        response = await self._client.get_object(Bucket=self.bucket, Key=blob_key(sha256), Range=byte_range)
        body = response["Body"]
        try:
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, sha256: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=blob_key(sha256))

    async def presign(self, sha256: str, filename: str, expires_s: int) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object", ExpiresIn=expires_s,
            Params={"Bucket": self.bucket, "Key": blob_key(sha256),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"'},
        )
        return url

    # -- direct uploads: the client PUTs to S3 itself, the server verifies and records ---------

    async def presign_put(self, key: str, expires_s: int) -> str:
        url: str = await self._client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)
        return url

    async def presign_parts(self, key: str, parts: int, expires_s: int) -> tuple[str, list[str]]:
        created = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id: str = created["UploadId"]
        urls = [await self._client.generate_presigned_url(
            "upload_part", ExpiresIn=expires_s,
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": n})
            for n in range(1, parts + 1)]
        return upload_id, urls

    async def complete_parts(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        try:
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]})
        except ClientError as exc:
            with contextlib.suppress(ClientError):
                await self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise InvalidArgument(f"the multipart upload cannot be completed: {exc}") from None

    async def digest(self, key: str) -> tuple[str, int]:
        """sha256 and size of an object, read back in chunks (memory stays bounded)."""
        h, size = hashlib.sha256(), 0
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError:
            raise NotFound("nothing was uploaded to that upload_key") from None
        body = response["Body"]
        try:
            async for chunk in body.iter_chunks(READ_CHUNK):
                h.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return h.hexdigest(), size

    async def promote(self, key: str, sha256: str) -> None:
        """Move a verified direct upload to its content address."""
        if not await self.exists(sha256):
            await self._client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, blob_key(sha256))
        await self.delete_key(key)

    async def delete_key(self, key: str) -> None:
        with contextlib.suppress(ClientError):
            await self._client.delete_object(Bucket=self.bucket, Key=key)


def _artifact(row: asyncpg.Record) -> Artifact:
    return Artifact(run_id=row["run_id"].hex, path=row["path"], size=row["size"], sha256=row["sha256"],
                    type=row["type"], metadata=dict(row["metadata"]), created_at=row["created_at"])


def _digest_lock(sha256: str) -> int:
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
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _digest_lock(sha256))
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
        """Soft-delete; the blob goes when no live artifact refers to it any more."""
        artifact = await self.get(run_id, path)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _digest_lock(artifact.sha256))
            await conn.execute(
                "UPDATE artifacts SET deleted_at = now() WHERE run_id = $1 AND path = $2", run_id, path
            )
            live = await conn.fetchval(
                "SELECT count(*) FROM artifacts WHERE sha256 = $1 AND deleted_at IS NULL", artifact.sha256
            )
            if live == 0:
                await blobs.delete(artifact.sha256)
