"""The parallel part of bench/hpo_quality.py: TPE with several workers at once, trackd's own SDK
(`trackd.hpo.optimize(n_workers=p, processes=False)` on a study of parallelism p) against
Optuna's `study.optimize(n_jobs=p)` in-process, each trial "training" 0.5–1.5 × `train_ms` so
that p trials really run at once and results arrive while others wait. A trial sampled ahead
must not be blind to them: trackd's median best should not be worse beyond noise. A third
column, when the run has it: the same Optuna code as Optuna's column with its studies on trackd
through `GrpcStorageProxy` (bench/_optuna_quality.py --proxy; the sampler runs in the client)."""

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


# The columns of a row of results["parallel"]["runs"] that are trackd's, each tested against
# "optuna": (short name, column header).
SIDES = {"trackd": ("own SDK", "trackd (own SDK, optimize n_workers)"),
         "proxy": ("proxy", "trackd through GrpcStorageProxy (Optuna optimize(n_jobs))")}


def summary(td: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """The best value of each seed both sides, and a two-sided Mann-Whitney U test of td's against op's."""
    mine = [min(v) for v in td["values"].values()]
    theirs = [min(v) for v in op["values"].values()]
    p = float(mannwhitneyu(mine, theirs, alternative="two-sided").pvalue)
    return {"trackd": mine, "optuna": theirs, "p": p,
            "worse": p < ALPHA and statistics.median(mine) > statistics.median(theirs)}


def summaries(sides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """summary() of each of trackd's columns the row has, against Optuna's (saved in the results)."""
    return {side: summary(sides[side], sides["optuna"]) for side in SIDES if side in sides}


def print_parallel(r: dict[str, Any]) -> None:
    """The table of results["parallel"]: per function and worker count, the best value after the
    trials over the seeds, each column, and the Mann-Whitney verdict of each of trackd's columns
    against Optuna's."""
    par = r["parallel"]
    mine = [side for side in SIDES if any(side in sides for sides in par["runs"].values())]
    table = Table(title=f"HPO quality at parallelism — TPE, {par['trials']} trials, {len(par['seeds'])} seeds, "
                        f"trials training {par['train_ms']:g} ms × 0.5–1.5; best value after {par['trials']} trials")
    table.add_column("function, workers", ratio=2, overflow="fold")
    for side in mine:
        table.add_column(SIDES[side][1], justify="right", ratio=2, overflow="fold")
    table.add_column(f"Optuna {r.get('optuna', '')} optimize(n_jobs)", justify="right", ratio=2, overflow="fold")
    table.add_column("Mann-Whitney U\n(two-sided) vs Optuna", justify="right", ratio=2, overflow="fold")

    def cell(best: list[float], elapsed: float) -> str:
        return (f"median {statistics.median(best):.4g}\n[dim]mean {statistics.fmean(best):.4g}, "
                f"best {min(best):.4g}, worst {max(best):.4g}\n{elapsed:.0f} s[/]")

    for key, sides in par["runs"].items():
        found = summaries(sides)
        function, workers = key.rsplit("/", 1)
        tests = "\n".join(f"{SIDES[side][0]}: p = {s['p']:.3f} {verdict(s)}" for side, s in found.items())
        table.add_row(f"{function}, {workers} workers\n[dim]f* = {FUNCTIONS[function][2]:g}[/]",
                      *[cell(found[side]["trackd"], sides[side]["elapsed_s"]) if side in found else "–"
                        for side in mine],
                      cell([min(v) for v in sides["optuna"]["values"].values()], sides["optuna"]["elapsed_s"]), tests)
    console.print(table)
    console.print(f"[dim]Verdicts: worse (beyond noise) when p < {ALPHA} and trackd's median is higher than "
                  f"Optuna's, better when p < {ALPHA} and it is lower, ok (not worse beyond noise) otherwise.[/]")


def verdict(s: dict[str, Any]) -> str:
    if s["worse"]:
        return "[red]worse[/]"
    return "[green]better[/]" if s["p"] < ALPHA else "[green]ok[/]"
