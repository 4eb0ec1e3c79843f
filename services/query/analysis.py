"""Analysis over runs: comparison, experiment summaries, param importance, parallel
coordinates and contour data. Pure: runs and their latest metrics in, plain results out.

Param importance is `trackd_platform.importance.fanova` (Optuna's fANOVA evaluator): each run is
a point whose value is the target metric.
"""

from __future__ import annotations

import math
import re
import statistics
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from trackd_platform.errors import FailedPrecondition, ResourceExhausted
from trackd_platform.importance import METHOD, fanova
from trackd_platform.metric_series import Summary
from trackd_platform.run_records import Run

MINIMIZE, MAXIMIZE = 1, 2
# Metric names that are better when lower; any other metric is maximized unless told otherwise.
_LOWER_IS_BETTER = re.compile(r"loss|error|err\b|mse|mae|rmse|perplexity|ppl|wer|cer|latency|regret|time",
                              re.IGNORECASE)
IMPORTANCE_METHOD = METHOD
MIN_RUNS_FOR_IMPORTANCE = 2
MAX_CONTOUR_CELLS = 250_000  # the mean grid: 2 MB of doubles, well within one message

Latest = Mapping[tuple[str, int], Summary]


def guess_direction(key: str) -> int:
    return MINIMIZE if _LOWER_IS_BETTER.search(key) else MAXIMIZE


def as_number(value: str) -> float | None:
    """A param value as a finite number, when it reads as one."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class ComparedParam:
    key: str
    values: list[str | None]
    differs: bool


@dataclass(frozen=True)
class ComparedMetric:
    key: str
    context: int
    values: list[Summary | None]
    differs: bool


def compare(runs: Sequence[Run], latest: Mapping[uuid.UUID, Latest]
            ) -> tuple[list[ComparedParam], list[ComparedMetric]]:
    """Params side by side (a missing param counts as a value) and latest metrics, sorted by key;
    the differing ones are marked."""
    param_keys = sorted({k for r in runs for k in r.params})
    params = []
    for key in param_keys:
        values = [r.params.get(key) for r in runs]
        params.append(ComparedParam(key, values, differs=len(set(values)) > 1))
    names = sorted({name for r in runs for name in latest[r.id]})
    metrics = []
    for key, context in names:
        cells = [latest[r.id].get((key, context)) for r in runs]
        shown = {None if c is None else (repr(c.value)) for c in cells}
        metrics.append(ComparedMetric(key, context, cells, differs=len(shown) > 1))
    return params, metrics


@dataclass(frozen=True)
class MetricSummary:
    key: str
    context: int
    direction: int
    runs: int
    best: float
    worst: float
    mean: float
    std: float
    median: float
    best_run: uuid.UUID


def summarize(run_ids: Sequence[uuid.UUID], latest: Mapping[uuid.UUID, Latest],
              directions: Mapping[str, int]) -> list[MetricSummary]:
    """Per metric over the runs' latest values (NaN ignored): best, worst, mean, population std,
    median and the best run, honouring each metric's direction."""
    values: dict[tuple[str, int], list[tuple[float, uuid.UUID]]] = {}
    for run_id in run_ids:
        for name, s in latest[run_id].items():
            if not math.isnan(s.value):
                values.setdefault(name, []).append((s.value, run_id))
    found = []
    for (key, context), pairs in sorted(values.items(), key=lambda item: item[0]):
        direction = directions.get(key) or guess_direction(key)
        numbers = [v for v, _ in pairs]
        if direction == MINIMIZE:
            best_value, best_run = min(pairs, key=lambda p: p[0])
            worst = max(numbers)
        else:
            best_value, best_run = max(pairs, key=lambda p: p[0])
            worst = min(numbers)
        found.append(MetricSummary(
            key=key, context=context, direction=direction, runs=len(numbers), best=best_value, worst=worst,
            mean=_safe(statistics.fmean, numbers), std=_safe(statistics.pstdev, numbers),
            median=statistics.median(numbers), best_run=best_run))
    return found


def _safe(function: Callable[[list[float]], float], numbers: list[float]) -> float:
    try:
        return float(function(numbers))
    except (OverflowError, ValueError):  # ±inf among the values
        return math.nan


