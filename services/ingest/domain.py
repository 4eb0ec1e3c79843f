"""Ingest domain: limits, validation and the columnar chunks points are stored in. Pure Python.

Limits (documented in README.md): a batch holds at most 100,000 points in at most 1,000 series;
a metric key is 1–250 characters; a gRPC message is at most 16 MiB; a replica serves at most
512 streams at once (RESOURCE_EXHAUSTED beyond).
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from trackd_platform.errors import InvalidArgument

MAX_POINTS_PER_BATCH = 100_000
MAX_SERIES_PER_BATCH = 1_000
KEY_MAX = 250
MAX_STREAMS_PER_REPLICA = 512
CONTEXTS = {0: "", 1: "train", 2: "eval", 3: "test"}


class SeriesMessage(Protocol):
    """What a `trackd.ingest.v1.MetricSeries` looks like to the domain."""

    key: str
    context: int
    steps: Sequence[int]
    values: Sequence[float]
    timestamps_ms: Sequence[int]


@dataclass(frozen=True)
class Chunk:
    """Points of one series from one batch, packed as stored."""

    key: str
    context: int
    steps: array[int]  # 'q': int64
    values: array[float]  # 'd': float64
    timestamps: array[int]  # 'q': unix milliseconds

    @property
    def points(self) -> int:
        return len(self.steps)

    def packed(self) -> tuple[bytes, bytes, bytes]:
        return self.steps.tobytes(), self.values.tobytes(), self.timestamps.tobytes()


@dataclass(frozen=True)
class Summary:
    """What the latest-metric cache keeps per series: the point with the highest (step,
    timestamp), and min / max (NaN ignored) / count."""

    step: int
    value: float
    timestamp: int
    min: float
    max: float
    count: int


def to_chunks(series: Sequence[SeriesMessage], *, now_ms: int | None = None) -> list[Chunk]:
    """Validate a batch and pack it. Raises InvalidArgument, naming the first problem."""
    if not series:
        raise InvalidArgument("a batch needs at least one series")
    if len(series) > MAX_SERIES_PER_BATCH:
        raise InvalidArgument(f"{len(series)} series in one batch; the limit is {MAX_SERIES_PER_BATCH}")
    total = 0
    chunks = []
    for s in series:
        if not s.key or not s.key.strip():
            raise InvalidArgument("metric keys must not be empty")
        if len(s.key) > KEY_MAX:
            raise InvalidArgument(f"metric key {s.key[:40]!r}… is {len(s.key)} characters; the limit is {KEY_MAX}")
        if s.context not in CONTEXTS:
            raise InvalidArgument(f"metric {s.key!r}: unknown context {s.context}")
        n = len(s.steps)
        if n == 0 or len(s.values) != n or len(s.timestamps_ms) not in (0, n):
            raise InvalidArgument(
                f"metric {s.key!r}: steps, values and timestamps_ms must have the same, non-zero length "
                f"(got {n}, {len(s.values)}, {len(s.timestamps_ms)}; timestamps_ms may be empty)"
            )
        total += n
        if total > MAX_POINTS_PER_BATCH:
            raise InvalidArgument(f"more than {MAX_POINTS_PER_BATCH} points in one batch: send smaller batches")
        stamps = array("q", s.timestamps_ms) if s.timestamps_ms else array("q", [now_ms or _now_ms()]) * n
        chunks.append(Chunk(s.key, s.context, array("q", s.steps), array("d", s.values), stamps))
    return chunks


def summarize(chunk: Chunk) -> Summary:
    last = max(range(chunk.points), key=lambda i: (chunk.steps[i], chunk.timestamps[i]))
    finite = [v for v in chunk.values if not math.isnan(v)]
    return Summary(
        step=chunk.steps[last], value=chunk.values[last], timestamp=chunk.timestamps[last],
        min=min(finite) if finite else math.nan, max=max(finite) if finite else math.nan, count=chunk.points,
    )


def unpack(steps: bytes, values: bytes, timestamps: bytes) -> Chunk:
    """The inverse of `Chunk.packed()` (key and context are the caller's)."""
    s, v, t = array("q"), array("d"), array("q")
    s.frombytes(steps)
    v.frombytes(values)
    t.frombytes(timestamps)
    return Chunk("", 0, s, v, t)


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
