"""The objectives of bench/hpo_quality.py, shared by its trackd side (the project's venv) and its
Optuna side (bench/_optuna_quality.py in bench/.venv-anchors): plain Python and NumPy only.

Test functions (standard domains, minimized; global minima from the Virtual Library of
Simulation Experiments, Surjanovic & Bingham):
  branin        2-D, x1 ∈ [-5, 10], x2 ∈ [0, 15]            f* = 0.397887
  hartmann6     6-D, x ∈ [0, 1]^6                          f* = -3.32237
  rosenbrock10  10-D, x ∈ [-5, 10]^10                       f* = 0

Synthetic learning curves for the pruning benchmark: `curve(params, seed)` is the validation
loss after each of STEPS training steps of a model with a learning rate, a width and a dropout.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Params = Mapping[str, Any]


def branin(p: Params) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H_A = ((10, 3, 17, 3.5, 1.7, 8), (0.05, 10, 17, 0.1, 8, 14), (3, 3.5, 1.7, 10, 17, 8), (17, 8, 0.05, 10, 0.1, 14))
_H_P = ((1312, 1696, 5569, 124, 8283, 5886), (2329, 4135, 8307, 3736, 1004, 9991),
        (2348, 1451, 3522, 2883, 3047, 6650), (4047, 8828, 8732, 5743, 1091, 381))


def hartmann6(p: Params) -> float:
    x = [p[f"x{j}"] for j in range(6)]
    return -sum(alpha * math.exp(-sum(a * (xj - q * 1e-4) ** 2 for a, xj, q in zip(row, x, prow, strict=True)))
                for alpha, row, prow in zip(_H_ALPHA, _H_A, _H_P, strict=True))


def rosenbrock10(p: Params) -> float:
    x = [p[f"x{j}"] for j in range(10)]
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (x[i] - 1) ** 2 for i in range(9))


def _box(names: list[str], low: float, high: float) -> dict[str, dict[str, Any]]:
    return {n: {"type": "float", "low": low, "high": high} for n in names}


# name → (objective, search space in trackd's format, known global minimum)
FUNCTIONS: dict[str, tuple[Callable[[Params], float], dict[str, dict[str, Any]], float]] = {
    "branin": (branin, {"x1": {"type": "float", "low": -5.0, "high": 10.0},
                        "x2": {"type": "float", "low": 0.0, "high": 15.0}}, 0.397887),
    "hartmann6": (hartmann6, _box([f"x{j}" for j in range(6)], 0.0, 1.0), -3.32237),
    "rosenbrock10": (rosenbrock10, _box([f"x{j}" for j in range(10)], -5.0, 10.0), 0.0),
}

# -- synthetic learning curves ---------------------------------------------------------------

STEPS = 100
CURVE_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "width": {"type": "int", "low": 16, "high": 1024, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.7},
}


def _final(lr: float, width: float, dropout: float) -> float:
    """The loss the model converges to: best near lr 3e-3; wide nets are better but need more
    dropout (the best dropout grows with the width)."""
    u, w = math.log10(lr), math.log2(width)
    best_dropout = 0.05 + 0.06 * (w - 4)
    return 0.15 + 0.25 * (u + 2.5) ** 2 + 0.015 * (w - 9) ** 2 + 0.9 * (dropout - best_dropout) ** 2


def _tau(lr: float, width: float, dropout: float) -> float:
    """Steps to close 63 % of the gap: a high learning rate and a wide net learn fast, dropout
    slows early progress. So early leaders (high lr, no dropout) are often not the final best."""
    return 8.0 * (3e-3 / lr) ** 0.15 * (256 / width) ** 0.1 * (1 + 0.3 * dropout)


def curve(params: Params, seed: int) -> list[float]:
    """Validation loss after steps 1..STEPS. Deterministic in (params, seed); the noise (about 1.5 %,
    larger early on) is drawn from a generator seeded by both, so the same configuration gives
    the same curve to trackd and to Optuna."""
    lr, width, dropout = float(params["lr"]), float(params["width"]), float(params["dropout"])
    key = zlib.crc32(json.dumps({k: params[k] for k in sorted(CURVE_SPACE)}, sort_keys=True).encode())
    rng = np.random.default_rng([seed, key])
    t = np.arange(1, STEPS + 1)
    final, start = _final(lr, width, dropout), 2.5
    clean = final + (start - final) * np.exp(-t / _tau(lr, width, dropout))
    noisy = clean * (1 + rng.normal(0, 0.015, STEPS) * (1 + np.exp(-t / 20)))
    return [float(v) for v in noisy]


def random_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` configurations drawn uniformly from CURVE_SPACE (log-uniform lr and width)."""
    rng = np.random.default_rng(seed)
    lr = np.exp(rng.uniform(math.log(1e-4), math.log(1e-1), n))
    width = np.rint(np.exp(rng.uniform(math.log(16), math.log(1024), n))).astype(int)
    dropout = rng.uniform(0.0, 0.7, n)
    return [{"lr": float(a), "width": int(b), "dropout": float(c)} for a, b, c in zip(lr, width, dropout, strict=True)]
