"""Ingest domain: limits, validation, stream slots and the columnar chunks points are stored in.
Pure: numpy, no I/O. A batch's columns go from the request to numpy in one copy each (protobuf's
repeated numbers expose a buffer) and everything per point after that is vectorised: packing
(trackd_platform.chunks), the step range and the series summary.

Limits (documented in README.md): a batch holds at most 100,000 points in at most 1,000 series;
a metric key is 1–250 characters, without NUL; a gRPC message is at most 16 MiB; a replica
serves at most 512 streams at once, at most 128 of them for one caller (RESOURCE_EXHAUSTED
beyond; both settings of `IngestSettings`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from trackd_platform.chunks import pack_floats, pack_ints, pack_overview, unpack_floats, unpack_ints
from trackd_platform.errors import InvalidArgument, ResourceExhausted
from trackd_platform.metric_series import CONTEXTS, KEY_MAX, Summary

MAX_POINTS_PER_BATCH = 100_000
MAX_SERIES_PER_BATCH = 1_000
REJECTED_KEY_MAX = 256  # a rejected series' key is echoed back cut to this many characters


class SeriesMessage(Protocol):
    """What a `trackd.ingest.v1.MetricSeries` looks like to the domain."""

    @property
    def key(self) -> str: ...
    @property
    def context(self) -> int: ...
    @property
    def steps(self) -> Sequence[int]: ...
    @property
    def values(self) -> Sequence[float]: ...
    @property
    def timestamps_ms(self) -> Sequence[int]: ...


@dataclass(frozen=True)
class Chunk:
    """Points of one series from one batch, packed as stored."""

    key: str
    context: int
    steps: np.ndarray  # int64
    values: np.ndarray  # float64
    timestamps: np.ndarray  # int64, unix milliseconds
    source: int = -1  # the position of its series in the batch (-1: not from a batch)

    @property
    def points(self) -> int:
        return len(self.steps)

    @property
    def first_step(self) -> int:
        return int(self.steps.min())

    @property
    def last_step(self) -> int:
        return int(self.steps.max())

    def packed(self) -> tuple[bytes, bytes, bytes, bytes | None]:
        """As stored: the three columns through trackd_platform.chunks (pcodec, bit for bit), and
        the chunk's overview (None for a small chunk or one holding NaN / ±Inf)."""
        return (pack_ints(self.steps), pack_floats(self.values), pack_ints(self.timestamps),
                pack_overview(self.steps, self.values, self.timestamps))

    def summary(self) -> Summary:
        """The chunk's latest point (highest step, then timestamp), min / max (NaN ignored; NaN
        when every value is NaN) and count."""
        steps, stamps, values = self.steps, self.timestamps, self.values
        top = np.flatnonzero(steps == steps.max())
        last = int(top[0]) if len(top) == 1 else int(top[np.argmax(stamps[top])])
        finite = values[~np.isnan(values)]
        return Summary(step=int(steps[last]), value=float(values[last]), timestamp=int(stamps[last]),
                       min=float(finite.min()) if len(finite) else math.nan,
                       max=float(finite.max()) if len(finite) else math.nan, count=self.points)


@dataclass(frozen=True)
class Rejected:
    """A series refused on its own (its batch's other series are written): what, and why."""

    key: str  # cut to REJECTED_KEY_MAX characters
    context: int
    points: int
    reason: str


def series_problem(s: SeriesMessage) -> str | None:
    """Why one series cannot be stored, or None."""
    if not s.key or not s.key.strip():
        return "metric keys must not be empty"
    if len(s.key) > KEY_MAX:
        return f"metric key {s.key[:40]!r}… is {len(s.key)} characters; the limit is {KEY_MAX}"
    if "\x00" in s.key:
        return f"metric key {s.key[:40]!r} contains a NUL character"
    if s.context not in CONTEXTS:
        return f"metric {s.key!r}: unknown context {s.context} (use none, train, eval or test)"
    n = len(s.steps)
    if n == 0 or len(s.values) != n or len(s.timestamps_ms) not in (0, n):
        return (f"metric {s.key!r}: steps, values and timestamps_ms must have the same, non-zero length "
                f"(got {n}, {len(s.values)}, {len(s.timestamps_ms)}; timestamps_ms may be empty)")
    return None


