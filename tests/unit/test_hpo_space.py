"""HPO search spaces and the sampler / pruner choices (pure logic, Optuna in memory)."""

from __future__ import annotations

import importlib.util

import optuna
import pytest
from trackd.hpo import env_name
from trackd_platform.errors import InvalidArgument
from trackd_services.hpo import algorithms
from trackd_services.hpo.domain import TrialState
from trackd_services.hpo.engine import Engine, StudySpec
from trackd_services.hpo.sampling import check_study
from trackd_services.hpo.space import parse, parse_param, parse_yaml

SEEDS_EXAMPLE = """
lr:        {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
layers:    {type: int, low: 1, high: 8}
optimizer: {type: categorical, choices: [adam, sgd]}
momentum:  {type: float, low: 0.0, high: 0.99, step: 0.01, when: {optimizer: sgd}}
nesterov:  {type: categorical, choices: [true, false], when: {momentum: [0.9, 0.95]}}
"""


def test_conditional_params_appear_only_when_their_condition_holds() -> None:
    space = parse_yaml(SEEDS_EXAMPLE)
    assert [p.name for p in space.params][:3] == ["lr", "layers", "optimizer"]  # parents first
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_sgd = seen_adam = 0
    for _ in range(60):
        trial = study.ask()
        params = space.suggest(trial)
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert "nesterov" not in params or params.get("momentum") in (0.9, 0.95)
        assert 1e-6 <= params["lr"] <= 1e-3 and 1 <= params["layers"] <= 8
        assert params["optimizer"] in ("adam", "sgd") and isinstance(params["layers"], int)
        assert 0.0 <= params.get("momentum", 0.0) <= 0.99 and params.get("nesterov", True) in (True, False)
        seen_sgd += params["optimizer"] == "sgd"
        seen_adam += params["optimizer"] == "adam"
        study.tell(trial, params["lr"])
    assert seen_sgd and seen_adam


@pytest.mark.parametrize(("spec", "message"), [
    ({"x": {"type": "float", "low": 2, "high": 1}}, "above high"),
    ({"x": {"type": "float", "low": 0, "high": 1, "log": True}}, "log scale needs low > 0"),
    ({"x": {"type": "categorical", "choices": []}}, "non-empty list"),
    ({"x": {"type": "categorical", "choices": ["a", "a"]}}, "distinct"),
    ({"x": {"type": "float", "low": 0, "high": 1, "step": 0.3}}, "does not divide"),
    ({"x": {"type": "int", "low": 0, "high": 10, "step": 3}}, "does not divide"),
    ({"x": {"type": "int", "low": 0.5, "high": 10}}, "whole numbers"),
    ({"x": {"type": "float", "low": 0, "high": 1, "when": {"ghost": "a"}}}, "not in the space"),
    ({"a": {"type": "categorical", "choices": [1], "when": {"b": 1}},
      "b": {"type": "categorical", "choices": [1], "when": {"a": 1}}}, "cycle"),
    ({"o": {"type": "categorical", "choices": ["adam"]},
      "m": {"type": "float", "low": 0, "high": 1, "when": {"o": "sgd"}}}, "not one of"),
    ({"x": {"type": "normal", "low": 0, "high": 1}}, "type must be"),
    ({"x": {"type": "float", "low": 0, "high": float("inf")}}, "finite number"),
    ({"x": {"type": "float", "low": 0, "high": 1, "colour": "red"}}, "unknown field"),
    ({"1x": {"type": "float", "low": 0, "high": 1}}, "param name"),
    ({}, "at least one"),
])
def test_invalid_spaces_name_the_problem(spec: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(spec)


def test_bad_yaml_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="YAML"):
        parse_yaml("lr: {type: float, low: [")


