"""`trackd runs search|compare|watch`: the query service from the command line."""

from __future__ import annotations

import math

import typer
from rich.live import Live
from rich.table import Table

from trackd._query import compare_runs, search_runs, watch_run
from trackd.cli.tables import _fail, _status, console, runs
from trackd.errors import TrackdError


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return "NaN" if math.isnan(value) else f"{value:.6g}"


@runs.command("search")
def search(
    filter: str = typer.Argument("", help="e.g. \"metrics.acc > 0.9 AND (params.lr = '1e-4' OR tags.p = 'p0')\""),
    experiment: list[str] = typer.Option([], "--experiment", "-e", help="Experiment name (repeatable); all if unset."),
    project: str = typer.Option("default", "--project", "-p"),
    order_by: list[str] = typer.Option([], "--order-by", "-o", help="e.g. \"metrics.acc DESC\" (repeatable)."),
    limit: int = typer.Option(50, help="At most this many runs."),
    view: str = typer.Option("active", help="active, deleted or all."),
) -> None:
    """Runs matching a filter, with their params and latest metrics."""
    try:
        found = search_runs(experiment, filter, order_by, max_results=limit, project=project, view=view)
    except TrackdError as exc:
        raise _fail(exc) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    metrics = sorted({k for r in found for k in r.metrics if not k.startswith("system/")})[:8]
    params = sorted({k for r in found for k in r.params})[:6]
    table = Table(title=f"{len(found)} runs" + (f" matching {filter}" if filter else ""))
    for column in ("id", "name", "status", *(f"params.{p}" for p in params), *(f"metrics.{m}" for m in metrics)):
        table.add_column(column, justify="right" if column.startswith("metrics.") else "left")
    for r in found:
        table.add_row(r.id, r.name, _status(r), *(r.params.get(p, "—") for p in params),
                      *(_number(r.metrics.get(m)) for m in metrics))
    console.print(table)


@runs.command("compare")
def compare(run_ids: list[str] = typer.Argument(..., help="Two or more run ids.")) -> None:
    """Runs side by side: params (differing ones in bold yellow) and latest metrics."""
    try:
        result = compare_runs(run_ids)
    except TrackdError as exc:
        raise _fail(exc) from None
    table = Table(title=f"{len(result.runs)} runs compared")
    table.add_column("")
    for r in result.runs:
        table.add_column(f"{r.name}\n{r.id[:8]}", justify="right")
    for key, values in result.params.items():
        style = "bold yellow" if key in result.differing_params else ""
        table.add_row(f"params.{key}", *(v if v is not None else "—" for v in values), style=style)
    for name, numbers in result.metrics.items():
        table.add_row(f"metrics.{name}", *(_number(v) for v in numbers))
    console.print(table)


@runs.command("watch")
def watch(
    run_id: str,
    from_step: int = typer.Option(None, "--from-step", help="First replay stored points from this step."),
    key: list[str] = typer.Option([], "--key", "-k", help="Only this metric (repeatable)."),
) -> None:
    """A live tail of a run's metrics, until the run ends (Ctrl-C to stop)."""
    latest: dict[str, tuple[int, float, int]] = {}

    def render() -> Table:
        table = Table(title=f"run {run_id} (live)")
        for column in ("metric", "step", "value", "points seen"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for name, (step, value, seen) in sorted(latest.items()):
            table.add_row(name, str(step), _number(value), str(seen))
        return table

    try:
        with Live(render(), console=console, refresh_per_second=4) as live:
            for name, point in watch_run(run_id, from_step=from_step, keys=key):
                seen = latest.get(name, (0, 0.0, 0))[2] + 1
                latest[name] = (point.step, point.value, seen)
                live.update(render())
    except TrackdError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        pass
    console.print(f"watched {sum(s for _, _, s in latest.values())} points")
