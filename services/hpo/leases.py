"""Leases and the reaper: a trial whose worker was lost — its lease expired, or its run ended
FAILED or CRASHED — is retried while attempts remain, else failed; a study that reached a limit
finishes once no trial is open; and in the background the reaper does this for every active
study, keeps its ready queue in step with PostgreSQL and its runs alive."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import prometheus_client
from trackd_platform.run_records import RunStatus

from .domain import Limit, StudyState, TrialRow, TrialState, after_lost, finishing, open_trials
from .engine import Engine
from .runs import RunsClient
from .sampling import Sampling
from .store import StudyStore, StudyTx

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, store: StudyStore, sampling: Sampling, runs: RunsClient, *,
                 registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self._store = store
        self._sampling = sampling
        self._runs = runs
        self._ready_gauge = prometheus_client.Gauge(
            "trackd_hpo_ready_trials", "Trials sampled ahead, waiting in the ready queue", ["study"],
            registry=registry)
        self._expiries = prometheus_client.Counter(
            "trackd_hpo_lease_expiries", "Trial leases that expired (worker lost)", ["study"], registry=registry)

    async def reap(self, tx: StudyTx, engine: Engine) -> int:
        """Expired leases of the study: their runs FAILED, the trials retried or failed. Returns
        how many trials it handled."""
        expired = await tx.expired()
        for trial in expired:
            self._expiries.labels(tx.study.name).inc()
            await self._runs.end_if_running(trial.run_id, RunStatus.FAILED)
            await self._retry_or_fail(tx, engine, trial, "its lease expired")
        return len(expired)

    async def _retry_or_fail(self, tx: StudyTx, engine: Engine, trial: TrialRow, why: str) -> None:
        study = tx.study
        if after_lost(trial, study.retries_per_trial) == TrialState.WAITING:
            log.info("trial %d of %s: %s; retrying", trial.number, study.name, why)
            await tx.requeue(trial.id)
        else:
            log.info("trial %d of %s: %s and no retry is left: failed", trial.number, study.name, why)
            await tx.end_trial(trial.id, TrialState.FAIL, None, f"worker lost: {why}")
            engine.tell(trial.number, TrialState.FAIL)

    async def finish_if_done(self, tx: StudyTx) -> None:
        """FINISHED (and its run ended) when the running study reached a limit and no trial is
        open; out of time or failures, trials sampled ahead are dropped first."""
        study = await tx.refresh()
        if not (limit := finishing(study, datetime.now(UTC))):
            return
        if limit != Limit.MAX_TRIALS and await tx.drop_unstarted():
            self._sampling.forget(study.id)
            study = await tx.refresh()
        if open_trials(study) == 0:
            await tx.set_state(StudyState.FINISHED)
            await self._runs.end_if_running(study.run_id, RunStatus.FINISHED)

    async def run_ended(self, run_id: uuid.UUID) -> bool:
        """A trial's run ended FAILED or CRASHED (a `run.ended` event) while the trial still runs:
        handled like a lost lease — retried while attempts remain, else failed. True if it was."""
        trial_id = await self._store.running_trial_of_run(run_id)
        if trial_id is None:
            return False  # ended by its trial (complete, pruned, failed) or not a trial's run
        study_id = await self._store.study_of(trial_id)
        async with self._sampling.serialized(study_id), self._store.locked(study_id) as tx:
            trial = await tx.trial(trial_id)
            if trial.state != TrialState.RUNNING or trial.run_id != run_id:
                return False
            await self._retry_or_fail(tx, await self._sampling.engine(tx.study, tx), trial, "its run ended")
            await self.finish_if_done(tx)
        await self._sampling.rebuild_queue(study_id)  # a retry waits for a worker
        self._sampling.refill_soon(study_id)
        return True

    async def end_run(self, trial: TrialRow) -> None:
        """End the run of a trial that ended (FINISHED when it completed or was pruned, else
        FAILED), then clear the trial's mark (`StudyTx.end_trial`'s `run_ends_later`); a failure
        is logged and leaves the mark for `end_runs` to try again."""
        ok = trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        try:
            await self._runs.end_if_running(trial.run_id, RunStatus.FINISHED if ok else RunStatus.FAILED)
            await self._store.run_ended(trial.id)
        except Exception as exc:
            log.warning("the run of trial %d (%s) is not ended yet (%s); the reaper retries", trial.number,
                        trial.id.hex, exc)

    async def end_runs(self) -> None:
        """End the runs of ended trials still marked (their controller died before ending them, or
        the run service was down)."""
        for trial in await self._store.runs_to_end():
            await self.end_run(trial)

    async def reap_all(self) -> None:
        """Background duty: expire leases, finish exhausted studies, keep each running study's
        ready queue full and in step with PostgreSQL, keep study and trial runs alive (the runs
        of ended trials are ended by `end_runs`, on a loop of its own: app.py)."""
        for study_id, run_id in await self._store.active_studies():
            async with self._sampling.serialized(study_id), self._store.locked(study_id) as tx:
                study = tx.study
                reaped = await self.reap(tx, await self._sampling.engine(study, tx))
                await self.finish_if_done(tx)
            if study.state == StudyState.RUNNING:
                waiting = await self._sampling.rebuild_queue(study_id, unless_in_step=not reaped)  # retries are new
                self._ready_gauge.labels(study.name).set(waiting)
                self._sampling.refill_soon(study_id)
            await self._runs.heartbeat_if_running(run_id)
        for trial_run in await self._store.running_trial_runs():
            await self._runs.heartbeat_if_running(trial_run)
