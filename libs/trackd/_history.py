"""A metric series as the SDK returns it: three numpy columns, read as a sequence of points.

`get_metric_history` used to return a list of `Point` named tuples: about 150 bytes a point once
the tuple and its int, float and int objects are counted, so 5 series of 3,000,000 points held
~2.5 GiB in the client. `MetricHistory` keeps the columns the query service sends — int64 steps,
float64 values, int64 timestamps — as numpy arrays, 24 bytes a point, and builds a `Point` only
when one is asked for (indexing, iteration). It reads like the list it replaces: `len`, `[i]`,
`[-1]`, slices, iteration, `in`, `==` against a list of points or tuples, truthiness; `list(h)`
gives that list back. It is read-only: the arrays are not writeable, and there is no append.

numpy is imported on first use, not with `import trackd`: a CLI command that reads no history
does not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, overload

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_ITER_BLOCK = 65_536  # points converted to Python objects at a time while iterating


class Point(NamedTuple):
    step: int
    value: float
    timestamp: int  # unix milliseconds


def _column(values: Any, dtype: str) -> Any:
    import numpy as np

    column = np.ascontiguousarray(values, dtype=dtype)
    if column.ndim != 1:
        raise ValueError(f"a metric history's columns are one-dimensional, not of shape {column.shape}")
    if column.flags.writeable:
        column.flags.writeable = False
    return column


class MetricHistory(Sequence[Point]):
    """The points of one series in step order: `.steps` (int64), `.values` (float64) and
    `.timestamps` (int64, unix milliseconds) are numpy arrays of equal length, read-only.

    As a sequence it holds `Point(step, value, timestamp)`s with Python numbers: `h[0].step`,
    `h[-1]`, `for p in h`, `len(h)`. A slice is a MetricHistory over the same arrays (no copy).
    Equality: with another MetricHistory, the same columns (NaN values equal to NaN); with any
    other sequence, point by point as a list compares. `to_frame()` needs pandas.
    """

    __slots__ = ("steps", "timestamps", "values")
    __hash__ = None  # type: ignore[assignment]  # compares by content, like the list it replaces

    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.int64]

    def __init__(self, steps: Any = (), values: Any = (), timestamps: Any = ()) -> None:
        self.steps = _column(steps, "int64")
        self.values = _column(values, "float64")
        self.timestamps = _column(timestamps, "int64")
        if not len(self.steps) == len(self.values) == len(self.timestamps):
            raise ValueError(f"a metric history's columns have one length, not {len(self.steps)} steps, "
                             f"{len(self.values)} values and {len(self.timestamps)} timestamps")

    @classmethod
    def concatenate(cls, parts: Iterable[MetricHistory]) -> MetricHistory:
        """One history of `parts` in order, each column copied once into its final array."""
        import numpy as np

        held = [p for p in parts if len(p)]
        if len(held) == 1:
            return held[0]
        if not held:
            return cls()
        return cls(np.concatenate([p.steps for p in held]), np.concatenate([p.values for p in held]),
                   np.concatenate([p.timestamps for p in held]))

    @property
    def nbytes(self) -> int:
        """Bytes the three columns take (24 a point when they own their data)."""
        return int(self.steps.nbytes + self.values.nbytes + self.timestamps.nbytes)

    def __len__(self) -> int:
        return len(self.steps)

    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> MetricHistory: ...

    def __getitem__(self, index: int | slice) -> Point | MetricHistory:
        if isinstance(index, slice):
            return MetricHistory(self.steps[index], self.values[index], self.timestamps[index])
        return Point(int(self.steps[index]), float(self.values[index]), int(self.timestamps[index]))

    def __iter__(self) -> Iterator[Point]:
        for first in range(0, len(self), _ITER_BLOCK):
            block = slice(first, first + _ITER_BLOCK)
            yield from map(Point, self.steps[block].tolist(), self.values[block].tolist(),
                           self.timestamps[block].tolist())

    def __reversed__(self) -> Iterator[Point]:
        return iter(self[::-1])

    def __contains__(self, point: object) -> bool:
        if not isinstance(point, tuple) or len(point) != 3:
            return False
        step, value, timestamp = point
        try:
            hits = (self.steps == step) & (self.values == value) & (self.timestamps == timestamp)
        except (TypeError, ValueError):
            return False
        return bool(hits.any())

    def __eq__(self, other: object) -> bool:
        import numpy as np

        if isinstance(other, MetricHistory):
            return (np.array_equal(self.steps, other.steps) and np.array_equal(self.timestamps, other.timestamps)
                    and np.array_equal(self.values, other.values, equal_nan=True))
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        if not len(self):
            return "MetricHistory(0 points)"
        return f"MetricHistory({len(self):,} points, steps {self.steps[0]}…{self.steps[-1]})"

    def to_frame(self) -> Any:
        """A pandas DataFrame with columns step, value, timestamp (the arrays, not copied where
        pandas can avoid it). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("MetricHistory.to_frame needs pandas: pip install pandas") from None
        return pd.DataFrame({"step": self.steps, "value": self.values, "timestamp": self.timestamps})


def from_series(series: Any) -> MetricHistory:
    """A `trackd.ingest.v1.MetricSeries` message's points (numpy reads protobuf's repeated
    numbers in C: no Python object per point)."""
    import numpy as np

    return MetricHistory(np.array(series.steps, np.int64), np.array(series.values, np.float64),
                         np.array(series.timestamps_ms, np.int64))