def split_batch(series: Sequence[SeriesMessage], *, now_ms: int | None = None) -> tuple[list[Chunk], list[Rejected]]:
    """Validate a stream's batch: the series that can be stored, packed, and the ones refused
    (each with its reason). Raises InvalidArgument only for what is wrong with the batch as a
    whole: no series, more than 1,000 series or 100,000 points."""
    if not series:
        raise InvalidArgument("a batch needs at least one series")
    if len(series) > MAX_SERIES_PER_BATCH:
        raise InvalidArgument(f"{len(series)} series in one batch; the limit is {MAX_SERIES_PER_BATCH}")
    if sum(len(s.steps) for s in series) > MAX_POINTS_PER_BATCH:
        raise InvalidArgument(f"more than {MAX_POINTS_PER_BATCH} points in one batch: send smaller batches")
    chunks, rejected = [], []
    for at, s in enumerate(series):
        if problem := series_problem(s):
            rejected.append(Rejected(s.key[:REJECTED_KEY_MAX], s.context, len(s.steps), problem))
            continue
        n = len(s.steps)
        stamps = (np.array(s.timestamps_ms, np.int64) if len(s.timestamps_ms)
                  else np.full(n, now_ms or _now_ms(), np.int64))
        chunks.append(Chunk(s.key, s.context, np.array(s.steps, np.int64), np.array(s.values, np.float64), stamps,
                            at))
    return chunks, rejected


def to_chunks(series: Sequence[SeriesMessage], *, now_ms: int | None = None) -> list[Chunk]:
    """Validate a batch that is written whole or not at all (LogMetrics) and pack it. Raises
    InvalidArgument, naming the first problem."""
    chunks, rejected = split_batch(series, now_ms=now_ms)
    if rejected:
        raise InvalidArgument(rejected[0].reason)
    return chunks


class StreamSlots:
    """The StreamMetrics calls one replica holds: at most `total`, at most `per_caller` (0: no
    bound) for one caller, so that one token or client cannot starve the others."""

    def __init__(self, *, total: int, per_caller: int) -> None:
        self.total = total
        self.per_caller = per_caller
        self._held: dict[str, int] = {}
        self.open = 0

    def take(self, caller: str) -> None:
        """Raises ResourceExhausted, naming the limit, when the replica or the caller is full."""
        if self.open >= self.total:
            raise ResourceExhausted(
                f"this replica serves {self.total} metric streams already (TRACKD_INGEST_MAX_STREAMS); "
                "retry shortly or on another replica")
        held = self._held.get(caller, 0)
        if self.per_caller and held >= self.per_caller:
            raise ResourceExhausted(
                f"{caller} holds {held} metric streams on this replica, the limit per caller "
                f"(TRACKD_INGEST_MAX_STREAMS_PER_CALLER={self.per_caller}); end some, or use one stream per run")
        self._held[caller] = held + 1
        self.open += 1

    def give_back(self, caller: str) -> None:
        held = self._held.get(caller, 0) - 1
        if held > 0:
            self._held[caller] = held
        else:
            self._held.pop(caller, None)
        self.open -= 1

    def held_by(self, caller: str) -> int:
        return self._held.get(caller, 0)


def summarize(chunk: Chunk) -> Summary:
    """`chunk.summary()`."""
    return chunk.summary()


def unpack(steps: bytes, values: bytes, timestamps: bytes) -> Chunk:
    """The inverse of `Chunk.packed()` (key and context are the caller's)."""
    return Chunk("", 0, unpack_ints(steps), unpack_floats(values), unpack_ints(timestamps))


def merge(a: Summary | None, b: Summary) -> Summary:
    if a is None:
        return b
    newer = b if (b.step, b.timestamp) >= (a.step, a.timestamp) else a
    return Summary(newer.step, newer.value, newer.timestamp, _nanmin(a.min, b.min), _nanmax(a.max, b.max),
                   a.count + b.count)


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


def _now_ms() -> int:
    return int(time.time() * 1000)
