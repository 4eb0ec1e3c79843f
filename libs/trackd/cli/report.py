"""`trackd report EXPERIMENT`: a Markdown report with PNG charts of an experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from trackd.errors import TrackdError

if TYPE_CHECKING:  # matplotlib is imported when the command runs, so `trackd --help` stays fast
    from trackd import _report

console = Console()


def report(
    experiment: str = typer.Argument(..., help="Experiment name."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Directory for README.md and the charts."),
    project: str = typer.Option("default", "--project", "-p"),
    metric: str = typer.Option("", "--metric", "-m",
                               help="Target metric (`key` or `key@eval`); default: the first non-system one."),
    top: int = typer.Option(5, "--top", "-n", min=1, max=100, help="How many of the best runs to show."),
    filter: str = typer.Option("", "--filter", "-f", help="Only runs matching this search filter."),
) -> None:
    """Write OUT/README.md (metric summary, top runs, param importance) and PNG charts: learning
    curves, parallel coordinates, the metric against its most important param."""
    try:
        from trackd import _report
    except ImportError as exc:  # matplotlib is an optional dependency of the SDK
        console.print(f"[red]error:[/red] trackd report needs matplotlib ({exc}): pip install 'trackd\\[reports]'")
        raise typer.Exit(1) from None
    try:
        with console.status(f"reading {project}/{experiment}…"):
            data = _report.collect(experiment, project=project, metric=metric, top=top, filter=filter)
    except TrackdError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"{len(data.runs)} runs with [bold]{data.metric}[/bold] ({data.direction}imize)"
                  + (f"; best: [green]{data.runs[0].name or data.runs[0].id}[/green]" if data.runs else ""))
    if data.importance is None:
        console.print(f"[yellow]no param importance:[/yellow] {data.importance_note}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file, title, build in _report.charts(data):
        figure = build()
        figure.savefig(out / file)
        written.append((file, title))
        console.print(f"  [green]✓[/green] {file}  [dim]{title}[/dim]")
    readme = out / "README.md"
    readme.write_text(markdown(data, written), encoding="utf-8")
    console.print(f"wrote [bold]{readme}[/bold] and {len(written)} charts to {out}", soft_wrap=True)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows), ""]


def markdown(data: _report.ReportData, files: Sequence[tuple[str, str]]) -> str:
    """The README.md of a report whose charts are `files` ((file name, title) pairs)."""
    names = {r.id: r.name or r.id for r in data.runs}
    best = data.runs[0] if data.runs else None
    lines = [f"# Report: {data.experiment}", "",
             f"- project: `{data.project}`", f"- filter: `{data.filter}`" if data.filter else "- filter: none",
             f"- runs with `{data.metric}`: {len(data.runs)}",
             f"- target metric: `{data.metric}` ({data.direction}imize)"]
    if best is not None:
        lines.append(f"- best run: **{best.name or best.id}** (`{best.id}`), "
                     f"{data.metric} = {_num(best.metrics[data.metric])}")
    lines += ["", "## Metrics", ""]
    lines += _table(("metric", "direction", "runs", "best", "worst", "mean", "std", "median", "best run"),
                    [(f"`{s.name}`", s.direction, s.runs, *map(_num, (s.best, s.worst, s.mean, s.std, s.median)),
                      names.get(s.best_run_id, s.best_run_id)) for s in data.summaries])
    lines += [f"## Top {len(data.top)} runs by {data.metric}", ""]
    lines += _table(("#", "name", "id", "params", data.metric),
                    [(i, r.name, f"`{r.id}`", ", ".join(f"{k}={v}" for k, v in sorted(r.params.items())) or "-",
                      _num(r.metrics[data.metric])) for i, r in enumerate(data.top, 1)])
    lines += ["## Param importance", ""]
    if data.importance:
        lines += _table(("param", "importance"), [(k, f"{v:.3f}") for k, v in data.importance.items()])
    else:
        lines += [f"_Not available: {data.importance_note}_", ""]
    lines += ["## Charts", ""]
    for file, title in files:
        lines += [f"### {title}", "", f"![{title}]({file})", ""]
    return "\n".join(lines)
