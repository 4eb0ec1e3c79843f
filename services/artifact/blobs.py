"""S3 access for the artifact service: content-addressed blobs (`blobs/<sha256>`), streamed uploads,
ranged reads and direct (presigned) uploads.

Cancellation: an upload's S3 calls run one at a time, each as a task of its own that the RPC's
cancellation does not interrupt, and `BlobUpload.abort()` waits for the one under way before it
undoes what was done — whether the cancellation came while the stream was read or while the upload
was being published (gRPC may report a cancelled client stream as its normal end, the cancellation
arriving a moment later). Nothing here holds an S3 connection while a client is slow: reads are
ranged GETs of READ_PIECE bytes, each read whole before any of it is handed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from trackd_platform.errors import InvalidArgument, NotFound, Unavailable

from .domain import MAX_ARTIFACT_BYTES, PART_BYTES, blob_key

log = logging.getLogger(__name__)
READ_CHUNK = 1024 * 1024  # one DownloadArtifact message
READ_PIECE = 4 * READ_CHUNK  # one ranged GET: what a download holds in memory, with no S3 connection
COPY_OBJECT_MAX = 5 * 1024**3  # S3's limit for one CopyObject; larger objects are copied part by part
TMP_PREFIX = "tmp/"  # uploads whose digest was not announced, until it is known
DIRECT_PREFIX = "direct/"  # direct uploads, until they are verified
_MISSING = ("404", "NoSuchKey", "NotFound")
ABORT_CHECKS, ABORT_RECHECK_S = 5, 0.5  # `BlobStore.aborted`
REAPPEAR_CHECKS_S = (1.0, 2.0, 4.0, 8.0)  # `BlobStore._abort_reappearing`: after 1, 3, 7 and 15 s
LEFTOVER_LOG = ("S3 still lists the completed multipart upload %s of %s (a SeaweedFS leftover, seaweedfs#10663): "
                "left alone, since aborting it would delete the object's data")


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


class BlobUpload:
    """Streams one upload into S3 while hashing it. Parts go out as they fill, so memory stays
    bounded by the part size. With the digest announced up front the parts go straight to the
    blob's final key; otherwise to a temporary key, copied once the digest is known. Nothing is
    visible under `blobs/` until `finish()` has checked size and digest; `abort()` leaves no
    multipart upload and no temporary object behind (a blob this upload published is reported by
    `published`: only its owner, which knows whether an artifact refers to it, may delete it)."""

    def __init__(self, blobs: BlobStore, *, expected_sha256: str, expected_size: int, store: bool = True) -> None:
        self._blobs = blobs
        self._client = blobs.client
        self._bucket = blobs.bucket
        self._store = store  # False: the blob exists already; only hash and count
        self._expected_sha256 = expected_sha256
        self._expected_size = expected_size
        self._key = blob_key(expected_sha256) if expected_sha256 else f"{TMP_PREFIX}{uuid.uuid4().hex}"
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None  # an open multipart upload to self._key
        self._copy_upload: tuple[str, str] | None = None  # an open multipart copy: (key, upload id)
        self._temporary: str | None = None  # a completed temporary object to remove
        self._inflight: asyncio.Future[Any] | None = None
        self.size = 0
        self.published: str | None = None  # the digest, once this upload has written blobs/<digest>

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
            body = bytes(self._buffer)
            self._buffer.clear()
            await self._step(self._upload_part(body))

    async def _step(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Runs `work` as a task the RPC's cancellation does not interrupt; `abort()` waits for it.
        Each step records what it created as soon as S3 has answered."""
        self._inflight = asyncio.ensure_future(work)
        return await asyncio.shield(self._inflight)

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
        if self._store:
            await self._step(self._publish(digest))
        return digest

    async def _publish(self, digest: str) -> None:
        final = blob_key(digest)
        if self._upload_id is None:  # small: one PUT, straight to its final key
            await self._client.put_object(Bucket=self._bucket, Key=final, Body=bytes(self._buffer))
            self._buffer.clear()
            self.published = digest
            return
        if self._buffer:
            await self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        await self._blobs.complete(self._key, self._upload_id, self._parts)
        self._upload_id = None
        if self._key == final:
            self.published = digest
            return
        self._temporary = self._key
        if not await self._blobs.exists(digest):  # the same content stored already: nothing to copy
            await self._blobs.copy(self._key, final, on_started=self._copy_started)
            self.published = digest
        await self._client.delete_object(Bucket=self._bucket, Key=self._key)
        self._temporary = None

    def _copy_started(self, key: str, upload_id: str | None) -> None:
        self._copy_upload = (key, upload_id) if upload_id else None

    async def abort(self) -> None:
        """Undo what this upload did in S3 (the call under way first), except a published blob.
        Never raises: what cannot be removed now is left to the sweeper (`sweeper.py`)."""
        if self._inflight is not None:
            with contextlib.suppress(BaseException):
                await self._inflight
        self._buffer.clear()
        undo: list[tuple[str, dict[str, Any]]] = []
        if self._upload_id is not None:
            undo.append(("abort_multipart_upload", {"Key": self._key, "UploadId": self._upload_id}))
        if self._copy_upload is not None:
            undo.append(("abort_multipart_upload", {"Key": self._copy_upload[0], "UploadId": self._copy_upload[1]}))
        if self._temporary is not None:
            undo.append(("delete_object", {"Key": self._temporary}))
        self._upload_id = self._copy_upload = self._temporary = None
        for operation, arguments in undo:
            try:
                await getattr(self._client, operation)(Bucket=self._bucket, **arguments)
                if operation == "abort_multipart_upload":
                    await self._blobs.aborted(arguments["Key"], arguments["UploadId"])
            except (ClientError, BotoCoreError) as exc:
                log.warning("clean-up of an aborted upload failed (%s %s: %s); the sweeper retries",
                            operation, arguments["Key"], exc)


