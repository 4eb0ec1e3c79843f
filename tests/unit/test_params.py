"""How the SDK turns user values into flat string params."""

from __future__ import annotations

import enum
from pathlib import Path

import numpy as np
from trackd._params import flatten


class Optimizer(enum.Enum):
    ADAM = "adam"


def test_nested_dicts_flatten_with_dots() -> None:
    assert flatten({"model": {"hidden": 4096, "act": {"name": "gelu"}}, "lr": 1e-4}) == {
        "model.hidden": "4096", "model.act.name": "gelu", "lr": "0.0001"}


def test_non_json_values_become_plain_text() -> None:
    assert flatten({
        "seed": np.int64(7), "p": np.float32(0.5), "shape": np.array([2, 3]), "opt": Optimizer.ADAM,
        "dir": Path("/data"), "flag": True, "none": None, "nan": float("nan"), "list": (1, "a"),
        "empty": {},
    }) == {"seed": "7", "p": "0.5", "shape": "[2, 3]", "opt": "adam", "dir": "/data", "flag": "true",
           "none": "null", "nan": "nan", "list": '[1, "a"]', "empty": "{}"}
