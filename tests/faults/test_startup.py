"""Drill: a service whose dependency is not up yet at start-up (finding 7 of the review). The
artifact service used to exit when S3 was still starting; now it listens at once, says
NOT_SERVING, answers calls UNAVAILABLE naming what it waits for, retries with back-off and
serves as soon as S3 is there."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from urllib.parse import urlparse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc
from trackd_platform.processes import free_ports
from trackd_platform.stack import HOST, EmbeddedStack

from tests.faults.artifact_service import service_env
from tests.faults.proxy import CuttingProxy

pytestmark = pytest.mark.integration


async def _health(channel: grpc.aio.Channel) -> int | None:
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
    except grpc.aio.AioRpcError:
        return None  # not listening yet
    return int(response.status)


async def _until(channel: grpc.aio.Channel, status: int, within_s: float) -> float:
    started = time.monotonic()
    while (seen := await _health(channel)) != status:
        assert time.monotonic() - started < within_s, f"health {seen}, not {status}, after {within_s:.0f}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_the_artifact_service_waits_for_s3_not_serving_and_serves_once_it_is_up(stack: EmbeddedStack) -> None:
    grpc_port, s3_port = free_ports(2)
    s3 = urlparse(stack.infra_env()["TRACKD_S3_ENDPOINT"])
    env = {**os.environ, **service_env(stack, TRACKD_GRPC_PORT=str(grpc_port),
                                        TRACKD_S3_ENDPOINT=f"http://{HOST}:{s3_port}")}  # nothing listens there yet
    service = await asyncio.create_subprocess_exec(sys.executable, "-m", "trackd_services.artifact", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    log: list[str] = []

    async def collect() -> None:
        assert service.stderr is not None
        async for line in service.stderr:
            log.append(line.decode())

    collector = asyncio.create_task(collect())
    try:
        async with grpc.aio.insecure_channel(f"{HOST}:{grpc_port}") as channel:
            await _until(channel, health_pb2.HealthCheckResponse.NOT_SERVING, within_s=30)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await artifact_pb2_grpc.ArtifactServiceStub(channel).ListArtifacts(
                    artifact_pb2.ListArtifactsRequest(run_id="0" * 32), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert f"S3 at http://{HOST}:{s3_port}" in (refused.value.details() or ""), refused.value.details()
            started = time.monotonic()
            while not any("waits for S3" in line for line in log):  # an attempt failed and was logged
                assert time.monotonic() - started < 30 and service.returncode is None, "".join(log)
                await asyncio.sleep(0.1)
            assert service.returncode is None, "".join(log)  # still waiting, not gone
            assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING

            async with CuttingProxy(s3.hostname or HOST, s3.port or 80, listen_port=s3_port):  # S3 comes up
                waited = await _until(channel, health_pb2.HealthCheckResponse.SERVING, within_s=10)
                assert waited <= 6, f"serving {waited:.1f}s after S3 came up; the back-off is capped at 5 s"
                listed = await artifact_pb2_grpc.ArtifactServiceStub(channel).ListArtifacts(
                    artifact_pb2.ListArtifactsRequest(run_id="0" * 32), timeout=10)
                assert list(listed.artifacts) == []
    finally:
        service.terminate()
        await asyncio.wait_for(service.wait(), 30)
        await collector
    assert service.returncode == 0, "".join(log)
