"""HPO quality and pruning through trackd's HPO service, side by side with Optuna in-process, on
this machine, in one run (`make bench-hpo-quality`).

1. quality: Branin (2-D), Hartmann-6 and Rosenbrock (10-D) on their standard domains, TPE, 100
   trials, 10 seeds, minimized. trackd: one study per (function, seed) with that seed, driven by
   one client through AcquireTrial + CompleteTrial at parallelism 1. The controller samples one
   trial ahead, so each trial's TPE sees one result fewer than in-process (the sequences part at
   trial #10, after the random start-up). Optuna 5: TPESampler(seed=…) on in-memory storage.
   Per function: median / mean / best / worst of the best value after all trials over the seeds,
   and a two-sided Mann-Whitney U test of trackd's against Optuna's.
2. pruning: synthetic learning curves (bench/_hpo_functions.py: lr, width, dropout → a noisy loss
   over 100 steps whose early ranking predicts the final one only in part), TPE, 100 trials per
   seed, with the "asha" pruner (each step through ReportIntermediate, stopping when told) and
   with "none". Total training steps both ways, and where the best configuration found falls in
   the distribution of final losses of random configurations of the same space. Optuna:
   SuccessiveHalvingPruner with the same options, in-process.

3. parallel: Branin, Hartmann-6 and Rosenbrock-10 with 4 and 16 workers at once, 10 seeds, 60
   trials each, every trial "training" 20 ms × 0.5–1.5: trackd's own SDK
   (`trackd.hpo.optimize(n_workers=p, processes=False)`) and unchanged Optuna code on trackd
   through GrpcStorageProxy (its Optuna port; `--no-proxy` skips it) against Optuna's
   `study.optimize(n_jobs=p)` in-process, a Mann-Whitney U test per row of each of trackd's
   columns against Optuna's (bench/_hpo_parallel.py).

Optuna runs in bench/.venv-anchors (bench/_optuna_quality.py). Figures go to
bench/results/hpo_quality.json, charts to bench/results/hpo_quality_*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from _common import BENCH, anchor_json, console, ensure_anchors, start_stack
from _hpo_functions import CURVE_SPACE, FUNCTIONS, STEPS, curve, random_configs
from _hpo_parallel import print_parallel, summaries, trackd_parallel
from hpo import ensure_grpc_in_anchors
from rich.table import Table
from scipy.stats import mannwhitneyu, spearmanr
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc

RESULTS = BENCH / "results" / "hpo_quality.json"
QUALITY_PNG = BENCH / "results" / "hpo_quality_best.png"
PRUNING_PNG = BENCH / "results" / "hpo_quality_pruning.png"
# Rungs at 5, 15 and 45 steps; a third of the trials at a rung go on (η = 3, as in Hyperband).
ASHA_OPTIONS = {"min_resource": 5, "reduction_factor": 3}
ENDED = (hpo_pb2.STUDY_STATE_FINISHED, hpo_pb2.STUDY_STATE_STOPPED)
WORKER = "bench-hpo-quality"
ALPHA = 0.05  # significance level of the "worse beyond noise" verdict
TOP = 5.0  # percent: the best configuration found should be in the top 5 % of the space

# -- trackd side -----------------------------------------------------------------------------

Evaluate = Callable[[hpo_pb2_grpc.HpoServiceStub, hpo_pb2.Trial], dict[str, Any]]


def run_study(stub: hpo_pb2_grpc.HpoServiceStub, study_id: str, evaluate: Evaluate) -> list[dict[str, Any]]:
    """Acquire, evaluate and end trials one at a time until the study finishes; what `evaluate`
    returned for each trial, in trial order."""
    found: dict[int, dict[str, Any]] = {}
    idle_since: float | None = None
    while True:
        got = stub.AcquireTrial(hpo_pb2.AcquireTrialRequest(study_id=study_id, worker=WORKER), timeout=60)
        if got.HasField("trial"):
            idle_since = None
            found[got.trial.number] = evaluate(stub, got.trial)
            continue
        if got.study.state in ENDED:
            return [found[n] for n in sorted(found)]
        # One client and parallelism 1: no trial should be running. Allow the controller a moment
        # (e.g. a sampler filling a queue), but never wait forever.
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > 60:
            raise RuntimeError(f"study {study_id}: no trial handed out for 60 s, state {got.study.state}")
        time.sleep(0.01)


def create_study(name: str, space: dict[str, Any], seed: int, trials: int, pruner: str = "none") -> str:
    import trackd.hpo

    return trackd.hpo.create_study(
        name, search_space=space, sampler="tpe", direction="minimize", seed=seed, max_trials=trials,
        parallelism=1, pruner=pruner, pruner_options=ASHA_OPTIONS if pruner == "asha" else None).id


def trackd_quality(stub: hpo_pb2_grpc.HpoServiceStub, function: str, seeds: list[int], trials: int) -> dict[str, Any]:
    objective, space, _ = FUNCTIONS[function]

    def evaluate(stub: hpo_pb2_grpc.HpoServiceStub, trial: hpo_pb2.Trial) -> dict[str, Any]:
        value = objective(json.loads(trial.params_json))
        stub.CompleteTrial(hpo_pb2.CompleteTrialRequest(trial_id=trial.id, worker=WORKER, values=[value]), timeout=60)
        return {"value": value}

    start = time.perf_counter()
    values = {}
    for seed in seeds:
        done = run_study(stub, create_study(f"quality-{function}-s{seed}", space, seed, trials), evaluate)
        values[str(seed)] = [t["value"] for t in done]
    return {"values": values, "elapsed_s": time.perf_counter() - start}


def trackd_pruning(stub: hpo_pb2_grpc.HpoServiceStub, pruner: str, seeds: list[int], trials: int) -> dict[str, Any]:
    def evaluate_with(seed: int) -> Evaluate:
        def evaluate(stub: hpo_pb2_grpc.HpoServiceStub, trial: hpo_pb2.Trial) -> dict[str, Any]:
            params = json.loads(trial.params_json)
            losses = curve(params, seed)
            steps = len(losses)
            if pruner == "asha":  # without a pruner nothing reads intermediate values
                for step, loss in enumerate(losses, start=1):
                    answer = stub.ReportIntermediate(hpo_pb2.ReportIntermediateRequest(
                        trial_id=trial.id, worker=WORKER, step=step, value=loss), timeout=60)
                    if answer.should_prune:
                        steps = step
                        break
            pruned = steps < len(losses)
            stub.CompleteTrial(hpo_pb2.CompleteTrialRequest(
                trial_id=trial.id, worker=WORKER, pruned=pruned, values=[] if pruned else [losses[-1]]), timeout=60)
            return {"params": params, "steps": steps, "pruned": pruned, "value": losses[steps - 1]}
        return evaluate

    start = time.perf_counter()
    found = {str(seed): run_study(stub, create_study(f"pruning-{pruner}-s{seed}", CURVE_SPACE, seed, trials, pruner),
                                  evaluate_with(seed)) for seed in seeds}
    return {"trials": found, "elapsed_s": time.perf_counter() - start}

# -- the reference distribution of the learning-curve space ----------------------------------


def reference(seeds: list[int], size: int) -> dict[str, Any]:
    """Per seed, the sorted final losses of `size` random configurations (that seed's noise), and
    how well the loss at each ASHA rung ranks them (Spearman's ρ against the final loss)."""
    finals: dict[str, list[float]] = {}
    rho: dict[str, float] = {}
    for seed in seeds:
        curves = np.array([curve(c, seed) for c in random_configs(size, seed=1000 + seed)])
        finals[str(seed)] = sorted(curves[:, -1].tolist())
        if seed == seeds[0]:
            rungs = [ASHA_OPTIONS["min_resource"] * ASHA_OPTIONS["reduction_factor"] ** k for k in range(3)]
            rho = {str(s): float(spearmanr(curves[:, s - 1], curves[:, -1]).statistic) for s in rungs if s < STEPS}
    return {"size": size, "finals": finals, "spearman_at_rungs": rho}


def percentile_of(value: float, finals: list[float]) -> float:
    """The share (%) of random configurations whose final loss is at most `value`."""
    return 100.0 * float(np.searchsorted(np.asarray(finals), value, side="right")) / len(finals)


def best_found(trials: list[dict[str, Any]]) -> float:
    """The lowest final loss among the trials that ran every step (a pruned trial found nothing)."""
    return min((t["value"] for t in trials if not t["pruned"]), default=float("inf"))


def place_best(side: dict[str, Any], ref: dict[str, Any]) -> None:
    """Store, per pruner and seed, the best final loss found and its percentile in the reference."""
    for runs in side["pruning"].values():
        runs["best"] = {seed: {"value": best_found(trials), "percentile": percentile_of(best_found(trials),
                                                                                       ref["finals"][seed])}
                        for seed, trials in runs["trials"].items()}

# -- run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per quality study")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per function (1..N)")
    parser.add_argument("--functions", default=",".join(FUNCTIONS), help="comma-separated subset")
    parser.add_argument("--pruning-trials", type=int, default=100, help="trials per pruning study")
    parser.add_argument("--pruning-seeds", type=int, default=5, help="seeds of the pruning benchmark (1..N)")
    parser.add_argument("--reference", type=int, default=20_000, help="random configurations for the percentiles")
    parser.add_argument("--parallel-trials", type=int, default=60, help="trials per parallel study")
    parser.add_argument("--workers", default="4,16", help="worker counts of the parallel part")
    parser.add_argument("--train-ms", type=float, default=20.0, help="a parallel trial's training time (× 0.5–1.5)")
    parser.add_argument("--parts", default="quality,pruning,parallel", help="comma-separated subset")
    parser.add_argument("--no-proxy", action="store_true", help="parallel: skip the GrpcStorageProxy column")
    parser.add_argument("--show", action="store_true", help=f"print the tables of {RESULTS.name} and exit")
    args = parser.parse_args()
    if args.show:
        print_tables(json.loads(RESULTS.read_text()))
        return
    parts = set(args.parts.split(","))
    workers = [int(w) for w in args.workers.split(",") if w]
    functions = [f for f in args.functions.split(",") if f]
    if unknown := set(functions) - set(FUNCTIONS):
        parser.error(f"unknown function(s) {sorted(unknown)}: choose from {', '.join(FUNCTIONS)}")
    seeds = list(range(1, args.seeds + 1))  # 0 would mean "no seed" to the service
    pruning_seeds = list(range(1, args.pruning_seeds + 1))
    began = time.perf_counter()

    ensure_anchors("optuna")
    proxy = "parallel" in parts and not args.no_proxy
    if proxy:
        ensure_grpc_in_anchors()
    op: dict[str, Any] = {"quality": {}, "pruning": {}}
    csv = ",".join(map(str, seeds))
    parallel: dict[str, Any] = {"trials": args.parallel_trials, "seeds": seeds, "train_ms": args.train_ms, "runs": {}}
    for function in functions if "quality" in parts else []:
        with console.status(f"Optuna in-process: {function}, {len(seeds)} seeds × {args.trials} TPE trials…"):
            op["quality"][function] = anchor_json("_optuna_quality.py", "quality", "--function", function,
                                                  "--seeds", csv, "--trials", str(args.trials))
    for function, n in [(f, n) for f in functions for n in workers] if "parallel" in parts else []:
        with console.status(f"Optuna in-process: {function}, {n} workers, {len(seeds)} seeds…"):
            parallel["runs"][f"{function}/{n}"] = {"optuna": anchor_json(
                "_optuna_quality.py", "parallel", "--function", function, "--seeds", csv, "--workers", str(n),
                "--trials", str(args.parallel_trials), "--train-ms", str(args.train_ms))}
    for pruner in ("asha", "none") if "pruning" in parts else []:
        with console.status(f"Optuna in-process: pruner {pruner}, {len(pruning_seeds)} seeds…"):
            op["pruning"][pruner] = anchor_json(
                "_optuna_quality.py", "pruning", "--pruner", pruner, "--pruner-options", json.dumps(ASHA_OPTIONS),
                "--seeds", ",".join(map(str, pruning_seeds)), "--trials", str(args.pruning_trials))
    with console.status(f"{args.reference:,} random configurations × {len(pruning_seeds)} seeds for the percentiles…"):
        ref = reference(pruning_seeds, args.reference if "pruning" in parts else 10)

    tmp = Path(tempfile.mkdtemp(prefix="trackd-bench-"))
    td: dict[str, Any] = {"quality": {}, "pruning": {}}
    stack = None
    failed = True
    try:
        with console.status("starting the embedded stack (PostgreSQL, Valkey, Kafka, S3, services)…"):
            stack = start_stack(tmp)
        os.environ.update({**stack.client_env(), "TRACKD_SYSTEM_METRICS_INTERVAL_S": "0",
                           "TRACKD_SPOOL_DIR": str(tmp / "spool")})
        with grpc.insecure_channel(f"127.0.0.1:{stack.service_port('hpo')}") as channel:
            stub = hpo_pb2_grpc.HpoServiceStub(channel)
            for function in functions if "quality" in parts else []:
                with console.status(f"trackd: {function}, {len(seeds)} seeds × {args.trials} TPE trials…"):
                    td["quality"][function] = trackd_quality(stub, function, seeds, args.trials)
            for key, sides in parallel["runs"].items():
                function, n = key.rsplit("/", 1)
                with console.status(f"trackd: {function}, {n} workers, {len(seeds)} seeds…"):
                    sides["trackd"] = trackd_parallel(function, int(n), seeds, args.parallel_trials, args.train_ms)
                if proxy:
                    with console.status(f"Optuna through GrpcStorageProxy on trackd: {function}, {n} workers, "
                                        f"{len(seeds)} seeds…"):
                        sides["proxy"] = anchor_json(
                            "_optuna_quality.py", "parallel", "--function", function, "--seeds", csv, "--workers", n,
                            "--trials", str(args.parallel_trials), "--train-ms", str(args.train_ms),
                            "--proxy", f"127.0.0.1:{stack.ports.optuna}")
            for pruner in ("asha", "none") if "pruning" in parts else []:
                with console.status(f"trackd: pruner {pruner}, {len(pruning_seeds)} seeds × "
                                    f"{args.pruning_trials} trials…"):
                    td["pruning"][pruner] = trackd_pruning(stub, pruner, pruning_seeds, args.pruning_trials)
        failed = False
    finally:
        if stack is not None:
            stack.stop()
        if failed:
            console.print(f"[red]failed; logs kept in {tmp}[/]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    for side in (td, op) if "pruning" in parts else []:
        place_best(side, ref)
    parallel["tests"] = {key: summaries(sides) for key, sides in parallel["runs"].items()}
    quantiles = {seed: {q: float(np.percentile(f, q)) for q in (1, 5, 50)} for seed, f in ref["finals"].items()}
    results = {"trials": args.trials, "seeds": seeds, "pruning_trials": args.pruning_trials,
               "pruning_seeds": pruning_seeds, "steps": STEPS, "asha_options": ASHA_OPTIONS,
               "optuna": next(iter([*op["quality"].values(), *op["pruning"].values(),
                                    *(r["optuna"] for r in parallel["runs"].values())]))["optuna"],
               "parallel": parallel,
               "reference": {"size": ref["size"], "spearman_at_rungs": ref["spearman_at_rungs"],
                             "final_loss_percentiles": quantiles},
               "trackd": td, "anchor": op, "wall_s": time.perf_counter() - began}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results) + "\n")
    print_tables(results)
    if "quality" in parts and "pruning" in parts:
        draw(results)

# -- summaries -------------------------------------------------------------------------------


def quality_summary(r: dict[str, Any], function: str) -> dict[str, Any]:
    td = [min(v) for v in r["trackd"]["quality"][function]["values"].values()]
    op = [min(v) for v in r["anchor"]["quality"][function]["values"].values()]
    p = float(mannwhitneyu(td, op, alternative="two-sided").pvalue)
    # With the same seed and the same information TPE samples the very same trials: where they part
    # shows whether trackd's sampler saw less (e.g. trials sampled before earlier results were in).
    parted = [next((i for i, (a, b) in enumerate(zip(mine, r["anchor"]["quality"][function]["values"][s],
                                                      strict=True)) if a != b), None)
              for s, mine in r["trackd"]["quality"][function]["values"].items()]
    return {"trackd": td, "optuna": op, "p": p, "worse": p < ALPHA and statistics.median(td) > statistics.median(op),
            "identical_seeds": parted.count(None), "first_difference": [i for i in parted if i is not None]}


def pruning_summary(r: dict[str, Any], side: str, seed: str) -> dict[str, Any]:
    asha, none = r[side]["pruning"]["asha"], r[side]["pruning"]["none"]
    steps_asha = sum(t["steps"] for t in asha["trials"][seed])
    steps_none = sum(t["steps"] for t in none["trials"][seed])
    return {"steps_asha": steps_asha, "steps_none": steps_none, "ratio": steps_none / steps_asha,
            "pruned": sum(t["pruned"] for t in asha["trials"][seed]),
            "best_asha": asha["best"][seed]["value"], "pct_asha": asha["best"][seed]["percentile"],
            "best_none": none["best"][seed]["value"], "pct_none": none["best"][seed]["percentile"]}

# -- tables ----------------------------------------------------------------------------------


def parting(s: dict[str, Any]) -> str:
    """Where trackd's trials stop being Optuna's (same seed)."""
    found = f"same trials as Optuna in {s['identical_seeds']}/{len(s['trackd'])} seeds"
    if not (parted := s["first_difference"]):
        return found
    where = f"#{min(parted)}" if min(parted) == max(parted) else f"#{min(parted)}–#{max(parted)}"
    return f"{found}; the others part at trial {where}"


def print_tables(r: dict[str, Any]) -> None:
    if r.get("parallel", {}).get("runs"):
        print_parallel(r)
    if not r["trackd"]["quality"] or not r["trackd"]["pruning"]:
        return
    anchor = f"Optuna {r['optuna']} in-process"
    table = Table(title=f"HPO quality — TPE, {r['trials']} trials, {len(r['seeds'])} seeds, best value after "
                        f"{r['trials']} trials (minimized; {os.cpu_count()} cores)")
    table.add_column("function", ratio=2, overflow="fold")
    table.add_column("trackd (gRPC)", justify="right", ratio=2, overflow="fold")
    table.add_column(anchor, justify="right", ratio=2, overflow="fold")
    table.add_column("Mann-Whitney U\n(two-sided)", justify="right", ratio=2, overflow="fold")

    def cell(best: list[float]) -> str:
        return (f"median {statistics.median(best):.4g}\n[dim]mean {statistics.fmean(best):.4g}\n"
                f"best {min(best):.4g}, worst {max(best):.4g}[/]")

    for function in r["trackd"]["quality"]:
        s = quality_summary(r, function)
        verdict = "[red]worse beyond noise[/]" if s["worse"] else "[green]not worse beyond noise[/]"
        table.add_row(f"{function}\n[dim]{len(FUNCTIONS[function][1])}-D, f* = {FUNCTIONS[function][2]:g}[/]",
                      cell(s["trackd"]), cell(s["optuna"]),
                      f"p = {s['p']:.3f}\n{verdict}\n[dim]{parting(s)}[/]")
    console.print(table)
    timing = "; ".join(f"{f}: trackd {r['trackd']['quality'][f]['elapsed_s']:.0f} s, Optuna "
                       f"{r['anchor']['quality'][f]['elapsed_s']:.1f} s" for f in r["trackd"]["quality"])
    console.print(f"[dim]Wall time for {len(r['seeds'])} × {r['trials']} trials (trackd: AcquireTrial + "
                  f"CompleteTrial over gRPC, each trial a run): {timing}.[/]")

    rho = ", ".join(f"step {k}: {v:.2f}" for k, v in r["reference"]["spearman_at_rungs"].items())
    table = Table(title=f"Pruning — ASHA {r['asha_options']} vs none, TPE, {r['pruning_trials']} trials of "
                        f"{r['steps']} steps per seed")
    table.add_column("seed", ratio=1)
    for side in ("trackd (gRPC)", anchor):
        table.add_column(f"{side}\nsteps ASHA / none", justify="right", ratio=2, overflow="fold")
        table.add_column(f"{side}\nbest found: percentile", justify="right", ratio=2, overflow="fold")
    ratios: dict[str, list[float]] = {"trackd": [], "anchor": []}
    tops: dict[str, int] = {"trackd": 0, "anchor": 0}
    for seed in map(str, r["pruning_seeds"]):
        row = [seed]
        for side in ("trackd", "anchor"):
            s = pruning_summary(r, side, seed)
            ratios[side].append(s["ratio"])
            tops[side] += s["pct_asha"] <= TOP
            colour = "green" if s["ratio"] >= 3 else "red"
            row.append(f"{s['steps_asha']:,} / {s['steps_none']:,}\n[{colour}]{s['ratio']:.1f}× fewer[/]\n"
                       f"[dim]{s['pruned']} of {r['pruning_trials']} pruned[/]")
            colour = "green" if s["pct_asha"] <= TOP else "red"
            row.append(f"ASHA: [{colour}]{s['pct_asha']:.2f} %[/] [dim]({s['best_asha']:.4f})[/]\n"
                       f"[dim]none: {s['pct_none']:.2f} % ({s['best_none']:.4f})[/]")
        table.add_row(*row)
    n = len(r["pruning_seeds"])
    table.add_row("all", *[x for side in ("trackd", "anchor") for x in (
        f"median {statistics.median(ratios[side]):.1f}× fewer", f"{tops[side]}/{n} seeds in the top {TOP:g} %")])
    console.print(table)
    reports = sum(t["steps"] for trials in r["trackd"]["pruning"]["asha"]["trials"].values() for t in trials)
    wall = (f" trackd ASHA: {reports:,} ReportIntermediate calls, {r['trackd']['pruning']['asha']['elapsed_s']:.0f} s "
            f"with the trials' AcquireTrial + CompleteTrial. Whole run {r['wall_s'] / 60:.1f} min.")
    console.print(
        f"[dim]Percentile: share of {r['reference']['size']:,} random configurations (same space, same seed's noise) "
        f"whose final loss is at most the best found (lower is better; target ≤ {TOP:g} %, ≥ 3× fewer steps). "
        f"Spearman ρ of the loss at the ASHA rungs vs the final loss over those configurations: {rho}. "
        f"Without a pruner trials run all steps and report only the final loss. The verdict is 'worse beyond "
        f"noise' when p < {ALPHA} and trackd's median is higher. Figures in {RESULTS.relative_to(BENCH.parent)}."
        f"{wall}[/]")

# -- charts ----------------------------------------------------------------------------------


def draw(r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    functions = list(r["trackd"]["quality"])
    fig, axes = plt.subplots(1, len(functions), figsize=(5 * len(functions), 4), squeeze=False)
    for ax, function in zip(axes[0], functions, strict=True):
        optimum = FUNCTIONS[function][2]
        sides = (("anchor", f"Optuna {r['optuna']}", "tab:orange", "-"), ("trackd", "trackd", "tab:blue", "--"))
        for side, label, colour, line in sides:  # trackd dashed, on top: identical curves stay visible
            runs = np.array(list(r[side]["quality"][function]["values"].values()))
            regret = np.maximum(np.minimum.accumulate(runs, axis=1) - optimum, 1e-9)
            x = np.arange(1, regret.shape[1] + 1)
            q25, q50, q75 = np.percentile(regret, [25, 50, 75], axis=0)
            ax.plot(x, q50, color=colour, linestyle=line, label=f"{label} (median)")
            ax.fill_between(x, q25, q75, color=colour, alpha=0.2, label=f"{label} (IQR)")
        ax.set(title=f"{function} (f* = {optimum:g})", xlabel="trial", ylabel="best so far − f*", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"TPE, {len(r['seeds'])} seeds: regret of the best value so far")
    fig.tight_layout()
    fig.savefig(QUALITY_PNG, dpi=110)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = (("trackd", "asha", "tab:blue", "-", "trackd ASHA"), ("anchor", "asha", "tab:orange", "-", "Optuna ASHA"),
              ("trackd", "none", "tab:blue", ":", "trackd, no pruning"),
              ("anchor", "none", "tab:orange", ":", "Optuna, no pruning"))
    grid = np.geomspace(r["steps"], r["steps"] * r["pruning_trials"], 200)
    for side, pruner, colour, line, label in styles:
        curves = []
        for trials in r[side]["pruning"][pruner]["trials"].values():
            spent = np.cumsum([t["steps"] for t in trials])
            best = np.minimum.accumulate([np.inf if t["pruned"] else t["value"] for t in trials])
            at = np.searchsorted(spent, grid, side="right") - 1
            # inf before the first complete trial, nan once this seed's trials are all done
            curves.append(np.where(grid <= spent[-1], best[np.maximum(at, 0)], np.nan) + np.where(at < 0, np.inf, 0))
        runs = np.array(curves)
        every = ~np.isnan(runs).any(axis=0)  # the median only where every seed is still running
        ax1.plot(grid[every], np.median(runs[:, every], axis=0), color=colour, linestyle=line, label=label)
    ax1.set(xlabel="training steps spent", ylabel="best final loss so far", xscale="log", yscale="log",
            title=f"Best configuration vs compute (median of {len(r['pruning_seeds'])} seeds)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    seeds = [str(s) for s in r["pruning_seeds"]]
    x, width = np.arange(len(seeds)), 0.27
    for k, (side, pruner, colour, label) in enumerate((("trackd", "asha", "tab:blue", "trackd ASHA"),
                                                      ("anchor", "asha", "tab:orange", "Optuna ASHA"),
                                                      ("trackd", "none", "tab:gray", "no pruning"))):
        ax2.bar(x + (k - 1) * width, [sum(t["steps"] for t in r[side]["pruning"][pruner]["trials"][s]) for s in seeds],
                width, color=colour, label=label)
    ax2.set(xticks=x, xticklabels=[f"seed {s}" for s in seeds], ylabel="total training steps",
            title=f"Steps for {r['pruning_trials']} trials")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PRUNING_PNG, dpi=110)
    plt.close(fig)
    console.print(f"[dim]Charts: {QUALITY_PNG.relative_to(BENCH.parent)}, {PRUNING_PNG.relative_to(BENCH.parent)}[/]")


if __name__ == "__main__":
    main()
