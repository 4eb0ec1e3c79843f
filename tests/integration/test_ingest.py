"""The metric write path on the real stack: exactly once, bit-exact values, limits, fan-out. (Its
fault drills — replicas killed, Redis and ingest outages, PostgreSQL restarts — are in tests/faults.)"""

from __future__ import annotations

import asyncio
import math
import struct
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
from trackd._settings import ClientSettings
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.stack import HOST, EmbeddedStack

from tests.metric_points import series, stored

pytestmark = pytest.mark.integration


@pytest.fixture
async def ingest(stack: EmbeddedStack) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    async with grpc.aio.insecure_channel(f"{HOST}:{stack.service_port('ingest')}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


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


async def test_a_run_logging_thousands_of_keys_a_step_through_the_sdk_stores_every_point(
    stack: EmbeddedStack, unique: Callable[[str], str]
) -> None:
    """2,500 keys a step (per-layer statistics): the SDK's batches keep to the server's 1,000 series
    (one batch of 2,500 series was refused whole, and the stream with it); special floats kept."""
    run = trackd.start_run(unique("wide"), capture_env=False, system_metrics=False)
    odd = [math.nan, math.inf, -math.inf, -0.0, 5e-324]
    for step in range(3):
        run.log_metrics({f"layer{k}/grad_norm": odd[k] if k < len(odd) else k + step / 10 for k in range(2_500)},
                        step=step)
    run.end()
    points = {(key, step): value for key, step, value in await stored(stack, run.id)}
    assert len(points) == 7_500
    assert points[("layer2499/grad_norm", 2)] == 2499.2
    assert [struct.pack("<d", points[(f"layer{k}/grad_norm", 1)]) for k in range(len(odd))] == [
        struct.pack("<d", v) for v in odd]


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
    def logged(payload: ingest_pb2.LogMetricsRequest) -> set[tuple[str, int, tuple[int, ...]]]:
        """The series the test logged; system samples may come first or share the batch."""
        return {(s.key, s.context, tuple(s.steps)) for s in payload.series if not s.key.startswith("system/")}

    published = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(logged(p) for p in published):
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message:
            published.append(ingest_pb2.LogMetricsRequest.FromString(message["data"]))
    assert published and all(p.run_id == run.id for p in published)
    assert logged(published[-1]) == {
        ("acc", ingest_pb2.METRIC_CONTEXT_EVAL, (7,)), ("loss", ingest_pb2.METRIC_CONTEXT_EVAL, (7,))}
    await asyncio.sleep(1.0)  # a few system samples
    run.end()
    keys = {key for key, _, _ in await stored(stack, run.id)}
    assert {"system/cpu_percent", "system/memory_percent", "acc", "loss"} <= keys
    client.close()


METRIC_TABLES = ("metric_series", "metric_chunks", "latest_cache_repairs")


async def test_the_metric_schema_is_distributable_by_run_id(stack: EmbeddedStack) -> None:
    """docs/scaling.md: every metric table can be distributed by run id (Citus) — its primary key
    and every unique index lead with run_id, and no foreign key leaves or enters the metric tables."""
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        unique = await conn.fetch(
            """SELECT t.relname AS table_name, i.relname AS index_name,
                      (SELECT a.attname FROM pg_attribute a
                       WHERE a.attrelid = t.oid AND a.attnum = x.indkey[0]) AS first_column
               FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
               WHERE x.indisunique AND t.relname = ANY($1::text[])""", list(METRIC_TABLES))
        foreign = await conn.fetch(
            """SELECT conname FROM pg_constraint WHERE contype = 'f'
                 AND (conrelid::regclass::text = ANY($1::text[]) OR confrelid::regclass::text = ANY($1::text[]))""",
            list(METRIC_TABLES))
    finally:
        await conn.close()
    assert {r["table_name"] for r in unique} == set(METRIC_TABLES)
    assert [(r["table_name"], r["index_name"]) for r in unique if r["first_column"] != "run_id"] == []
    assert [r["conname"] for r in foreign] == []
