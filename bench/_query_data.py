"""What bench/query.py loads into both trackd and MLflow, so both hold the same values. Imported
by query.py (the project's venv) and by _mlflow_query.py (the anchors venv): numpy only."""

from __future__ import annotations

import numpy as np

SERIES_KEY = "loss"
T0_MS = 1_700_000_000_000

SEARCH_EXPERIMENT = "bench-search"
PARAMS = 20  # p0 … p19, values "v0" … "v9"
METRICS = 10  # m0 … m9, uniform in [0, 1)
FILTER = "metrics.m0 > 0.5 AND params.p0 = 'v3'"
ORDER_BY = "metrics.m1 DESC"
PAGE = 100


def series(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values, timestamps_ms) of a noisy decaying loss, one point a step from step 0; the
    first n points are the same whatever the count."""
    steps = np.arange(count, dtype=np.int64)
    values = 1.0 / (1.0 + steps / 1_000.0) + 0.01 * np.sin(steps * 0.37)
    return steps, values, T0_MS + steps


def search_values(runs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(params, metrics): params[i, k] is the n of run i's "v{n}" for p{k}; metrics[i, k] its m{k}."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 10, size=(runs, PARAMS)), rng.random((runs, METRICS))