def test_sampler_and_pruner_choices_are_checked() -> None:
    space = parse({"x": {"type": "float", "low": 0, "high": 1, "step": 0.25}, "k": {"type": "int", "low": 1,
                                                                                   "high": 3}})
    algorithms.check("tpe", "asha", 1, space)
    with pytest.raises(InvalidArgument, match="unknown sampler"):
        algorithms.check("bayes", "none", 1, space)
    with pytest.raises(InvalidArgument, match="unknown pruner"):
        algorithms.check("tpe", "early", 1, space)
    with pytest.raises(InvalidArgument, match="single objective"):
        algorithms.check("nsga2", "median", 2, space)
    with pytest.raises(InvalidArgument, match="one objective"):
        algorithms.check("cmaes", "none", 2, space)
    assert algorithms.grid_space(space) == {"x": [0.0, 0.25, 0.5, 0.75, 1.0], "k": [1, 2, 3]}
    with pytest.raises(InvalidArgument, match="needs a step"):
        algorithms.check("grid", "none", 1, parse({"x": {"type": "float", "low": 0, "high": 1}}))
    with pytest.raises(InvalidArgument, match="has no option"):
        algorithms.make_sampler("tpe", {"bogus": 1}, seed=0, space=space)
    assert isinstance(algorithms.make_pruner("asha", {"min_resource": 2}), optuna.pruners.SuccessiveHalvingPruner)
    assert env_name("model.lr-max") == "HP_MODEL_LR_MAX"


def test_a_grid_too_large_to_enumerate_is_refused_before_it_is_built() -> None:
    huge = parse({"a": {"type": "int", "low": 0, "high": 1999}, "b": {"type": "int", "low": 0, "high": 1999}})
    with pytest.raises(InvalidArgument, match="4,000,000 points"):
        algorithms.check("grid", "none", 1, huge)
    with pytest.raises(InvalidArgument, match="limit is 100,000"):
        algorithms.grid_space(parse({"x": {"type": "int", "low": 0, "high": 10**15}}))


def test_every_sampler_offered_can_sample_or_is_refused_up_front() -> None:
    space = parse({"x": {"type": "float", "low": 0, "high": 1}, "y": {"type": "float", "low": 0, "high": 1}})
    for name in ("random", "tpe", "cmaes", "nsga2"):  # cmaes: its package is a server dependency
        engine = Engine(StudySpec(("minimize",), space, name, {}, "none", {}, seed=1), [])
        for number in range(12):  # past cmaes' startup trials, so its own package is used
            engine.tell(number, TrialState.COMPLETE, [sum(engine.ask(number).values())])
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(InvalidArgument, match="needs torch"):
            algorithms.check("gp", "none", 1, space)
    else:
        algorithms.check("gp", "none", 1, space)


def test_a_grid_study_runs_each_point_once() -> None:
    fields = {"search_space": {"k": {"type": "int", "low": 1, "high": 3}}, "sampler": "grid", "sampler_options": {},
              "pruner": "none", "pruner_options": {}, "objectives": [{"metric": "loss", "direction": 1}], "seed": None}
    assert check_study({**fields, "max_trials": 0})["max_trials"] == 3
    assert check_study({**fields, "max_trials": 10})["max_trials"] == 3
    assert check_study({**fields, "max_trials": 2})["max_trials"] == 2
    assert check_study({**fields, "sampler": "tpe", "max_trials": 0})["max_trials"] == 0


def test_enqueued_params_must_fit_the_space() -> None:
    space = parse({"x": {"type": "float", "low": 0, "high": 1, "step": 0.25}, "k": {"type": "int", "low": 1, "high": 3},
                   "c": {"type": "categorical", "choices": ["a", "b"]}})
    space.check_params({"x": 0.5, "k": 2, "c": "b"})
    space.check_params({"k": 3})  # the others are sampled
    for bad, message in [({"x": 0.3}, "outside the space"), ({"k": 1.5}, "outside"), ({"k": True}, "outside"),
                         ({"c": "z"}, "one of 'a', 'b'"), ({"y": 1}, "no param 'y'")]:
        with pytest.raises(InvalidArgument, match=message):
            space.check_params(bad)


def test_a_suggested_param_round_trips_through_the_learnt_space() -> None:
    # define-by-run: a param as first suggested is stored as a space entry, parsed back the same
    asked = {"lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
             "layers": {"type": "int", "low": 1, "high": 8, "step": 1, "log": False},
             "opt": {"type": "categorical", "choices": ["adam", "sgd"]}}
    learnt = {name: parse_param(name, spec).spec() for name, spec in asked.items()}
    assert learnt["layers"] == {"type": "int", "low": 1, "high": 8, "step": 1}
    space = parse(learnt)
    assert {p.name: p.distribution() for p in space.params} == {
        name: parse_param(name, spec).distribution() for name, spec in asked.items()}
    assert parse({}, allow_empty=True).params == ()
    with pytest.raises(InvalidArgument, match="has no 'when'"):
        parse_param("m", {"type": "float", "low": 0, "high": 1, "when": {"opt": "sgd"}})
