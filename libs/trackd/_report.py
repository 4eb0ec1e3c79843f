"""An experiment report: the data it needs (read through the query API) and its charts as
matplotlib Figures, built without pyplot so no global state is involved. `trackd report` saves
them and writes the Markdown."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from trackd_platform.vocabulary import CONTEXTS

from trackd._client import Client
from trackd._history import Point
from trackd._query import (
    Axis,
    MetricSummary,
    get_metric_histories,
    parallel_coordinates,
    param_importance,
    search_runs,
    summarize_experiment,
)
from trackd._run import RunInfo
from trackd.errors import FailedPrecondition, NotFound

FIGSIZE = (9.0, 5.5)
DPI = 120
# viridis without its palest yellow end, so the best runs stay visible on white
CMAP = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.85, 256)))


@dataclass(frozen=True)
class ReportData:
    """What a report shows. `runs` hold the target metric, best first; `histories` are the
    target metric's points per run id of `top`; `importance` is None when it could not be
    computed (`importance_note` says why)."""

    experiment: str
    project: str
    filter: str
    metric: str
    direction: str
    summaries: list[MetricSummary]
    runs: list[RunInfo]
    top: list[RunInfo]
    histories: dict[str, Sequence[Point]]
    pc_run_ids: list[str]
    pc_axes: list[Axis]
    importance: dict[str, float] | None
    importance_note: str


def _split(metric: str) -> tuple[str, str | None]:
    """`key@eval` → ("key", "eval"); the query API takes the context apart from the key."""
    key, _, context = metric.rpartition("@")
    if key and context in CONTEXTS.values():
        return key, context
    return metric, None


def collect(experiment: str, *, project: str = "default", metric: str = "", top: int = 5, filter: str = "",
            client: Client | None = None) -> ReportData:
    """Reads everything a report shows. The target is `metric`, else the first summarized metric
    not named `system/…`. Raises NotFound (unknown experiment or metric), FailedPrecondition (no
    run has a metric) and whatever the query API raises."""
    summaries = summarize_experiment(experiment, filter=filter, project=project, client=client)
    names = [s.name for s in summaries]
    if not metric:
        metric = next((n for n in names if not n.startswith("system/")), "")
        if not metric:
            raise FailedPrecondition(f"no run of experiment {experiment!r} has logged a metric to report on")
    if metric not in names:
        raise NotFound(f"no run of experiment {experiment!r} has the metric {metric!r}; "
                       f"metrics: {', '.join(names) or 'none'}")
    direction = next(s.direction for s in summaries if s.name == metric)
    key, context = _split(metric)
    quoted = "`" + key.replace("`", "``") + "`" + (f"@{context}" if context else "")
    order = f"metrics.{quoted} {'ASC' if direction == 'min' else 'DESC'}"
    found = search_runs(experiment, filter, [order], project=project, client=client)
    runs = [r for r in found if math.isfinite(r.metrics.get(metric, math.nan))]
    best = runs[:top]
    series = get_metric_histories([r.id for r in best], [key], context=context, client=client) if best else {}
    run_ids, axes = parallel_coordinates(experiment, key, filter=filter, project=project, context=context,
                                         client=client)
    importance: dict[str, float] | None = None
    note = ""
    try:
        importance = param_importance(experiment, key, filter=filter, project=project, context=context,
                                      client=client) or None
        note = "" if importance else "no params to rank"
    except FailedPrecondition as exc:
        note = str(exc)
    return ReportData(experiment, project, filter, metric, direction, summaries, runs, best,
                      {r.id: series.get((r.id, key), []) for r in best}, run_ids, axes, importance, note)


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _decades(values: Sequence[float]) -> bool:
    """Positive values spanning more than two decades: read best on a log scale."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 100


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def learning_curves_figure(data: ReportData) -> Figure:
    """The target metric against the step, one line per top run (labelled with its name)."""
    figure, ax = _figure()
    for rank, run in enumerate(data.top):
        points = data.histories.get(run.id, [])
        ax.plot([p.step for p in points], [p.value for p in points], label=run.name or run.id,
                linewidth=2.4 if rank == 0 else 1.5, marker="o" if len(points) <= 30 else None, markersize=3)
    values = [p.value for points in data.histories.values() for p in points]
    if _decades(values):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{data.metric} ({data.direction}imize)")
    ax.set_title(f"{data.metric}: learning curves of the top {_runs(len(data.top))} of {data.experiment}")
    ax.grid(True, alpha=0.3)
    if data.top:
        ax.legend(title="run (best first)", fontsize=9, loc="best")
    figure.tight_layout()
    return figure


