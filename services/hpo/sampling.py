"""Sampling: each study's Optuna engine — an in-memory mirror of its trials in PostgreSQL,
rebuilt from them on first use after a (re)start or a failure — with the asyncio lock that
serializes a study's calls in this process, and the ready queue kept `parallelism` trials
ahead of the workers so that handing one out needs no sampler call."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from . import algorithms
from .domain import StudyRow, TrialRow, directions, to_sample_ahead
from .engine import Engine, StudySpec
from .queue import ReadyQueue
from .space import parse
from .store import StudyStore, StudyTx

log = logging.getLogger(__name__)


def check_study(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Raise InvalidArgument unless Optuna can run a study of these fields (a new study's
    columns): the space parses, sampler and pruner fit it, and Optuna accepts their options.
    Returns the fields to store: a grid study's max_trials is at most its grid's size (each
    point runs once). Blocking (a grid is built): call it off the event loop."""
    space = parse(fields["search_space"])
    bound = algorithms.check(fields["sampler"], fields["pruner"], len(fields["objectives"]), space)
    Engine(StudySpec(directions(fields["objectives"]), space, fields["sampler"], fields["sampler_options"],
                     fields["pruner"], fields["pruner_options"], fields["seed"]), [])
    if bound is not None and not 0 < fields["max_trials"] <= bound:
        return {**fields, "max_trials": bound}
    return dict(fields)


def spec_of(study: StudyRow) -> StudySpec:
    return StudySpec(directions(study.objectives), parse(study.search_space), study.sampler, study.sampler_options,
                     study.pruner, study.pruner_options, study.seed)


class Sampling:
    def __init__(self, store: StudyStore, queue: ReadyQueue) -> None:
        self._store = store
        self._queue = queue
        self._engines: dict[uuid.UUID, Engine] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._refills: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._refill_again: set[uuid.UUID] = set()

    @asynccontextmanager
    async def serialized(self, study_id: uuid.UUID, *, forget_on_error: bool = True) -> AsyncIterator[None]:
        """One call at a time per study in this process (the engine is not thread-safe, and
        calls would wait for the study's row lock anyway). With `forget_on_error`, a failure
        inside drops the engine: it may have been told what PostgreSQL then rolled back."""
        async with self._locks.setdefault(study_id, asyncio.Lock()):
            try:
                yield
            except BaseException:
                if forget_on_error:
                    self.forget(study_id)
                raise

    async def engine(self, study: StudyRow, tx: StudyTx | None = None) -> Engine:
        """The study's engine (call it while `serialized`), rebuilt from its trials as `tx`
        (else the pool) reads them when this process has none."""
        if study.id not in self._engines:
            history = await (tx.history() if tx is not None else self._store.history(study.id))
            self._engines[study.id] = await asyncio.to_thread(Engine, spec_of(study), history)
        return self._engines[study.id]

    def forget_all(self) -> None:
        """Stepping down (the controller lease lost): every engine dropped, to be rebuilt from
        PostgreSQL when next needed, and the refills in flight cancelled."""
        self._engines.clear()
        for task in self._refills.values():
            task.cancel()
        self._refills.clear()
        self._refill_again.clear()

    def forget(self, study_id: uuid.UUID) -> None:
        """Drop the mirror after a failure between PostgreSQL and Optuna: rebuilt on next use."""
        self._engines.pop(study_id, None)

    async def sample(self, tx: StudyTx, engine: Engine, count: int) -> list[TrialRow]:
        """`count` new trials from the study's sampler, stored WAITING."""
        number = await tx.next_number()
        return [await tx.insert_trial(n, await asyncio.to_thread(engine.ask, n)) for n in range(number, number + count)]

    async def take_ready(self, study_id: uuid.UUID, worker: str, lease_s: float) -> TrialRow | None:
        """A trial from the ready queue, leased to `worker` (no sampler call, no study lock);
        None when the queue has none that can still be claimed, or Redis is down."""
        while (entry := await self._queue.pop(study_id, worker)) is not None:
            entry_id, trial_id = entry
            try:
                trial = await self._store.claim(study_id, trial_id, worker, lease_s)
            finally:
                await self._queue.done(study_id, entry_id)
            if trial is not None:
                self.refill_soon(study_id)  # sample its replacement while it trains
                return trial
        return None

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
        async with self.serialized(study_id), self._store.locked(study_id) as tx:
            if (missing := to_sample_ahead(tx.study, datetime.now(UTC))) <= 0:
                return
            added = await self.sample(tx, await self.engine(tx.study, tx), missing)
        await self._queue.push(study_id, [t.id for t in added])

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
