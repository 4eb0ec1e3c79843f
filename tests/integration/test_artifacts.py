"""Artifacts on real SeaweedFS: round trip with bounded server memory, dedup, verification,
ranges, presigned URLs, bad paths."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
import trackd
from trackd.cli import app
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc
from trackd_platform.config import StoresConfig
from trackd_platform.db import create_pool
from trackd_platform.s3 import s3_client
from trackd_platform.stack import HOST, EmbeddedStack
from trackd_services.artifact.api import ArtifactServicer
from trackd_services.artifact.blobs import BlobStore
from trackd_services.artifact.store import ArtifactStore
from trackd_services.artifact.uploads import Uploads
from typer.testing import CliRunner

from tests.integration.test_observability import ended_calls, until_ended
from tests.stores import BUCKET, s3

pytestmark = pytest.mark.integration


@pytest.fixture
async def artifacts(stack: EmbeddedStack) -> AsyncIterator[artifact_pb2_grpc.ArtifactServiceStub]:
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('artifact')}") as channel:
        yield artifact_pb2_grpc.ArtifactServiceStub(channel)


def blobs_with(stack: EmbeddedStack, sha256: str) -> int:
    listed = s3(stack).list_objects_v2(Bucket=BUCKET, Prefix=f"blobs/{sha256[:2]}/{sha256}")
    return int(listed.get("KeyCount", 0))


def open_uploads(stack: EmbeddedStack, *, besides: frozenset[str] = frozenset()) -> int:
    """Open S3 multipart uploads, not counting the ids in `besides` (e.g. presigned uploads other
    tests started and, as presigned uploads do, left for their client to complete)."""
    uploads = s3(stack).list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return len([u for u in uploads if u["UploadId"] not in besides])


UPLOAD = "ArtifactService/UploadArtifact"


def upload_ids(stack: EmbeddedStack) -> frozenset[str]:
    return frozenset(u["UploadId"] for u in s3(stack).list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def seaweedfs_leftovers(stack: EmbeddedStack) -> frozenset[str]:
    """Upload ids the artifact service completed but S3 still lists: SeaweedFS can leave a completed
    upload's directory behind (seaweedfs#10663), and aborting it would delete the object's data, so
    the service logs it and leaves it alone (blobs.py, `BlobStore.complete`). Read from its log."""
    text = (stack.home / "logs" / "artifact.log").read_text(errors="replace")
    return frozenset(re.findall(r"S3 still lists the completed multipart upload (\S+) of ", text))


def tmp_keys(stack: EmbeddedStack) -> frozenset[str]:
    """Objects under tmp/: uploads whose digest was not announced, before they are published."""
    listed = s3(stack).list_objects_v2(Bucket=BUCKET, Prefix="tmp/").get("Contents", [])
    return frozenset(o["Key"] for o in listed)


def test_a_300_mb_round_trip_keeps_the_server_memory_bounded(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path
) -> None:
    source = tmp_path / "checkpoint.bin"
    with open(source, "wb") as f:
        for _ in range(300):
            f.write(os.urandom(1024 * 1024))
    with trackd.start_run(unique("warm-up"), capture_env=False, system_metrics=False) as warm:
        warm.log_text("x" * (9 * 1024 * 1024), "warm.txt")  # the S3 client's first multipart use
    trackd.download_artifacts(warm.id, "warm.txt", tmp_path / "warm")
    server = psutil.Process(stack.services["artifact"].pid)
    baseline, peak, done = server.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], server.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with trackd.start_run(unique("big"), capture_env=False, system_metrics=False) as run:
            run.log_artifact(source, "checkpoints/epoch_3.bin")
        restored = trackd.download_artifacts(run.id, "checkpoints/epoch_3.bin", tmp_path / "restore")
    finally:
        done.set()
        sampler.join()
    assert restored == [tmp_path / "restore" / "epoch_3.bin"]
    assert _sha(restored[0]) == _sha(source)
    growth_mb = (peak[0] - baseline) / 1024**2
    print(f"artifact server RSS: baseline {baseline / 1024**2:.0f} MB, peak growth {growth_mb:.1f} MB")
    assert growth_mb < 64, f"artifact server RSS grew {growth_mb:.0f} MB"


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def test_identical_content_is_stored_once_and_sdk_helpers(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(data)
    (tmp_path / "model" / "sub").mkdir()
    (tmp_path / "model" / "sub" / "config.json").write_text('{"layers": 2}')
    runs = []
    for _ in range(2):
        with trackd.start_run(unique("dedup"), capture_env=False, system_metrics=False) as run:
            run.log_artifact(tmp_path / "model", wait=False)
            run.log_text("hello", "notes/README.md")
            run.log_dict({"auc": 0.9}, "eval/report.json")
        runs.append(run)
    assert blobs_with(stack, hashlib.sha256(data).hexdigest()) == 1
    listed = trackd.list_artifacts(runs[0].id, recursive=True)
    assert {a.path for a in listed} == {"model/weights.bin", "model/sub/config.json", "notes/README.md",
                                        "eval/report.json"}
    top = {a.path: a.is_dir for a in trackd.list_artifacts(runs[0].id)}
    assert top == {"model/": True, "notes/": True, "eval/": True}
    restored = trackd.download_artifacts(runs[1].id, "model", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in restored) == ["sub/config.json",
                                                                                   "weights.bin"]
    assert (tmp_path / "out" / "weights.bin").read_bytes() == data
    # CLI
    runner = CliRunner()
    shown = runner.invoke(app, ["artifacts", "ls", runs[0].id, "model", "-r"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "model/weights.bin" in shown.output and "3.0 MB" in shown.output
    got = runner.invoke(app, ["artifacts", "get", runs[0].id, "notes/README.md", "--dst", str(tmp_path / "cli")])
    assert got.exit_code == 0 and (tmp_path / "cli" / "README.md").read_text() == "hello"


async def upload(stub: artifact_pb2_grpc.ArtifactServiceStub, header: artifact_pb2.UploadHeader,
                 chunks: list[bytes]) -> artifact_pb2.Artifact:
    requests = [artifact_pb2.UploadArtifactRequest(header=header)]
    requests += [artifact_pb2.UploadArtifactRequest(chunk=c) for c in chunks]
    return (await stub.UploadArtifact(iter(requests))).artifact


def blob_keys(stack: EmbeddedStack) -> frozenset[str]:
    listed = s3(stack).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="blobs/")
    return frozenset(o["Key"] for page in listed for o in page.get("Contents", []))


async def test_a_bad_checksum_or_a_short_stream_leaves_nothing(
    stack: EmbeddedStack, artifacts: artifact_pb2_grpc.ArtifactServiceStub, unique: Callable[[str], str]
) -> None:
    before, temporary, blobs = upload_ids(stack), tmp_keys(stack), blob_keys(stack)
    run = trackd.start_run(unique("verify"), capture_env=False, system_metrics=False)
    data = os.urandom(20 * 1024 * 1024)  # several S3 parts: a multipart upload is under way
    chunks = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    wrong = artifact_pb2.UploadHeader(run_id=run.id, path="bad.bin", type=1, expected_sha256="0" * 64)
    short = artifact_pb2.UploadHeader(run_id=run.id, path="short.bin", type=1, expected_size_bytes=len(data) + 1)
    long = artifact_pb2.UploadHeader(run_id=run.id, path="long.bin", type=1, expected_size_bytes=len(data) - 1)
    for header in (wrong, short, long):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload(artifacts, header, chunks)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (header.path, caught.value.details())
        # refused uploads are undone before the answer: nothing to wait for
        assert (upload_ids(stack) - before, tmp_keys(stack) - temporary, blob_keys(stack) - blobs) == (
            frozenset(), frozenset(), frozenset()), header.path

    async def broken() -> AsyncIterator[artifact_pb2.UploadArtifactRequest]:
        yield artifact_pb2.UploadArtifactRequest(header=artifact_pb2.UploadHeader(
            run_id=run.id, path="broken.bin", type=1))
        for chunk in chunks[:12]:
            yield artifact_pb2.UploadArtifactRequest(chunk=chunk)
        raise RuntimeError("the client dies mid-upload")

    settled = ended_calls(stack, "artifact", UPLOAD)  # the calls above are over: each one counted
    call = artifacts.UploadArtifact(broken())
    with pytest.raises((grpc.aio.AioRpcError, RuntimeError, asyncio.CancelledError)):  # grpc cancels the call
        await call

    def left() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        return upload_ids(stack) - before - seaweedfs_leftovers(stack), tmp_keys(stack) - temporary, \
            blob_keys(stack) - blobs

    # The server learns of the cancellation asynchronously, possibly only after it took the cut
    # stream's end for a normal one and began publishing it; it then waits for the S3 call under
    # way (a part of 8 MiB on a busy machine: seconds) before it undoes everything, and only then
    # counts the call. Until then nothing left proves nothing: the S3 call under way may be the one
    # that starts the multipart upload (seen: nothing listed, then the upload, then its abort).
    assert await until_ended(stack, "artifact", UPLOAD, settled + 1) == settled + 1, "the server let go of the call"
    # Undone before the call was counted; an upload SeaweedFS lists again after its abort (a late
    # part write, seaweedfs#11024) is aborted again by the server within seconds.
    for _ in range(300):
        if (remaining := left()) == (frozenset(), frozenset(), frozenset()):
            break
        await asyncio.sleep(0.1)
    assert trackd.list_artifacts(run.id, recursive=True) == []
    assert remaining == (frozenset(), frozenset(), frozenset()), "open uploads, temporary objects, blobs left"
    run.end()


class CancelAtCall:
    """An S3 client that cancels `victim` when its `at`-th call starts (the call itself goes on):
    the RPC's cancellation arriving at any one S3 call of an upload."""

    def __init__(self, client: Any, at: int) -> None:
        self._client, self._at, self.calls = client, at, 0
        self.victim: asyncio.Task[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_") or name in ("exceptions", "meta"):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._at and self.victim is not None:
                self.victim.cancel()
            return await attribute(*args, **kwargs)

        return call


@pytest.mark.parametrize("copy_object_max", [None, 1024 * 1024], ids=["copy-object", "multipart-copy"])
async def test_an_upload_cancelled_at_any_s3_call_leaves_nothing(
    stack: EmbeddedStack, unique: Callable[[str], str], copy_object_max: int | None
) -> None:
    """gRPC may report a cancelled client stream as a normal end of stream, the cancellation
    arriving a moment later, while the server is already publishing the upload. Whichever S3 call
    the cancellation lands on, nothing is left: no open multipart upload, no temporary object, no
    blob, no artifact."""
    config = StoresConfig.from_env(stack.infra_env(), service="artifact")
    pool = await create_pool(config.postgres)
    run = trackd.start_run(unique("cancel-at"), capture_env=False, system_metrics=False)
    data = os.urandom(12 * 1024 * 1024)  # two parts (8 + 4 MiB), then a copy from the temporary key
    digest = hashlib.sha256(data).hexdigest()
    header = artifact_pb2.UploadHeader(run_id=run.id, path="cut.bin", type=1)  # nothing declared
    requests = [artifact_pb2.UploadArtifactRequest(header=header)] + [
        artifact_pb2.UploadArtifactRequest(chunk=data[i:i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]

    async def stream() -> AsyncIterator[artifact_pb2.UploadArtifactRequest]:
        for request in requests:
            yield request

    left: dict[int, list[str]] = {}
    try:
        async with s3_client(config.s3) as client:
            before, temporary = upload_ids(stack), tmp_keys(stack)
            at = 0
            while True:
                at += 1
                cutter = CancelAtCall(client, at)
                blobs = BlobStore(cutter, config.s3.bucket, **(
                    {"copy_object_max": copy_object_max} if copy_object_max else {}))
                store = ArtifactStore(pool)
                servicer = ArtifactServicer(store, blobs, Uploads(store, blobs))
                cutter.victim = task = asyncio.ensure_future(servicer.UploadArtifact(stream(), None))
                try:
                    await task
                    break  # the cancellation came after the last S3 call: the upload is stored
                except asyncio.CancelledError:
                    pass
                await asyncio.sleep(0.2)  # the server's clean-up runs on after the cancellation
                found = [f"upload {u}" for u in upload_ids(stack) - before]
                found += sorted(tmp_keys(stack) - temporary)
                found += ["blob"] * blobs_with(stack, digest)
                found += [a.path for a in trackd.list_artifacts(run.id, recursive=True)]
                if found:
                    left[at] = found
            calls = cutter.calls
    finally:
        await pool.close()
    print(f"upload cancelled at each of its {calls} S3 calls in turn: {len(left)} left something behind")
    assert at > 4, "the drill reached the publishing of the upload"
    assert left == {}, f"left behind when cancelled at S3 call n (of {calls}): {left}"
    assert [a.path for a in trackd.list_artifacts(run.id, recursive=True)] == ["cut.bin"]
    run.end()


async def test_ranges_presigned_urls_and_bad_input(
    stack: EmbeddedStack, artifacts: artifact_pb2_grpc.ArtifactServiceStub, unique: Callable[[str], str]
) -> None:
    run = trackd.start_run(unique("ranges"), capture_env=False, system_metrics=False)
    data = bytes(range(256)) * 1000
    header = artifact_pb2.UploadHeader(run_id=run.id, path="data/table.bin", type=4)
    stored = await upload(artifacts, header, [data])
    assert stored.size_bytes == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    parts = [r.chunk async for r in artifacts.DownloadArtifact(artifact_pb2.DownloadArtifactRequest(
        run_id=run.id, path="data/table.bin", offset=1000, length=5000))]
    assert b"".join(parts) == data[1000:6000]
    url = (await artifacts.CreatePresignedUrl(artifact_pb2.CreatePresignedUrlRequest(
        run_id=run.id, path="data/table.bin", expires_in_seconds=60,
        method=artifact_pb2.PRESIGNED_METHOD_GET))).url
    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bytes(response.read())

    assert await asyncio.to_thread(fetch) == data
    # Same path, same content: a no-op. Other content: ALREADY_EXISTS.
    assert (await upload(artifacts, header, [data])).sha256 == stored.sha256
    codes = {}
    codes["other content"] = (header, [b"other"])
    bad_paths = ["/abs/path", "a/../b", "a//b", "a\\b", "nul\x00x", "./a", "x" * 1025, ""]
    for path in bad_paths:
        codes[f"path {path[:12]!r}"] = (artifact_pb2.UploadHeader(run_id=run.id, path=path, type=1), [b"x"])
    codes["no type"] = (artifact_pb2.UploadHeader(run_id=run.id, path="t.bin"), [b"x"])
    codes["unknown run"] = (artifact_pb2.UploadHeader(run_id=uuid.uuid4().hex, path="u.bin", type=1), [b"x"])
    expected = {"other content": grpc.StatusCode.ALREADY_EXISTS, "unknown run": grpc.StatusCode.NOT_FOUND}
    for name, (bad_header, chunks) in codes.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload(artifacts, bad_header, chunks)
        assert caught.value.code() == expected.get(name, grpc.StatusCode.INVALID_ARGUMENT), name
    run.end()
    client = trackd._client.default_client()
    client.call("run", client.runs.DeleteRun, __import__("trackd_api.run.v1.run_pb2", fromlist=["x"])
                .DeleteRunRequest(run_id=run.id))
    with pytest.raises(grpc.aio.AioRpcError) as deleted:
        await upload(artifacts, artifact_pb2.UploadHeader(run_id=run.id, path="late.bin", type=1), [b"x"])
    assert deleted.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Deleting the only reference removes the blob.
    await artifacts.DeleteArtifact(artifact_pb2.DeleteArtifactRequest(run_id=run.id, path="data/table.bin"))
    assert blobs_with(stack, stored.sha256) == 0


def _put(url: str, body: bytes) -> str:
    request = urllib.request.Request(url, data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["ETag"])


async def test_direct_uploads_to_s3_are_verified_before_being_recorded(
    stack: EmbeddedStack, artifacts: artifact_pb2_grpc.ArtifactServiceStub, unique: Callable[[str], str]
) -> None:
    before = upload_ids(stack)
    run = trackd.start_run(unique("direct"), capture_env=False, system_metrics=False)
    put = artifact_pb2.PRESIGNED_METHOD_PUT
    # One PUT.
    small = os.urandom(100_000)
    single = await artifacts.CreatePresignedUrl(artifact_pb2.CreatePresignedUrlRequest(
        run_id=run.id, path="direct/small.bin", method=put))
    await asyncio.to_thread(_put, single.url, small)
    done = (await artifacts.CompleteDirectUpload(artifact_pb2.CompleteDirectUploadRequest(
        run_id=run.id, path="direct/small.bin", type=1, upload_key=single.upload_key,
        expected_sha256=hashlib.sha256(small).hexdigest()))).artifact
    assert done.size_bytes == len(small) and done.sha256 == hashlib.sha256(small).hexdigest()
    # Multipart: parts of at least 5 MiB but the last.
    big = os.urandom(6 * 1024 * 1024 + 12345)
    pieces = [big[: 6 * 1024 * 1024], big[6 * 1024 * 1024:]]
    multi = await artifacts.CreatePresignedUrl(artifact_pb2.CreatePresignedUrlRequest(
        run_id=run.id, path="direct/big.bin", method=put, part_count=2))
    etags = [await asyncio.to_thread(_put, url, piece) for url, piece in zip(multi.part_urls, pieces, strict=True)]
    await artifacts.CompleteDirectUpload(artifact_pb2.CompleteDirectUploadRequest(
        run_id=run.id, path="direct/big.bin", type=4, upload_key=multi.upload_key, upload_id=multi.upload_id,
        parts=[artifact_pb2.UploadedPart(number=i + 1, etag=e) for i, e in enumerate(etags)]))
    back = b"".join([r.chunk async for r in artifacts.DownloadArtifact(
        artifact_pb2.DownloadArtifactRequest(run_id=run.id, path="direct/big.bin"))])
    assert back == big
    # A wrong digest records nothing and removes the upload.
    wrong = await artifacts.CreatePresignedUrl(artifact_pb2.CreatePresignedUrlRequest(
        run_id=run.id, path="direct/wrong.bin", method=put))
    await asyncio.to_thread(_put, wrong.url, b"tampered")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await artifacts.CompleteDirectUpload(artifact_pb2.CompleteDirectUploadRequest(
            run_id=run.id, path="direct/wrong.bin", type=1, upload_key=wrong.upload_key, expected_sha256="1" * 64))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {a.path for a in trackd.list_artifacts(run.id, "direct", recursive=True)} == {
        "direct/small.bin", "direct/big.bin"}
    leftover = s3(stack).list_objects_v2(Bucket=BUCKET, Prefix="direct/").get("KeyCount", 0)
    assert leftover == 0 and open_uploads(stack, besides=before) == 0
    for bad in (artifact_pb2.CreatePresignedUrlRequest(run_id=run.id, path="x"),  # no method
                artifact_pb2.CreatePresignedUrlRequest(run_id=run.id, path="x", method=put, part_count=10_001)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await artifacts.CreatePresignedUrl(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as forged:
        await artifacts.CompleteDirectUpload(artifact_pb2.CompleteDirectUploadRequest(
            run_id=run.id, path="x", type=1, upload_key="blobs/ab/" + "a" * 64))
    assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    run.end()


def test_figures_and_resumed_downloads(stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([0, 1, 2], [3, 1, 2])
    data = os.urandom(2 * 1024 * 1024)
    with trackd.start_run(unique("figure"), capture_env=False, system_metrics=False) as run:
        run.log_figure(figure, "diagnostics/curve.png")
        run.log_text(data.hex(), "big.txt")
    plt.close(figure)
    [png] = trackd.download_artifacts(run.id, "diagnostics/curve.png", tmp_path)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert trackd.list_artifacts(run.id, "diagnostics")[0].type == "figure"
    # An interrupted download resumes from the partial file (byte range) and is verified.
    text = data.hex().encode()
    (tmp_path / "resume").mkdir()
    (tmp_path / "resume" / "big.txt.part").write_bytes(text[:1_000_000])
    [whole] = trackd.download_artifacts(run.id, "big.txt", tmp_path / "resume")
    assert whole.read_bytes() == text
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "big.txt.part").write_bytes(b"garbage")
    with pytest.raises(trackd.errors.InvalidArgument, match="does not match its sha256"):
        trackd.download_artifacts(run.id, "big.txt", tmp_path / "bad")
