"""Artifact uploads: the use cases behind the servicer's upload calls.

A streamed upload writes its blob, then records the artifact; one direct upload hands out
presigned URLs (a single PUT, or the parts of a multipart upload) and is completed later: the
object is checked, promoted to its content-addressed blob and recorded. Whatever fails or is
cancelled before the record commits leaves nothing behind (no blob, no multipart upload, no
record) — see blobs.py for how a cancellation is undone.

Inputs arrive validated (domain.validate_*); raises the platform's errors (InvalidArgument,
NotFound for an unknown run, FailedPrecondition for one that no longer takes artifacts, …)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from trackd_platform.errors import InvalidArgument

from . import domain
from .blobs import DIRECT_PREFIX, BlobStore, BlobUpload
from .store import ArtifactStore


@dataclass(frozen=True)
class NewArtifact:
    """What an upload records, validated."""

    run_id: uuid.UUID
    path: str
    type: int
    metadata: dict[str, str]
    expected_sha256: str  # "" when the client gave none


@dataclass(frozen=True)
class DirectUpload:
    """Where a direct upload goes: one presigned PUT `url`, or the `part_urls` of the multipart
    upload `upload_id`; `key` names it when it is completed."""

    key: str
    url: str = ""
    upload_id: str = ""
    part_urls: list[str] = field(default_factory=list)


class Uploads:
    """`direct_upload_grace_s`: how long after its URLs expire a direct upload may still be
    completed (the sweeper removes it after that)."""

    def __init__(self, store: ArtifactStore, blobs: BlobStore, *, direct_upload_grace_s: float = 3600.0) -> None:
        self._store = store
        self._blobs = blobs
        self._direct_upload_grace_s = direct_upload_grace_s

    async def stream(self, artifact: NewArtifact, expected_size: int, chunks: AsyncIterator[bytes]) -> domain.Artifact:
        """The artifact written from `chunks` and recorded (InvalidArgument from `chunks`, a size
        or digest that differs from the expected one, … record nothing)."""
        await self._store.check_run(artifact.run_id)
        upload = await self._blobs.begin(expected_sha256=artifact.expected_sha256, expected_size=expected_size)
        try:
            async for chunk in chunks:
                await upload.write(chunk)
            # gRPC may report a cancelled stream as its normal end and cancel this task a moment
            # later: a cancellation anywhere before the record is committed undoes it all (blobs.py)
            digest = await upload.finish()
            return await self._store.record(artifact.run_id, artifact.path, digest, upload.size, artifact.type,
                                            artifact.metadata, self._blobs)
        except BaseException:
            # A refused or broken stream (the client cancelled: CancelledError) records nothing.
            await asyncio.shield(self._discard(upload))
            raise

    async def _discard(self, upload: BlobUpload) -> None:
        await upload.abort()
        if upload.published is not None:
            await self._store.discard(upload.published, self._blobs)

    async def start_direct(self, run_id: uuid.UUID, expires_s: int, part_count: int) -> DirectUpload:
        """URLs for a direct upload into the run, valid `expires_s`: one PUT for `part_count` 0
        or 1, else one per part of a multipart upload."""
        await self._store.check_run(run_id)
        key = f"{DIRECT_PREFIX}{uuid.uuid4().hex}"
        if part_count <= 1:
            await self._store.add_direct_upload(key, "", run_id, expires_s)
            return DirectUpload(key=key, url=await self._blobs.presign_put(key, expires_s))
        upload_id = await self._blobs.start_parts(key)
        try:
            await self._store.add_direct_upload(key, upload_id, run_id, expires_s)
        except BaseException:
            await asyncio.shield(self._blobs.abort_parts(key, upload_id))
            raise
        urls = await self._blobs.presign_parts(key, upload_id, part_count, expires_s)
        return DirectUpload(key=key, upload_id=upload_id, part_urls=urls)

    async def complete_direct(self, artifact: NewArtifact, key: str, upload_id: str,
                              parts: Sequence[tuple[int, str]]) -> domain.Artifact:
        """The direct upload `key` (with its `upload_id` and (number, etag) `parts` when it was
        multipart) recorded as `artifact`; InvalidArgument for a key or upload id that
        `start_direct` did not hand out together, a digest that differs from the expected one or
        an object over the size limit (the object is removed then)."""
        if not key.startswith(DIRECT_PREFIX) or len(key) != len(DIRECT_PREFIX) + 32:
            raise InvalidArgument("upload_key is the one CreatePresignedUrl returned")
        await self._store.check_run(artifact.run_id)
        handed_out = await self._store.direct_upload(key, artifact.run_id, grace_s=self._direct_upload_grace_s)
        if upload_id != handed_out:
            raise InvalidArgument("upload_id is the one CreatePresignedUrl returned with this upload_key"
                                  if handed_out else "this upload_key was handed out for a single PUT: no upload_id")
        if handed_out:
            await self._blobs.complete_parts(key, handed_out, list(parts))
        digest, size = await self._blobs.digest(key)
        expected = artifact.expected_sha256
        if (expected and digest != expected) or size > domain.MAX_ARTIFACT_BYTES:
            await self._blobs.delete_key(key)
            await self._store.remove_direct_upload(key)
            raise InvalidArgument(f"sha256 mismatch: got {digest}, expected {expected}" if expected and
                                  digest != expected else "the upload is larger than the artifact limit")
        published = await asyncio.shield(self._blobs.promote(key, digest))
        try:
            recorded = await self._store.record(artifact.run_id, artifact.path, digest, size, artifact.type,
                                                artifact.metadata, self._blobs)
        except BaseException:
            if published:
                await asyncio.shield(self._store.discard(digest, self._blobs))
            raise
        await self._store.remove_direct_upload(key)
        return recorded
