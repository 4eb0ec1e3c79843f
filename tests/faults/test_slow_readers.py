"""Fault drills: clients that open a server stream and stop reading. Twenty such clients of
DownloadArtifact (artifact service) or ExportMetric (query service) must not take the pooled
PostgreSQL or S3 connections other calls need: while they stall, reads, small downloads and
uploads keep answering within their deadline. A pool with no free connection answers
UNAVAILABLE with a clear message after its acquisition deadline, instead of hanging."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import trackd
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_platform.config import PostgresSettings
from trackd_platform.db import create_pool
from trackd_platform.errors import Unavailable
from trackd_platform.stack import HOST, EmbeddedStack

from tests.conftest import QUERY_SLOW_READER_S
from tests.faults.artifact_service import artifact_service, service_env
from tests.metric_points import series

pytestmark = pytest.mark.integration
STALLED = 20
PROBE_DEADLINE_S = 5.0
# Before the fix a stalled client past the pool's size never got its first message; on a loaded
# machine 20 first messages at once (a 4 MiB S3 read each) can take more than the probes' 5 s.
START_DEADLINE_S = 20.0
BIG_ARTIFACT = 64 * 1024 * 1024  # well past what gRPC's flow-control windows let through unread
EXPORTED_POINTS = 1_000_000  # ~16 export messages of 65,536 points (about 1.5 MB each)


async def stall(target: str, open_stream: Callable[[grpc.aio.Channel], Any], count: int
                ) -> tuple[list[grpc.aio.Channel], list[Any], int]:
    """`count` clients, each on a connection of its own, that open a server stream, read one
    message and then stop reading; also how many got their first message within
    START_DEADLINE_S (before the fix, a client past the pool's size never got one)."""
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 32 << 20)])
                for _ in range(count)]
    calls = [open_stream(channel) for channel in channels]

    async def first(call: Any) -> bool:
        try:
            await asyncio.wait_for(call.read(), START_DEADLINE_S)
        except (TimeoutError, grpc.aio.AioRpcError):
            return False
        return True

    started = sum(await asyncio.gather(*(first(call) for call in calls)))
    await asyncio.sleep(1.0)  # the server fills the windows and blocks on each stream
    return channels, calls, started


async def release(channels: list[grpc.aio.Channel], calls: list[Any]) -> None:
    for call in calls:
        call.cancel()
    await asyncio.gather(*(channel.close() for channel in channels))


async def answered(probes: list[Callable[[], Awaitable[Any]]]) -> tuple[int, float]:
    """How many probes answered OK within PROBE_DEADLINE_S (they run at once), and the slowest."""
    async def one(probe: Callable[[], Awaitable[Any]]) -> float | None:
        started = time.perf_counter()
        try:
            await probe()
        except grpc.aio.AioRpcError:
            return None
        return time.perf_counter() - started

    times = await asyncio.gather(*(one(p) for p in probes))
    ok = [t for t in times if t is not None]
    return len(ok), max(ok, default=0.0)


