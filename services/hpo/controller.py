"""The HPO controller: studies' lifecycles, handing out trials under leases, pruning and
results. PostgreSQL is the record; each study's Optuna engine is an in-memory mirror rebuilt from
it on first use after a (re)start, so a SIGKILL loses nothing. Calls for one study are serialized
by an asyncio lock here and by the study's row lock in PostgreSQL. The rules are in `domain`,
sampling ahead in `sampling`, lost workers and exhausted studies in `leases`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trackd_platform.errors import AlreadyExists, InvalidArgument
from trackd_platform.run_records import RunStatus

from . import domain
from .domain import StudyRow, StudyState, TrialRow, TrialState
from .leases import Reaper
from .runs import RunsClient
from .sampling import AFTER_CALL_S, Sampling, check_study, spec_of
from .space import parse_param
from .store import StudyStore, StudyTx

HEADS_CACHED = 10_000  # studies whose name, experiment and run the controller keeps (oldest dropped)


@dataclass(frozen=True)
class Heartbeat:
    lease_expires: datetime | None
    should_stop: bool
    trial_ended: bool  # with should_stop: the trial ended (its process may be finishing), not stopped


@dataclass(frozen=True)
class Acquired:
    trial: TrialRow | None
    study: StudyRow


class Controller:
    def __init__(self, store: StudyStore, runs: RunsClient, sampling: Sampling, reaper: Reaper, *,
                 lease_s: float) -> None:
        self._store = store
        self._runs = runs  # trials are runs, started and ended by the run service
        self._sampling = sampling
        self._reaper = reaper
        self.lease_s = lease_s
        # what a trial's run is started with: the study's name, experiment and run never change
        self._heads: dict[uuid.UUID, StudyRow] = {}
        self._ending: set[asyncio.Task[None]] = set()  # runs being ended after the call's answer

    async def create(self, fields: dict[str, Any], *, experiment: str, project: str, paused: bool) -> StudyRow:
        # options Optuna refuses fail here, before anything is stored (off the loop: a grid is built)
        fields = await asyncio.to_thread(check_study, fields)
        run = await self._runs.start_study_run(fields["name"], project=project, experiment=experiment)
        try:
            study_id = await self._store.create({**fields, "experiment_id": run.experiment_id, "run_id": run.id,
                                                 "state": StudyState.PAUSED if paused else StudyState.RUNNING})
        except Exception:
            await self._runs.end(run.id, RunStatus.KILLED)
            raise
        if not paused:
            async with self._store.locked(study_id) as tx:
                await tx.set_state(StudyState.RUNNING)  # sets started_at
            self._sampling.refill_soon(study_id)
        return await self._store.get(study_id=study_id)

    async def transition(self, study_id: uuid.UUID, target: StudyState) -> StudyRow:
        async with self._sampling.serialized(study_id, forget_on_error=False), self._store.locked(study_id) as tx:
            domain.check_study_move(tx.study, target)
            await tx.set_state(target)
            if target == StudyState.STOPPED and await tx.drop_unstarted():
                self._sampling.forget(study_id)
        if target == StudyState.STOPPED:
            await self._sampling.drop_queue(study_id)
            await self._runs.end_if_running(tx.study.run_id, RunStatus.KILLED)
        elif target == StudyState.RUNNING:
            # resumed: the mirror is rebuilt from PostgreSQL (whatever was written while it was paused)
            async with self._sampling.serialized(study_id):
                self._sampling.forget(study_id)
            await self._sampling.rebuild_queue(study_id)
            self._sampling.refill_soon(study_id)
        return await self._store.get(study_id=study_id)

    async def enqueue(self, study_id: uuid.UUID, params: dict[str, Any]) -> TrialRow:
        """A WAITING trial with these params (the space's others sampled), handed out before any
        sampled trial: those sampled ahead that no worker started are dropped (sampled again
        after it, as they were sampled without it). InvalidArgument for params outside the
        space; FailedPrecondition when the study ended or reached a limit."""
        async with self._sampling.serialized(study_id), self._store.locked(study_id) as tx:
            space = spec_of(tx.study).space
            known = {p.name for p in space.params}
            # define-by-run: params not suggested yet are kept until a trial suggests them
            space.check_params({k: v for k, v in params.items() if k in known or not tx.study.define_by_run})
            if tx.study.sampler == "grid" and (missing := {p.name for p in space.params} - set(params)):
                names = ", ".join(sorted(missing))
                raise InvalidArgument(f"a grid study's enqueued trial is a grid point: give {names} too")
            if await tx.drop_unstarted(keep_enqueued=True):
                self._sampling.forget(study_id)
                await tx.refresh()
            domain.check_enqueue(tx.study, datetime.now(UTC))
            engine = await self._sampling.engine(tx.study, tx)
            number = await tx.next_number()
            params = await asyncio.to_thread(engine.ask_enqueued, number, params)
            trial = await tx.insert_trial(number, params, enqueued=True)
        if tx.study.state == StudyState.RUNNING:
            await self._sampling.rebuild_queue(study_id)  # enqueued trials first
            self._sampling.refill_soon(study_id)
        return trial

    async def acquire(self, study_id: uuid.UUID, worker: str) -> Acquired:
        """A trial to run: the one already leased to this worker (its answer was lost), else the
        next from the ready queue (sampled ahead: no sampler call, no study lock), else — queue
        empty or Redis down — from PostgreSQL under the study lock, sampling if none waits."""
        if not worker:
            raise InvalidArgument("worker names who asks (e.g. host:pid): it is needed to keep the lease")
        run_id = uuid.uuid4()  # the run of the trial claimed now: its id is stored with the claim
        trial = await self._sampling.take_ready(study_id, worker, self.lease_s, run_id)
        if trial is None:
            async with self._sampling.serialized(study_id):
                trial = await self._acquire(study_id, worker, run_id)
        if trial is None:
            return Acquired(trial, await self._store.get(study_id=study_id))
        lost_answer = trial.run_id != run_id  # the worker's lease, whose run may or may not have started
        if trial.run_id is None:  # (claimed before runs were given their id at the claim)
            trial = await self._store.set_trial_run(trial.id, run_id)
        # The trial's run exists before the answer (the worker logs to it at once); the study is
        # read for the answer meanwhile. A failure here leaves the trial leased with its run not
        # started: the worker's next AcquireTrial gets it again and starts its run.
        if (head := self._heads.get(study_id)) is None:
            head = self._heads[study_id] = await self._store.get(study_id=study_id)
            if len(self._heads) > HEADS_CACHED:
                del self._heads[next(iter(self._heads))]
        study, _ = await asyncio.gather(self._store.get(study_id=study_id), self._start_run(head, trial, lost_answer))
        return Acquired(trial, study)

    async def _start_run(self, head: StudyRow, trial: TrialRow, lost_answer: bool) -> None:
        """Start the trial's run under its id; after a lost answer it may have started already."""
        try:
            await self._runs.start_trial_run(head, trial)
        except AlreadyExists:
            if not lost_answer:
                raise

    async def _acquire(self, study_id: uuid.UUID, worker: str, run_id: uuid.UUID) -> TrialRow | None:
        async with self._store.locked(study_id) as tx:
            if not domain.open_to_workers(tx.study):
                return None
            engine = await self._sampling.engine(tx.study, tx)
            if await self._reaper.reap(tx, engine):
                await tx.refresh()
            if trial := await tx.leased_to(worker):
                return trial
            if not domain.may_hand_out(tx.study):
                return None
            # Waiting trials the queue did not hand out (Redis down or behind); the fast path may
            # take some meanwhile, or fill the study: then there is nothing for this worker yet.
            if waiting := await tx.waiting_ids():
                for trial_id in waiting:
                    if trial := await tx.claim(trial_id, worker, self.lease_s, run_id):
                        self._sampling.taken(study_id, trial_id)
                        return trial
                return None
            if domain.exhausted(tx.study, datetime.now(UTC)):
                return None
            trial = await self._sampling.sample(tx, engine)  # on demand: the queue ran short
            return await tx.claim(trial.id, worker, self.lease_s, run_id)

    async def heartbeat(self, trial_id: uuid.UUID, worker: str) -> Heartbeat:
        """The lease extended (and its run kept alive), or why the trial should stop."""
        async with self._store.locked_by_trial(trial_id) as tx:  # no engine: it does not wait for the sampler
            domain.check_lease(trial := await tx.trial(trial_id), worker)
            if trial.state != TrialState.RUNNING or tx.study.state.ended:
                return Heartbeat(None, should_stop=True, trial_ended=trial.state != TrialState.RUNNING)
            expires = await tx.extend(trial_id, self.lease_s)
        await self._runs.heartbeat_if_running(trial.run_id)
        return Heartbeat(expires, should_stop=False, trial_ended=False)

    async def report(self, trial_id: uuid.UUID, worker: str, step: int, value: float) -> bool:
        """Record an intermediate value; True when the pruner says stop."""
        domain.check_value(value)
        study_id = await self._store.study_of(trial_id)
        async with self._sampling.serialized(study_id), self._store.locked(study_id) as tx:
            domain.check_lease(trial := await tx.trial(trial_id), worker)
            domain.check_report(trial, tx.study)
            engine = await self._sampling.engine(tx.study, tx)
            if not await tx.add_intermediate(trial_id, step, value):
                return False
            return await asyncio.to_thread(engine.report, trial.number, step, value)

    async def finish(self, trial_id: uuid.UUID, worker: str, state: TrialState, values: Sequence[float],
                     reason: str = "") -> TrialRow:
        """COMPLETE (with one value per objective), PRUNED or FAIL (with its `reason`). Finishing
        a trial again in the same way is a no-op (idempotent); differently, FAILED_PRECONDITION."""
        # No engine here (it learns the result from `told`), so this never waits for the sampler.
        async with self._store.locked_by_trial(trial_id) as tx:
            domain.check_lease(trial := await tx.trial(trial_id), worker)
            if not (repeat := domain.check_finish(trial, tx.study, state, values)):
                trial, values = await self._end_trial(tx, trial, state, values, domain.fail_reason(reason))
        study_id = tx.study.id
        if not repeat:
            self._sampling.told(study_id, trial.number, state, values)
            self._end_run_soon(trial)
        self._sampling.refill_soon(study_id, after_s=AFTER_CALL_S)
        return trial

    async def _end_trial(self, tx: StudyTx, trial: TrialRow, state: TrialState, values: Sequence[float],
                         reason: str) -> tuple[TrialRow, list[float]]:
        """Store how the trial ended (its run marked to be ended: `_end_run_soon`); returns the
        trial and its values (a pruned one's: the last it reported)."""
        if state == TrialState.PRUNED:
            last = await tx.last_intermediate(trial.id)
            values = [last] if last is not None else []
        trial = await tx.end_trial(trial.id, state, values or None, reason if state == TrialState.FAIL else "",
                                   run_ends_later=True)
        await self._reaper.finish_if_done(tx)
        return trial, list(values)

    def _end_run_soon(self, trial: TrialRow) -> None:
        """End the ended trial's run through the run service once the call has answered (a gRPC
        hop and a run service transaction off the worker's path), `AFTER_CALL_S` later: the
        worker's next AcquireTrial, which starts a run, usually follows at once and goes first.
        PostgreSQL keeps the trial marked until it is done, so if this fails, or the controller
        dies first, the reaper ends the run (`Reaper.end_runs`)."""
        async def end_later() -> None:
            await asyncio.sleep(AFTER_CALL_S)
            await self._reaper.end_run(trial)

        task = asyncio.create_task(end_later())
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def suggest(self, trial_id: uuid.UUID, worker: str, name: str, spec: dict[str, Any]) -> Any:
        """The value of param `name` (distribution `spec`, a search space entry) of a running
        trial: the one it has, else — define-by-run — sampled by the study's sampler, the
        distribution joining the study's space if new. InvalidArgument when `spec` differs from
        the distribution the study has for `name` or is not one; FailedPrecondition when the
        trial is not running, or (declared space) has no value for it. Define-by-run, the value
        is also logged on the trial's run (again when asked again: a retry after the run service
        failed), as a declared space's params are when the run starts."""
        param = parse_param(name, spec)
        study_id = await self._store.study_of(trial_id)
        async with self._sampling.serialized(study_id), self._store.locked(study_id) as tx:
            domain.check_lease(trial := await tx.trial(trial_id), worker)
            known = {p.name: p for p in spec_of(tx.study).space.params}
            domain.check_suggest(trial, tx.study, param, known.get(name))
            if name in trial.params:
                value = trial.params[name]
            else:
                if name not in known:
                    domain.check_space_size(len(known))
                    await tx.learn_param(name, param.spec())
                engine = await self._sampling.engine(tx.study, tx)
                value = await asyncio.to_thread(engine.suggest, trial.number, param)
                await tx.set_param(trial, name, value)
        if tx.study.define_by_run:
            await self._runs.log_params_if_running(trial.run_id, {name: str(value)})
        return value

    async def best(self, study_id: uuid.UUID) -> list[TrialRow]:
        """The best trial, or the Pareto front with several objectives."""
        study = await self._store.get(study_id=study_id)
        async with self._sampling.serialized(study_id, forget_on_error=False):
            numbers = (await self._sampling.engine(study)).best()
        return await self._store.trials_by_number(study_id, numbers)