def _normalise(axis: Axis) -> tuple[list[float], list[tuple[float, str]]]:
    """An axis' values mapped onto [0, 1] and its (position, label) ticks in real units."""
    if axis.categories:
        span = max(len(axis.categories) - 1, 1)
        offset = 0.5 if len(axis.categories) == 1 else 0.0
        return ([v / span + offset for v in axis.values],
                [(i / span + offset, c) for i, c in enumerate(axis.categories)])
    log = _decades(axis.values)
    scaled = [math.log10(v) if log else v for v in axis.values]
    low, high = min(scaled), max(scaled)
    if high == low:
        return [0.5] * len(scaled), [(0.5, _fmt(axis.values[0]))]
    return [(s - low) / (high - low) for s in scaled], [((m - low) / (high - low), _fmt(10 ** m if log else m))
                                                        for m in _marks(sorted(set(scaled)), log)]


def _marks(values: list[float], log: bool) -> list[float]:
    """Tick positions of a numeric axis (in log10 units when `log`): its values when few, else
    round numbers (decades on a log axis) within its range."""
    if len(values) <= 6:
        return values
    low, high = values[0], values[-1]
    slack = (high - low) * 1e-9
    if log:
        marks = [float(e) for e in range(math.ceil(low - slack), math.floor(high + slack) + 1)]
    else:
        marks = [float(m) for m in MaxNLocator(5).tick_values(low, high) if low - slack <= m <= high + slack]
    return marks if len(marks) >= 2 else [low, high]


def parallel_coordinates_figure(data: ReportData) -> Figure:
    """One polyline per run (labelled with its name) across the param axes and the metric axis,
    each axis normalised to [0, 1], coloured by the metric; the best run is drawn on top."""
    figure, ax = _figure()
    axes = data.pc_axes
    names = {r.id: r.name or r.id for r in data.runs}
    columns = [_normalise(a) for a in axes]
    metric = axes[-1].values if axes else []
    norm = Normalize(min(metric, default=0.0), max(metric, default=1.0))
    cmap = CMAP if data.direction == "max" else CMAP.reversed()
    xs = list(range(len(axes)))
    order = sorted(range(len(data.pc_run_ids)), key=lambda i: metric[i], reverse=data.direction == "min")
    for i in order:  # worst first, so the best lines are not hidden
        ax.plot(xs, [column[0][i] for column in columns], color=cmap(norm(metric[i])), linewidth=1.8, alpha=0.85,
                label=names.get(data.pc_run_ids[i], data.pc_run_ids[i]))
    ax.vlines(xs, 0, 1, colors="0.25", linewidth=1.0)
    for x, (_, ticks) in zip(xs, columns, strict=True):
        right = x == xs[-1]  # the metric axis is labelled on its free side
        for y, label in ticks:
            ax.text(x + (0.03 if right else -0.03), y, label, ha="left" if right else "right", va="center",
                    fontsize=8, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                                      "alpha": 0.8})
    titles = [a.name for a in axes[:-1]] + [f"{data.metric} ({data.direction})"]
    ax.set_xticks(xs, [t + (" (log)" if not a.categories and _decades(a.values) else "") for t, a in zip(
        titles, axes, strict=True)], fontsize=10, fontweight="bold")
    ax.tick_params(axis="x", length=0)
    ax.set_xlim(-0.45, max(len(axes) - 1, 1) + 0.4)
    ax.set_ylim(-0.06, 1.06)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Parallel coordinates: {_runs(len(data.pc_run_ids))} of {data.experiment} by {data.metric}")
    figure.colorbar(ScalarMappable(norm, cmap), ax=ax, label=data.metric, pad=0.02)
    figure.tight_layout()
    return figure


