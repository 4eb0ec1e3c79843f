"""Param importance, computed in one place for the query service's GetParamImportance and
`trackd hpo show`: Optuna's fANOVA evaluator (a random forest over the params, fitted with a fixed
seed, so the same points give the same importances).

Needs optuna and scikit-learn, imported when `fanova` is called: a client that never asks for
importances does not need them."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence

METHOD = "optuna fANOVA (random forest, 64 trees, max depth 64, seed 0)"


def fanova(names: Sequence[str], categories: Mapping[str, Sequence[str]],
           points: Sequence[tuple[Mapping[str, float | str], float]]) -> dict[str, float]:
    """Normalized importance of each of the params `names` for the value (they sum to 1), most
    important first; empty without params.

    `points` are (params, value): every point has each of `names`, a float for a numeric param
    (its range: its lowest to its highest value) and one of `categories[name]` for a categorical
    one. Raises ImportError naming what to install when optuna or scikit-learn is missing."""
    if not names:
        return {}
    missing = [m for m in ("optuna", "sklearn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"param importance needs optuna and scikit-learn ({', '.join(missing)} missing): "
                          "pip install optuna scikit-learn")
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

    distributions: dict[str, BaseDistribution] = {}
    for name in names:
        if name in categories:
            distributions[name] = CategoricalDistribution(list(categories[name]))
        else:
            values = [float(params[name]) for params, _ in points]
            low, high = min(values), max(values)
            distributions[name] = FloatDistribution(low, high if high > low else low + 1.0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.add_trials([optuna.trial.create_trial(params={n: params[n] for n in names}, distributions=distributions,
                                                value=value) for params, value in points])
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    found = optuna.importance.get_param_importances(study, evaluator=evaluator, params=list(names))
    return {k: float(v) for k, v in found.items()}
