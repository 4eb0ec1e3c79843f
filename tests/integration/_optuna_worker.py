"""The body of each worker process of test_optuna_storage.py: plain Optuna code, nothing
trackd-specific but the storage's address (a module of its own: a spawned process imports only
this and Optuna)."""

from __future__ import annotations

import os

import optuna
from optuna.storages import GrpcStorageProxy


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -4.0, 4.0)
    y = trial.suggest_int("y", 0, 3)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    trial.set_user_attr("pid", os.getpid())
    value = (x - 1.0) ** 2 + y + (0.5 if kind == "b" else 0.0)
    for step in range(3):
        trial.report(value + 3 - step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def optimize(host: str, port: int, name: str, n_trials: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=GrpcStorageProxy(host=host, port=port),
                              sampler=optuna.samplers.TPESampler(n_startup_trials=4),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
    study.optimize(objective, n_trials=n_trials, n_jobs=4)
