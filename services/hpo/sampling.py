"""Sampling: each study's Optuna engine — an in-memory mirror of its trials in PostgreSQL,
rebuilt from them on first use after a (re)start or a failure — with the asyncio lock that
serializes a study's sampler calls in this process, and the ready queue kept a few trials ahead
of the workers so that handing one out needs no sampler call.

Nothing on a worker's path waits for the sampler, whose cost grows with the study's trials:
results reach the engine as pending tells, applied before its next use; sampling ahead holds no
PostgreSQL lock while it samples, only while it stores what it sampled; and a trial sampled ahead
that has missed too many results since (`domain.stale`) is deleted and sampled again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from trackd_platform.errors import InvalidArgument

from . import algorithms
from .domain import StudyRow, StudyState, TrialRow, TrialState, directions, stale, to_sample_ahead
from .engine import Engine, StudySpec
from .queue import ReadyQueue
from .space import parse
from .store import StudyStore, StudyTx

log = logging.getLogger(__name__)

Result = tuple[int, TrialState, list[float]]  # a trial's number, how it ended, its values
# Sampling ahead after a hand-out or a result starts this much later, once the call has been
# answered: the sampler's thread would otherwise compete for the GIL with the call in flight.
AFTER_CALL_S = 0.1


def _tell_all(engine: Engine, results: Sequence[Result]) -> None:
    for number, state, values in results:
        engine.tell(number, state, values)


def check_study(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Raise InvalidArgument unless Optuna can run a study of these fields (a new study's
    columns): the space parses, sampler and pruner fit it, and Optuna accepts their options.
    Returns the fields to store: a grid study's max_trials is at most its grid's size (each
    point runs once). Blocking (a grid is built): call it off the event loop."""
    by_run = bool(fields.get("define_by_run"))
    space = parse(fields["search_space"], allow_empty=by_run)
    if by_run and fields["sampler"] == "grid":
        raise InvalidArgument("the grid sampler needs its grid: declare a search space (define-by-run cannot "
                              "enumerate params it has not seen)")
    bound = algorithms.check(fields["sampler"], fields["pruner"], len(fields["objectives"]), space)
    Engine(StudySpec(directions(fields["objectives"]), space, fields["sampler"], fields["sampler_options"],
                     fields["pruner"], fields["pruner_options"], fields["seed"], by_run), [])
    if bound is not None and not 0 < fields["max_trials"] <= bound:
        return {**fields, "max_trials": bound}
    return dict(fields)


def spec_of(study: StudyRow) -> StudySpec:
    return StudySpec(directions(study.objectives), parse(study.search_space, allow_empty=study.define_by_run),
                     study.sampler, study.sampler_options, study.pruner, study.pruner_options, study.seed,
                     study.define_by_run)