def target_values(runs: Sequence[Run], latest: Mapping[uuid.UUID, Latest], metric: str, context: int
                  ) -> list[tuple[Run, float]]:
    """The runs having a finite latest value of the metric, with that value."""
    found = []
    for run in runs:
        s = latest[run.id].get((metric, context))
        if s is not None and math.isfinite(s.value):
            found.append((run, s.value))
    return found


@dataclass(frozen=True)
class Axis:
    name: str
    values: list[float]
    categories: list[str]


def axis(name: str, raw: Sequence[str]) -> Axis:
    """Numbers when every value reads as one, else categories (values are indices, sorted)."""
    numbers = [as_number(v) for v in raw]
    if all(n is not None for n in numbers):
        return Axis(name, [float(n) for n in numbers if n is not None], [])
    categories = sorted(set(raw))
    index = {c: i for i, c in enumerate(categories)}
    return Axis(name, [float(index[v]) for v in raw], categories)


def param_keys(runs: Sequence[Run], wanted: Sequence[str]) -> list[str]:
    return list(wanted) if wanted else sorted({k for r in runs for k in r.params})


class HasParams(Protocol):
    """A run as parallel coordinates need it: a `Run`, or a `ParamPoint`."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def params(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class ParamPoint:
    """A run's id and params only (store.param_points reads these for 10,000 runs)."""

    id: uuid.UUID
    params: Mapping[str, str]


def parallel_coordinates(pairs: Sequence[tuple[HasParams, float]], params: Sequence[str], metric: str
                         ) -> tuple[list[object], list[Axis]]:
    """The runs having every param and the metric; one axis per param, then the metric."""
    usable = [(r, v) for r, v in pairs if all(p in r.params for p in params)]
    axes = [axis(p, [r.params[p] for r, _ in usable]) for p in params]
    axes.append(Axis(metric, [v for _, v in usable], []))
    return [r.id for r, _ in usable], axes


@dataclass(frozen=True)
class Contour:
    run_ids: list[object]
    x: Axis
    y: Axis
    z: list[float]
    grid_x: list[float]
    grid_y: list[float]
    grid_z: list[float]


def contour(pairs: Sequence[tuple[Run, float]], x_param: str, y_param: str) -> Contour:
    """Scattered (x, y) → z per run, and the mean z on the grid of distinct x and y values."""
    usable = [(r, v) for r, v in pairs if x_param in r.params and y_param in r.params]
    x = axis(x_param, [r.params[x_param] for r, _ in usable])
    y = axis(y_param, [r.params[y_param] for r, _ in usable])
    z = [v for _, v in usable]
    grid_x, grid_y = sorted(set(x.values)), sorted(set(y.values))
    if len(grid_x) * len(grid_y) > MAX_CONTOUR_CELLS:  # refused before the grid is built
        raise ResourceExhausted(f"the contour grid would have {len(grid_x):,} × {len(grid_y):,} cells; the limit is "
                                f"{MAX_CONTOUR_CELLS:,}: narrow the filter or pick params with fewer distinct values")
    cells: dict[tuple[float, float], list[float]] = {}
    for xv, yv, zv in zip(x.values, y.values, z, strict=True):
        cells.setdefault((xv, yv), []).append(zv)
    grid_z = [statistics.fmean(cells[(xv, yv)]) if (xv, yv) in cells else math.nan
              for yv in grid_y for xv in grid_x]
    return Contour([r.id for r, _ in usable], x, y, z, grid_x, grid_y, grid_z)


def importance(pairs: Sequence[tuple[Run, float]], params: Sequence[str]) -> tuple[dict[str, float], int]:
    """Normalized fANOVA importances of `params` for the target, and how many runs were used (runs
    lacking one of the params are left out). FAILED_PRECONDITION with fewer than 2 usable runs."""
    usable = [(r, v) for r, v in pairs if all(p in r.params for p in params)]
    if len(usable) < MIN_RUNS_FOR_IMPORTANCE or not params:
        raise FailedPrecondition(f"param importance needs at least {MIN_RUNS_FOR_IMPORTANCE} runs having the "
                                 f"target metric and every param; {len(usable)} have them")
    axes = {p: axis(p, [r.params[p] for r, _ in usable]) for p in params}
    categories = {p: a.categories for p, a in axes.items() if a.categories}
    points: list[tuple[Mapping[str, float | str], float]] = [
        ({p: r.params[p] if p in categories else float(r.params[p]) for p in params}, v) for r, v in usable]
    return fanova(params, categories, points), len(usable)
