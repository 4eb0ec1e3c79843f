"""`trackd.hpo.optimize` on the real stack: an objective with Optuna-style `suggest_*` calls run
in worker processes (sent with cloudpickle, as from a notebook) and in threads; failures,
pruning and mismatched suggestions; a two-objective NSGA-II study and its Pareto front."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trackd
from trackd.hpo import Trial, TrialPruned
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _on_the_stack(stack: EmbeddedStack) -> None:
    """The SDK finds the session's stack through the environment the fixture sets."""

SPACE = {"x": {"type": "float", "low": -5, "high": 5}, "opt": {"type": "categorical", "choices": ["adam", "sgd"]},
         "momentum": {"type": "float", "low": 0, "high": 0.99, "when": {"opt": "sgd"}}}


def test_optimize_in_worker_processes(unique: Callable[[str], str]) -> None:
    name = unique("optimize")
    trackd.hpo.create_study(name, search_space=SPACE, sampler="tpe", parallelism=2, seed=11)
    shift = 2.0  # captured by value: the objective is a closure, as a notebook's would be

    def objective(trial: Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        if trial.suggest_categorical("opt", ["adam", "sgd"]) == "sgd":
            return (x - shift) ** 2 + trial.suggest_float("momentum", 0, 0.99)
        return (x - shift) ** 2

    trials = trackd.hpo.optimize(objective, study=name, n_trials=8, n_workers=2, show_progress=False)
    # 8 ran here; the study keeps `parallelism` more sampled ahead (WAITING) for whoever comes next
    assert [t.state for t in trials].count("WAITING") <= 2
    complete = [t for t in trials if t.state == "COMPLETE"]
    assert len(complete) == 8
    for t in complete:
        expected = (t.params["x"] - 2) ** 2 + (t.params["momentum"] if t.params["opt"] == "sgd" else 0)
        assert t.value == pytest.approx(expected)
        assert ("momentum" in t.params) == (t.params["opt"] == "sgd")
    assert trackd.hpo.best_trials(name)[0].value == min(t.value for t in complete)


def test_optimize_in_threads_fails_prunes_and_checks_suggestions(unique: Callable[[str], str]) -> None:
    name = unique("optimize-threads")
    trackd.hpo.create_study(name, search_space={"x": {"type": "float", "low": 0, "high": 10}}, sampler="random",
                            pruner="median", pruner_options={"n_startup_trials": 0}, seed=5)

    def objective(trial: Trial) -> float:
        x = trial.suggest_float("x", 0, 10)
        if x > 8:
            raise RuntimeError("diverged")  # → FAIL, the search goes on
        for step in range(3):
            if trial.report(step, x + step):
                raise TrialPruned()
        return x

    trials = trackd.hpo.optimize(objective, study=name, n_trials=12, n_workers=2, processes=False,
                                 show_progress=False)
    by_state = {s: [t for t in trials if t.state == s] for s in ("COMPLETE", "PRUNED", "FAIL")}
    assert sum(map(len, by_state.values())) == 12
    assert all(t.params["x"] > 8 for t in by_state["FAIL"])
    assert all(t.params["x"] <= 8 for t in by_state["COMPLETE"] + by_state["PRUNED"])
    assert by_state["COMPLETE"], "the first trials have nothing to be pruned against"

    def mismatched(trial: Trial) -> float:
        return trial.suggest_float("x", 0, 1)  # the study declares [0, 10]

    name2 = unique("optimize-mismatch")
    trackd.hpo.create_study(name2, search_space={"x": {"type": "float", "low": 0, "high": 10}}, sampler="random")
    trials = trackd.hpo.optimize(mismatched, study=name2, n_trials=2, processes=False, show_progress=False)
    assert [t.state for t in trials if t.state != "WAITING"] == ["FAIL", "FAIL"]
    with pytest.raises(ValueError, match="at least 1"):
        trackd.hpo.optimize(mismatched, study=name2, n_trials=0, show_progress=False)


def dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def test_two_objectives_with_nsga2_give_the_pareto_front(unique: Callable[[str], str]) -> None:
    name = unique("pareto")
    study = trackd.hpo.create_study(name, directions=["minimize", "minimize"], metric=["f1", "f2"],
                                    search_space={"x": {"type": "float", "low": -1, "high": 3},
                                                  "y": {"type": "float", "low": 0, "high": 1}},
                                    sampler="nsga2", sampler_options={"population_size": 8}, seed=3)
    assert study.objectives == [("f1", "minimize"), ("f2", "minimize")]

    def objective(trial: Trial) -> tuple[float, float]:
        x, y = trial.suggest_float("x", -1, 3), trial.suggest_float("y", 0, 1)
        return x * x + y, (x - 2) ** 2 + y

    trials = trackd.hpo.optimize(objective, study=name, n_trials=24, n_workers=2, processes=False,
                                 show_progress=False)
    complete = [t for t in trials if t.state == "COMPLETE"]
    assert len(complete) == 24 and all(len(t.values) == 2 for t in complete)
    front = trackd.hpo.best_trials(name)
    expected = [t for t in complete if not any(dominates(o.values, t.values) for o in complete)]
    assert sorted(t.number for t in front) == sorted(t.number for t in expected)
    assert len(front) >= 2  # the two objectives conflict for x in [0, 2]
