"""Optuna's samplers and pruners by name. trackd does not reimplement them: the controller
drives them through ask-and-tell with the study's trials, as trackd keeps them, as history.

Samplers: random, grid (each point once; at most MAX_GRID_POINTS), tpe (options: multivariate,
group, n_startup_trials, constant_liar — on unless turned off, so parallel trials spread out), gp
(refused at CreateStudy unless torch is installed), cmaes (the `cmaes` package, a server
dependency), nsga2 (several objectives). Pruners: none, median, percentile (option: percentile),
asha (successive halving; options: min_resource, reduction_factor), hyperband (options:
min_resource, max_resource, reduction_factor), wilcoxon (option: p_threshold).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from trackd_platform.errors import InvalidArgument

from .space import Space

SAMPLERS = ("random", "grid", "tpe", "gp", "cmaes", "nsga2")
MAX_GRID_POINTS = 100_000  # the grid sampler enumerates its grid: bounded, and checked before it is built
PRUNERS = ("none", "median", "percentile", "asha", "hyperband", "wilcoxon")
_SINGLE_OBJECTIVE_SAMPLERS = {"gp", "cmaes"}

log = logging.getLogger(__name__)


def _options(kind: str, name: str, options: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    if unknown := set(options) - allowed:
        raise InvalidArgument(f"{kind} {name!r} has no option {sorted(unknown)[0]!r}"
                              + (f" (options: {', '.join(sorted(allowed))})" if allowed else " (it takes none)"))
    return dict(options)


def check(sampler: str, pruner: str, objectives: int, space: Space) -> int | None:
    """Raise InvalidArgument unless this sampler and pruner can run this study. Returns the
    most trials the sampler can use (the grid's size), None when unbounded."""
    if sampler not in SAMPLERS:
        raise InvalidArgument(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise InvalidArgument(f"unknown pruner {pruner!r}: use one of {', '.join(PRUNERS)}")
    if objectives > 1 and pruner != "none":
        raise InvalidArgument("pruning needs a single objective: Optuna's pruners cannot compare several")
    if objectives > 1 and sampler in _SINGLE_OBJECTIVE_SAMPLERS:
        raise InvalidArgument(f"sampler {sampler!r} handles one objective: use nsga2, tpe or random")
    if sampler == "gp":
        _check_torch()
    if sampler == "grid":
        return grid_size(space)
    return None


def _check_torch() -> None:
    # GPSampler imports torch and scipy lazily (optuna._imports), on its first sample: the study
    # would fail then, after its startup trials.
    if missing := [m for m in ("torch", "scipy") if importlib.util.find_spec(m) is None]:
        raise InvalidArgument(f"sampler 'gp' needs {' and '.join(missing)}, which the hpo service does not have "
                              f"installed (pip install {' '.join(missing)}; torch's CPU build is enough): "
                              "use tpe or cmaes")


def grid_size(space: Space) -> int:
    """How many points the space's grid has, from the counts per param (nothing is built);
    InvalidArgument beyond MAX_GRID_POINTS, or for a param the grid cannot enumerate."""
    counts: dict[str, int] = {}
    for p in space.params:
        if p.when:
            raise InvalidArgument(f"the grid sampler cannot handle the conditional param {p.name!r}")
        if p.type == "categorical":
            counts[p.name] = len(p.choices)
        elif p.type == "int" and not p.log:
            counts[p.name] = (int(p.high) - int(p.low)) // int(p.step or 1) + 1
        elif p.step is not None:
            counts[p.name] = round((p.high - p.low) / p.step) + 1
        else:
            raise InvalidArgument(f"the grid sampler needs a step for the float param {p.name!r}")
    size = math.prod(counts.values())
    if size > MAX_GRID_POINTS:
        raise InvalidArgument(f"the grid has {size:,} points ({' × '.join(f'{n}: {c:,}' for n, c in counts.items())}); "
                              f"the limit is {MAX_GRID_POINTS:,}: widen the steps or use another sampler")
    return size


def grid_space(space: Space) -> dict[str, list[Any]]:
    """The grid of a space: categorical choices, and every step of stepped int / float params
    (its size checked first by `grid_size`)."""
    grid_size(space)
    grid: dict[str, list[Any]] = {}
    for p in space.params:
        if p.type == "categorical":
            grid[p.name] = list(p.choices)
        elif p.type == "int" and not p.log:
            grid[p.name] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            assert p.step is not None
            grid[p.name] = [p.low + i * p.step for i in range(round((p.high - p.low) / p.step) + 1)]
    return grid


class GridOnce(optuna.samplers.GridSampler):
    """Optuna's grid sampler, driven by ask-and-tell over a history rebuilt from PostgreSQL:
    each point is handed out once, in the (seeded) shuffled order, whatever the trials' numbers;
    a point a trial was given explicitly (enqueued, or re-asked after a rebuild) counts as taken.
    Optuna's own `after_trial` stops `study.optimize` at the grid's end — outside `optimize` that
    raises — so trackd instead bounds a grid study's max_trials by the grid's size."""

    def __init__(self, grid: Mapping[str, Sequence[Any]], *, seed: int | None) -> None:
        super().__init__(grid, seed=seed)
        self._ids = {tuple(point): i for i, point in enumerate(self._all_grids)}
        self._taken: set[int] = set()
        self._next = 0  # every point before it is taken

    def attrs_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The system attributes marking a trial with these params as the grid point it is
        (none when it is not on the grid); the point counts as taken."""
        grid_id = self._ids.get(tuple(params.get(name) for name in self._search_space))
        if grid_id is None:
            return {}
        self._taken.add(grid_id)
        return {"grid_id": grid_id, "search_space": self._search_space}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "grid_id" in trial.system_attrs:
            return
        if "fixed_params" in trial.system_attrs:
            attrs = self.attrs_of(trial.system_attrs["fixed_params"])
        else:
            while self._next in self._taken:
                self._next += 1
            if self._next >= len(self._all_grids):  # only past max_trials: re-evaluate a point
                log.warning("the grid of a study is exhausted: re-evaluating a point")
                self._next = int(self._rng.rng.randint(len(self._all_grids)))
            self._taken.add(self._next)
            attrs = {"grid_id": self._next, "search_space": self._search_space}
        for key, value in attrs.items():
            study._storage.set_trial_system_attr(trial._trial_id, key, value)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass  # see the class docstring: no study.stop() here


def make_sampler(
    name: str, options: Mapping[str, Any], *, seed: int | None, space: Space
) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **_options("sampler", name, options, set()))
    if name == "grid":
        return GridOnce(grid_space(space), seed=seed)
    if name == "tpe":
        opts = _options("sampler", name, options, {"multivariate", "n_startup_trials", "group", "constant_liar"})
        # constant liar: the trials waiting or running (open in the engine) count as bad results,
        # so parallel trials spread out instead of sampling next to each other
        return optuna.samplers.TPESampler(seed=seed, **{"constant_liar": True, **opts})
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **_options("sampler", name, options, {"population_size"}))
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **_options("sampler", name, options, {"n_startup_trials"}))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **_options("sampler", name, options, {"n_startup_trials"}))
    raise InvalidArgument(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, options: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        opts = _options("pruner", name, options, {"n_startup_trials", "n_warmup_steps", "interval_steps"})
        return optuna.pruners.MedianPruner(**opts)
    if name == "percentile":
        opts = _options("pruner", name, options, {"percentile", "n_startup_trials", "n_warmup_steps"})
        return optuna.pruners.PercentilePruner(**{"percentile": 25.0, **opts})
    if name == "asha":
        opts = _options("pruner", name, options, {"min_resource", "reduction_factor", "min_early_stopping_rate"})
        return optuna.pruners.SuccessiveHalvingPruner(**opts)
    if name == "hyperband":
        opts = _options("pruner", name, options, {"min_resource", "max_resource", "reduction_factor"})
        return optuna.pruners.HyperbandPruner(**opts)
    if name == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(**_options("pruner", name, options, {"p_threshold", "n_startup_steps"}))
    raise InvalidArgument(f"unknown pruner {name!r}: use one of {', '.join(PRUNERS)}")
