"""Optuna's side of bench/hpo_quality.py, run in bench/.venv-anchors: in-process studies
(in-memory storage) over the objectives of bench/_hpo_functions.py. Prints one JSON line.

    _optuna_quality.py quality --function branin --seeds 1,2,3 --trials 100
    _optuna_quality.py pruning --pruner asha --pruner-options '{"min_resource": 5}' --seeds 1,2 --trials 100
    _optuna_quality.py parallel --function branin --seeds 1,2 --trials 60 --workers 4 --train-ms 20 [--proxy HOST:PORT]

`--proxy` runs the parallel studies on a GrpcStorageProxy to HOST:PORT (trackd's Optuna port)
instead of in-memory storage — the same Optuna code otherwise (needs grpcio).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Mapping
from typing import Any

import optuna
from _hpo_functions import CURVE_SPACE, FUNCTIONS, curve


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The params of a trackd search space (float / int, optionally log), in its order."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "int":
            params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=spec.get("log", False))
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    return params


def quality(args: argparse.Namespace) -> dict[str, Any]:
    """Per seed: the objective value of every trial, in trial order."""
    objective, space, _ = FUNCTIONS[args.function]
    values: dict[str, list[float]] = {}
    for seed in args.seeds:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        values[str(seed)] = []
        for _ in range(args.trials):
            trial = study.ask()
            value = objective(suggest(trial, space))
            study.tell(trial, value)
            values[str(seed)].append(value)
    return {"values": values}


def parallel(args: argparse.Namespace) -> dict[str, Any]:
    """Per seed: `study.optimize(n_jobs=workers)` with Optuna's default TPESampler(seed=…), each
    trial "training" 0.5–1.5 × train_ms; the values of the COMPLETE trials in trial order. With
    `--proxy` the studies live behind a GrpcStorageProxy, one study per seed named after the run."""
    objective, space, _ = FUNCTIONS[args.function]
    values: dict[str, list[float]] = {}
    storage = None
    if args.proxy:
        from _optuna_proxy import connect  # needs grpcio, which the other modes do not

        host, port = args.proxy.rsplit(":", 1)
        storage = connect(host, int(port))
    for seed in args.seeds:
        jitter = random.Random(seed)
        name = f"proxy-parallel-{args.function}-w{args.workers}-s{seed}" if storage is not None else None
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=seed))

        def run(trial: optuna.Trial) -> float:
            value = objective(suggest(trial, space))
            time.sleep(args.train_ms / 1000 * jitter.uniform(0.5, 1.5))  # noqa: B023 (called within the loop)
            return value

        study.optimize(run, n_trials=args.trials, n_jobs=args.workers)
        values[str(seed)] = [t.value for t in sorted(study.trials, key=lambda t: t.number) if t.value is not None]
    if storage is not None:
        storage.close()
    return {"values": values}


def pruning(args: argparse.Namespace) -> dict[str, Any]:
    """Per seed, every trial: its params, the steps it trained, whether it was pruned and its last
    reported loss (the final loss when it ran all steps)."""
    options = json.loads(args.pruner_options)
    found: dict[str, list[dict[str, Any]]] = {}
    for seed in args.seeds:
        pruner = (optuna.pruners.SuccessiveHalvingPruner(**options) if args.pruner == "asha"
                  else optuna.pruners.NopPruner())
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
        found[str(seed)] = []
        for _ in range(args.trials):
            trial = study.ask()
            params = suggest(trial, CURVE_SPACE)
            losses = curve(params, seed)
            steps = len(losses)
            if args.pruner == "asha":  # without a pruner nothing reads intermediate values
                for step, loss in enumerate(losses, start=1):
                    trial.report(loss, step)
                    if trial.should_prune():
                        steps = step
                        break
            pruned = steps < len(losses)
            if pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, losses[-1])
            found[str(seed)].append({"params": params, "steps": steps, "pruned": pruned, "value": losses[steps - 1]})
    return {"trials": found}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["quality", "pruning", "parallel"])
    parser.add_argument("--function", choices=sorted(FUNCTIONS))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], required=True)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--pruner", choices=["asha", "none"], default="asha")
    parser.add_argument("--pruner-options", default="{}")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--train-ms", type=float, default=20.0)
    parser.add_argument("--proxy", default="", help="parallel: HOST:PORT of a GrpcStorageProxy server")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    found = {"quality": quality, "pruning": pruning, "parallel": parallel}[args.mode](args)
    print(json.dumps({"optuna": optuna.__version__, "elapsed_s": time.perf_counter() - start, **found}))


if __name__ == "__main__":
    main()
