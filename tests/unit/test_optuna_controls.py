"""The pure parts of trackd's controls on Optuna-made studies (services/hpo/optuna_controls.py):
the best trials as Optuna picks them, and the check of params enqueued for Optuna's next ask."""

from __future__ import annotations

import json

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution, distribution_to_json
from trackd_platform.errors import InvalidArgument
from trackd_services.hpo.optuna_controls import best_numbers, check_fixed, fixed_params


def test_the_best_trial_is_the_first_best_and_several_objectives_give_the_pareto_front() -> None:
    completed = [(0, [3.0]), (1, [1.0]), (2, [1.0]), (4, [5.0])]
    assert best_numbers(completed, ["minimize"]) == [1]
    assert best_numbers(completed, ["maximize"]) == [4]
    assert best_numbers([], ["minimize"]) == []
    front = [(0, [1.0, 5.0]), (1, [2.0, 2.0]), (2, [3.0, 3.0]), (3, [5.0, 1.0]), (5, [1.0])]  # 5: a stray shape
    assert best_numbers(front, ["minimize", "minimize"]) == [0, 1, 3]
    assert best_numbers(front, ["maximize", "minimize"]) == [3]  # the most of one, the least of the other
    assert best_numbers(front, ["maximize", "maximize"]) == [0, 2, 3]


def test_enqueued_params_must_fit_the_distributions_the_study_has_seen() -> None:
    seen = {"x": distribution_to_json(FloatDistribution(0.0, 1.0)), "k": distribution_to_json(IntDistribution(1, 3)),
            "opt": distribution_to_json(CategoricalDistribution(["adam", "sgd"]))}
    check_fixed({"x": 0.5, "k": 2, "opt": "sgd", "new": "anything"}, seen)
    for params, says in (({"x": 1.5}, "outside"), ({"k": 1.5}, "outside"), ({"opt": "rmsprop"}, "outside"),
                         ({"x": [0.5]}, "finite number, string"), ({"new": float("nan")}, "finite number"),
                         ({"": 1}, "a name")):
        with pytest.raises(InvalidArgument, match=says):
            check_fixed(params, seen)
    assert fixed_params({"fixed_params": json.dumps({"x": 0.25})}) == {"x": 0.25}
    assert fixed_params({"fixed_params": "not json"}) == fixed_params({}) == {}
