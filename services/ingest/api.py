"""The IngestService servicer: validate, commit, acknowledge, then update the cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
import prometheus_client
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_platform.auth import ANONYMOUS, current_principal
from trackd_platform.config import IngestSettings
from trackd_platform.errors import InvalidArgument, ResourceExhausted
from trackd_platform.ids import parse_id
from trackd_platform.rpc_types import Context
from trackd_platform.vocabulary import MetricContext

from .domain import Chunk, Rejected, StreamSlots, split_batch, to_chunks
from .store import LatestCache, MetricStore


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self, store: MetricStore, cache: LatestCache, *, max_concurrent_commits: int,
        settings: IngestSettings = IngestSettings(),
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
        self._rejected = prometheus_client.Counter(
            "trackd_ingest_rejected_series", "Series refused alone (bad key, context or lengths); "
            "the rest of their batch was written", registry=registry)
        self._open = prometheus_client.Gauge(
            "trackd_ingest_streams_open", "StreamMetrics calls open on this replica", registry=registry)
        self._ended = prometheus_client.Counter(
            "trackd_ingest_streams_refused_or_idle", "StreamMetrics calls refused for lack of a slot "
            "(replica or caller full), or ended for sending nothing", ["reason"], registry=registry)
        # Bounds the replica's work in flight: streams beyond it wait, and gRPC flow control
        # then slows their clients down.
        self._commit_slots = asyncio.Semaphore(max_concurrent_commits)
        self._slots = StreamSlots(total=settings.max_streams, per_caller=settings.max_streams_per_caller)
        self._idle_s = settings.stream_idle_s

    async def StreamMetrics(
        self, requests: AsyncIterator[ingest_pb2.StreamMetricsRequest], context: Context
    ) -> AsyncIterator[ingest_pb2.StreamMetricsResponse]:
        caller = _caller(context)
        try:
            self._slots.take(caller)
        except ResourceExhausted:
            self._ended.labels("caller_full" if self._slots.open < self._slots.total else "replica_full").inc()
            raise
        self._open.inc()
        try:
            async for request in self._until_idle(requests, context):
                run_id = parse_id("run_id", request.run_id)
                stream_id = parse_id("stream_id", request.stream_id)
                if request.sequence <= 0:
                    raise InvalidArgument("sequence numbers start at 1 and increase")
                chunks, rejected = split_batch(request.series)
                async with self._commit_slots:
                    result = await self._store.commit(run_id, chunks, stream_id=stream_id, sequence=request.sequence)
                self._count(result.points, duplicate=result.duplicate)
                if rejected and not result.duplicate:
                    self._rejected.inc(len(rejected))
                yield ingest_pb2.StreamMetricsResponse(
                    sequence=request.sequence, points_written=result.points, duplicate=result.duplicate,
                    rejected=[_rejected(r) for r in rejected],
                )
                if chunks and not result.duplicate:  # after the acknowledgement: the cache never delays it
                    published = _published(request.run_id, request.series, chunks)
                    await self._cache.update(run_id, result.summaries, published)
        finally:
            self._slots.give_back(caller)
            self._open.dec()

    async def _until_idle(self, requests: AsyncIterator[ingest_pb2.StreamMetricsRequest], context: Context
                          ) -> AsyncIterator[ingest_pb2.StreamMetricsRequest]:
        """The stream's requests; a stream that sends none for `stream_idle_s` is ended (with
        DEADLINE_EXCEEDED) so that it gives its slot back."""
        if not self._idle_s:
            async for request in requests:
                yield request
            return
        iterator = aiter(requests)
        while True:
            try:
                async with asyncio.timeout(self._idle_s):
                    request = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                self._ended.labels("idle").inc()
                # a transport-level end, not a domain error: the status is set here, once
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no batch for {self._idle_s:g} s (TRACKD_INGEST_STREAM_IDLE_S): the stream is closed to "
                    "free its slot; open a new one to send more")
            yield request

    async def LogMetrics(
        self, request: ingest_pb2.LogMetricsRequest, context: Context
    ) -> ingest_pb2.LogMetricsResponse:
        run_id = parse_id("run_id", request.run_id)
        chunks = to_chunks(request.series)
        async with self._commit_slots:
            result = await self._store.commit(run_id, chunks)
        self._count(result.points, duplicate=False)
        await self._cache.update(run_id, result.summaries, _published(request.run_id, request.series, chunks))
        return ingest_pb2.LogMetricsResponse(points_written=result.points)

    def _count(self, points: int, *, duplicate: bool) -> None:
        self._batches.labels("duplicate" if duplicate else "committed").inc()
        if not duplicate:
            self._points.inc(points)
            self._batch_points.observe(points)


def _caller(context: Context) -> str:
    """Who holds a stream slot: the token (or the admin secret) with auth on; with auth off, the
    client's address as this replica sees it."""
    principal = current_principal.get()
    if principal != ANONYMOUS:
        return f"token {principal.key}"
    peer = str(context.peer() or "unknown")  # ipv4:127.0.0.1:5555, ipv6:[::1]:5555, unix:/path
    scheme, _, address = peer.partition(":")
    return f"client {address.rpartition(':')[0] if scheme in ('ipv4', 'ipv6') else peer}"


def _rejected(r: Rejected) -> ingest_pb2.RejectedSeries:
    return ingest_pb2.RejectedSeries(key=r.key, context=MetricContext(r.context).proto, points=r.points,
                                     reason=r.reason)


def _published(run_id: str, series: Sequence[ingest_pb2.MetricSeries], chunks: list[Chunk]) -> bytes:
    """What live watchers receive: the committed points (the batch's accepted series, copied as
    messages: no per-point Python work), timestamps filled in."""
    message = ingest_pb2.LogMetricsRequest(run_id=run_id)
    for c in chunks:
        copy = message.series.add()
        copy.CopyFrom(series[c.source])
        if not len(copy.timestamps_ms):
            copy.timestamps_ms.extend(c.timestamps)
    return bytes(message.SerializeToString())
