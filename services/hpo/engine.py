"""One study's Optuna side: an in-memory Optuna study mirroring the trials trackd keeps in
PostgreSQL, driven by ask-and-tell. It is rebuilt from PostgreSQL whenever the controller
starts (or loses track), so it never holds anything that is not also stored. Not thread-safe:
the controller serializes calls per study."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.trial import TrialState as OptunaState

from . import algorithms
from .domain import TrialState
from .space import Param, Space

_FINISHED = {TrialState.COMPLETE: OptunaState.COMPLETE, TrialState.PRUNED: OptunaState.PRUNED,
             TrialState.FAIL: OptunaState.FAIL}


@dataclass(frozen=True)
class StudySpec:
    directions: tuple[Literal["minimize", "maximize"], ...]  # one per objective
    space: Space
    sampler: str
    sampler_options: Mapping[str, Any]
    pruner: str
    pruner_options: Mapping[str, Any]
    seed: int | None
    define_by_run: bool = False  # params are sampled as the trial suggests them (`Engine.suggest`)


@dataclass(frozen=True)
class StoredTrial:
    """A trial as PostgreSQL holds it."""

    number: int
    state: TrialState
    params: Mapping[str, Any]
    values: Sequence[float] | None
    intermediates: Mapping[int, float] = field(default_factory=dict)


class Engine:
    """Optuna's public ask-and-tell API only: finished trials are added as history, open ones
    (waiting or running) are re-asked with their stored params and re-reported, so pruners see
    what they saw before a restart."""

    def __init__(self, spec: StudySpec, trials: Sequence[StoredTrial]) -> None:
        self.spec = spec
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = algorithms.make_sampler(spec.sampler, spec.sampler_options, seed=spec.seed, space=spec.space)
        self._study = optuna.create_study(
            directions=list(spec.directions), sampler=sampler,
            pruner=algorithms.make_pruner(spec.pruner, spec.pruner_options),
        )
        self._open: dict[int, optuna.Trial] = {}  # trackd number → the Optuna trial being evaluated
        self.results = 0  # trials told COMPLETE or PRUNED: what a trial sampled ahead may have missed
        self._numbers: dict[int, int] = {}  # Optuna number → trackd number
        distributions = spec.space.distributions()
        for t in sorted(trials, key=lambda t: t.number):
            if not t.state.ended:
                self._study.enqueue_trial(dict(t.params))
                self._register(t.number, self._study.ask(), t.params)
                for step, value in sorted(t.intermediates.items()):
                    self._open[t.number].report(value, step)
                continue
            known = {k: v for k, v in t.params.items() if k in distributions}  # (enqueued, never suggested)
            self._study.add_trial(optuna.trial.create_trial(
                state=_FINISHED[t.state], params=known,
                distributions={k: distributions[k] for k in known},
                values=list(t.values) if t.state == TrialState.COMPLETE and t.values else None,
                intermediate_values=dict(t.intermediates),
                # the grid sampler knows its points taken by these marks
                system_attrs=sampler.attrs_of(t.params) if isinstance(sampler, algorithms.GridOnce) else None))
            # (Optuna numbers its trials 0, 1, … in order; `study.trials` would deep-copy them all)
            self._numbers[len(self._numbers)] = t.number
            self.results += t.state in (TrialState.COMPLETE, TrialState.PRUNED)

    def _register(self, number: int, trial: optuna.Trial, stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Suggest the trial's params (an enqueued or re-asked one gets its stored params back);
        define-by-run, only those it has stored (the others when it suggests them)."""
        if self.spec.define_by_run:
            params: dict[str, Any] = {p.name: p.suggest(trial) for p in self.spec.space.params
                                      if p.name in (stored or {})}
        else:
            params = self.spec.space.suggest(trial)
        self._open[number] = trial
        self._numbers[trial.number] = number
        return params

    def ask(self, number: int) -> dict[str, Any]:
        """Params for the new trial `number`, sampled from the study's history."""
        return self._register(number, self._study.ask())

    def ask_enqueued(self, number: int, params: Mapping[str, Any]) -> dict[str, Any]:
        """Params for the new trial `number`: these (Optuna's enqueue_trial), the space's
        others sampled."""
        self._study.enqueue_trial(dict(params))
        if self.spec.define_by_run:  # kept for when the trial suggests them
            return {**params, **self._register(number, self._study.ask(), params)}
        return self._register(number, self._study.ask())

    def suggest(self, number: int, param: Param) -> Any:
        """Define-by-run: a value for `param` of the open trial `number`, from the study's sampler
        (Optuna's relative sampling over the params every trial has, independent for the rest)."""
        return param.suggest(self._open[number])

    def report(self, number: int, step: int, value: float) -> bool:
        """Record an intermediate value; True when the pruner says stop."""
        trial = self._open[number]
        trial.report(value, step)
        return bool(trial.should_prune())

    def tell(self, number: int, state: TrialState, values: Sequence[float] | None = None) -> None:
        """End an open trial (COMPLETE with values, PRUNED or FAIL); ending it again is a no-op."""
        trial = self._open.pop(number, None)
        if trial is None:
            return
        if state == TrialState.COMPLETE:
            self._study.tell(trial, list(values or []))
        else:
            self._study.tell(trial, state=OptunaState.PRUNED if state == TrialState.PRUNED else OptunaState.FAIL)
        self.results += state in (TrialState.COMPLETE, TrialState.PRUNED)

    def discard(self, number: int) -> None:
        """Forget an open trial that was never evaluated (a stale one, deleted to be sampled
        again): Optuna keeps it as FAIL, which its samplers ignore; `number` may be asked again."""
        if (trial := self._open.pop(number, None)) is not None:
            self._study.tell(trial, state=OptunaState.FAIL)

    def best(self) -> list[int]:
        """Numbers of the best trial, or of the Pareto front with several objectives."""
        if not any(t.state == OptunaState.COMPLETE for t in self._study.get_trials(deepcopy=False)):
            return []
        return sorted(self._numbers[t.number] for t in self._study.best_trials)