def scatter_param(data: ReportData) -> str | None:
    """The param to scatter the metric against: the most important one, else the first numeric
    one, else the first one; None when runs have no params."""
    if data.importance:
        return next(iter(data.importance))
    params = data.pc_axes[:-1]
    return next((a.name for a in params if not a.categories), params[0].name if params else None)


def _param_values(runs: Sequence[RunInfo], param: str) -> tuple[list[RunInfo], list[float], list[str]]:
    """The runs having `param`, its values as numbers (or category indices) and the categories."""
    having = [r for r in runs if param in r.params]
    raw = [str(r.params[param]) for r in having]
    try:
        return having, [float(v) for v in raw], []
    except ValueError:
        categories = sorted(set(raw))
        return having, [float(categories.index(v)) for v in raw], categories


def scatter_figure(data: ReportData, param: str) -> Figure:
    """The metric's latest value against `param`, one point per run; the best run is starred."""
    figure, ax = _figure()
    runs, xs, categories = _param_values(data.runs, param)
    ys = [r.metrics[data.metric] for r in runs]
    ax.scatter(xs, ys, c=ys, cmap=CMAP if data.direction == "max" else CMAP.reversed(), s=60,
               edgecolors="0.2", linewidths=0.6, zorder=3)
    if runs and runs[0] is data.runs[0]:
        ax.scatter(xs[:1], ys[:1], marker="*", s=320, facecolors="none", edgecolors="crimson", linewidths=1.5,
                   zorder=4, label=f"best: {runs[0].name or runs[0].id}")
        ax.legend(fontsize=9, loc="best")
    if categories:
        ax.set_xticks(range(len(categories)), categories)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    elif _decades(xs):
        ax.set_xscale("log")
    ax.set_xlabel(param + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(f"{data.metric} ({data.direction}imize)")
    why = "most important param" if data.importance else "param"
    ax.set_title(f"{data.metric} against {param} ({why}), {_runs(len(runs))} of {data.experiment}")
    ax.grid(True, alpha=0.3)
    figure.tight_layout()
    return figure


def importance_figure(data: ReportData) -> Figure:
    """Horizontal bars, most important param at the top."""
    figure, ax = _figure()
    items = list((data.importance or {}).items())[::-1]
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color=CMAP(0.45))
    ax.bar_label(bars, labels=[f"{v:.2f}" for _, v in items], padding=3, fontsize=9)
    ax.set_xlim(0, max([v for _, v in items], default=1.0) * 1.15 or 1.0)
    ax.set_xlabel("importance (fANOVA, normalised to sum 1)")
    ax.set_ylabel("param")
    ax.set_title(f"Param importance for {data.metric} in {data.experiment}")
    ax.grid(True, axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "metric"


def charts(data: ReportData) -> list[tuple[str, str, Callable[[], Figure]]]:
    """(file name, title, builder) of every chart the data allows, in report order."""
    found: list[tuple[str, str, Callable[[], Figure]]] = []
    if data.top:
        found.append(("learning_curves.png", "Learning curves", lambda: learning_curves_figure(data)))
    if data.pc_run_ids and len(data.pc_axes) > 1:
        found.append(("parallel_coordinates.png", "Parallel coordinates",
                      lambda: parallel_coordinates_figure(data)))
    param = scatter_param(data)
    if param is not None and data.runs:
        found.append((f"{_file_part(data.metric)}_vs_{_file_part(param)}.png", f"{data.metric} against {param}",
                      lambda: scatter_figure(data, param)))
    if data.importance:
        found.append(("param_importance.png", "Param importance", lambda: importance_figure(data)))
    return found
