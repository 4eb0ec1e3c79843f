"""The artifact service's background clean-up: what uploads leave in S3 when nobody finishes them.

Every `sweep_interval_s`, each replica (the work is idempotent; replicas may overlap):

- direct uploads handed out by CreatePresignedUrl and never completed: removed (the object, or the
  open multipart upload) once their URLs have been expired for `direct_upload_grace_s`;
- blobs queued for collection whose deletion did not finish (S3 or the process went away between
  the commit and the S3 call): retried;
- leftovers of streamed uploads a killed process could not abort — multipart uploads, and objects
  under `tmp/` and `direct/` that no handed-out direct upload owns — once older than
  `stale_upload_s` (an upload stream may last at most that long).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trackd_platform.config import ArtifactSettings

from .blobs import DIRECT_PREFIX, TMP_PREFIX, BlobStore
from .store import ArtifactStore

log = logging.getLogger(__name__)
BATCH = 1_000  # at most this many items of each kind per sweep
COLLECTION_RETRY_S = 60.0  # a queued collection older than this was interrupted


@dataclass(frozen=True)
class Swept:
    direct_uploads: int = 0
    collections: int = 0
    stale: int = 0


class Sweeper:
    def __init__(self, store: ArtifactStore, blobs: BlobStore, settings: ArtifactSettings) -> None:
        self._store = store
        self._blobs = blobs
        self._settings = settings

    async def run(self) -> None:
        """Sweep forever (a background task of the server)."""
        while True:
            try:
                swept = await self.sweep_once()
                if swept != Swept():
                    log.info("swept %s", swept)
            except Exception as exc:  # noqa: BLE001 — S3 or PostgreSQL away: the next round retries
                log.warning("sweeping uploads failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc,
                            self._settings.sweep_interval_s)
            await asyncio.sleep(self._settings.sweep_interval_s)

    async def sweep_once(self) -> Swept:
        return Swept(direct_uploads=await self._direct_uploads(), collections=await self._collections(),
                     stale=await self._stale())

    async def _direct_uploads(self) -> int:
        expired = await self._store.expired_direct_uploads(grace_s=self._settings.direct_upload_grace_s, limit=BATCH)
        for key, upload_id in expired:
            if upload_id:
                await self._blobs.abort_parts(key, upload_id)
            await self._blobs.delete_key(key)
            await self._store.remove_direct_upload(key)
        return len(expired)

    async def _collections(self) -> int:
        queued = await self._store.queued_collections(older_than_s=COLLECTION_RETRY_S, limit=BATCH)
        return sum([await self._store.collect(sha256, self._blobs) for sha256 in queued])

    async def _stale(self) -> int:
        before = datetime.now(UTC) - timedelta(seconds=self._settings.stale_upload_s)
        uploads = []
        async for key, upload_id, initiated in self._blobs.multipart_uploads():
            if initiated < before:
                uploads.append((key, upload_id))
            if len(uploads) >= BATCH:
                break
        objects = []
        for prefix in (TMP_PREFIX, DIRECT_PREFIX):
            async for key, modified in self._blobs.objects(prefix):
                if modified < before:
                    objects.append(key)
                if len(objects) >= BATCH:
                    break
        handed_out = await self._store.direct_upload_keys([k for k, _ in uploads] + objects)
        removed = 0
        for key, upload_id in uploads:
            # an upload whose key holds an object is a completed upload S3 still lists (blobs.py:
            # `BlobStore.complete`): aborting it would delete that object's data
            if key not in handed_out and not await self._blobs.key_exists(key):
                await self._blobs.abort_parts(key, upload_id)
                removed += 1
        for key in objects:
            if key not in handed_out:
                await self._blobs.delete_key(key)
                removed += 1
        return removed
