"""Optuna's side of bench/hpo.py, run in bench/.venv-anchors (Optuna + SQLAlchemy + psycopg):
ask/tell against an RDBStorage on the benchmark's PostgreSQL. Prints one JSON line.

    _optuna_rdb.py overhead   --url URL --study NAME --params 5 --trials 1000 --timed 50
    _optuna_rdb.py concurrent --url URL --study NAME --params 5 --trials 640 --workers 32
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from typing import Any

import optuna

LOW, HIGH = -5.0, 5.0


def ask_tell(study: optuna.Study, params: int) -> None:
    """One trial of the sphere function: ask, the suggest_float calls, tell."""
    trial = study.ask()
    value = sum(trial.suggest_float(f"x{i}", LOW, HIGH) ** 2 for i in range(params))
    study.tell(trial, value)


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    """`trials` completed trials of random configurations added (`study.add_trial`: asking for
    them would fetch the whole study once per trial), then `timed` timed ask+tell pairs. With
    `args.existing`, the study is loaded as it is (filled by an earlier run) and nothing is added."""
    sampler = optuna.samplers.TPESampler(seed=0)
    study = (optuna.load_study(study_name=args.study, storage=args.url, sampler=sampler) if args.existing else
             optuna.create_study(study_name=args.study, storage=args.url, sampler=sampler))
    rng = random.Random(0)
    distributions = {f"x{i}": optuna.distributions.FloatDistribution(LOW, HIGH) for i in range(args.params)}
    start = time.perf_counter()
    for _ in range(0 if args.existing else args.trials):
        params = {name: rng.uniform(LOW, HIGH) for name in distributions}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=sum(v * v for v in params.values())))
    fill_s = time.perf_counter() - start
    samples = []
    for _ in range(args.timed):
        start = time.perf_counter()
        ask_tell(study, args.params)
        samples.append(time.perf_counter() - start)
    return {"fill_s": fill_s, "samples_s": samples, "trials_before": args.trials if not args.existing else
            len(study.get_trials(deepcopy=False)) - args.timed}


def concurrent(args: argparse.Namespace) -> dict[str, Any]:
    """`workers` threads, each with its own storage (engine, connections) and study object,
    sharing a ticket counter so exactly `trials` trials are run."""
    optuna.create_study(study_name=args.study, storage=args.url)
    lock, issued, errors = threading.Lock(), [0], []

    def worker(seed: int) -> None:
        try:
            study = optuna.load_study(study_name=args.study, storage=optuna.storages.RDBStorage(args.url),
                                      sampler=optuna.samplers.TPESampler(seed=seed))
            while True:
                with lock:
                    if issued[0] >= args.trials:
                        return
                    issued[0] += 1
                ask_tell(study, args.params)
        except Exception as exc:  # reported, not swallowed
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    trials = optuna.load_study(study_name=args.study, storage=args.url).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"elapsed_s": elapsed, "trials": len(trials), "complete": len(complete),
            "numbers_ok": sorted(t.number for t in trials) == list(range(args.trials)), "errors": errors[:5]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["overhead", "concurrent"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--params", type=int, default=5)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--timed", type=int, default=50)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--existing", action="store_true", help="overhead: time the study as it is, add no trial")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = overhead(args) if args.mode == "overhead" else concurrent(args)
    print(json.dumps({"optuna": optuna.__version__, **found}))


if __name__ == "__main__":
    main()
