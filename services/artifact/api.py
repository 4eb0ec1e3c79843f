"""The ArtifactService servicer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc
from trackd_platform.errors import InvalidArgument
from trackd_platform.ids import parse_id
from trackd_platform.paging import decode_token, encode_token, page_size
from trackd_platform.rpc_types import Context
from trackd_platform.streams import SlowReader
from trackd_platform.timestamps import timestamp

from . import domain
from .blobs import BlobStore
from .store import ArtifactStore
from .uploads import NewArtifact, Uploads

log = logging.getLogger(__name__)


def _artifact(a: domain.Artifact) -> artifact_pb2.Artifact:
    return artifact_pb2.Artifact(run_id=a.run_id, path=a.path, size_bytes=a.size, sha256=a.sha256,
                                 type=artifact_pb2.ArtifactType.Name(a.type), metadata=a.metadata,
                                 create_time=timestamp(a.created_at))


class ArtifactServicer(artifact_pb2_grpc.ArtifactServiceServicer):
    """Uploads go through `uploads` (uploads.py); reads and deletes straight to the store and
    the blobs. `slow_reader_s`: a DownloadArtifact whose client takes no message for this long is
    ended with DEADLINE_EXCEEDED (0: never)."""

    def __init__(self, store: ArtifactStore, blobs: BlobStore, uploads: Uploads, *,
                 slow_reader_s: float = 60.0) -> None:
        self._store = store
        self._blobs = blobs
        self._uploads = uploads
        self._slow_reader_s = slow_reader_s

    async def UploadArtifact(
        self, requests: AsyncIterator[artifact_pb2.UploadArtifactRequest], context: Context
    ) -> artifact_pb2.UploadArtifactResponse:
        first = await anext(aiter(requests), None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument("the first message of an upload is its header")
        header = first.header
        new = NewArtifact(run_id=parse_id("run_id", header.run_id), path=domain.validate_path(header.path),
                          type=domain.validate_type(header.type), metadata=domain.validate_metadata(header.metadata),
                          expected_sha256=domain.validate_sha256(header.expected_sha256))
        if header.expected_size_bytes < 0 or header.expected_size_bytes > domain.MAX_ARTIFACT_BYTES:
            raise InvalidArgument(f"expected_size_bytes must be between 0 and {domain.MAX_ARTIFACT_BYTES}")
        artifact = await self._uploads.stream(new, header.expected_size_bytes, _chunks(requests))
        return artifact_pb2.UploadArtifactResponse(artifact=_artifact(artifact))

    async def DownloadArtifact(
        self, request: artifact_pb2.DownloadArtifactRequest, context: Context
    ) -> AsyncIterator[artifact_pb2.DownloadArtifactResponse]:
        artifact = await self._store.get(parse_id("run_id", request.run_id), domain.validate_path(request.path))
        if request.offset < 0 or request.length < 0 or request.offset > artifact.size:
            raise InvalidArgument(f"range {request.offset}+{request.length} is outside 0..{artifact.size}")
        end = min(artifact.size, request.offset + request.length) if request.length else artifact.size
        reader = SlowReader(context, self._slow_reader_s, call="DownloadArtifact",
                            then="resume it from the bytes received with offset")
        try:
            async for chunk in self._blobs.read(artifact.sha256, request.offset, end):
                reader.waiting()
                yield artifact_pb2.DownloadArtifactResponse(chunk=chunk)
                reader.taken()
        finally:
            reader.taken()

    async def ListArtifacts(
        self, request: artifact_pb2.ListArtifactsRequest, context: Context
    ) -> artifact_pb2.ListArtifactsResponse:
        run_id = parse_id("run_id", request.run_id)
        prefix = domain.validate_path(request.prefix, allow_empty=True)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        limit = page_size(request.page_size)
        after = decode_token(request.page_token, arity=1)
        found = await self._store.list(run_id, prefix, limit=limit, after=str(after[0]) if after else "")
        if not request.recursive:  # direct children: files, and one entry per sub-directory
            entries: dict[str, domain.Artifact] = {}
            for a in found:
                rest = a.path[len(prefix):]
                if "/" in rest:
                    directory = prefix + rest.split("/", 1)[0] + "/"
                    entries.setdefault(directory, domain.Artifact(a.run_id, directory, 0, "", 0, {}, None))
                else:
                    entries[a.path] = a
            shown = list(entries.values())
        else:
            shown = found
        return artifact_pb2.ListArtifactsResponse(
            artifacts=[_artifact(a) for a in shown],
            next_page_token=encode_token([found[-1].path]) if len(found) == limit else "",
        )

    async def StatArtifact(
        self, request: artifact_pb2.StatArtifactRequest, context: Context
    ) -> artifact_pb2.StatArtifactResponse:
        artifact = await self._store.get(parse_id("run_id", request.run_id), domain.validate_path(request.path))
        return artifact_pb2.StatArtifactResponse(artifact=_artifact(artifact))

    async def DeleteArtifact(
        self, request: artifact_pb2.DeleteArtifactRequest, context: Context
    ) -> artifact_pb2.DeleteArtifactResponse:
        await self._store.delete(parse_id("run_id", request.run_id), domain.validate_path(request.path), self._blobs)
        return artifact_pb2.DeleteArtifactResponse()

    async def CreatePresignedUrl(
        self, request: artifact_pb2.CreatePresignedUrlRequest, context: Context
    ) -> artifact_pb2.CreatePresignedUrlResponse:
        expires = request.expires_in_seconds or 3600
        if not 1 <= expires <= 604_800:
            raise InvalidArgument("expires_in_seconds is between 1 and 604800 (7 days)")
        run_id = parse_id("run_id", request.run_id)
        path = domain.validate_path(request.path)
        if request.method == artifact_pb2.PRESIGNED_METHOD_GET:
            artifact = await self._store.get(run_id, path)
            url = await self._blobs.presign(artifact.sha256, artifact.path.rsplit("/", 1)[-1], expires)
            return artifact_pb2.CreatePresignedUrlResponse(url=url)
        if request.method != artifact_pb2.PRESIGNED_METHOD_PUT:
            raise InvalidArgument("method is required: GET or PUT")
        if not 0 <= request.part_count <= 10_000:
            raise InvalidArgument("part_count is between 0 and 10000")
        direct = await self._uploads.start_direct(run_id, expires, request.part_count)
        return artifact_pb2.CreatePresignedUrlResponse(url=direct.url, upload_key=direct.key,
                                                       upload_id=direct.upload_id, part_urls=direct.part_urls)

    async def CompleteDirectUpload(
        self, request: artifact_pb2.CompleteDirectUploadRequest, context: Context
    ) -> artifact_pb2.CompleteDirectUploadResponse:
        new = NewArtifact(run_id=parse_id("run_id", request.run_id), path=domain.validate_path(request.path),
                          type=domain.validate_type(request.type), metadata=domain.validate_metadata(request.metadata),
                          expected_sha256=domain.validate_sha256(request.expected_sha256))
        artifact = await self._uploads.complete_direct(new, request.upload_key, request.upload_id,
                                                       [(p.number, p.etag) for p in request.parts])
        return artifact_pb2.CompleteDirectUploadResponse(artifact=_artifact(artifact))


async def _chunks(requests: AsyncIterator[artifact_pb2.UploadArtifactRequest]) -> AsyncIterator[bytes]:
    """The content of an upload's messages after its header."""
    async for request in requests:
        if not request.HasField("chunk"):
            raise InvalidArgument("only content chunks may follow the header")
        yield request.chunk
