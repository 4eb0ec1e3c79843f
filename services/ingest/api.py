"""The IngestService servicer: validate, commit, acknowledge, then update the cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import prometheus_client
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.errors import InvalidArgument, ResourceExhausted
from trackd_platform.ids import parse_id
from trackd_services.ingest.domain import MAX_STREAMS_PER_REPLICA, Chunk, to_chunks
from trackd_services.ingest.store import LatestCache, MetricStore


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self, store: MetricStore, cache: LatestCache, *, max_concurrent_commits: int,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._points = prometheus_client.Counter(
            "trackd_ingest_points", "Metric points committed (replayed batches not counted)", registry=registry)
        self._batches = prometheus_client.Counter(
            "trackd_ingest_batches", "Batches acknowledged: committed, or duplicate (a replay, not written again)",
            ["outcome"], registry=registry)
        self._batch_points = prometheus_client.Histogram(
            "trackd_ingest_batch_points", "Points per committed batch", registry=registry,
            buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000))
        # Bounds the replica's work in flight: streams beyond it wait, and gRPC flow control
        # then slows their clients down.
        self._commit_slots = asyncio.Semaphore(max_concurrent_commits)
        self._streams = 0

    async def StreamMetrics(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        if self._streams >= MAX_STREAMS_PER_REPLICA:
            raise ResourceExhausted(
                f"this replica serves {MAX_STREAMS_PER_REPLICA} streams already; retry on another replica"
            )
        self._streams += 1
        try:
            async for request in requests:
                run_id = parse_id("run_id", request.run_id)
                stream_id = parse_id("stream_id", request.stream_id)
                if request.sequence <= 0:
                    raise InvalidArgument("sequence numbers start at 1 and increase")
                chunks = to_chunks(request.series)
                async with self._commit_slots:
                    result = await self._store.commit(run_id, chunks, stream_id=stream_id, sequence=request.sequence)
                self._count(result.points, duplicate=result.duplicate)
                yield ingest_pb2.StreamMetricsResponse(
                    sequence=request.sequence, points_written=result.points, duplicate=result.duplicate
                )
                if not result.duplicate:  # after the acknowledgement: the cache never delays it
                    await self._cache.update(run_id, result.summaries, _published(request.run_id, chunks))
        finally:
            self._streams -= 1

    async def LogMetrics(self, request: Any, context: Any) -> ingest_pb2.LogMetricsResponse:
        run_id = parse_id("run_id", request.run_id)
        chunks = to_chunks(request.series)
        async with self._commit_slots:
            result = await self._store.commit(run_id, chunks)
        self._count(result.points, duplicate=False)
        await self._cache.update(run_id, result.summaries, _published(request.run_id, chunks))
        return ingest_pb2.LogMetricsResponse(points_written=result.points)

    def _count(self, points: int, *, duplicate: bool) -> None:
        self._batches.labels("duplicate" if duplicate else "committed").inc()
        if not duplicate:
            self._points.inc(points)
            self._batch_points.observe(points)


def _published(run_id: str, chunks: list[Chunk]) -> bytes:
    """What live watchers receive: the committed points, timestamps filled in."""
    message = ingest_pb2.LogMetricsRequest(run_id=run_id, series=[
        ingest_pb2.MetricSeries(key=c.key, context=c.context, steps=c.steps, values=c.values,
                                timestamps_ms=c.timestamps) for c in chunks
    ])
    return bytes(message.SerializeToString())
