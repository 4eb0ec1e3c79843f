"""Optuna's side of bench/hpo.py, run in bench/.venv-anchors (Optuna + SQLAlchemy + psycopg):
ask/tell against an RDBStorage on the benchmark's PostgreSQL. Prints one JSON line.

    _optuna_rdb.py overhead   --url URL --study NAME --params 5 --trials 1000 --timed 50
    _optuna_rdb.py concurrent --url URL --study NAME --params 5 --trials 640 --workers 32
    _optuna_rdb.py verify-fill --url URL --study NAME --params 5 --trials 300
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


def configurations(params: int, trials: int) -> list[dict[str, float]]:
    rng = random.Random(0)
    return [{f"x{i}": rng.uniform(LOW, HIGH) for i in range(params)} for _ in range(trials)]


def distributions_of(params: int) -> dict[str, optuna.distributions.BaseDistribution]:
    return {f"x{i}": optuna.distributions.FloatDistribution(LOW, HIGH) for i in range(params)}


def add_trials(study: optuna.Study, params: int, trials: int) -> None:
    """The configurations as COMPLETE trials, one `study.add_trial` each (a transaction per trial
    and per param: ~60 ms a trial at 10,000 on this machine)."""
    distributions = distributions_of(params)
    for config in configurations(params, trials):
        study.add_trial(optuna.trial.create_trial(params=config, distributions=distributions,
                                                  value=sum(v * v for v in config.values())))


def write_trials(storage: optuna.storages.RDBStorage, study_name: str, params: int, trials: int) -> None:
    """The rows `add_trials` would write (trials, trial_params, trial_values: numbers after the
    study's trials, COMPLETE, start = completion = now in naive UTC as Optuna stores it), in one
    transaction of three multi-row INSERTs through Optuna's own models (`verify-fill` checks that
    Optuna reads them as it reads add_trials')."""
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from optuna.storages._rdb import models

    trials_t, params_t, values_t = (models.TrialModel.__table__, models.TrialParamModel.__table__,
                                    models.TrialValueModel.__table__)
    distributions = distributions_of(params)
    as_json = {name: optuna.distributions.distribution_to_json(d) for name, d in distributions.items()}
    configs = configurations(params, trials)
    now = datetime.now(UTC).replace(tzinfo=None)
    study_id = storage.get_study_id_from_name(study_name)
    with storage.engine.begin() as conn:
        first = conn.execute(sa.select(sa.func.count()).select_from(trials_t)
                             .where(trials_t.c.study_id == study_id)).scalar_one()
        ids = conn.execute(
            sa.insert(trials_t).returning(trials_t.c.trial_id, sort_by_parameter_order=True),
            [{"number": first + i, "study_id": study_id, "state": optuna.trial.TrialState.COMPLETE,
              "datetime_start": now, "datetime_complete": now} for i in range(trials)]).scalars().all()
        conn.execute(sa.insert(params_t), [
            {"trial_id": trial_id, "param_name": name, "param_value": distributions[name].to_internal_repr(value),
             "distribution_json": as_json[name]}
            for trial_id, config in zip(ids, configs, strict=True) for name, value in config.items()])
        conn.execute(sa.insert(values_t), [
            {"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind}
            for trial_id, config in zip(ids, configs, strict=True)
            for stored, kind in [models.TrialValueModel.value_to_stored_repr(sum(v * v for v in config.values()))]])


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    """`trials` completed trials of random configurations written (`write_trials`: the rows
    `study.add_trial` writes, in one transaction; asking for them would fetch the whole study once
    per trial), then `timed` timed ask+tell pairs on the study loaded afresh. With
    `args.existing`, the study is loaded as it is (filled by an earlier run) and nothing is added."""
    sampler = optuna.samplers.TPESampler(seed=0)
    start = time.perf_counter()
    if args.existing:
        study = optuna.load_study(study_name=args.study, storage=args.url, sampler=sampler)
    elif isinstance(args.url, str):
        storage = optuna.storages.RDBStorage(args.url)
        optuna.create_study(study_name=args.study, storage=storage)
        write_trials(storage, args.study, args.params, args.trials)
        storage.engine.dispose()
        study = optuna.load_study(study_name=args.study, storage=args.url, sampler=sampler)
    else:  # a storage object (_optuna_proxy.py's GrpcStorageProxy): through its API
        study = optuna.create_study(study_name=args.study, storage=args.url, sampler=sampler)
        add_trials(study, args.params, args.trials)
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


def verify_fill(args: argparse.Namespace) -> dict[str, Any]:
    """`write_trials` and `add_trials` give studies Optuna reads identically: the same trials
    (number, state, values, params, distributions, attributes, intermediate values), and the same
    trial sampled next by TPESampler(seed=0)."""
    def frozen(study: optuna.Study) -> list[tuple[Any, ...]]:
        return [(t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs,
                 t.intermediate_values) for t in study.get_trials(deepcopy=False)]

    added = optuna.create_study(study_name=f"{args.study}-added", storage=args.url)
    add_trials(added, args.params, args.trials)
    storage = optuna.storages.RDBStorage(args.url)
    optuna.create_study(study_name=f"{args.study}-written", storage=storage)
    write_trials(storage, f"{args.study}-written", args.params, args.trials)
    loaded = [optuna.load_study(study_name=f"{args.study}-{how}", storage=args.url,
                                sampler=optuna.samplers.TPESampler(seed=0)) for how in ("added", "written")]
    seen = [frozen(study) for study in loaded]
    asked = [study.ask(distributions_of(args.params)).params for study in loaded]
    return {"trials": len(seen[1]), "same_trials": seen[0] == seen[1], "same_next_params": asked[0] == asked[1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["overhead", "concurrent", "verify-fill"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--params", type=int, default=5)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--timed", type=int, default=50)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--existing", action="store_true", help="overhead: time the study as it is, add no trial")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = {"overhead": overhead, "concurrent": concurrent, "verify-fill": verify_fill}[args.mode](args)
    print(json.dumps({"optuna": optuna.__version__, **found}))


if __name__ == "__main__":
    main()
