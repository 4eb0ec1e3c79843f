"""The metric write path on the real stack: exactly once, failover, spool, Redis outage, limits."""

from __future__ import annotations

import asyncio
import math
import os
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
import redis
import trackd
from trackd._client import Client
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.config import ClientSettings
from trackd_platform.processes import Managed, free_port
from trackd_platform.stack import HOST, EmbeddedStack, grpc_serving
from trackd_services.ingest.domain import unpack

pytestmark = pytest.mark.integration


@pytest.fixture
async def ingest(stack: EmbeddedStack) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('ingest')}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


async def stored(stack: EmbeddedStack, run_id: str) -> list[tuple[str, int, float]]:
    """Every point of a run as PostgreSQL holds it: (key, step, value)."""
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        rows = await conn.fetch(
            """SELECT s.key, c.steps, c.vals, c.timestamps FROM metric_chunks c
               JOIN metric_series s ON s.id = c.series_id WHERE c.run_id = $1""", uuid.UUID(run_id))
    finally:
        await conn.close()
    points = []
    for row in rows:
        chunk = unpack(row["steps"], row["vals"], row["timestamps"])
        points += [(row["key"], s, v) for s, v in zip(chunk.steps, chunk.values, strict=True)]
    return points


def series(key: str, steps: list[int], values: list[float]) -> ingest_pb2.MetricSeries:
    return ingest_pb2.MetricSeries(key=key, steps=steps, values=values, timestamps_ms=[1] * len(steps))


async def test_a_retried_batch_is_not_written_twice(
    stack: EmbeddedStack, ingest: ingest_pb2_grpc.IngestServiceStub, unique: Callable[[str], str]
) -> None:
    run = trackd.start_run(unique("retry"), capture_env=False, system_metrics=False)
    stream = uuid.uuid4().hex
    batch = ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=1, run_id=run.id,
                                            series=[series("loss", [0, 1, 2], [0.3, 0.2, 0.1])])
    first = [r async for r in ingest.StreamMetrics(iter([batch]))]
    again = [r async for r in ingest.StreamMetrics(iter([batch, ingest_pb2.StreamMetricsRequest(
        stream_id=stream, sequence=2, run_id=run.id, series=[series("loss", [3], [0.05])])]))]
    assert [(r.sequence, r.points_written, r.duplicate) for r in first] == [(1, 3, False)]
    assert [(r.sequence, r.points_written, r.duplicate) for r in again] == [(1, 0, True), (2, 1, False)]
    assert sorted(await stored(stack, run.id)) == [("loss", 0, 0.3), ("loss", 1, 0.2), ("loss", 2, 0.1),
                                                   ("loss", 3, 0.05)]
    run.end()


async def test_nan_and_infinities_round_trip_bit_for_bit(
    stack: EmbeddedStack, ingest: ingest_pb2_grpc.IngestServiceStub, unique: Callable[[str], str]
) -> None:
    run = trackd.start_run(unique("nan"), capture_env=False, system_metrics=False)
    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 0.1]
    await ingest.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[
        series("odd", list(range(len(values))), values)]))
    back = [v for _, _, v in sorted(await stored(stack, run.id), key=lambda p: p[1])]
    assert [struct.pack("<d", v) for v in back] == [struct.pack("<d", v) for v in values]
    run.end()


