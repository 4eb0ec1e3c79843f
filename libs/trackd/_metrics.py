"""Metrics from the training thread to the ingest service without ever waiting on the network.

    training thread ──append──▶ bounded buffer ──batcher──▶ spool (disk) ──streamer──▶ ingest
                                                                       ◀── acknowledgements

`log()` only appends to a deque. The batcher thread turns the buffer into columnar batches and
appends them to the spool, the client's write-ahead log. The streamer thread sends spooled
batches over one `StreamMetrics` stream with at most `window` unacknowledged; on any stream error
it reconnects (the channel's round_robin picks a live replica) and replays from the last
acknowledged sequence. Acknowledged batches are deleted from the spool.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from trackd._spool import Spool

log = logging.getLogger("trackd")

CONTEXTS = {None: 0, "": 0, "train": 1, "eval": 2, "test": 3}
MAX_BATCH_POINTS = 50_000  # under the server's 100,000
_PERMANENT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}


class MetricWriter:
    def __init__(
        self,
        run_id: str,
        channel: grpc.Channel | None,
        *,
        spool_root: Path,
        flush_interval_s: float = 0.5,
        buffer_points: int = 1_000_000,
        window: int = 16,
        stream_id: str | None = None,
    ) -> None:
        self.run_id = run_id
        self._buffer: collections.deque[tuple[str, int, int, float, int]] = collections.deque()
        self._buffer_points = buffer_points
        self._next_step: dict[tuple[str, int], int] = {}
        self._flush_interval_s = flush_interval_s
        self._window = window
        stream_id = stream_id or uuid.uuid4().hex
        self.spool = Spool(spool_root / stream_id, run_id=run_id, stream_id=stream_id)
        self._batching = threading.Lock()
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._closed = False
        self._failed: str | None = None
        self._call: grpc.Future | None = None
        self._channel = channel
        self._batcher = threading.Thread(target=self._batch_loop, name="trackd-batcher", daemon=True)
        self._batcher.start()
        self._streamer: threading.Thread | None = None
        if channel is not None:  # offline: spool only, `trackd sync` sends later
            self._streamer = threading.Thread(target=self._stream_loop, name="trackd-streamer", daemon=True)
            self._streamer.start()

    # -- the training thread ------------------------------------------------------------------

    def log(self, key: str, value: float, step: int | None, context: int, timestamp_ms: int) -> None:
        series = (key, context)
        if step is None:
            step = self._next_step.get(series, 0)
        self._next_step[series] = step + 1
        self._buffer.append((key, context, step, value, timestamp_ms))
        if len(self._buffer) >= self._buffer_points:
            self._spill()  # full: write to the spool here rather than grow without bound

    # -- batching -----------------------------------------------------------------------------

    def _batch_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            self._spill()

    def _spill(self) -> None:
        with self._batching:
            while self._buffer:
                count = min(len(self._buffer), MAX_BATCH_POINTS)
                grouped: dict[tuple[str, int], tuple[list[int], list[float], list[int]]] = {}
                popleft = self._buffer.popleft
                for _ in range(count):
                    key, context, step, value, ts = popleft()
                    columns = grouped.get((key, context))
                    if columns is None:
                        columns = grouped[(key, context)] = ([], [], [])
                    columns[0].append(step)
                    columns[1].append(value)
                    columns[2].append(ts)
                batch = ingest_pb2.StreamMetricsRequest(run_id=self.run_id, series=[
                    ingest_pb2.MetricSeries(key=k, context=c, steps=s, values=v, timestamps_ms=t)  # type: ignore[arg-type]
                    for (k, c), (s, v, t) in grouped.items()
                ])
                self.spool.append(batch.SerializeToString())
            with self._changed:
                self._changed.notify_all()

    # -- streaming ----------------------------------------------------------------------------

    def _requests(self) -> Iterator[ingest_pb2.StreamMetricsRequest]:
        sent = self.spool.acked
        while True:
            with self._changed:
                while True:
                    following = self.spool.next_unsent(sent)
                    if following is not None and following - self.spool.acked <= self._window:
                        break
                    if self._closed and following is None:
                        return
                    self._changed.wait(0.5)
            payload = self.spool.read(following)
            if payload is None:  # acknowledged meanwhile
                sent = following
                continue
            request = ingest_pb2.StreamMetricsRequest.FromString(payload)
            request.stream_id = self.spool.stream_id
            request.sequence = following
            sent = following
            yield request

    def _stream_loop(self) -> None:
        assert self._channel is not None
        stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        backoff = 0.2
        while not (self._closed and self.spool.pending() == 0):
            try:
                self._call = stub.StreamMetrics(self._requests(), wait_for_ready=True)
                for response in self._call:
                    self.spool.ack(response.sequence)
                    backoff = 0.2
                    with self._changed:
                        self._changed.notify_all()
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                if code in _PERMANENT:
                    self._failed = f"{code.name}: {error.details()}"
                    log.error("metrics of run %s refused (%s); %d batches kept in %s",
                              self.run_id, self._failed, self.spool.pending(), self.spool.directory)
                    with self._changed:
                        self._changed.notify_all()
                    return
                if code == grpc.StatusCode.CANCELLED and self._closed:
                    return
                log.debug("metric stream interrupted (%s); reconnecting in %.1fs", code, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    # -- shutdown -----------------------------------------------------------------------------

    def flush(self, timeout_s: float) -> bool:
        """Spool the buffer and wait until the server acknowledged everything, up to `timeout_s`."""
        self._spill()
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.spool.pending() and not self._failed and self._streamer is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.2))
        return self.spool.pending() == 0

    def close(self, timeout_s: float) -> int:
        """Flush, stop the threads; returns how many batches are left in the spool."""
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        with self._changed:
            self._changed.notify_all()
        if self._call is not None and self.spool.pending():
            self._call.cancel()
        for thread in (self._batcher, self._streamer):
            if thread is not None:
                thread.join(5)
        left = self.spool.pending()
        self.spool.close(remove_if_empty=True)
        return left
