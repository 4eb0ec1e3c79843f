"""Ingest stream slots, idle streams and per-series rejection: the pure logic, then the servicer
through a real grpc.aio server on port 0 (with an in-memory store) and a real stub. The same on
the real stack: tests/faults/test_streams_and_spool.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.access import AccessInterceptor, Rule, rules_for
from trackd_platform.auth import Principal, Role
from trackd_platform.config import AuthSettings, IngestSettings, ServerSettings, TelemetrySettings
from trackd_platform.errors import InvalidArgument, ResourceExhausted
from trackd_platform.server import GrpcServer
from trackd_services.ingest.api import IngestServicer
from trackd_services.ingest.domain import Chunk, StreamSlots, split_batch, to_chunks
from trackd_services.ingest.store import Committed


def series(key: str, n: int = 2, context: int = 0) -> ingest_pb2.MetricSeries:
    return ingest_pb2.MetricSeries(key=key, context=context, steps=range(n), values=[1.0] * n,  # type: ignore[arg-type]
                                   timestamps_ms=[1] * n)


def test_a_bad_series_is_rejected_alone() -> None:
    batch = [series("good", 3), series("k" * 251), series("nul\x00"), series("ctx", context=9), series(" "),
             ingest_pb2.MetricSeries(key="ragged", steps=[0, 1], values=[1.0]), series("also-good", 1)]
    chunks, rejected = split_batch(batch)
    assert [(c.key, c.points) for c in chunks] == [("good", 3), ("also-good", 1)]
    assert [r.key for r in rejected] == ["k" * 251, "nul\x00", "ctx", " ", "ragged"]
    assert "251 characters; the limit is 250" in rejected[0].reason
    assert "NUL" in rejected[1].reason and "unknown context 9" in rejected[2].reason
    assert all(r.points == 2 for r in rejected)
    assert len(split_batch([series("k" * 10_000)])[1][0].key) == 256, "echoed back cut short"


def test_what_is_wrong_with_the_whole_batch_still_refuses_it() -> None:
    with pytest.raises(InvalidArgument, match="at least one series"):
        split_batch([])
    with pytest.raises(InvalidArgument, match="1000"):
        split_batch([series(f"k{i}", 1) for i in range(1_001)])
    with pytest.raises(InvalidArgument, match="100000 points"):
        split_batch([series("big", 60_000), series("k" * 251, 60_000)])
    with pytest.raises(InvalidArgument, match="the limit is 250"):
        to_chunks([series("good"), series("k" * 251)])  # LogMetrics: whole or nothing


def test_one_caller_cannot_take_every_slot() -> None:
    slots = StreamSlots(total=4, per_caller=2)
    slots.take("token a")
    slots.take("token a")
    with pytest.raises(ResourceExhausted, match="TRACKD_INGEST_MAX_STREAMS_PER_CALLER=2"):
        slots.take("token a")
    slots.take("token b")
    slots.take("token c")
    with pytest.raises(ResourceExhausted, match="serves 4 metric streams already"):
        slots.take("token d")
    slots.give_back("token a")
    slots.take("token d")
    assert (slots.open, slots.held_by("token a"), slots.held_by("token d")) == (4, 1, 1)
    unbounded = StreamSlots(total=3, per_caller=0)
    for _ in range(3):
        unbounded.take("client 127.0.0.1")


class MemoryStore:
    def __init__(self) -> None:
        self.committed: list[tuple[int, list[str]]] = []
        self.last: dict[uuid.UUID, int] = {}

    async def commit(self, run_id: uuid.UUID, chunks: Sequence[Chunk], *, stream_id: uuid.UUID | None = None,
                     sequence: int = 0) -> Committed:
        assert stream_id is not None
        if sequence <= self.last.get(stream_id, 0):
            return Committed(points=0, duplicate=True)
        self.last[stream_id] = sequence
        self.committed.append((sequence, [c.key for c in chunks]))
        return Committed(points=sum(c.points for c in chunks), duplicate=False)


class NoCache:
    async def update(self, *args: Any) -> None:
        pass


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[MemoryStore, ingest_pb2_grpc.IngestServiceStub]]:
    settings = ServerSettings(name="ingest", host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_s=0.1,
                              telemetry=TelemetrySettings(service_name="test", otlp_endpoint=""))
    store = MemoryStore()
    server = GrpcServer(settings)
    servicer = IngestServicer(store, NoCache(), max_concurrent_commits=4,  # type: ignore[arg-type]
                              settings=IngestSettings(max_streams=5, max_streams_per_caller=3, stream_idle_s=0.5))
    server.add_servicer(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer, "trackd.ingest.v1.IngestService")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield store, ingest_pb2_grpc.IngestServiceStub(channel)
    await server.stop()


async def test_idle_streams_are_ended_and_one_client_gets_its_share_only(
    ingest: tuple[MemoryStore, ingest_pb2_grpc.IngestServiceStub],
) -> None:
    _, stub = ingest
    calls = [stub.StreamMetrics() for _ in range(4)]
    for call in calls:
        await call.wait_for_connection()
    await asyncio.sleep(0.2)
    refused = [c for c in calls if c.done()]
    assert len(refused) == 1 and await refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "TRACKD_INGEST_MAX_STREAMS_PER_CALLER=3" in await refused[0].details()
    assert "client 127.0.0.1" in await refused[0].details()
    admitted = [c for c in calls if c is not refused[0]]  # which one was refused depends on arrival order
    async with asyncio.timeout(5):
        codes = [await c.code() for c in admitted]
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 3
    assert "TRACKD_INGEST_STREAM_IDLE_S" in await admitted[-1].details()
    # their slots are free again: a stream that sends gets in and is acknowledged
    run, stream = uuid.uuid4().hex, uuid.uuid4().hex
    answers = [r async for r in stub.StreamMetrics(iter([
        ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=1, run_id=run, series=[series("a")])]))]
    assert [a.sequence for a in answers] == [1]


async def test_a_stream_that_keeps_sending_is_not_idle(
    ingest: tuple[MemoryStore, ingest_pb2_grpc.IngestServiceStub],
) -> None:
    store, stub = ingest
    run, stream = uuid.uuid4().hex, uuid.uuid4().hex
    call = stub.StreamMetrics()
    for sequence in range(1, 6):  # 5 batches 0.3 s apart: 1.5 s, each gap under the 0.5 s idle bound
        await call.write(ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=sequence, run_id=run,
                                                         series=[series("a")]))
        assert (await call.read()).sequence == sequence
        await asyncio.sleep(0.3)
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert [s for s, _ in store.committed] == [1, 2, 3, 4, 5]


async def test_a_stream_batch_with_a_bad_series_is_acknowledged_and_names_it(
    ingest: tuple[MemoryStore, ingest_pb2_grpc.IngestServiceStub],
) -> None:
    store, stub = ingest
    run, stream = uuid.uuid4().hex, uuid.uuid4().hex
    requests = [ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=1, run_id=run,
                                                series=[series("good", 1_000), series("k" * 251)]),
                ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=2, run_id=run,
                                                series=[series("k" * 251)]),
                ingest_pb2.StreamMetricsRequest(stream_id=stream, sequence=3, run_id=run,
                                                series=[series("good", 1_000)])]
    answers = [r async for r in stub.StreamMetrics(iter(requests))]
    assert [(a.sequence, a.points_written) for a in answers] == [(1, 1_000), (2, 0), (3, 1_000)]
    assert [[(r.key, r.points) for r in a.rejected] for a in answers] == [[("k" * 251, 2)], [("k" * 251, 2)], []]
    assert "the limit is 250" in answers[0].rejected[0].reason
    assert store.committed == [(1, ["good"]), (2, []), (3, ["good"])], "every sequence recorded, no bad series"


class AnyToken:
    async def authenticate(self, secret: str) -> Principal:
        return Principal(key=secret, project_id=uuid.uuid4(), role=Role.WRITE)


async def test_with_auth_on_the_share_is_per_token_and_idle_streams_still_end() -> None:
    """Through the access interceptor, which runs an open stream's steps in tasks of their own."""
    settings = ServerSettings(name="ingest", host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_s=0.1,
                              telemetry=TelemetrySettings(service_name="test", otlp_endpoint=""))
    access = AccessInterceptor(rules_for("trackd.ingest.v1.IngestService", {"StreamMetrics": Rule(Role.WRITE)}),
                               auth=AuthSettings(enabled=True), tokens=AnyToken(), owners=None,  # type: ignore[arg-type]
                               limiter=None)
    server = GrpcServer(settings, interceptors=[access])
    servicer = IngestServicer(MemoryStore(), NoCache(), max_concurrent_commits=4,  # type: ignore[arg-type]
                              settings=IngestSettings(max_streams=5, max_streams_per_caller=2, stream_idle_s=0.5))
    server.add_servicer(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer, "trackd.ingest.v1.IngestService")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            a = [stub.StreamMetrics(metadata=(("authorization", "Bearer token-a"),)) for _ in range(3)]
            b = stub.StreamMetrics(metadata=(("authorization", "Bearer token-b"),))
            await b.write(ingest_pb2.StreamMetricsRequest(stream_id=uuid.uuid4().hex, sequence=1,
                                                          run_id=uuid.uuid4().hex, series=[series("a")]))
            assert (await b.read()).sequence == 1, "token b is not held back by token a's streams"
            async with asyncio.timeout(5):
                codes = sorted([(await c.code()).name for c in [*a, b]])
            assert codes == ["DEADLINE_EXCEEDED"] * 3 + ["RESOURCE_EXHAUSTED"]
    finally:
        await server.stop()