async def test_bad_input_is_refused_and_nothing_is_written(
    stack: EmbeddedStack, ingest: ingest_pb2_grpc.IngestServiceStub, unique: Callable[[str], str]
) -> None:
    run = trackd.start_run(unique("bad-metrics"), capture_env=False, system_metrics=False)
    ok = series("ok", [0], [1.0])
    cases = {
        "unknown run": (ingest_pb2.LogMetricsRequest(run_id="0" * 32, series=[ok]), grpc.StatusCode.NOT_FOUND),
        "malformed run": (ingest_pb2.LogMetricsRequest(run_id="x", series=[ok]), grpc.StatusCode.INVALID_ARGUMENT),
        "no series": (ingest_pb2.LogMetricsRequest(run_id=run.id), grpc.StatusCode.INVALID_ARGUMENT),
        "empty key": (ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ok, series("", [0], [1.0])]),
                      grpc.StatusCode.INVALID_ARGUMENT),
        "long key": (ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ok, series("k" * 251, [0], [1.0])]),
                     grpc.StatusCode.INVALID_ARGUMENT),
        "ragged": (ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ok, series("r", [0, 1], [1.0])]),
                   grpc.StatusCode.INVALID_ARGUMENT),
        "context": (ingest_pb2.LogMetricsRequest(run_id=run.id, series=[
            ingest_pb2.MetricSeries(key="c", context=9, steps=[0], values=[1.0])]), grpc.StatusCode.INVALID_ARGUMENT),
        "too many points": (ingest_pb2.LogMetricsRequest(run_id=run.id, series=[
            ingest_pb2.MetricSeries(key="big", steps=range(100_001), values=[0.0] * 100_001)]),
            grpc.StatusCode.INVALID_ARGUMENT),
        "too large a message": (ingest_pb2.LogMetricsRequest(run_id=run.id, series=[
            ingest_pb2.MetricSeries(key="huge", steps=range(1_000_000), values=[0.0] * 1_000_000,
                                    timestamps_ms=[2**62] * 1_000_000)]), grpc.StatusCode.RESOURCE_EXHAUSTED),
    }
    for name, (request, code) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest.LogMetrics(request)
        assert caught.value.code() == code, name
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [r async for r in ingest.StreamMetrics(iter([ingest_pb2.StreamMetricsRequest(
            stream_id=uuid.uuid4().hex, sequence=0, run_id=run.id, series=[ok])]))]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await stored(stack, run.id) == []
    run.end()
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await ingest.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ok]))
    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await stored(stack, run.id) == []


def latest(stack: EmbeddedStack, run_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(stack.redis_url)
    return {k.decode(): v.decode() for k, v in client.hgetall(f"trackd:{{{run_id}}}:latest").items()}


async def test_ingest_goes_on_while_redis_is_down_and_the_cache_is_repaired(
    stack: EmbeddedStack, ingest: ingest_pb2_grpc.IngestServiceStub, unique: Callable[[str], str]
) -> None:
    run = trackd.start_run(unique("redis"), capture_env=False, system_metrics=False)
    await ingest.LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[series("acc", [0], [0.5])]))
    valkey = stack.infra["valkey"]
    valkey.stop()
    try:
        for step in range(1, 4):
            response = await ingest.LogMetrics(ingest_pb2.LogMetricsRequest(
                run_id=run.id, series=[series("acc", [step], [0.5 + step / 10])]), timeout=10)
            assert response.points_written == 1
    finally:
        valkey.start()
        valkey.wait_ready(30)
    expected = '"count": 4'
    for _ in range(100):
        cached = latest(stack, run.id).get("acc\t0", "")
        if expected in cached.replace('":', '": ').replace(":  ", ": "):
            break
        await asyncio.sleep(0.2)
    import json
    summary = json.loads(latest(stack, run.id)["acc\t0"])
    assert summary["count"] == 4 and summary["step"] == "3" and float(summary["value"]) == 0.8
    assert float(summary["min"]) == 0.5 and float(summary["max"]) == 0.8
    run.end()


def extra_ingest_replica(stack: EmbeddedStack, name: str) -> tuple[Managed, int]:
    port = free_port()
    replica = Managed(
        name=name, argv=[sys.executable, "-m", "trackd_services.ingest"],
        env={**os.environ, **stack.infra_env(), "TRACKD_GRPC_HOST": HOST, "TRACKD_GRPC_PORT": str(port),
             "TRACKD_METRICS_PORT": "0"},
        log_path=stack.home / "logs" / f"{name}.log",
        ready=lambda: grpc_serving(f"{HOST}:{port}"),
    )
    replica.start()
    replica.wait_ready(60)
    return replica, port


