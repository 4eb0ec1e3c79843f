"""trackd's study controls (HpoService's StopStudy, PauseStudy, StartStudy and EnqueueTrial) on a
study made through Optuna's storage (optuna_storage.py). Optuna samples in its clients — each
`study.ask()` creates a trial and suggests its params — so trackd cannot hold trials back:

- stop: the study is STOPPED and its run ended KILLED; Optuna's next trial (a new one, or an
  enqueued one started) is refused with FAILED_PRECONDITION saying so, so `study.optimize` ends
  with that error. Trials already running may still report and end (their results count).
- enqueue: a WAITING trial whose `fixed_params` system attribute holds the params — exactly what
  Optuna's own `study.enqueue_trial` stores — so the next `study.ask()` of any client runs it
  with them (params it leaves out are sampled by that client).
- pause and resume: FAILED_PRECONDITION (Optuna's clients do not wait for a paused study).
- best trials: picked from the completed trials' values, as Optuna's `best_trial(s)` (no trackd
  engine is built for such a study)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import json_to_distribution
from optuna.study._multi_objective import _is_pareto_front
from trackd_platform.errors import InvalidArgument
from trackd_platform.run_records import RunStatus

from . import domain
from .domain import StudyRow, StudyState, TrialState
from .optuna_runs import OptunaRuns
from .optuna_store import NewTrial, OptunaStore, OptunaTrial
from .space import MAX_PARAMS

FIXED_PARAMS = "fixed_params"  # the system attribute Optuna's enqueue_trial sets and its Trial reads
_SCALARS = (str, int, float, bool, type(None))  # Optuna's categorical choice types


def fixed_params(system_attrs: Mapping[str, str]) -> dict[str, Any]:
    """The params an enqueued trial is to run with (its `fixed_params` attribute), else {}."""
    try:
        fixed = json.loads(system_attrs.get(FIXED_PARAMS, "{}"))
    except ValueError:
        return {}
    return fixed if isinstance(fixed, dict) else {}


def check_fixed(params: Mapping[str, Any], distributions: Mapping[str, str]) -> None:
    """InvalidArgument unless every param is a name with a scalar value, inside the distribution
    the study has for it (a name the study has not seen yet may take any scalar)."""
    if len(params) > MAX_PARAMS:
        raise InvalidArgument(f"{len(params)} params; the limit is {MAX_PARAMS}")
    for name, value in params.items():
        if not name or not isinstance(value, _SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
            raise InvalidArgument(f"param {name!r}: a name and a finite number, string, boolean or null")
        if name not in distributions:
            continue
        distribution = json_to_distribution(distributions[name])
        try:
            inside = distribution._contains(distribution.to_internal_repr(value))
        except (ValueError, TypeError):
            inside = False
        if not inside:
            raise InvalidArgument(f"param {name!r}: {value!r} is outside the space the study has for it "
                                  f"({distributions[name]})")


def best_numbers(completed: Sequence[tuple[int, Sequence[float]]], directions: Sequence[str]) -> list[int]:
    """The number of the best completed trial (the first of equals), or with several objectives
    those of the Pareto front, as Optuna's `best_trial` / `best_trials` pick them."""
    usable = [(n, v) for n, v in completed if len(v) == len(directions)]
    if not usable:
        return []
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    losses = np.array([v for _, v in usable], dtype=float) * signs
    if len(directions) == 1:
        return [usable[int(np.argmin(losses[:, 0]))][0]]
    front = _is_pareto_front(losses, assume_unique_lexsorted=False)
    return [n for (n, _), on in zip(usable, front, strict=True) if on]


class OptunaControls:
    def __init__(self, store: OptunaStore, runs: OptunaRuns) -> None:
        self._store = store
        self._runs = runs

    @staticmethod
    def made_by_optuna(study: StudyRow) -> bool:
        return study.sampler == domain.OPTUNA_CLIENT

    @staticmethod
    def refuse(study: StudyRow, action: str) -> None:
        """FailedPrecondition: trackd cannot `action` an Optuna-made study."""
        domain.check_run_by_trackd(study, action)

    async def stop(self, study: StudyRow) -> None:
        """STOPPED: Optuna's clients start no more trials. FailedPrecondition if it has ended."""
        domain.check_study_move(study, StudyState.STOPPED)
        optuna_study = await self._store.study_of(study.id)
        if await self._store.stop_study(optuna_study.id) and optuna_study.run_id is not None:
            await self._runs.end(optuna_study.run_id, RunStatus.KILLED)

    async def best(self, study: StudyRow) -> list[int]:
        """The numbers of the best trial, or of the Pareto front (`best_numbers`)."""
        completed = await self._store.completed(study.id)
        return await asyncio.to_thread(best_numbers, completed, domain.directions(study.objectives))

    async def enqueue(self, study: StudyRow, params: dict[str, Any]) -> OptunaTrial:
        """A WAITING trial Optuna's next `ask` runs with `params` (as Optuna's `enqueue_trial`).
        InvalidArgument for a value outside the study's distribution of that name;
        FailedPrecondition when the study was stopped."""
        optuna_study = await self._store.study_of(study.id)
        check_fixed(params, await self._store.distributions(optuna_study.id))
        return await self._store.create_trial(optuna_study, NewTrial(
            state=TrialState.WAITING, external_params=params, system_attrs={FIXED_PARAMS: json.dumps(params)}))