class Sampling:
    def __init__(self, store: StudyStore, queue: ReadyQueue) -> None:
        self._store = store
        self._queue = queue
        self._engines: dict[uuid.UUID, Engine] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._refills: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._refill_again: set[uuid.UUID] = set()
        self._pending: dict[uuid.UUID, list[Result]] = {}  # stored, not yet told to the engine
        # trials this process sampled ahead, still waiting: id → (number, engine.results then)
        self._ahead: dict[uuid.UUID, dict[uuid.UUID, tuple[int, int]]] = {}
        self._acks: set[asyncio.Task[Any]] = set()  # queue entries being acknowledged after a hand-out

    @asynccontextmanager
    async def serialized(self, study_id: uuid.UUID, *, forget_on_error: bool = True) -> AsyncIterator[None]:
        """One engine user at a time per study in this process (the engine is not thread-safe).
        With `forget_on_error`, a failure inside drops the engine: it may have been told what
        PostgreSQL then rolled back."""
        async with self._locks.setdefault(study_id, asyncio.Lock()):
            try:
                yield
            except BaseException:
                if forget_on_error:
                    self.forget(study_id)
                raise

    async def engine(self, study: StudyRow, tx: StudyTx | None = None) -> Engine:
        """The study's engine (call it while `serialized`), rebuilt from its trials as `tx`
        (else the pool) reads them when this process has none, and told the pending results."""
        if study.id not in self._engines:
            history = await (tx.history() if tx is not None else self._store.history(study.id))
            self._engines[study.id] = await asyncio.to_thread(Engine, spec_of(study), history)
        engine = self._engines[study.id]
        if pending := self._pending.pop(study.id, None):
            await asyncio.to_thread(_tell_all, engine, pending)
        return engine

    def told(self, study_id: uuid.UUID, number: int, state: TrialState, values: Sequence[float]) -> None:
        """A trial ended (stored and committed): the engine learns it before its next use, so
        ending a trial never waits for a sampler call in flight. Telling a trial the engine
        already has as ended (rebuilt since) is a no-op."""
        self._pending.setdefault(study_id, []).append((number, state, list(values)))

    def forget_all(self) -> None:
        """Stepping down (the controller lease lost): every engine dropped, to be rebuilt from
        PostgreSQL when next needed, and the refills in flight cancelled."""
        self._engines.clear()
        self._pending.clear()
        self._ahead.clear()
        for task in self._refills.values():
            task.cancel()
        self._refills.clear()
        self._refill_again.clear()

    def forget(self, study_id: uuid.UUID) -> None:
        """Drop the mirror after a failure between PostgreSQL and Optuna: rebuilt on next use,
        from what PostgreSQL has committed (which includes every pending result)."""
        self._engines.pop(study_id, None)
        self._pending.pop(study_id, None)
        self._ahead.pop(study_id, None)

    async def sample(self, tx: StudyTx, engine: Engine) -> TrialRow:
        """A new trial from the study's sampler, stored WAITING (sampled on demand, it has
        missed no result)."""
        number = await tx.next_number()
        return await tx.insert_trial(number, await asyncio.to_thread(engine.ask, number))

    async def take_ready(self, study_id: uuid.UUID, worker: str, lease_s: float,
                         run_id: uuid.UUID) -> TrialRow | None:
        """A trial from the ready queue, leased to `worker` with its run to be `run_id` (no
        sampler call, no study lock: one Redis read, one PostgreSQL statement); the trial the
        worker holds already if it does (the one read goes back to the queue); None when the
        queue has none that can still be claimed, or Redis is down."""
        while (entry := await self._queue.pop(study_id, worker)) is not None:
            entry_id, trial_id = entry
            try:
                trial = await self._store.claim(study_id, trial_id, worker, lease_s, run_id)
            finally:
                # off the call's path: an entry left behind is stale, skipped when read again
                self._in_background(self._queue.done(study_id, entry_id))
            if trial is not None and trial.id != trial_id:  # the worker's lease: its answer was lost
                self._in_background(self._queue.push(study_id, [trial_id]))  # (it still waits)
                return trial
            if trial is not None:
                self.taken(study_id, trial_id)
                self.refill_soon(study_id, after_s=AFTER_CALL_S)  # sample its replacement while it trains
                return trial
        return None

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    def refill_soon(self, study_id: uuid.UUID, *, after_s: float = 0.0) -> None:
        """Sample ahead for this study in the background (starting `after_s` from now): calls
        while one is pending or runs coalesce into one more pass."""
        if (task := self._refills.get(study_id)) is not None and not task.done():
            self._refill_again.add(study_id)
            return

        async def run() -> None:
            try:
                await asyncio.sleep(after_s)
                while True:
                    self._refill_again.discard(study_id)
                    await self._refill(study_id)
                    if study_id not in self._refill_again:
                        return
            except Exception:
                log.exception("sampling ahead for study %s failed; the reaper retries", study_id.hex)

        self._refills[study_id] = asyncio.create_task(run())

    async def _refill(self, study_id: uuid.UUID) -> None:
        """Keep `domain.ahead` trials ready (WAITING) besides those running: delete those
        sampled ahead that went stale, sample the missing ones (within the study's limits) with
        no PostgreSQL lock held, store them and append them to the ready queue. Every call that
        adds or deletes a study's trials holds `serialized`, so numbers read before sampling
        hold when storing; claims meanwhile only take from what waits."""
        async with self.serialized(study_id):
            study = await self._store.get(study_id=study_id)
            if study.state != StudyState.RUNNING:
                return
            engine = await self.engine(study)
            ahead = self._ahead.setdefault(study_id, {})
            # (a define-by-run trial is sampled as it suggests: nothing of it goes stale while it waits)
            stale_ids = [] if study.define_by_run else [
                i for i, (_, seen) in ahead.items() if stale(study, engine.results - seen)]
            if stale_ids:
                dropped = set(await self._store.drop_waiting(study_id, stale_ids))
                for number in dropped:
                    engine.discard(number)
                for trial_id, (number, _) in list(ahead.items()):
                    if trial_id in stale_ids or number in dropped:
                        del ahead[trial_id]  # deleted (or, if not, left as it is)
                study = await self._store.get(study_id=study_id)
            if (missing := to_sample_ahead(study, datetime.now(UTC))) <= 0:
                return
            first = await self._store.next_number(study_id)
            sampled = [(n, await asyncio.to_thread(engine.ask, n)) for n in range(first, first + missing)]
            async with self._store.locked(study_id) as tx:
                room = to_sample_ahead(tx.study, datetime.now(UTC))  # less if a limit was reached meanwhile
                added = [await tx.insert_trial(n, params) for n, params in sampled[:room]]
            for number, _ in sampled[room:]:
                engine.discard(number)
            ahead.update({t.id: (t.number, engine.results) for t in added})
        await self._queue.push(study_id, [t.id for t in added])

    def taken(self, study_id: uuid.UUID, trial_id: uuid.UUID) -> None:
        """A trial sampled ahead went to a worker: it can no longer go stale."""
        self._ahead.get(study_id, {}).pop(trial_id, None)

    async def rebuild_queue(self, study_id: uuid.UUID, *, unless_in_step: bool = False) -> int:
        """Make the stream hold exactly the study's WAITING trials (after a start, a retry, or
        Redis losing entries); `unless_in_step`: only when it does not already. Returns how many
        trials wait."""
        waiting = await self._store.waiting_ids(study_id)
        if unless_in_step and (queued := await self._queue.trial_ids(study_id)) is not None \
                and set(queued) == set(waiting):
            return len(waiting)
        await self._queue.push(study_id, waiting, replace=True)
        return len(waiting)

    async def drop_queue(self, study_id: uuid.UUID) -> None:
        await self._queue.drop(study_id)

    async def recover(self) -> None:
        """After a (re)start: streams rebuilt from PostgreSQL, sampling ahead resumed."""
        for study_id, _ in await self._store.active_studies():
            await self.rebuild_queue(study_id)
            self.refill_soon(study_id)
