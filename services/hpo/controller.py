"""The HPO controller: studies' lifecycles, handing out trials under leases, pruning and
results. PostgreSQL is the record; each study's Optuna engine is an in-memory mirror rebuilt from
it on first use after a (re)start, so a SIGKILL loses nothing. Calls for one study are serialized
by an asyncio lock here and by the study's row lock in PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import prometheus_client
from trackd_platform.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from trackd_platform.run_records import RunStatus
from trackd_services.hpo import algorithms
from trackd_services.hpo.engine import COMPLETE, FAIL, PRUNED, RUNNING, WAITING, Engine, StudySpec
from trackd_services.hpo.queue import ReadyQueue
from trackd_services.hpo.runs import RunsClient
from trackd_services.hpo.space import parse
from trackd_services.hpo.store import (
    CREATED,
    ENDED,
    FINISHED,
    PAUSED,
    STOPPED,
    STUDY_RUNNING,
    StudyRow,
    StudyStore,
    TrialRow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acquired:
    trial: TrialRow | None
    study: StudyRow


def spec_of(study: StudyRow) -> StudySpec:
    return StudySpec(
        directions=tuple("minimize" if o["direction"] == 1 else "maximize" for o in study.objectives),
        space=parse(study.search_space), sampler=study.sampler, sampler_options=study.sampler_options,
        pruner=study.pruner, pruner_options=study.pruner_options, seed=study.seed)


class Controller:
    def __init__(self, store: StudyStore, runs: RunsClient, queue: ReadyQueue, *, lease_s: float,
                 registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self._store = store
        self._runs = runs  # trials are runs, started and ended by the run service
        self._queue = queue
        self.lease_s = lease_s
        self._engines: dict[uuid.UUID, Engine] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._refills: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._refill_again: set[uuid.UUID] = set()
        self._ready_gauge = prometheus_client.Gauge(
            "trackd_hpo_ready_trials", "Trials sampled ahead, waiting in the ready queue", ["study"],
            registry=registry)
        self._expiries = prometheus_client.Counter(
            "trackd_hpo_lease_expiries", "Trial leases that expired (worker lost)", ["study"], registry=registry)

    def _lock(self, study_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(study_id, asyncio.Lock())

    async def _engine(self, study: StudyRow) -> Engine:
        if study.id not in self._engines:
            history = await self._store.history(study.id)
            self._engines[study.id] = await asyncio.to_thread(Engine, spec_of(study), history)
        return self._engines[study.id]

    def _forget(self, study_id: uuid.UUID) -> None:
        """Drop the mirror after a failure between PostgreSQL and Optuna: rebuilt on next use."""
        self._engines.pop(study_id, None)

    # -- studies --------------------------------------------------------------------------

    async def create(self, fields: dict[str, Any], *, experiment: str, project: str, paused: bool) -> StudyRow:
        space = parse(fields["search_space"])
        algorithms.check(fields["sampler"], fields["pruner"], len(fields["objectives"]), space)
        spec = StudySpec(tuple("minimize" if o["direction"] == 1 else "maximize" for o in fields["objectives"]),
                         space, fields["sampler"], fields["sampler_options"], fields["pruner"],
                         fields["pruner_options"], fields["seed"])
        Engine(spec, [])  # options Optuna refuses fail here, before anything is stored
        run = await self._runs.start(project=project, experiment=experiment, name=f"study {fields['name']}",
                                     tags={"trackd.hpo.study": fields["name"]})
        try:
            study_id = await self._store.create({**fields, "experiment_id": run.experiment_id, "run_id": run.id,
                                                 "state": PAUSED if paused else STUDY_RUNNING})
        except Exception:
            await self._runs.end(run.id, RunStatus.KILLED)
            raise
        if not paused:
            async with self._store.pool.acquire() as conn:
                await self._store.set_state(conn, study_id, STUDY_RUNNING)
            self.refill_soon(study_id)
        return await self._store.get(study_id=study_id)

    async def transition(self, study_id: uuid.UUID, target: int) -> StudyRow:
        async with self._lock(study_id), self._store.pool.acquire() as conn, conn.transaction():
            study = await self._store.get(conn, study_id=study_id, lock=True)
            if study.state in (STOPPED, FINISHED):
                raise FailedPrecondition(f"study {study.name!r} has ended; create a new one to search again")
            if target == PAUSED and study.state not in (STUDY_RUNNING, CREATED):
                raise FailedPrecondition(f"study {study.name!r} is not running")
            await self._store.set_state(conn, study_id, target)
            if target == STOPPED and await self._store.drop_unstarted(conn, study_id):
                self._forget(study_id)
        if target == STOPPED:
            await self._queue.drop(study_id)
            await self._end_study_run(study, RunStatus.KILLED)
        elif target == STUDY_RUNNING:
            await self.rebuild_queue(study_id)
            self.refill_soon(study_id)
        return await self._store.get(study_id=study_id)

    async def _end_study_run(self, study: StudyRow, status: RunStatus) -> None:
        if study.run_id is not None:
            try:
                await self._runs.end(study.run_id, status)
            except (FailedPrecondition, NotFound):
                pass  # ended already

    def _exhausted(self, study: StudyRow) -> str:
        """Which limit the study has reached ("" for none): no trial is sampled past it."""
        counts = study.counts
        if study.max_failed_trials and counts.get(FAIL, 0) >= study.max_failed_trials:
            return "max_failed_trials"
        if study.max_duration_s and study.started_at is not None and (
                datetime.now(UTC) - study.started_at > timedelta(seconds=study.max_duration_s)):
            return "max_duration"
        return "max_trials" if study.max_trials and sum(counts.values()) >= study.max_trials else ""

    # -- trials ---------------------------------------------------------------------------

    async def acquire(self, study_id: uuid.UUID, worker: str) -> Acquired:
        """A trial to run: the one already leased to this worker (its answer was lost), else the
        next from the ready queue (sampled ahead: no sampler call, no study lock), else — queue
        empty or Redis down — from PostgreSQL under the study lock, sampling if none waits."""
        if not worker:
            raise InvalidArgument("worker names who asks (e.g. host:pid): it is needed to keep the lease")
        trial = None
        if await self._store.leased_to(self._store.pool, study_id, worker) is None:
            trial = await self._take_ready(study_id, worker)
        if trial is None:
            async with self._lock(study_id):
                try:
                    trial = await self._acquire(study_id, worker)
                except BaseException:
                    self._forget(study_id)
                    raise
        study = await self._store.get(study_id=study_id)
        if trial is not None and trial.run_id is None:
            run = await self._runs.start(
                experiment_id=study.experiment_id, parent_run_id=study.run_id,
                name=f"{study.name} #{trial.number}" + (f" (attempt {trial.attempt})" if trial.attempt > 1 else ""),
                params={k: str(v) for k, v in trial.params.items()},
                tags={"trackd.hpo.study": study.name, "trackd.hpo.trial": str(trial.number)})
            trial = await self._store.set_trial_run(trial.id, run.id)
        return Acquired(trial, study)

    async def _take_ready(self, study_id: uuid.UUID, worker: str) -> TrialRow | None:
        while (entry := await self._queue.pop(study_id, worker)) is not None:
            entry_id, trial_id = entry
            try:
                async with self._store.pool.acquire() as conn:
                    trial = await self._store.claim(conn, study_id, trial_id, worker, self.lease_s)
            finally:
                await self._queue.done(study_id, entry_id)
            if trial is not None:
                self.refill_soon(study_id)  # sample its replacement while it trains
                return trial
        return None

    async def _acquire(self, study_id: uuid.UUID, worker: str) -> TrialRow | None:
        async with self._store.pool.acquire() as conn, conn.transaction():
            study = await self._store.get(conn, study_id=study_id, lock=True)
            if study.state == STOPPED:
                raise FailedPrecondition(f"study {study.name!r} was stopped: no more trials")
            if study.state == FINISHED:  # workers see the state and leave
                return None
            engine = await self._engine(study)
            if await self._reap(conn, study, engine):
                study = await self._store.get(conn, study_id=study_id)
            if trial := await self._store.leased_to(conn, study_id, worker):
                return trial
            if study.state != STUDY_RUNNING or study.counts.get(RUNNING, 0) >= study.parallelism:
                return None
            # Waiting trials the queue did not hand out (Redis down or behind); the fast path may
            # take some meanwhile, or fill the study: then there is nothing for this worker yet.
            if waiting := await self._store.waiting_ids(conn, study_id):
                for trial_id in waiting:
                    if trial := await self._store.claim(conn, study_id, trial_id, worker, self.lease_s):
                        return trial
                return None
            if self._exhausted(study):
                return None
            [trial] = await self._sample(conn, study_id, engine, 1)
            return await self._store.claim(conn, study_id, trial.id, worker, self.lease_s)

    async def _sample(self, conn: Any, study_id: uuid.UUID, engine: Engine, count: int) -> list[TrialRow]:
        """`count` new trials from the study's sampler, stored WAITING (under the study lock)."""
        number = await self._store.next_number(conn, study_id)
        return [await self._store.insert_trial(conn, study_id, n, await asyncio.to_thread(engine.ask, n))
                for n in range(number, number + count)]

    # -- the ready queue -------------------------------------------------------------------

    def refill_soon(self, study_id: uuid.UUID) -> None:
        """Sample ahead for this study in the background: calls while one runs coalesce into
        one more pass."""
        if (task := self._refills.get(study_id)) is not None and not task.done():
            self._refill_again.add(study_id)
            return

        async def run() -> None:
            try:
                while True:
                    self._refill_again.discard(study_id)
                    await self._refill(study_id)
                    if study_id not in self._refill_again:
                        return
            except Exception:
                log.exception("sampling ahead for study %s failed; the reaper retries", study_id.hex)

        self._refills[study_id] = asyncio.create_task(run())

    async def _refill(self, study_id: uuid.UUID) -> None:
        """Keep `parallelism` trials ready (WAITING) besides those running, so a worker never
        waits for the sampler: sample the missing ones (within the study's limits), store them
        and append them to the ready queue. The price: a trial sampled ahead does not see the
        results that arrive while it waits (as with any batch of parallel trials)."""
        added: list[TrialRow] = []
        async with self._lock(study_id):
            try:
                async with self._store.pool.acquire() as conn, conn.transaction():
                    study = await self._store.get(conn, study_id=study_id, lock=True)
                    if study.state != STUDY_RUNNING or self._exhausted(study):
                        return
                    missing = study.parallelism - study.counts.get(WAITING, 0)
                    if study.max_trials:
                        missing = min(missing, study.max_trials - sum(study.counts.values()))
                    if missing <= 0:
                        return
                    added = await self._sample(conn, study_id, await self._engine(study), missing)
            except BaseException:
                self._forget(study_id)
                raise
        await self._queue.push(study_id, [t.id for t in added])

    async def rebuild_queue(self, study_id: uuid.UUID, *, unless_in_step: bool = False) -> int:
        """Make the stream hold exactly the study's WAITING trials (after a start, a retry, or
        Redis losing entries); `unless_in_step`: only when it does not already. Returns how many
        trials wait."""
        waiting = await self._store.waiting_ids(self._store.pool, study_id)
        if unless_in_step and (queued := await self._queue.trial_ids(study_id)) is not None \
                and set(queued) == set(waiting):
            return len(waiting)
        await self._queue.push(study_id, waiting, replace=True)
        return len(waiting)

    async def recover(self) -> None:
        """After a (re)start: streams rebuilt from PostgreSQL, sampling ahead resumed."""
        for study_id, _ in await self._store.active_studies():
            await self.rebuild_queue(study_id)
            self.refill_soon(study_id)

    async def _reap(self, conn: Any, study: StudyRow, engine: Engine) -> int:
        """Expired leases: retried while attempts remain, else failed (counted once). Returns how
        many trials it handled."""
        expired = await self._store.expired(conn, study.id)
        for trial in expired:
            self._expiries.labels(study.name).inc()
            await self._end_run(trial, RunStatus.FAILED)
            await self._retry_or_fail(conn, study, engine, trial, "its lease expired")
        return len(expired)

    async def run_ended(self, run_id: uuid.UUID) -> bool:
        """A trial's run ended FAILED or CRASHED (a `run.ended` event) while the trial still runs:
        handled like a lost lease — retried while attempts remain, else failed. True if it was."""
        trial_id = await self._store.running_trial_of_run(run_id)
        if trial_id is None:
            return False  # ended by its trial (complete, pruned, failed) or not a trial's run
        study_id = await self._store.study_of(trial_id)
        async with self._lock(study_id):
            try:
                async with self._store.pool.acquire() as conn, conn.transaction():
                    study = await self._store.get(conn, study_id=study_id, lock=True)
                    trial = await self._store.trial(conn, trial_id)
                    if trial.state != RUNNING or trial.run_id != run_id:
                        return False
                    await self._retry_or_fail(conn, study, await self._engine(study), trial, "its run ended")
                    await self._maybe_finish(conn, study_id)
            except BaseException:
                self._forget(study_id)
                raise
        await self.rebuild_queue(study_id)  # a retry waits for a worker
        self.refill_soon(study_id)
        return True

    async def _retry_or_fail(self, conn: Any, study: StudyRow, engine: Engine, trial: TrialRow, why: str) -> None:
        if trial.attempt <= study.retries_per_trial:
            log.info("trial %d of %s: %s; retrying", trial.number, study.name, why)
            await self._store.requeue(conn, trial.id)
        else:
            log.info("trial %d of %s: %s and no retry is left: failed", trial.number, study.name, why)
            await self._store.end_trial(conn, trial.id, FAIL, None)
            engine.tell(trial.number, FAIL)

    async def reap_all(self) -> None:
        """Background duty: expire leases, finish exhausted studies, keep each running study's
        ready queue full and in step with PostgreSQL, keep study and trial runs alive."""
        for study_id, run_id in await self._store.active_studies():
            async with self._lock(study_id):
                try:
                    async with self._store.pool.acquire() as conn, conn.transaction():
                        study = await self._store.get(conn, study_id=study_id, lock=True)
                        reaped = await self._reap(conn, study, await self._engine(study))
                        await self._maybe_finish(conn, study_id)
                except BaseException:
                    self._forget(study_id)
                    raise
            if study.state == STUDY_RUNNING:
                waiting = await self.rebuild_queue(study_id, unless_in_step=not reaped)  # retries are new
                self._ready_gauge.labels(study.name).set(waiting)
                self.refill_soon(study_id)
            if run_id is not None:
                await self._heartbeat_run(run_id)
        for run_id in await self._store.running_trial_runs():
            await self._heartbeat_run(run_id)

    async def _heartbeat_run(self, run_id: uuid.UUID) -> None:
        try:
            await self._runs.heartbeat(run_id)
        except (FailedPrecondition, NotFound):
            pass

    async def _maybe_finish(self, conn: Any, study_id: uuid.UUID) -> None:
        study = await self._store.get(conn, study_id=study_id)
        if study.state != STUDY_RUNNING or not (why := self._exhausted(study)):
            return
        # Out of time or failures: trials sampled ahead are not needed (those within max_trials are).
        if why != "max_trials" and await self._store.drop_unstarted(conn, study_id):
            self._forget(study_id)
            study = await self._store.get(conn, study_id=study_id)
        if study.counts.get(RUNNING, 0) + study.counts.get(WAITING, 0) == 0:
            await self._store.set_state(conn, study_id, FINISHED)
            await self._end_study_run(study, RunStatus.FINISHED)

    async def _owned(self, conn: Any, trial_id: uuid.UUID, worker: str) -> tuple[TrialRow, StudyRow]:
        trial = await self._store.trial(conn, trial_id)
        study = await self._store.get(conn, study_id=trial.study_id, lock=True)
        trial = await self._store.trial(conn, trial_id)
        if trial.state == RUNNING and worker and trial.worker != worker:
            raise Aborted(f"trial {trial.number} is leased by {trial.worker!r}, not {worker!r}")
        return trial, study

    async def heartbeat(self, trial_id: uuid.UUID, worker: str) -> tuple[datetime | None, bool]:
        study_id = await self._store.study_of(trial_id)
        async with self._lock(study_id), self._store.pool.acquire() as conn, conn.transaction():
            trial, study = await self._owned(conn, trial_id, worker)
            if trial.state != RUNNING or study.state in (STOPPED, FINISHED):
                return None, True
            expires = await self._store.extend(conn, trial_id, self.lease_s)
        if trial.run_id is not None:
            await self._heartbeat_run(trial.run_id)
        return expires, False

    async def report(self, trial_id: uuid.UUID, worker: str, step: int, value: float) -> bool:
        if not math.isfinite(value):
            raise InvalidArgument("an intermediate value must be a finite number")
        study_id = await self._store.study_of(trial_id)
        async with self._lock(study_id):
            try:
                async with self._store.pool.acquire() as conn, conn.transaction():
                    trial, study = await self._owned(conn, trial_id, worker)
                    if trial.state != RUNNING:
                        raise FailedPrecondition(f"trial {trial.number} is not running: nothing to report")
                    if len(study.objectives) > 1:
                        raise FailedPrecondition("intermediate values need a single-objective study")
                    engine = await self._engine(study)
                    if not await self._store.add_intermediate(conn, trial_id, step, value):
                        return False
                    return await asyncio.to_thread(engine.report, trial.number, step, value)
            except BaseException:
                self._forget(study_id)
                raise

    async def finish(self, trial_id: uuid.UUID, worker: str, state: int, values: Sequence[float]) -> TrialRow:
        """COMPLETE (with one value per objective), PRUNED or FAIL. Finishing a trial again in the
        same way is a no-op (idempotent); differently, FAILED_PRECONDITION."""
        study_id = await self._store.study_of(trial_id)
        async with self._lock(study_id):
            try:
                trial = await self._finish(trial_id, worker, state, list(values))
            except BaseException:
                self._forget(study_id)
                raise
        self.refill_soon(study_id)
        return trial

    async def _finish(self, trial_id: uuid.UUID, worker: str, state: int, values: list[float]) -> TrialRow:
        async with self._store.pool.acquire() as conn, conn.transaction():
            trial, study = await self._owned(conn, trial_id, worker)
            if state == COMPLETE and (len(values) != len(study.objectives) or not all(map(math.isfinite, values))):
                raise InvalidArgument(f"give {len(study.objectives)} finite value(s), one per objective")
            if trial.state in ENDED:
                if trial.state == state and (state != COMPLETE or trial.values == values):
                    return trial
                raise FailedPrecondition(f"trial {trial.number} has ended already")
            if state == PRUNED:
                last = await self._store.last_intermediate(conn, trial_id)
                values = [last] if last is not None else []
            engine = await self._engine(study)
            await self._store.end_trial(conn, trial_id, state, values or None)
            engine.tell(trial.number, state, values)
            await self._maybe_finish(conn, study.id)
        await self._end_run(trial, RunStatus.FINISHED if state in (COMPLETE, PRUNED) else RunStatus.FAILED)
        return await self._store.trial(self._store.pool, trial_id)

    async def _end_run(self, trial: TrialRow, status: RunStatus) -> None:
        if trial.run_id is not None:
            try:
                await self._runs.end(trial.run_id, status)
            except (FailedPrecondition, NotFound):
                pass

    async def best(self, study_id: uuid.UUID) -> list[TrialRow]:
        study = await self._store.get(study_id=study_id)
        async with self._lock(study_id):
            numbers = (await self._engine(study)).best()
        found: list[TrialRow] = await self._store.trials_by_number(study_id, numbers)
        return found
