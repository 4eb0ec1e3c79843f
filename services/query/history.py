"""Metric history in numpy: merge stored chunks into step order, downsample keeping the
extremes, aggregate into step buckets. Pure: no database, no gRPC."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from trackd_platform.chunks import OVERVIEW_BLOCK, unpack_floats, unpack_ints, unpack_overview
from tsdownsample import MinMaxLTTBDownsampler

# Downsampling reads chunk overviews (one point in OVERVIEW_BLOCK / 2) when a series holds at least
# this many points per point shown: LTTB then still chooses from 4 candidates a point or more.
OVERVIEW_RATIO = 2 * OVERVIEW_BLOCK
MAX_BUCKETS = 10_000
DEFAULT_BUCKETS = 1_000


@dataclass(frozen=True)
class Points:
    steps: np.ndarray  # int64
    values: np.ndarray  # float64
    timestamps: np.ndarray  # int64, unix milliseconds

    def __len__(self) -> int:
        return len(self.steps)

    def take(self, index: np.ndarray | slice) -> Points:
        return Points(self.steps[index], self.values[index], self.timestamps[index])


EMPTY = Points(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))


def from_packed(chunks: Iterable[tuple[bytes, bytes, bytes]]) -> Points:
    """Stored chunks (packed little-endian arrays) → points sorted by (step, timestamp). Chunks of
    one series may overlap (streams committed out of order); the sort is stable."""
    parts = list(chunks)
    if not parts:
        return EMPTY
    if len(parts) == 1:  # one chunk (an export reads them so): its columns as they are decoded
        steps, values, stamps = unpack_ints(parts[0][0]), unpack_floats(parts[0][1]), unpack_ints(parts[0][2])
    else:
        steps = np.concatenate([unpack_ints(s) for s, _, _ in parts])
        values = np.concatenate([unpack_floats(v) for _, v, _ in parts])
        stamps = np.concatenate([unpack_ints(t) for _, _, t in parts])
    points = Points(steps, values, stamps)
    if len(steps) > 1 and not _ordered(points):
        points = points.take(np.lexsort((stamps, steps)))
    return points


@dataclass(frozen=True)
class Chunk:
    """A stored chunk with its row's step range and count."""

    first_step: int
    last_step: int
    points: int
    steps: bytes
    values: bytes
    timestamps: bytes


def from_chunks(chunks: Sequence[Chunk]) -> Points:
    """Like from_packed, for chunks in first_step order. When each chunk's steps strictly increase
    over exactly its row's range and each chunk starts right after the previous one ends (a series
    logged one point a step: the common case), the steps are one range: no concatenation, no sort
    check of the whole series."""
    if not chunks:
        return EMPTY
    spans = all(c.last_step - c.first_step + 1 == c.points for c in chunks) and all(
        b.first_step == a.last_step + 1 for a, b in zip(chunks, chunks[1:], strict=False))
    if not spans or not all(_increasing(unpack_ints(c.steps)) for c in chunks):
        return from_packed((c.steps, c.values, c.timestamps) for c in chunks)
    values = np.concatenate([unpack_floats(c.values) for c in chunks])
    stamps = np.concatenate([unpack_ints(c.timestamps) for c in chunks])
    return Points(np.arange(chunks[0].first_step, chunks[-1].last_step + 1, dtype=np.int64), values, stamps)


def from_overviews(overviews: Sequence[bytes], whole: Points) -> Points:
    """The candidates a long series is downsampled from: the points of its chunks' overviews
    (trackd_platform.chunks) and every point of the chunks read whole, in (step, timestamp) order.
    The series' first and last point and its extremes are among them."""
    parts = [unpack_overview(o) for o in overviews]
    points = Points(np.concatenate([whole.steps, *(p[0] for p in parts)]),
                    np.concatenate([whole.values, *(p[1] for p in parts)]),
                    np.concatenate([whole.timestamps, *(p[2] for p in parts)]))
    if len(points) > 1 and not _ordered(points):
        points = points.take(np.lexsort((points.timestamps, points.steps)))
    return points


def _increasing(steps: np.ndarray) -> bool:
    return bool((steps[1:] > steps[:-1]).all())


def _ordered(p: Points) -> bool:
    steps = p.steps
    if (steps[1:] > steps[:-1]).all():  # the common case, in one pass: no ties to look into
        return True
    if not (steps[1:] >= steps[:-1]).all():
        return False
    same = np.flatnonzero(steps[1:] == steps[:-1])  # usually none: timestamps matter only for ties
    return not len(same) or bool((p.timestamps[same + 1] >= p.timestamps[same]).all())


def in_range(points: Points, start: int | None, end: int | None) -> Points:
    if start is None and end is None:
        return points
    lo = 0 if start is None else int(np.searchsorted(points.steps, start, "left"))
    hi = len(points) if end is None else int(np.searchsorted(points.steps, end, "right"))
    return points.take(slice(lo, hi))


