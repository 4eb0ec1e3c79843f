"""The runs of Optuna trials, kept off the request path: Optuna's calls (ask, report, tell) answer
once PostgreSQL has the change, and each trial's run updates — start, intermediate values as
metrics, params and end — follow in the background, in order per trial. At most MAX_PENDING
trials have updates in flight; past that a call waits for its own update (back-pressure, never
an unbounded backlog). Updates in flight when the service stops are lost (the trial's record in
PostgreSQL is complete; its run may then lack metrics or stay RUNNING: docs/optuna.md)."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from trackd_platform.errors import TrackdError

from .domain import TrialState
from .optuna_runs import OptunaRuns
from .optuna_store import OptunaStore, OptunaStudy, OptunaTrial

MAX_PENDING = 1_000
log = logging.getLogger(__name__)

Step = Callable[[uuid.UUID | None], Awaitable[uuid.UUID | None]]  # the trial's run id → the run id after


class TrialRuns:
    def __init__(self, runs: OptunaRuns, store: OptunaStore, *, max_pending: int = MAX_PENDING) -> None:
        self._runs = runs
        self._store = store
        self._max_pending = max_pending
        self._chains: dict[int, asyncio.Task[uuid.UUID | None]] = {}

    async def start(self, study: OptunaStudy, trial: OptunaTrial) -> None:
        """Start the trial's run, unless it has one (a trial created ended: `end` it next)."""

        async def step(run_id: uuid.UUID | None) -> uuid.UUID | None:
            if run_id is not None:
                return run_id
            run_id = await self._runs.start_trial(study=study.name, number=trial.number,
                                                  experiment_id=study.experiment_id, parent=study.run_id)
            await self._store.set_run(trial, run_id)
            for at, value in sorted(trial.intermediates.items()):
                if math.isfinite(value):
                    await self._runs.log_value(run_id, at, value)
            return run_id

        await self._then(trial.id, trial.run_id, step)

    async def log_value(self, trial_id: int, step_number: int, value: float) -> None:
        async def step(run_id: uuid.UUID | None) -> uuid.UUID | None:
            if run_id is not None and math.isfinite(value):
                await self._runs.log_value(run_id, step_number, value)
            return run_id

        await self._then(trial_id, None, step)

    async def end(self, trial_id: int, state: TrialState, params: dict[str, Any]) -> None:
        async def step(run_id: uuid.UUID | None) -> uuid.UUID | None:
            if run_id is not None:
                await self._runs.end_trial(run_id, state, params)
            return run_id

        await self._then(trial_id, None, step)

    async def drain(self) -> None:
        """Wait for every update in flight (at shutdown)."""
        await asyncio.gather(*self._chains.values(), return_exceptions=True)

    async def _then(self, trial_id: int, known: uuid.UUID | None, step: Step) -> None:
        """Run `step` after the trial's earlier updates, given its run id as they left it (else
        `known`, else as PostgreSQL has it). Returns at once, unless too many trials have
        updates in flight: then when this one is done."""
        before = self._chains.get(trial_id)

        async def chained() -> uuid.UUID | None:
            run_id = known
            if before is not None:
                run_id = await before
            if run_id is None:
                try:
                    run_id = (await self._store.trial(trial_id)).run_id
                except TrackdError:
                    return None  # deleted meanwhile
            try:
                return await step(run_id)
            except Exception:  # noqa: BLE001 — the trial is recorded; its run is best effort
                log.exception("updating the run of Optuna trial %d failed", trial_id)
                return run_id

        task = asyncio.create_task(chained())
        self._chains[trial_id] = task
        task.add_done_callback(lambda done: self._chains.pop(trial_id, None) if self._chains.get(trial_id)
                               is done else None)
        if len(self._chains) > self._max_pending:
            await asyncio.shield(task)
