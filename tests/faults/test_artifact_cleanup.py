"""Fault drill: direct (presigned) uploads that their client never completes are removed once
their URLs have been expired for TRACKD_ARTIFACT_DIRECT_UPLOAD_GRACE_S — an object PUT and never
completed, and a multipart upload with parts uploaded and never completed alike — and can no
longer be completed. Shortened here to a grace of 1 s and a sweep every 0.5 s, on an artifact
service of this process (the session stack's runs with the defaults: 1 h, every 60 s)."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
import uuid
from collections.abc import Callable

import grpc
import pytest
import trackd
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc
from trackd_platform.stack import EmbeddedStack

from tests.faults.artifact_service import artifact_service, service_env
from tests.stores import BUCKET, s3

pytestmark = pytest.mark.integration
EXPIRES_S = 2


def put(url: str, body: bytes) -> str:
    request = urllib.request.Request(url, data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["ETag"])


def left(stack: EmbeddedStack, single_key: str, multi_key: str) -> list[str]:
    client = s3(stack)
    found = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=single_key).get("Contents", [])]
    found += [f"upload {u['Key']}" for u in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
              if u["Key"] == multi_key]
    return found


async def test_an_abandoned_direct_upload_is_removed_after_the_cleanup_time(
    stack: EmbeddedStack, unique: Callable[[str], str], figure: Callable[[str], None]
) -> None:
    env = service_env(stack, TRACKD_ARTIFACT_DIRECT_UPLOAD_GRACE_S="1", TRACKD_ARTIFACT_SWEEP_INTERVAL_S="0.5")
    run = trackd.start_run(unique("abandoned"), capture_env=False, system_metrics=False)
    put_method = artifact_pb2.PRESIGNED_METHOD_PUT
    async with artifact_service(env) as service, grpc.aio.insecure_channel(service.target) as channel:
        stub = artifact_pb2_grpc.ArtifactServiceStub(channel)
        single = await stub.CreatePresignedUrl(artifact_pb2.CreatePresignedUrlRequest(
            run_id=run.id, path="abandoned/one.bin", method=put_method, expires_in_seconds=EXPIRES_S))
        multi = await stub.CreatePresignedUrl(artifact_pb2.CreatePresignedUrlRequest(
            run_id=run.id, path="abandoned/parts.bin", method=put_method, part_count=2,
            expires_in_seconds=EXPIRES_S))
        expiry = time.monotonic() + EXPIRES_S
        await asyncio.to_thread(put, single.url, os.urandom(1000))
        etag = await asyncio.to_thread(put, multi.part_urls[0], os.urandom(5 * 1024 * 1024))
        assert len(left(stack, single.upload_key, multi.upload_key)) == 2, "both uploads are there to abandon"
        sweeping = asyncio.ensure_future(service.sweeper.run())
        try:
            for _ in range(300):
                if not left(stack, single.upload_key, multi.upload_key):
                    break
                await asyncio.sleep(0.1)
            removed_after = time.monotonic() - expiry
        finally:
            sweeping.cancel()
        remaining = left(stack, single.upload_key, multi.upload_key)
        refused = {}
        for name, request in {
            "single": artifact_pb2.CompleteDirectUploadRequest(
                run_id=run.id, path="abandoned/one.bin", type=1, upload_key=single.upload_key),
            "multipart": artifact_pb2.CompleteDirectUploadRequest(
                run_id=run.id, path="abandoned/parts.bin", type=1, upload_key=multi.upload_key,
                upload_id=multi.upload_id, parts=[artifact_pb2.UploadedPart(number=1, etag=etag)]),
            "never issued": artifact_pb2.CompleteDirectUploadRequest(
                run_id=run.id, path="x.bin", type=1, upload_key=f"direct/{uuid.uuid4().hex}"),
        }.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CompleteDirectUpload(request)
            refused[name] = caught.value.code()
    run.end()
    figure(f"abandoned direct uploads (a PUT object and a multipart upload with a part): removed "
           f"{removed_after:.1f} s after their URLs expired (grace 1 s, sweep every 0.5 s); completing them "
           f"afterwards: {({k: v.name for k, v in refused.items()})}")
    assert remaining == []
    assert refused == dict.fromkeys(("single", "multipart", "never issued"), grpc.StatusCode.NOT_FOUND)
    assert trackd.list_artifacts(run.id, "abandoned", recursive=True) == []


async def test_the_sweeper_never_aborts_an_upload_whose_key_holds_an_object(stack: EmbeddedStack) -> None:
    """SeaweedFS can leave a completed multipart upload listed as open (seaweedfs#10663), and an abort
    of it deletes the completed object's data: a stale upload whose key holds an object is left
    alone, one whose key holds none is aborted. Stale after 1 s here (the default: a day)."""
    client = s3(stack)
    completed, abandoned = f"blobs/zz/{uuid.uuid4().hex}", f"tmp/{uuid.uuid4().hex}"
    body = os.urandom(1000)
    uploads = {key: client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
               for key in (completed, abandoned)}
    client.put_object(Bucket=BUCKET, Key=completed, Body=body)  # the object a completed upload made
    await asyncio.sleep(1.5)
    async with artifact_service(service_env(stack, TRACKD_ARTIFACT_STALE_UPLOAD_S="1")) as service:
        await service.sweeper.sweep_once()
    listed = {u["UploadId"] for u in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])}
    try:
        assert uploads[completed] in listed and uploads[abandoned] not in listed
        assert client.get_object(Bucket=BUCKET, Key=completed)["Body"].read() == body
    finally:
        client.abort_multipart_upload(Bucket=BUCKET, Key=completed, UploadId=uploads[completed])
        client.delete_object(Bucket=BUCKET, Key=completed)