@pytest.fixture
async def big_artifact(stack: EmbeddedStack, unique: Callable[[str], str]) -> AsyncIterator[tuple[str, bytes]]:
    data = os.urandom(BIG_ARTIFACT)
    run = trackd.start_run(unique("slow-download"), capture_env=False, system_metrics=False)
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('artifact')}") as channel:
        stub = artifact_pb2_grpc.ArtifactServiceStub(channel)
        header = artifact_pb2.UploadHeader(run_id=run.id, path="big.bin", type=1, expected_size_bytes=len(data),
                                           expected_sha256=hashlib.sha256(data).hexdigest())
        requests = [artifact_pb2.UploadArtifactRequest(header=header)] + [
            artifact_pb2.UploadArtifactRequest(chunk=data[i:i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
        await stub.UploadArtifact(iter(requests), timeout=120)
        small = artifact_pb2.UploadHeader(run_id=run.id, path="small.txt", type=5)
        await stub.UploadArtifact(iter([artifact_pb2.UploadArtifactRequest(header=small),
                                        artifact_pb2.UploadArtifactRequest(chunk=b"small")]), timeout=30)
    yield run.id, data
    run.end()


async def test_twenty_stalled_downloads_leave_the_artifact_service_answering(
    stack: EmbeddedStack, big_artifact: tuple[str, bytes], unique: Callable[[str], str],
    figure: Callable[[str], None],
) -> None:
    run_id, _ = big_artifact
    target = f"{HOST}:{stack.service_port('artifact')}"
    download = artifact_pb2.DownloadArtifactRequest(run_id=run_id, path="big.bin")
    channels, calls, started = await stall(
        target, lambda ch: artifact_pb2_grpc.ArtifactServiceStub(ch).DownloadArtifact(download), STALLED)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = artifact_pb2_grpc.ArtifactServiceStub(channel)
            probe = artifact_pb2.UploadHeader(run_id=run_id, path="probe.txt", type=5)

            async def upload_small() -> None:
                await stub.UploadArtifact(iter([artifact_pb2.UploadArtifactRequest(header=probe),
                                                artifact_pb2.UploadArtifactRequest(chunk=b"probe")]),
                                          timeout=PROBE_DEADLINE_S)

            async def read_small() -> None:
                got = [r.chunk async for r in stub.DownloadArtifact(artifact_pb2.DownloadArtifactRequest(
                    run_id=run_id, path="small.txt"), timeout=PROBE_DEADLINE_S)]
                assert b"".join(got) == b"small"

            async def read_range() -> None:
                got = [r.chunk async for r in stub.DownloadArtifact(artifact_pb2.DownloadArtifactRequest(
                    run_id=run_id, path="big.bin", offset=1000, length=10), timeout=PROBE_DEADLINE_S)]
                assert len(b"".join(got)) == 10

            probes: list[Callable[[], Awaitable[Any]]] = []
            for _ in range(5):
                probes += [
                    lambda: stub.StatArtifact(artifact_pb2.StatArtifactRequest(run_id=run_id, path="big.bin"),
                                              timeout=PROBE_DEADLINE_S),
                    lambda: stub.ListArtifacts(artifact_pb2.ListArtifactsRequest(run_id=run_id),
                                               timeout=PROBE_DEADLINE_S),
                    read_small, read_range]
            ok, slowest = await answered(probes)
            upload_ok, _ = await answered([upload_small])
    finally:
        await release(channels, calls)
    figure(f"{STALLED} DownloadArtifact clients that stop reading ({started} got their first message): "
           f"{ok}/{len(probes)} reads and {upload_ok}/1 upload answered within {PROBE_DEADLINE_S:.0f} s "
           f"(slowest {slowest:.2f} s)")
    assert (started, ok, upload_ok) == (STALLED, len(probes), 1)


async def test_a_download_whose_client_stops_reading_is_ended_after_the_slow_reader_limit(
    stack: EmbeddedStack, big_artifact: tuple[str, bytes], figure: Callable[[str], None],
) -> None:
    """TRACKD_ARTIFACT_SLOW_READER_S=1 on an artifact service of this process: a client that
    stops reading for 4 s finds, once it reads again, what was in flight and then
    DEADLINE_EXCEEDED, not the rest of the artifact."""
    run_id, data = big_artifact
    async with artifact_service(service_env(stack, TRACKD_ARTIFACT_SLOW_READER_S="1")) as service, \
            grpc.aio.insecure_channel(service.target) as channel:
        call = artifact_pb2_grpc.ArtifactServiceStub(channel).DownloadArtifact(
            artifact_pb2.DownloadArtifactRequest(run_id=run_id, path="big.bin"))
        received = len((await call.read()).chunk)
        await asyncio.sleep(4.0)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while (message := await call.read()) is not grpc.aio.EOF:
                received += len(message.chunk)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "took no message" in str(ended.value.details())
    assert received < len(data)
    figure(f"a DownloadArtifact client that stopped reading for 4 s (limit 1 s): ended DEADLINE_EXCEEDED after "
           f"{received / 2**20:.0f} of {len(data) / 2**20:.0f} MiB (what gRPC had in flight)")


@pytest.fixture
async def long_series(stack: EmbeddedStack, unique: Callable[[str], str]) -> AsyncIterator[str]:
    run = trackd.start_run(unique("slow-export"), capture_env=False, system_metrics=False)
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('ingest')}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        step = 100_000
        for start in range(0, EXPORTED_POINTS, step):
            steps = list(range(start, start + step))
            await stub.LogMetrics(ingest_pb2.LogMetricsRequest(
                run_id=run.id, series=[series("loss", steps, [0.5] * step)]), timeout=60)
    yield run.id
    run.end()


async def test_twenty_stalled_exports_leave_the_query_service_answering(
    stack: EmbeddedStack, long_series: str, figure: Callable[[str], None],
) -> None:
    run_id = long_series
    target = f"{HOST}:{stack.service_port('query')}"
    export = query_pb2.ExportMetricRequest(run_id=run_id, key="loss")
    async with grpc.aio.insecure_channel(target) as channel:
        experiment = (await query_pb2_grpc.QueryServiceStub(channel).CompareRuns(
            query_pb2.CompareRunsRequest(run_ids=[run_id, run_id]), timeout=30)).runs[0].experiment_id
    channels, calls, started = await stall(
        target, lambda ch: query_pb2_grpc.QueryServiceStub(ch).ExportMetric(export), STALLED)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            probes: list[Callable[[], Awaitable[Any]]] = []
            for _ in range(5):
                probes += [
                    lambda: stub.GetMetricHistory(query_pb2.GetMetricHistoryRequest(
                        run_id=run_id, key="loss", start_step=1000, end_step=1100), timeout=PROBE_DEADLINE_S),
                    lambda: stub.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(run_id=run_id),
                                                  timeout=PROBE_DEADLINE_S),
                    lambda: stub.SearchRuns(query_pb2.SearchRunsRequest(selection=query_pb2.RunSelection(
                        experiment_ids=[experiment])), timeout=PROBE_DEADLINE_S),
                    lambda: stub.CompareRuns(query_pb2.CompareRunsRequest(run_ids=[run_id, run_id]),
                                             timeout=PROBE_DEADLINE_S),
                ]
            ok, slowest = await answered(probes)
    finally:
        await release(channels, calls)
    figure(f"{STALLED} ExportMetric clients that stop reading ({started} got their first message): "
           f"{ok}/{len(probes)} reads answered within {PROBE_DEADLINE_S:.0f} s (slowest {slowest:.2f} s)")
    assert (started, ok) == (STALLED, len(probes))


async def test_an_export_whose_client_stops_reading_is_ended_after_the_slow_reader_limit(
    stack: EmbeddedStack, long_series: str, figure: Callable[[str], None],
) -> None:
    """The session stack's query service ends an ExportMetric whose client takes no message for
    QUERY_SLOW_READER_S: once it reads again it finds what was in flight, then DEADLINE_EXCEEDED.
    The client's flow-control window stays at gRPC's initial 64 KiB (no BDP probing): with it grown,
    the whole ~20 MB export could fit in the client's buffers and end before the limit (seen once)."""
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('query')}",
                                         options=[("grpc.http2.bdp_probe", 0)]) as channel:
        call = query_pb2_grpc.QueryServiceStub(channel).ExportMetric(
            query_pb2.ExportMetricRequest(run_id=long_series, key="loss"))
        received = len((await call.read()).series.steps)
        await asyncio.sleep(QUERY_SLOW_READER_S + 3)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while (message := await call.read()) is not grpc.aio.EOF:
                received += len(message.series.steps)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "took no message" in str(ended.value.details())
    assert received < EXPORTED_POINTS
    figure(f"an ExportMetric client that stopped reading for {QUERY_SLOW_READER_S + 3:.0f} s (limit "
           f"{QUERY_SLOW_READER_S:.0f} s): ended DEADLINE_EXCEEDED after {received:,} of {EXPORTED_POINTS:,} points")


async def test_a_pool_with_no_free_connection_answers_unavailable_after_its_deadline(
    stack: EmbeddedStack, figure: Callable[[str], None],
) -> None:
    pool = await create_pool(PostgresSettings(dsn=stack.pg_dsn, pool_max=1, acquire_timeout_s=0.5))
    try:
        async with pool.acquire():
            started = time.perf_counter()
            with pytest.raises(Unavailable, match="no PostgreSQL connection") as refused:
                await pool.fetchval("SELECT 1")
            waited = time.perf_counter() - started
        assert 0.4 < waited < 5.0
        assert await pool.fetchval("SELECT 1") == 1  # free again
    finally:
        await pool.close()
    figure(f"a pool of 1 whose connection is held, acquisition deadline 0.5 s: Unavailable after {waited:.2f} s "
           f"({refused.value})")
