"""The per-study Optuna engine: ask-and-tell, pruning, and a rebuild from stored trials that
continues where the lost one stopped (pure logic, Optuna in memory)."""

from __future__ import annotations

import math

from trackd_services.hpo.domain import TrialState
from trackd_services.hpo.engine import Engine, StoredTrial, StudySpec
from trackd_services.hpo.space import parse

COMPLETE, PRUNED, RUNNING = TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING

SPACE = parse({"x": {"type": "float", "low": -5, "high": 5}, "opt": {"type": "categorical", "choices": ["a", "b"]},
               "m": {"type": "float", "low": 0, "high": 1, "when": {"opt": "b"}}})


def spec(pruner: str = "none", sampler: str = "tpe") -> StudySpec:
    return StudySpec(("minimize",), SPACE, sampler, {"n_startup_trials": 5} if sampler == "tpe" else {}, pruner,
                     {"n_startup_trials": 2, "n_warmup_steps": 0} if pruner == "median" else {}, seed=3)


def test_tpe_through_ask_and_tell_finds_the_minimum_region() -> None:
    engine = Engine(spec(), [])
    stored = []
    for number in range(40):
        params = engine.ask(number)
        assert ("m" in params) == (params["opt"] == "b")
        value = (params["x"] - 1.5) ** 2
        engine.tell(number, COMPLETE, [value])
        stored.append(StoredTrial(number, COMPLETE, params, [value]))
    [best] = engine.best()
    assert abs(stored[best].params["x"] - 1.5) < 0.5
    engine.tell(best, COMPLETE, [123.0])  # an ended trial: telling again changes nothing
    assert engine.best() == [best]


def test_the_median_pruner_stops_a_bad_trial() -> None:
    engine = Engine(spec("median"), [])
    for number in range(3):
        engine.ask(number)
        for step in range(5):
            assert not engine.report(number, step, 1.0 / (step + 1))
        engine.tell(number, COMPLETE, [0.2])
    engine.ask(3)
    assert engine.report(3, 0, 100.0)  # far worse than the median at step 0
    engine.tell(3, PRUNED)


def test_a_rebuilt_engine_keeps_history_open_trials_and_their_reports() -> None:
    history = [StoredTrial(i, COMPLETE, {"x": float(i), "opt": "a"}, [float(i) ** 2], {0: 2.0, 1: 1.0})
               for i in range(4)]
    running = StoredTrial(4, RUNNING, {"x": 4.0, "opt": "b", "m": 0.5}, None, {0: 50.0})
    engine = Engine(spec("median"), [*history, running])
    assert engine.best() == [0]
    assert engine.report(4, 1, 60.0)  # its earlier report counts: still far above the median
    engine.tell(4, COMPLETE, [math.inf])
    params = engine.ask(5)
    assert set(params) >= {"x", "opt"}


def test_the_grid_sampler_finishes_its_grid() -> None:
    space = parse({"a": {"type": "categorical", "choices": ["x", "y"]}, "b": {"type": "int", "low": 0, "high": 2}})
    engine = Engine(StudySpec(("minimize",), space, "grid", {}, "none", {}, seed=1), [])
    seen = []
    for number in range(6):  # the tell of the last point used to raise (Optuna's study.stop outside optimize)
        params = engine.ask(number)
        seen.append((params["a"], params["b"]))
        engine.tell(number, COMPLETE, [float(number)])
    assert sorted(seen) == [(a, b) for a in "xy" for b in range(3)]
    assert engine.best() == [0]


def test_a_rebuilt_grid_engine_hands_out_only_the_points_not_taken() -> None:
    space = parse({"b": {"type": "int", "low": 0, "high": 5}})
    grid_spec = StudySpec(("minimize",), space, "grid", {}, "none", {}, seed=None)  # unseeded: another order
    first = Engine(grid_spec, [])
    done = [StoredTrial(n, COMPLETE, first.ask(n), [1.0]) for n in range(3)]
    running = StoredTrial(3, RUNNING, first.ask(3), None)
    rebuilt = Engine(grid_spec, [*done, running])
    rest = [rebuilt.ask(n)["b"] for n in (4, 5)]
    assert sorted([*(t.params["b"] for t in done), running.params["b"], *rest]) == list(range(6))
