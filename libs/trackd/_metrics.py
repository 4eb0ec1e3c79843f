"""Metrics from the training thread to the ingest service without ever waiting on the network.

    training thread ──append──▶ bounded buffer ──batcher──▶ spool (disk) ──streamer──▶ ingest
                                                                       ◀── acknowledgements

`log()` checks the point (a bad key, step or context raises `InvalidMetric` at the call, as
MLflow does, and nothing of it is kept) and appends it to the buffer as 28 packed bytes (its
series' number, step, value, timestamp): no Python object a point, so nothing for the garbage
collector to walk while a large buffer waits (a deque of tuples spent as much time there as in
logging). The batcher thread reads the buffer as numpy columns, groups them by series, writes the
batches' protobuf bytes with numpy (trackd_platform.series_wire) and appends them to the spool,
the client's write-ahead log. The
streamer thread opens one `StreamMetrics` stream whenever there are spooled batches to send, with
at most `window` unacknowledged; on any stream error it reconnects (the channel's round_robin
picks a live replica) and replays from the last acknowledged sequence. Acknowledged batches are
deleted from the spool.

Bounds: the buffer holds `buffer_points` points and the spool `max_spool_bytes` bytes. When the
ingest service is unreachable for long enough to fill both, `log()` raises `SpoolFull` (the
point is not recorded; everything logged before it is kept) instead of blocking or dropping.
"""

from __future__ import annotations

import functools
import logging
import struct
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from trackd_api.ingest.v1 import ingest_pb2
from trackd_platform.errors import InvalidArgument
from trackd_platform.vocabulary import MetricContext

from trackd._spool import DEFAULT_MAX_BYTES, Spool, SpoolFull

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("trackd")

# What `context=` accepts: None or "" (no context), "train", "eval", "test".
CONTEXTS: dict[str | None, MetricContext] = {None: MetricContext.NONE} | {c.label: c for c in MetricContext}
CONTEXT_NAMES = {int(c): c.label or "none" for c in MetricContext}  # for messages
KEY_MAX = 250  # the ingest service's limit (services/ingest/domain.py)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_BATCH_POINTS = 50_000  # under the server's 100,000
MAX_BATCH_SERIES = 1_000  # the server's limit (services/ingest/domain.py)
# a buffered point: its series' number in the writer, step, value, timestamp (Unix ns: what
# time.time_ns() gives, at half the cost of turning it into milliseconds a point)
_POINT = struct.Struct("<iqdq")
_pack = _POINT.pack
_PERMANENT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
              grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class InvalidMetric(InvalidArgument, ValueError):
    """A metric point the ingest service would refuse: raised by `log_metric`, nothing recorded."""


def check_key(key: object) -> str:
    """The key, if the ingest service accepts it (1–250 characters, not blank, no NUL, valid
    Unicode); raises InvalidMetric naming the problem."""
    if not isinstance(key, str):
        raise InvalidMetric(f"a metric key is a str, not {type(key).__name__}")
    if not key.strip():
        raise InvalidMetric("metric keys must not be empty or blank")
    if len(key) > KEY_MAX:
        raise InvalidMetric(f"metric key {key[:40]!r}… is {len(key)} characters; the limit is {KEY_MAX}")
    if "\x00" in key:
        raise InvalidMetric(f"metric key {key[:40]!r} contains a NUL character")
    try:
        key.encode()
    except UnicodeEncodeError:
        raise InvalidMetric(f"metric key {key[:40]!r} is not valid Unicode (a lone surrogate)") from None
    return key


_CODES = {label: int(c) for label, c in CONTEXTS.items()}  # plain ints


def context_code(context: str | None) -> int:
    try:
        return _CODES[context]
    except (KeyError, TypeError):
        raise InvalidMetric(f"context must be None, 'train', 'eval' or 'test', not {context!r}") from None


