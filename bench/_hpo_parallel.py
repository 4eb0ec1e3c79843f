"""The parallel part of bench/hpo_quality.py: TPE with several workers at once, trackd's own SDK
(`trackd.hpo.optimize(n_workers=p, processes=False)` on a study of parallelism p) against
Optuna's `study.optimize(n_jobs=p)` in-process, each trial "training" 0.5–1.5 × `train_ms` so
that p trials really run at once and results arrive while others wait. A trial sampled ahead
must not be blind to them: trackd's median best should not be worse beyond noise."""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from _common import console
from _hpo_functions import FUNCTIONS
from rich.table import Table
from scipy.stats import mannwhitneyu

ALPHA = 0.05


def trackd_parallel(function: str, workers: int, seeds: list[int], trials: int, train_ms: float) -> dict[str, Any]:
    """Per seed, the values of the COMPLETE trials in trial order (the study's seed is the seed)."""
    import trackd.hpo

    objective, space, _ = FUNCTIONS[function]
    values: dict[str, list[float]] = {}
    start = time.perf_counter()
    for seed in seeds:
        name = f"parallel-{function}-w{workers}-s{seed}"
        trackd.hpo.create_study(name, search_space=space, sampler="tpe", direction="minimize", seed=seed,
                                max_trials=trials, parallelism=workers)
        jitter = random.Random(seed)

        def evaluate(trial: trackd.hpo.Trial) -> float:
            value = objective(trial.params)
            time.sleep(train_ms / 1000 * jitter.uniform(0.5, 1.5))  # noqa: B023 (called within the loop)
            return float(value)

        done = trackd.hpo.optimize(evaluate, name, n_workers=workers, processes=False, show_progress=False)
        values[str(seed)] = [t.values[0] for t in sorted(done, key=lambda t: t.number) if t.state == "COMPLETE"]
    return {"values": values, "elapsed_s": time.perf_counter() - start}


def summary(td: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    mine = [min(v) for v in td["values"].values()]
    theirs = [min(v) for v in op["values"].values()]
    p = float(mannwhitneyu(mine, theirs, alternative="two-sided").pvalue)
    return {"trackd": mine, "optuna": theirs, "p": p,
            "worse": p < ALPHA and statistics.median(mine) > statistics.median(theirs)}


def print_parallel(r: dict[str, Any]) -> None:
    """The table of results["parallel"]: per function and worker count, the best value after the
    trials over the seeds, both sides, and the Mann-Whitney verdict."""
    par = r["parallel"]
    table = Table(title=f"HPO quality at parallelism — TPE, {par['trials']} trials, {len(par['seeds'])} seeds, "
                        f"trials training {par['train_ms']:g} ms × 0.5–1.5; best value after {par['trials']} trials")
    table.add_column("function, workers", ratio=2, overflow="fold")
    table.add_column("trackd (own SDK, optimize n_workers)", justify="right", ratio=2, overflow="fold")
    table.add_column(f"Optuna {r.get('optuna', '')} optimize(n_jobs)", justify="right", ratio=2, overflow="fold")
    table.add_column("Mann-Whitney U\n(two-sided)", justify="right", ratio=2, overflow="fold")

    def cell(best: list[float], elapsed: float) -> str:
        return (f"median {statistics.median(best):.4g}\n[dim]mean {statistics.fmean(best):.4g}, "
                f"best {min(best):.4g}, worst {max(best):.4g}\n{elapsed:.0f} s[/]")

    for key, sides in par["runs"].items():
        s = summary(sides["trackd"], sides["optuna"])
        verdict = "[red]worse beyond noise[/]" if s["worse"] else "[green]not worse beyond noise[/]"
        function, workers = key.rsplit("/", 1)
        table.add_row(f"{function}, {workers} workers\n[dim]f* = {FUNCTIONS[function][2]:g}[/]",
                      cell(s["trackd"], sides["trackd"]["elapsed_s"]), cell(s["optuna"], sides["optuna"]["elapsed_s"]),
                      f"p = {s['p']:.3f}\n{verdict}")
    console.print(table)