async def test_a_million_points_through_two_replicas_one_killed_midway(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path
) -> None:
    replica, port = extra_ingest_replica(stack, "ingest-extra")
    base = ClientSettings.from_env()
    client = Client(ClientSettings(
        targets={**base.targets, "ingest": f"ipv4:{HOST}:{stack.service_port('ingest')},{HOST}:{port}"},
        heartbeat_interval_s=1, rpc_timeout_s=30, kafka_bootstrap=base.kafka_bootstrap,
        spool_dir=str(tmp_path / "spool"), flush_timeout_s=120, system_metrics_interval_s=0))
    try:
        runs = [trackd.start_run(unique("million"), capture_env=False, client=client) for _ in range(2)]
        for step in range(500_000):
            if step == 200_000:
                await asyncio.sleep(0.5)  # let both streams get going, then crash one replica
                replica.kill()
            if step == 350_000:  # and the other: every stream has now lost its replica mid-way
                await asyncio.sleep(0.5)
                stack.services["ingest"].kill()  # the launcher restarts it
            for run in runs:
                run.log_metric("loss", step * 0.5, step=step)
        for run in runs:
            assert run.flush(120), "every point acknowledged"
            run.end()
    finally:
        replica.stop()
        client.close()
    for run in runs:
        points = await stored(stack, run.id)
        assert len(points) == 500_000, "each point once: none lost, none twice"
        assert sorted(s for _, s, _ in points) == list(range(500_000))


async def test_the_spool_delivers_every_point_once_across_an_outage(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path
) -> None:
    base = ClientSettings.from_env()
    settings = ClientSettings(targets=base.targets, heartbeat_interval_s=1, rpc_timeout_s=30,
                              kafka_bootstrap=base.kafka_bootstrap, spool_dir=str(tmp_path / "spool"),
                              flush_timeout_s=1, system_metrics_interval_s=0)
    client = Client(settings)
    run = trackd.start_run(unique("outage"), capture_env=False, client=client)
    for step in range(1000):
        run.log_metric("a", step, step=step)
    assert run.flush(30)
    service = stack.services["ingest"]
    service.stop()
    try:
        for step in range(1000, 3000):
            run.log_metric("a", step, step=step)
        assert not run.flush(1.0), "nothing can be acknowledged while ingest is down"
        with pytest.raises(trackd.errors.TrackdError, match="still spooled"):
            run.end()  # the process gives up: the batches stay on disk
    finally:
        service.start()
        service.wait_ready(60)
    spooled = list((tmp_path / "spool").iterdir())
    assert len(spooled) == 1
    from trackd.cli import app
    from typer.testing import CliRunner
    os.environ["TRACKD_SPOOL_DIR"] = str(tmp_path / "spool")
    try:
        import trackd._client as client_module
        client_module._default = None  # a fresh process would read the environment again
        result = CliRunner().invoke(app, ["sync"])
    finally:
        del os.environ["TRACKD_SPOOL_DIR"]
        client_module._default = None
    assert result.exit_code == 0, result.output
    points = await stored(stack, run.id)
    assert sorted(s for _, s, _ in points) == list(range(3000))
    assert not any((tmp_path / "spool").iterdir()), "a delivered spool is removed"
    ended = client.call("run", client.runs.EndRun, __import__("trackd_api.run.v1.run_pb2", fromlist=["x"])
                        .EndRunRequest(run_id=run.id, status=2))
    assert ended.run.status == 2


async def test_committed_points_fan_out_and_system_metrics_are_sampled(
    stack: EmbeddedStack, unique: Callable[[str], str], tmp_path: Path
) -> None:
    base = ClientSettings.from_env()
    client = Client(ClientSettings(targets=base.targets, heartbeat_interval_s=1, rpc_timeout_s=30,
                                   kafka_bootstrap=base.kafka_bootstrap, spool_dir=str(tmp_path),
                                   system_metrics_interval_s=0.3))
    run = trackd.start_run(unique("live"), capture_env=False, client=client)
    pubsub = redis.Redis.from_url(stack.redis_url).pubsub()
    pubsub.subscribe(f"trackd:{{{run.id}}}:points")
    run.log_metrics({"acc": 0.9, "loss": 0.1}, step=7, context="eval")
    assert run.flush(30)
    published = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not published:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message:
            published.append(ingest_pb2.LogMetricsRequest.FromString(message["data"]))
    assert published and published[0].run_id == run.id
    assert {(s.key, s.context, tuple(s.steps)) for s in published[0].series} == {
        ("acc", ingest_pb2.METRIC_CONTEXT_EVAL, (7,)), ("loss", ingest_pb2.METRIC_CONTEXT_EVAL, (7,))}
    await asyncio.sleep(1.0)  # a few system samples
    run.end()
    keys = {key for key, _, _ in await stored(stack, run.id)}
    assert {"system/cpu_percent", "system/memory_percent", "acc", "loss"} <= keys
    client.close()