def downsample(points: Points, max_points: int) -> Points:
    """At most `max_points` points: all of them when they fit; otherwise MinMaxLTTB over the
    finite values, plus — always — the first point, the last point and the global minimum and
    maximum (NaN ignored). Deterministic: the same input gives the same output."""
    n = len(points)
    if max_points <= 0 or n <= max_points:
        return points
    values = points.values
    all_finite = bool(np.isfinite(values).all())  # the common case: no NaN / ±Inf to step around
    keep = [n - 1]  # in priority order, for budgets too small to hold them all
    if all_finite:
        keep += [int(np.argmax(values)), int(np.argmin(values))]
    elif not np.isnan(values).all():
        keep += [int(np.nanargmax(values)), int(np.nanargmin(values))]
    keep.append(0)
    essential = list(dict.fromkeys(keep))[:max_points]
    budget = max_points - len(essential)
    steps = points.steps
    finite = None if all_finite else np.flatnonzero(np.isfinite(values))
    essentials = np.asarray(essential, np.int64)
    if finite is not None and len(finite) <= budget:
        index = np.union1d(essentials, finite)
    elif budget < 3:  # too few points left for LTTB: the essential ones only
        index = np.unique(essentials)
    else:
        # Consecutive steps (n strictly increasing integers spanning n - 1): LTTB on the indices
        # picks the same points (it only compares distances) and needs no x at all.
        consecutive = (all_finite and int(steps[-1]) - int(steps[0]) == n - 1
                       and bool((steps[1:] > steps[:-1]).all()))
        x, y = (steps, values) if finite is None else (steps[finite], values[finite])
        n_out = budget
        for _ in range(3):  # LTTB's picks may coincide with the essential points: top up
            raw = (MinMaxLTTBDownsampler().downsample(y, n_out=n_out) if consecutive  # type: ignore[no-untyped-call]
                   else MinMaxLTTBDownsampler().downsample(x, y, n_out=n_out))  # type: ignore[no-untyped-call]
            picked = raw.astype(np.int64) if finite is None else finite[raw.astype(np.int64)]
            index = np.union1d(essentials, picked)
            usable = n if finite is None else len(finite)
            if len(index) >= max_points or n_out >= usable:
                break
            n_out = min(usable, n_out + max_points - len(index))
    if len(index) > max_points:  # drop non-essential points beyond the budget
        extra = np.setdiff1d(index, essentials)[: max_points - len(essentials)]
        index = np.union1d(essentials, extra)
    return points.take(index)


@dataclass(frozen=True)
class Bucket:
    start_step: int
    end_step: int
    min: float
    max: float
    mean: float
    last: float
    count: int


def bucket_width(points: Points, requested: int, max_buckets: int) -> int:
    if requested > 0:
        return requested
    if not len(points):
        return 1
    span = int(points.steps[-1]) - int(points.steps[0]) + 1
    return max(1, math.ceil(span / max_buckets))


def aggregate(points: Points, width: int) -> list[Bucket]:
    """Per bucket of `width` steps (starting at the first step): min / max / mean over the
    non-NaN values, the value of the last point (highest step, then timestamp) and the count of
    every point. `points` must be sorted (from_packed / merge_sorted)."""
    if not len(points):
        return []
    origin = int(points.steps[0])
    ids = (points.steps - origin) // width
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(points)] - 1
    values = points.values
    nan = np.isnan(values)
    present = np.add.reduceat((~nan).astype(np.int64), starts)
    total = np.add.reduceat(np.where(nan, 0.0, values), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(present > 0, total / np.maximum(present, 1), np.nan)
    low = np.fmin.reduceat(values, starts)
    high = np.fmax.reduceat(values, starts)
    counts = np.diff(np.r_[starts, len(points)])
    return [
        Bucket(start_step=origin + int(ids[s]) * width, end_step=origin + int(ids[s]) * width + width - 1,
               min=float(low[k]), max=float(high[k]), mean=float(mean[k]), last=float(values[e]),
               count=int(counts[k]))
        for k, (s, e) in enumerate(zip(starts, ends, strict=True))
    ]


def merge_sorted(parts: Iterable[Points]) -> Points:
    """Points of several series (e.g. the seeds of one configuration) in (step, timestamp) order."""
    items = [p for p in parts if len(p)]
    if not items:
        return EMPTY
    if len(items) == 1 and _ordered(items[0]):
        return items[0]
    merged = Points(np.concatenate([p.steps for p in items]), np.concatenate([p.values for p in items]),
                    np.concatenate([p.timestamps for p in items]))
    if len(merged) > 1 and _ordered(merged):  # parts that follow one another (an export's): no sort
        return merged
    return merged.take(np.lexsort((merged.timestamps, merged.steps)))