class BlobStore:
    """The bucket: blobs under `blobs/<sha256[:2]>/<sha256>`, uploads under way under `tmp/` and
    `direct/`. `copy_object_max`: objects up to this size are copied with one CopyObject, larger
    ones part by part (S3 allows CopyObject up to 5 GiB)."""

    def __init__(self, client: Any, bucket: str, *, copy_object_max: int = COPY_OBJECT_MAX) -> None:
        self.client = client
        self.bucket = bucket
        self._copy_object_max = copy_object_max
        self._rechecks: set[asyncio.Future[None]] = set()  # `_abort_reappearing` tasks under way

    async def begin(self, *, expected_sha256: str, expected_size: int) -> BlobUpload:
        """An upload; content announced by its digest and already stored is only verified."""
        store = not (expected_sha256 and await self.exists(expected_sha256))
        return BlobUpload(self, expected_sha256=expected_sha256, expected_size=expected_size, store=store)

    async def exists(self, sha256: str) -> bool:
        return await self.key_exists(blob_key(sha256))

    async def key_exists(self, key: str) -> bool:
        try:
            await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise Unavailable(f"S3 is unavailable: {exc}") from exc
        return True

    async def read(self, sha256: str, offset: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [offset, end) of a blob in READ_CHUNK pieces. Each READ_PIECE is one ranged GET
        read whole, its connection back in the pool, before any of it is yielded: a reader that
        stops reading holds memory for one piece and no S3 connection."""
        position = offset
        while position < end:
            stop = min(position + READ_PIECE, end)
            try:
                response = await self.client.get_object(
                    Bucket=self.bucket, Key=blob_key(sha256), Range=f"bytes={position}-{stop - 1}")
                body = response["Body"]
                try:
                    piece: bytes = await body.read()
                finally:
                    body.close()  # the connection goes back to the pool before the client gets a byte
            except ClientError as exc:
                if _missing(exc):
                    raise NotFound(f"the content {sha256[:12]}… is missing from the bucket") from None
                raise Unavailable(f"S3 is unavailable: {exc}") from exc
            if len(piece) != stop - position:
                raise Unavailable(f"S3 returned {len(piece)} bytes for a range of {stop - position}; retry")
            for start in range(0, len(piece), READ_CHUNK):
                yield piece[start:start + READ_CHUNK]
            position = stop

    async def delete(self, sha256: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=blob_key(sha256))

    async def copy(self, source: str, target: str, *, on_started: Any = None) -> None:
        """Copy `source` to `target` inside the bucket. A multipart copy that fails is aborted; its
        upload id is reported to `on_started(target, upload_id)` (None once it is complete), so that
        whoever runs the copy as a step can abort it after a cancellation."""
        size = int((await self.client.head_object(Bucket=self.bucket, Key=source))["ContentLength"])
        if size <= self._copy_object_max:
            await self.client.copy_object(Bucket=self.bucket, Key=target,
                                          CopySource={"Bucket": self.bucket, "Key": source})
            return
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=target)
        upload_id: str = created["UploadId"]
        if on_started is not None:
            on_started(target, upload_id)
        try:
            parts = []
            part_size = max(PART_BYTES, -(-size // 10_000))  # S3: at most 10,000 parts
            for number, start in enumerate(range(0, size, part_size), 1):
                copied = await self.client.upload_part_copy(
                    Bucket=self.bucket, Key=target, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    CopySourceRange=f"bytes={start}-{min(start + part_size, size) - 1}")
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            await self.complete(target, upload_id, parts)
        except Exception:
            with contextlib.suppress(ClientError, BotoCoreError):
                await self.client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload_id)
            raise
        finally:
            if on_started is not None:
                on_started(target, None)

    async def complete(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        """CompleteMultipartUpload, then a check that S3 no longer lists the upload. SeaweedFS can
        leave a completed upload's directory behind, listed as open (seaweedfs#10663, #11382), and
        an abort of such a leftover deletes the completed object's data: it is logged
        (`LEFTOVER_LOG`) and left alone — the sweeper, too, never aborts an upload whose key holds
        an object."""
        await self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                    MultipartUpload={"Parts": parts})
        try:  # the upload is complete: nothing below may fail it (its caller would abort it)
            listed = await self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        except (ClientError, BotoCoreError):
            return
        if any(u["UploadId"] == upload_id for u in listed.get("Uploads", [])):
            log.warning(LEFTOVER_LOG, upload_id, key)

    async def aborted(self, key: str, upload_id: str) -> None:
        """After AbortMultipartUpload answered: the upload is no longer listed, or the abort is sent
        again (up to ABORT_CHECKS times, ABORT_RECHECK_S apart). SeaweedFS has answered an abort and
        still listed the upload (seen once in the cut-upload drill, tests/faults/test_disconnects.py,
        with no error anywhere); what is still listed after that is logged for the sweeper."""
        for _ in range(ABORT_CHECKS):
            listed = await self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            if all(u["UploadId"] != upload_id for u in listed.get("Uploads", [])):
                log.info("multipart upload %s of %s aborted", upload_id, key)
                task = asyncio.ensure_future(self._abort_reappearing(key, upload_id))
                self._rechecks.add(task)
                task.add_done_callback(self._rechecks.discard)
                return
            await asyncio.sleep(ABORT_RECHECK_S)
            with contextlib.suppress(ClientError):
                await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        log.warning("multipart upload %s of %s is still listed after %d aborts; the sweeper retries",
                    upload_id, key, ABORT_CHECKS)

    async def _abort_reappearing(self, key: str, upload_id: str) -> None:
        """SeaweedFS has listed an upload again seconds after its abort was answered and it was
        gone from the listing (the cut-upload drill, twice: a part's write landing after the abort
        re-creates the upload, seaweedfs#11024): looked for again REAPPEAR_CHECKS_S later, and
        aborted again if it is back. Never the upload of a completed object: this one was aborted."""
        for delay in REAPPEAR_CHECKS_S:
            await asyncio.sleep(delay)
            try:
                listed = await self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
                if any(u["UploadId"] == upload_id for u in listed.get("Uploads", [])):
                    log.warning("S3 lists the aborted multipart upload %s of %s again: aborted again", upload_id, key)
                    await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError) as exc:
                log.warning("re-checking the aborted upload %s of %s failed (%s); the sweeper retries", upload_id,
                            key, exc)
                return

    async def presign(self, sha256: str, filename: str, expires_s: int) -> str:
        url: str = await self.client.generate_presigned_url(
            "get_object", ExpiresIn=expires_s,
            Params={"Bucket": self.bucket, "Key": blob_key(sha256),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"'},
        )
        return url

    # -- direct uploads: the client PUTs to S3 itself, the server verifies and records ---------

    async def presign_put(self, key: str, expires_s: int) -> str:
        url: str = await self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)
        return url

    async def start_parts(self, key: str) -> str:
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id: str = created["UploadId"]
        return upload_id

    async def presign_parts(self, key: str, upload_id: str, parts: int, expires_s: int) -> list[str]:
        return [await self.client.generate_presigned_url(
            "upload_part", ExpiresIn=expires_s,
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": n})
            for n in range(1, parts + 1)]

    async def complete_parts(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        try:
            await self.complete(key, upload_id, [{"PartNumber": n, "ETag": etag} for n, etag in parts])
        except ClientError as exc:
            await self.abort_parts(key, upload_id)
            raise InvalidArgument(f"the multipart upload cannot be completed: {exc}") from None

    async def abort_parts(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(ClientError):
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def digest(self, key: str) -> tuple[str, int]:
        """sha256 and size of an object, read back in chunks (memory stays bounded)."""
        h, size = hashlib.sha256(), 0
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
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

    async def promote(self, key: str, sha256: str) -> bool:
        """Move a verified direct upload to its content address; True when this wrote the blob."""
        written = False
        if not await self.exists(sha256):
            await self.copy(key, blob_key(sha256))
            written = True
        await self.delete_key(key)
        return written

    async def delete_key(self, key: str) -> None:
        with contextlib.suppress(ClientError):
            await self.client.delete_object(Bucket=self.bucket, Key=key)

    # -- what the sweeper looks at ---------------------------------------------------------------

    async def multipart_uploads(self) -> AsyncIterator[tuple[str, str, datetime]]:
        """(key, upload id, initiated) of every open multipart upload in the bucket."""
        marker: dict[str, str] = {}
        while True:
            listed = await self.client.list_multipart_uploads(Bucket=self.bucket, **marker)
            for upload in listed.get("Uploads", []):
                yield upload["Key"], upload["UploadId"], upload["Initiated"]
            if not listed.get("IsTruncated"):
                return
            marker = {"KeyMarker": listed.get("NextKeyMarker", ""),
                      "UploadIdMarker": listed.get("NextUploadIdMarker", "")}

    async def objects(self, prefix: str) -> AsyncIterator[tuple[str, datetime]]:
        """(key, last modified) of every object under `prefix`."""
        token: dict[str, str] = {}
        while True:
            listed = await self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, **token)
            for item in listed.get("Contents", []):
                yield item["Key"], item["LastModified"]
            if not listed.get("IsTruncated"):
                return
            token = {"ContinuationToken": listed["NextContinuationToken"]}
