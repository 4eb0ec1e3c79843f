"""Fault drills: a client whose connection is cut in the middle of a message (a TCP proxy aborts
it after a chosen byte). A metric batch cut half-way writes none of its points and is written
exactly once when the client retries it; an artifact upload cut half-way leaves no artifact, no
blob and no open S3 multipart upload, and the same upload retried succeeds byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import grpc
import pytest
import trackd
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.stack import HOST, EmbeddedStack, grpc_serving

from tests.faults.proxy import CuttingProxy
from tests.integration.test_artifacts import UPLOAD
from tests.integration.test_observability import ended_calls, until_ended
from tests.metric_points import series, stored
from tests.stores import BUCKET, s3

pytestmark = pytest.mark.integration


async def last_sequence(stack: EmbeddedStack, stream_id: str) -> int | None:
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        value: int | None = await conn.fetchval(
            "SELECT last_sequence FROM ingest_streams WHERE stream_id = $1", uuid.UUID(stream_id))
        return value
    finally:
        await conn.close()


async def test_a_stream_cut_mid_batch_writes_none_of_it_and_a_retry_writes_it_once(
    stack: EmbeddedStack, unique: Callable[[str], str], figure: Callable[[str], None]
) -> None:
    run = trackd.start_run(unique("cut-batch"), capture_env=False, system_metrics=False)
    stream = uuid.uuid4().hex
    first = ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=1, run_id=run.id,
                                            series=[series("loss", list(range(1000)), [0.5] * 1000)])
    big = ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=2, run_id=run.id, series=[
        series("loss", list(range(1000, 61_000)), [0.25] * 60_000)])
    ingest_pid = stack.services["ingest"].pid
    async with CuttingProxy(HOST, stack.service_port("ingest")) as proxy, \
            grpc.aio.insecure_channel(proxy.address) as channel:
        call = ingest_pb2_grpc.IngestServiceStub(channel).StreamMetrics()
        await call.write(first)
        ack = await call.read()
        assert (ack.sequence, ack.points_written) == (1, 1000)
        proxy.cut_at = proxy.forwarded + big.ByteSize() // 2  # half of the second batch gets through
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await call.write(big)
            await call.read()
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proxy.cut.is_set()
    assert sorted(s for _, s, _ in await stored(stack, run.id)) == list(range(1000)), "nothing of the cut batch"
    assert await last_sequence(stack, stream) == 1
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('ingest')}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        retried = [r async for r in stub.StreamMetrics(iter([first, big]))]  # the client replays both
    assert [(r.sequence, r.points_written, r.duplicate) for r in retried] == [(1, 0, True), (2, 60_000, False)]
    points = await stored(stack, run.id)
    assert sorted(s for _, s, _ in points) == list(range(61_000)), "every point once"
    assert stack.services["ingest"].pid == ingest_pid and grpc_serving(f"{HOST}:{stack.service_port('ingest')}")
    run.end()
    figure(f"batch of 60,000 points cut after {big.ByteSize() // 2:,} of {big.ByteSize():,} bytes: 0 of it stored; "
           f"retried: {len(points):,} points stored for 61,000 logged, 0 duplicates")


async def test_an_upload_cut_mid_stream_leaves_nothing_and_a_retry_succeeds(
    stack: EmbeddedStack, unique: Callable[[str], str], figure: Callable[[str], None]
) -> None:
    run = trackd.start_run(unique("cut-upload"), capture_env=False, system_metrics=False)
    data = os.urandom(20 * 1024 * 1024)  # three 8 MiB S3 parts: a multipart upload is under way at the cut
    sha = hashlib.sha256(data).hexdigest()
    header = artifact_pb2.UploadHeader(run_id=run.id, path="model/weights.bin", type=1, expected_sha256=sha,
                                       expected_size_bytes=len(data))

    async def requests() -> AsyncIterator[artifact_pb2.UploadArtifactRequest]:
        yield artifact_pb2.UploadArtifactRequest(header=header)
        for i in range(0, len(data), 1 << 20):
            yield artifact_pb2.UploadArtifactRequest(chunk=data[i:i + (1 << 20)])

    uploads_before = len(s3(stack).list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))
    calls_before = ended_calls(stack, "artifact", UPLOAD)
    async with CuttingProxy(HOST, stack.service_port("artifact")) as proxy, \
            grpc.aio.insecure_channel(proxy.address) as channel:
        proxy.cut_at = 12 * 1024 * 1024  # past the first 8 MiB part, in the middle of a chunk
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await artifact_pb2_grpc.ArtifactServiceStub(channel).UploadArtifact(requests())
        # the connection is gone: UNAVAILABLE, or, when the cut lands while gRPC's core is sending a
        # message, the client library's own INTERNAL "Internal error from Core" (no server answered)
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE or (
            cut.value.code(), cut.value.details()) == (grpc.StatusCode.INTERNAL, "Internal error from Core")
    # the server sees the connection drop asynchronously, then waits for the S3 part under way (8 MiB:
    # seconds on a busy machine) before it aborts the upload and counts the call; until then, no
    # upload listed proves nothing (the S3 call under way may be the one that starts it)
    assert await until_ended(stack, "artifact", UPLOAD, calls_before + 1) == calls_before + 1
    for _ in range(300):  # an upload SeaweedFS lists again after its abort is aborted again within seconds
        if (uploads := len(s3(stack).list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))) == uploads_before:
            break
        await asyncio.sleep(0.1)
    assert uploads == uploads_before
    assert trackd.list_artifacts(run.id, recursive=True) == []
    assert s3(stack).list_objects_v2(Bucket=BUCKET, Prefix=f"blobs/{sha[:2]}/{sha}").get("KeyCount", 0) == 0
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('artifact')}") as channel:
        stub = artifact_pb2_grpc.ArtifactServiceStub(channel)
        done = (await stub.UploadArtifact(requests())).artifact
        assert (done.path, done.size_bytes, done.sha256) == ("model/weights.bin", len(data), sha)
        back = b"".join([r.chunk async for r in stub.DownloadArtifact(artifact_pb2.DownloadArtifactRequest(
            run_id=run.id, path="model/weights.bin"))])
    assert back == data
    assert [a.path for a in trackd.list_artifacts(run.id, recursive=True)] == ["model/weights.bin"]
    run.end()
    figure(f"20 MiB upload cut after 12 MiB: no artifact, no blob, no open multipart upload; "
           f"retried: stored and read back byte for byte (sha256 {sha[:12]}…)")
