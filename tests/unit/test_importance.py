"""Param importance (trackd_platform.importance.fanova), the one implementation behind the query
service's GetParamImportance and `trackd hpo show`."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from trackd_platform.importance import fanova


def _points() -> list[tuple[Mapping[str, float | str], float]]:
    rng = random.Random(7)
    points: list[tuple[Mapping[str, float | str], float]] = []
    for _ in range(40):
        lr, noise, kind = rng.uniform(0, 1), rng.uniform(0, 1), rng.choice(["a", "b"])
        points.append(({"lr": lr, "noise": noise, "kind": kind}, 10 * lr + (5 if kind == "b" else 0)))
    return points


def test_the_param_that_decides_the_value_ranks_first_and_importances_sum_to_one() -> None:
    found = fanova(["kind", "lr", "noise"], {"kind": ["a", "b"]}, _points())
    assert list(found)[0] == "lr"
    assert set(found) == {"kind", "lr", "noise"}
    assert sum(found.values()) == pytest.approx(1.0)
    assert list(found) == ["lr", "kind", "noise"]  # the category counts; noise does not


def test_the_same_points_give_the_same_importances() -> None:
    assert fanova(["lr", "noise"], {}, _points()) == fanova(["lr", "noise"], {}, _points())


def test_no_params_no_importances() -> None:
    assert fanova([], {}, _points()) == {}