def timestamp_ns(timestamp: float | None) -> int:
    """`timestamp` (seconds since 1970; None: now) in Unix nanoseconds, whole milliseconds (metrics
    are stored to the millisecond). A 64-bit count of nanoseconds spans the years 1677–2262."""
    if timestamp is None:
        return time.time_ns()
    try:
        stamp = int(timestamp * 1000) * 1_000_000
    except (OverflowError, ValueError, TypeError):
        raise InvalidMetric(f"timestamp {timestamp!r} is not a number of seconds since 1970") from None
    if not INT64_MIN <= stamp <= INT64_MAX:
        raise InvalidMetric(f"timestamp {timestamp!r} is out of range: a metric's time is between the years "
                            f"1677 and 2262") from None
    return stamp


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
        max_spool_bytes: int = DEFAULT_MAX_BYTES,
        resume: bool = False,
        next_steps: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        """`resume=True` opens the existing spool of `stream_id` (`trackd sync`): SpoolInUse when a
        live process holds it, FileNotFoundError when it is gone. `next_steps`: where `step=None`
        continues per (key, context) — a resumed run's last stored step + 1 — instead of 0."""
        self.run_id = run_id
        # packed points (_POINT): log() appends whole points (one C call: atomic under the GIL),
        # the batcher takes them from the front; neither ever replaces the bytearray
        self._buffer = bytearray()
        self._buffer_bytes = buffer_points * _POINT.size
        # a series' number: its index in _series and _next; found by the context as given, then key
        self._ids: dict[str | None, dict[str, int]] = {}
        self._numbers: dict[tuple[str, int], int] = {}  # by (key, context code)
        self._series: list[tuple[str, int]] = []
        self._next: list[int] = []  # a series' step when step=None
        self._first_steps = dict(next_steps or {})
        self._adding = threading.Lock()
        self._flush_interval_s = flush_interval_s
        self._window = window
        stream_id = stream_id or uuid.uuid4().hex
        self.spool = Spool(spool_root / stream_id, run_id=run_id, stream_id=stream_id, max_bytes=max_spool_bytes,
                           create=not resume)
        self._held: bytes | None = None  # a batch made but not spooled yet (spool full, disk error)
        self._spool_error: str | None = None
        self._batching = threading.Lock()
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._closed = False
        self.failure: str | None = None  # why the server refused the stream for good
        self.rejected: dict[tuple[str, int], str] = {}  # series the server refused alone → why
        self._call: grpc.Call | None = None
        self._cancelled = False  # close() cancelled the call: no new one
        self._generation = 0  # of the current call; a request iterator of an older one stops
        self._channel = channel
        self._batcher = threading.Thread(target=self._batch_loop, name="trackd-batcher", daemon=True)
        self._batcher.start()
        self._streamer: threading.Thread | None = None
        if channel is not None:  # offline: spool only, `trackd sync` sends later
            self._streamer = threading.Thread(target=self._stream_loop, name="trackd-streamer", daemon=True)
            self._streamer.start()

    # -- the training thread ------------------------------------------------------------------

    def log(self, key: str, value: float, step: int | None, context: str | None, timestamp_ns: int) -> None:
        """Record one point, or raise InvalidMetric (a bad key, step or context) or SpoolFull,
        keeping nothing of it. `value` is a float, `timestamp_ns` from `timestamp_ns()`."""
        try:
            number = self._ids[context][key]
        except (KeyError, TypeError):  # a series new to this writer (checked once), or a bad key or context
            number = self._add_series(key, context)
        if step is None:
            step = self._next[number]
        elif type(step) is not int or not INT64_MIN <= step < INT64_MAX:
            step = _step(step)
        if len(self._buffer) >= self._buffer_bytes:
            self._spill()  # full: write to the spool here rather than grow without bound
            if len(self._buffer) >= self._buffer_bytes:
                raise SpoolFull(self._full())
        self._next[number] = step + 1
        self._buffer += _pack(number, step, value, timestamp_ns)

    def _add_series(self, key: str, context: str | None) -> int:
        series = (check_key(key), context_code(context))
        with self._adding:
            number = self._numbers.get(series)
            if number is None:
                number = self._numbers[series] = len(self._series)
                self._series.append(series)
                self._next.append(self._first_steps.get(series, 0))
            self._ids.setdefault(context, {})[key] = number  # last: log() finds it only when complete
            return number

    def next_step(self, key: str, context: str | None) -> int | None:
        """The step `step=None` would log next for the series; None if it has no step yet."""
        series = (check_key(key), context_code(context))
        number = self._numbers.get(series)
        return self._first_steps.get(series) if number is None else self._next[number]

    def _full(self) -> str:
        reason = self._spool_error or (f"its spool {self.spool.directory} holds "
                                       f"{self.spool.used_bytes / 2**20:.1f} MiB, the limit (TRACKD_SPOOL_MAX_BYTES="
                                       f"{self.spool.max_bytes})")
        points = len(self._buffer) // _POINT.size
        return (f"metrics of run {self.run_id} cannot be recorded: the ingest service has not acknowledged "
                f"{points:,} buffered points and {reason}. This point was not recorded; everything "
                f"logged before it is kept and is sent when the service is reachable. Check the connection, "
                f"or raise TRACKD_SPOOL_MAX_BYTES")

    # -- batching -----------------------------------------------------------------------------

    def _batch_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            try:
                self._spill()
            except Exception:  # never die silently: the next round retries
                log.exception("spooling metrics of run %s failed", self.run_id)

    def _spill(self, *, force: bool = False) -> None:
        """Turn the buffer into spooled batches. A batch the spool cannot take (full, or a disk
        error) is held and tried first next time; `force` spools past the size limit."""
        with self._batching:
            if self._held is None or self._spool_held(force=force):
                while self._buffer:
                    self._held = self._batch()
                    if not self._spool_held(force=force):
                        break
        with self._changed:
            self._changed.notify_all()

    def _batch(self) -> bytes:
        """The oldest buffered points — at most MAX_BATCH_POINTS of MAX_BATCH_SERIES series — as a
        StreamMetricsRequest's bytes (without stream_id and sequence), taken off the buffer."""
        import numpy as np  # on the batcher's first batch, not with `import trackd`
        from trackd_platform.series_wire import series_parts, stream_batch

        data = self._buffer[:MAX_BATCH_POINTS * _POINT.size]  # a copy: log() may append meanwhile
        points = np.frombuffer(data, _point_dtype())
        numbers = points["series"]
        if numbers.min() == numbers.max():  # one series (the usual batch)
            groups = [points]
        else:
            series, firsts = np.unique(numbers, return_index=True)
            if len(series) > MAX_BATCH_SERIES:  # end before the first point of one series too many
                points = points[:int(np.sort(firsts)[MAX_BATCH_SERIES])]
            ordered = points[np.argsort(points["series"], kind="stable")]  # each series' points in order
            groups = np.split(ordered, np.flatnonzero(np.diff(ordered["series"])) + 1)
        del self._buffer[:len(points) * _POINT.size]
        return stream_batch(self.run_id, [
            series_parts(*self._series[int(group["series"][0])], group["step"], group["value"],
                         group["timestamp"] // 1_000_000)  # Unix ms, as time_ns() // 1_000_000
            for group in groups
        ])

    def _spool_held(self, *, force: bool) -> bool:
        assert self._held is not None
        try:
            self.spool.append(self._held, force=force)
        except SpoolFull:
            return False
        except OSError as exc:
            if self._spool_error is None:
                log.error("cannot write the metric spool %s (%s); points stay in memory and are retried",
                          self.spool.directory, exc)
            self._spool_error = f"writing its spool {self.spool.directory} fails ({exc})"
            return False
        self._held = None
        self._spool_error = None
        return True

    # -- streaming ----------------------------------------------------------------------------

    def _requests(self, generation: int) -> Iterator[bytes]:
        """The spooled batches not acknowledged yet, as requests' wire bytes: the stream's id and the
        batch's sequence written before the spooled bytes (no parse, no serialization a batch)."""
        from trackd_platform.series_wire import stream_header

        sent = self.spool.acked
        while True:
            with self._changed:
                while True:
                    if generation != self._generation:  # a newer call took over
                        return
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
            sent = following
            yield stream_header(self.spool.stream_id, following) + payload

    def _acknowledged(self, response: ingest_pb2.StreamMetricsResponse) -> None:
        for rejected in response.rejected:
            series = (rejected.key, int(rejected.context))
            if series not in self.rejected:
                self.rejected[series] = rejected.reason
                log.error("metric %r (context %s) of run %s was refused by the server and not stored: %s",
                          rejected.key, CONTEXT_NAMES.get(series[1], series[1]), self.run_id, rejected.reason)
        self.spool.ack(response.sequence)
        self._wake.set()  # space freed: the batcher may spool what it holds

    def _stream_loop(self) -> None:
        assert self._channel is not None
        # StreamMetrics with requests sent as the bytes _requests writes (no request serializer)
        stream_metrics: grpc.StreamStreamMultiCallable[bytes, ingest_pb2.StreamMetricsResponse]
        stream_metrics = self._channel.stream_stream(
            "/trackd.ingest.v1.IngestService/StreamMetrics",
            response_deserializer=ingest_pb2.StreamMetricsResponse.FromString)
        backoff = 0.2
        while True:
            with self._changed:  # a stream is opened only when there is something to send
                while self.spool.next_unsent(self.spool.acked) is None:
                    if self._closed:
                        return
                    self._changed.wait(0.5)
                if self._closed and self._cancelled:
                    return  # close() gave up on the server: no new call
            try:
                with self._changed:
                    self._generation += 1
                    generation = self._generation
                call = stream_metrics(self._requests(generation), wait_for_ready=True)
                self._call = call
                for response in call:
                    self._acknowledged(response)
                    backoff = 0.2
                    with self._changed:
                        self._changed.notify_all()
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                if code is not None and code in _PERMANENT:
                    self.failure = f"{code.name}: {error.details()}"
                    log.error("metrics of run %s refused (%s); %d batches kept in %s",
                              self.run_id, self.failure, self.spool.pending(), self.spool.directory)
                    with self._changed:
                        self._changed.notify_all()
                    return
                if code == grpc.StatusCode.CANCELLED and self._closed:
                    return
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:  # the server ended a stream that sent nothing
                    backoff = 0.2
                log.debug("metric stream interrupted (%s); reconnecting in %.1fs", code, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    # -- shutdown -----------------------------------------------------------------------------

    def _unsent(self) -> bool:
        return bool(self.spool.pending() or self._held is not None or self._buffer)

    def flush(self, timeout_s: float) -> bool:
        """Spool the buffer and wait until the server acknowledged everything, up to `timeout_s`."""
        self._spill()
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._unsent() and not self.failure and self._streamer is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.2))
                if self._held is not None or self._buffer:
                    self._changed.release()
                    try:
                        self._spill()
                    finally:
                        self._changed.acquire()
        return not self._unsent()

    def close(self, timeout_s: float) -> int:
        """Flush, stop the threads; returns how many batches are left in the spool. What the spool
        could not take before (full) is written now, past its limit: nothing accepted is lost."""
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        self._batcher.join(5)
        self._spill(force=True)
        with self._changed:
            self._changed.notify_all()
        if self._call is not None and self.spool.pending():
            self._cancelled = self._call.cancel()  # False when the call had ended already
        if self._streamer is not None:
            self._streamer.join(5)
        left = self.spool.pending()
        self.spool.close(remove_if_empty=True)
        return left


@functools.cache
def _point_dtype() -> np.dtype[np.void]:
    import numpy as np

    return np.dtype([("series", "<i4"), ("step", "<i8"), ("value", "<f8"), ("timestamp", "<i8")])


def _step(step: object) -> int:
    try:
        value = int(step.__index__())  # type: ignore[attr-defined]  # ints, numpy integers; not floats
    except (AttributeError, TypeError):
        raise InvalidMetric(f"step must be an integer, not {type(step).__name__} {step!r}") from None
    if not INT64_MIN <= value < INT64_MAX:
        raise InvalidMetric(f"step {value} is outside the 64-bit range")
    return value
