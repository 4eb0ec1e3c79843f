"""PostgreSQL access for the hpo service: studies, trials, intermediate values. Every trial
change happens in a transaction holding the study's row lock — `async with store.locked(id) as
tx`, whose methods are the queries made under it — so trial numbers, counts and leases stay
consistent whichever replica or restart serves the call. `StudyStore`'s own methods read (or
make one self-contained change) outside any study lock."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from trackd_platform.errors import AlreadyExists, NotFound

from .domain import StudyRow, StudyState, TrialRow, TrialState
from .engine import StoredTrial

_WAITING, _RUNNING = TrialState.WAITING, TrialState.RUNNING


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _study(row: asyncpg.Record) -> StudyRow:
    # counts (one per state, in state order) are kept by a trigger on trials (migration 0015)
    counts = {s: n for s, n in zip(TrialState, row["counts"] or [], strict=False) if n}
    return StudyRow(
        id=row["id"], name=row["name"], experiment_id=row["experiment_id"], run_id=row["run_id"],
        objectives=_json(row["objectives"]), search_space=_json(row["search_space"]), sampler=row["sampler"],
        sampler_options=_json(row["sampler_options"]), pruner=row["pruner"],
        pruner_options=_json(row["pruner_options"]),
        max_trials=row["max_trials"], max_duration_s=row["max_duration_s"], parallelism=row["parallelism"],
        max_failed_trials=row["max_failed_trials"], retries_per_trial=row["retries_per_trial"], seed=row["seed"],
        state=StudyState(row["state"]), created_at=row["created_at"], started_at=row["started_at"], counts=counts,
        define_by_run=row["define_by_run"])


def _trial(row: asyncpg.Record) -> TrialRow:
    return TrialRow(
        id=row["id"], study_id=row["study_id"], number=row["number"], state=TrialState(row["state"]),
        params=_json(row["params"]), values=list(row["objective_values"]) if row["objective_values"] else None,
        run_id=row["run_id"], attempt=row["attempt"], worker=row["worker"], lease_expires=row["lease_expires"],
        started_at=row["started_at"], ended_at=row["ended_at"], fail_reason=row["fail_reason"])


# Queries made both under a study's lock (on its transaction's connection) and outside (on the
# pool): `db` is an asyncpg Connection or Pool.

async def _get_study(db: Any, *, study_id: uuid.UUID | None = None, name: str = "", lock: bool = False) -> StudyRow:
    where, key = ("id = $1", study_id) if study_id is not None else ("name = $1", name)
    row = await db.fetchrow(f"SELECT s.*, c.counts FROM studies s LEFT JOIN study_trial_counts c ON c.study_id = s.id "
                            f"WHERE s.{where}" + (" FOR UPDATE OF s" if lock else ""), key)
    if row is None:
        raise NotFound(f"study {study_id.hex if study_id else repr(name)} does not exist: see `trackd hpo list`")
    return _study(row)


async def _get_trial(db: Any, trial_id: uuid.UUID) -> TrialRow:
    row = await db.fetchrow("SELECT * FROM trials WHERE id = $1", trial_id)
    if row is None:
        raise NotFound(f"trial {trial_id.hex} does not exist")
    return _trial(row)


async def _leased_to(db: Any, study_id: uuid.UUID, worker: str) -> TrialRow | None:
    row = await db.fetchrow(
        "SELECT * FROM trials WHERE study_id = $1 AND state = $2 AND worker = $3 ORDER BY number LIMIT 1",
        study_id, _RUNNING, worker)
    return _trial(row) if row else None


async def _waiting_ids(db: Any, study_id: uuid.UUID) -> list[uuid.UUID]:
    """In the order they are handed out: enqueued trials first (as enqueued), then by number."""
    rows = await db.fetch("SELECT id FROM trials WHERE study_id = $1 AND state = $2 ORDER BY NOT enqueued, number",
                          study_id, _WAITING)
    return [r["id"] for r in rows]


async def _history(db: Any, study_id: uuid.UUID) -> list[StoredTrial]:
    rows = await db.fetch("SELECT * FROM trials WHERE study_id = $1 ORDER BY number", study_id)
    reports = await db.fetch(
        """SELECT i.trial_id, i.step, i.value FROM trial_intermediates i JOIN trials t ON t.id = i.trial_id
           WHERE t.study_id = $1""", study_id)
    # decoding every trial's params is O(trials) (~0.1 ms each): off the event loop
    return await asyncio.to_thread(_stored_trials, rows, reports)


def _stored_trials(rows: Sequence[asyncpg.Record], reports: Sequence[asyncpg.Record]) -> list[StoredTrial]:
    by_trial: dict[uuid.UUID, dict[int, float]] = {}
    for r in reports:
        by_trial.setdefault(r["trial_id"], {})[r["step"]] = r["value"]
    return [StoredTrial(r["number"], TrialState(r["state"]), _json(r["params"]),
                        list(r["objective_values"]) if r["objective_values"] else None, by_trial.get(r["id"], {}))
            for r in rows]


async def _claim(db: Any, study_id: uuid.UUID, trial_id: uuid.UUID, worker: str, lease_s: float,
                 run_id: uuid.UUID | None = None) -> TrialRow | None:
    # One statement (one round trip, its own transaction on the pool): the study row is locked
    # first (a materialized CTE), then the trial updated (and the counts the trigger keeps): the
    # lock order of `StudyStore.locked`, so a claim and a locked transaction never deadlock. A
    # trial claimed meanwhile by a claim this one waited for no longer matches (re-checked after
    # the wait), and the counts read are those of the claims committed before the wait (as before).
    # A worker holding a lease in the study claims nothing and gets that trial back instead.
    rows = await db.fetch(
        """WITH mine AS (SELECT * FROM trials WHERE study_id = $6 AND state = $2 AND worker = $3
                         ORDER BY number LIMIT 1),
                s AS MATERIALIZED (
               SELECT s.id FROM studies s LEFT JOIN study_trial_counts c ON c.study_id = s.id
               WHERE s.id = $6 AND s.state = $7 AND coalesce(c.counts[$2], 0) < s.parallelism
                 AND NOT EXISTS (SELECT 1 FROM mine)
               FOR NO KEY UPDATE OF s),
                claimed AS (
               UPDATE trials t SET state = $2, worker = $3, lease_expires = now() + make_interval(secs => $4::float8),
                                   started_at = coalesce(t.started_at, now()), run_id = $8
               FROM s WHERE t.id = $1 AND t.study_id = s.id AND t.state = $5
               RETURNING t.*)
           SELECT * FROM claimed UNION ALL SELECT * FROM mine""",
        trial_id, _RUNNING, worker, lease_s, _WAITING, study_id, StudyState.RUNNING, run_id)
    return _trial(rows[0]) if rows else None


class StudyTx:
    """One study's transaction, holding its row lock: `study` as read when the lock was taken
    (`refresh()` reads it again). Trial ids given to its methods are the study's."""

    def __init__(self, conn: Any, study: StudyRow) -> None:
        self._conn = conn
        self.study = study

    async def refresh(self) -> StudyRow:
        self.study = await _get_study(self._conn, study_id=self.study.id)
        return self.study

    async def set_state(self, state: StudyState) -> None:
        """The first start also sets `started_at` (max_duration counts from it)."""
        await self._conn.execute(
            "UPDATE studies SET state = $2::smallint, started_at = CASE WHEN $2::smallint = $3::smallint "
            "THEN coalesce(started_at, now()) ELSE started_at END WHERE id = $1",
            self.study.id, state, StudyState.RUNNING)

    async def history(self) -> list[StoredTrial]:
        return await _history(self._conn, self.study.id)

    async def trial(self, trial_id: uuid.UUID) -> TrialRow:
        return await _get_trial(self._conn, trial_id)

    async def leased_to(self, worker: str) -> TrialRow | None:
        return await _leased_to(self._conn, self.study.id, worker)

    async def waiting_ids(self) -> list[uuid.UUID]:
        return await _waiting_ids(self._conn, self.study.id)

    async def claim(self, trial_id: uuid.UUID, worker: str, lease_s: float,
                    run_id: uuid.UUID | None = None) -> TrialRow | None:
        """As `StudyStore.claim`, within this transaction."""
        return await _claim(self._conn, self.study.id, trial_id, worker, lease_s, run_id)

    async def next_number(self) -> int:
        return int(await self._conn.fetchval(
            "SELECT coalesce(max(number) + 1, 0) FROM trials WHERE study_id = $1", self.study.id))

    async def insert_trial(self, number: int, params: dict[str, Any], *, enqueued: bool = False) -> TrialRow:
        """A new WAITING trial (`enqueued`: its params were given, see `waiting_ids`)."""
        return _trial(await self._conn.fetchrow(
            "INSERT INTO trials (id, study_id, number, state, params, enqueued) VALUES ($1, $2, $3, $4, $5, $6) "
            "RETURNING *", uuid.uuid4(), self.study.id, number, _WAITING, json.dumps(params), enqueued))

    async def expired(self) -> list[TrialRow]:
        """Running trials whose lease has expired."""
        rows = await self._conn.fetch(
            "SELECT * FROM trials WHERE study_id = $1 AND state = $2 AND lease_expires < now() ORDER BY number",
            self.study.id, _RUNNING)
        return [_trial(r) for r in rows]

    async def requeue(self, trial_id: uuid.UUID) -> None:
        """Back to WAITING for another attempt (a new run is started when it is handed out)."""
        await self._conn.execute(
            """UPDATE trials SET state = $2, attempt = attempt + 1, worker = '', lease_expires = NULL, run_id = NULL
               WHERE id = $1""", trial_id, _WAITING)

    async def extend(self, trial_id: uuid.UUID, lease_s: float) -> datetime:
        """The trial's lease runs `lease_s` from now; returns when it expires."""
        expires: datetime = await self._conn.fetchval(
            "UPDATE trials SET lease_expires = now() + make_interval(secs => $2::float8) WHERE id = $1 "
            "RETURNING lease_expires", trial_id, lease_s)
        return expires

    async def add_intermediate(self, trial_id: uuid.UUID, step: int, value: float) -> bool:
        """False when this step was reported already (the first report stands, as in Optuna)."""
        status = await self._conn.execute(
            "INSERT INTO trial_intermediates (trial_id, step, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            trial_id, step, value)
        return bool(status.endswith(" 1"))

    async def last_intermediate(self, trial_id: uuid.UUID) -> float | None:
        value = await self._conn.fetchval(
            "SELECT value FROM trial_intermediates WHERE trial_id = $1 ORDER BY step DESC LIMIT 1", trial_id)
        return None if value is None else float(value)

    async def end_trial(self, trial_id: uuid.UUID, state: TrialState, values: Sequence[float] | None,
                        reason: str = "", *, run_ends_later: bool = False) -> TrialRow:
        """`reason`: why a FAIL failed (kept as given: see domain.fail_reason). `run_ends_later`:
        the trial's run (if it has one) is marked to be ended (`StudyStore.runs_to_end`).
        Returns the trial as stored."""
        return _trial(await self._conn.fetchrow(
            """UPDATE trials SET state = $2, objective_values = $3, ended_at = now(), lease_expires = NULL,
                                 fail_reason = $4, run_ending = $5 AND run_id IS NOT NULL
               WHERE id = $1 RETURNING *""",
            trial_id, state, list(values) if values is not None else None, reason, run_ends_later))

    # The two below write the whole JSON value as `create` and `insert_trial` do (and `_json`
    # reads): jsonb operators would not see into it.
    async def learn_param(self, name: str, spec: dict[str, Any]) -> None:
        """A define-by-run study's space gains a param (as first suggested)."""
        await self._conn.execute("UPDATE studies SET search_space = $2 WHERE id = $1", self.study.id,
                                 json.dumps({**self.study.search_space, name: spec}))

    async def set_param(self, trial: TrialRow, name: str, value: Any) -> None:
        """A value suggested for one of the trial's params (define-by-run)."""
        await self._conn.execute("UPDATE trials SET params = $2 WHERE id = $1", trial.id,
                                 json.dumps({**trial.params, name: value}))

    async def drop_waiting(self, trial_ids: Sequence[uuid.UUID]) -> list[int]:
        """Delete these trials (sampled ahead, gone stale) and every one numbered after them, if
        all of those still wait, never started and were not enqueued — so trial numbers stay
        without gaps (claims wait for the study row lock held here); returns the numbers
        deleted (none when some trial after them cannot go)."""
        rows = await self._conn.fetch(
            """WITH first AS (SELECT min(number) AS n FROM trials WHERE study_id = $1 AND id = ANY($2))
               DELETE FROM trials t USING first
               WHERE t.study_id = $1 AND t.number >= first.n
                 AND NOT EXISTS (SELECT 1 FROM trials o WHERE o.study_id = $1 AND o.number >= first.n
                                   AND NOT (o.state = $3 AND o.started_at IS NULL AND NOT o.enqueued))
               RETURNING t.number""", self.study.id, list(trial_ids), _WAITING)
        return [r["number"] for r in rows]

    async def drop_unstarted(self, *, keep_enqueued: bool = False) -> int:
        """Delete the trials sampled ahead that no worker ever started (the study ended before
        they were needed, or an enqueued trial goes first); retries waiting for a worker stay,
        and with `keep_enqueued` the enqueued ones. Returns how many."""
        status = await self._conn.execute(
            "DELETE FROM trials WHERE study_id = $1 AND state = $2 AND started_at IS NULL AND NOT (enqueued AND $3)",
            self.study.id, _WAITING, keep_enqueued)
        return int(status.split()[-1])


class StudyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def locked(self, study_id: uuid.UUID) -> AsyncIterator[StudyTx]:
        """A transaction holding the study's row lock (SELECT … FOR UPDATE): committed when the
        block ends, rolled back if it raises. NotFound for an unknown study."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield StudyTx(conn, await _get_study(conn, study_id=study_id, lock=True))

    @asynccontextmanager
    async def locked_by_trial(self, trial_id: uuid.UUID) -> AsyncIterator[StudyTx]:
        """`locked` for the study of this trial, found in the same statement that locks it;
        NotFound for an unknown trial."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT s.*, c.counts FROM studies s LEFT JOIN study_trial_counts c ON c.study_id = s.id
                   WHERE s.id = (SELECT study_id FROM trials WHERE id = $1) FOR UPDATE OF s""", trial_id)
            if row is None:
                raise NotFound(f"trial {trial_id.hex} does not exist")
            yield StudyTx(conn, _study(row))

    async def runs_to_end(self) -> list[TrialRow]:
        """Ended trials whose runs are still to be ended (`StudyTx.end_trial`'s `run_ends_later`)."""
        return [_trial(r) for r in await self._pool.fetch("SELECT * FROM trials WHERE run_ending")]

    async def run_ended(self, trial_id: uuid.UUID) -> None:
        """The trial's run has been ended: it is no longer among `runs_to_end`."""
        await self._pool.execute("UPDATE trials SET run_ending = false WHERE id = $1 AND run_ending", trial_id)

    async def drop_waiting(self, study_id: uuid.UUID, trial_ids: Sequence[uuid.UUID]) -> list[int]:
        """`StudyTx.drop_waiting` in a transaction of its own."""
        async with self.locked(study_id) as tx:
            return await tx.drop_waiting(trial_ids)

    async def next_number(self, study_id: uuid.UUID) -> int:
        """The number the study's next trial gets (the unique index on (study_id, number) finds
        the highest)."""
        return int(await self._pool.fetchval(
            "SELECT coalesce(max(number) + 1, 0) FROM trials WHERE study_id = $1", study_id))

    async def create(self, study: dict[str, Any]) -> uuid.UUID:
        """Insert a study (columns by name); AlreadyExists when its name is taken."""
        study_id = uuid.uuid4()
        columns = ["id", *study]
        values = [study_id, *(json.dumps(v) if isinstance(v, dict | list) else v for v in study.values())]
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        try:
            await self._pool.execute(f"INSERT INTO studies ({', '.join(columns)}) VALUES ({placeholders})", *values)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a study named {study['name']!r} exists already") from None
        return study_id

    async def get(self, *, study_id: uuid.UUID | None = None, name: str = "") -> StudyRow:
        """By id, else by name, with its trial counts; NotFound if there is none."""
        return await _get_study(self._pool, study_id=study_id, name=name)

    async def list_studies(self, *, limit: int, after: str | None) -> list[StudyRow]:
        """By name."""
        rows = await self._pool.fetch(
            """SELECT s.*, c.counts FROM studies s LEFT JOIN study_trial_counts c ON c.study_id = s.id
               WHERE $1::text IS NULL OR s.name > $1 ORDER BY s.name LIMIT $2""", after, limit)
        return [_study(r) for r in rows]

    async def trials(self, study_id: uuid.UUID, *, states: Sequence[int], limit: int, after: int) -> list[TrialRow]:
        """By number, after `after`; `states` (numbers as a request gives them) filters unless empty."""
        rows = await self._pool.fetch(
            """SELECT * FROM trials WHERE study_id = $1 AND number > $2
                 AND (cardinality($3::smallint[]) = 0 OR state = ANY($3)) ORDER BY number LIMIT $4""",
            study_id, after, list(states), limit)
        return [_trial(r) for r in rows]

    async def trials_by_number(self, study_id: uuid.UUID, numbers: Sequence[int]) -> list[TrialRow]:
        rows = await self._pool.fetch("SELECT * FROM trials WHERE study_id = $1 AND number = ANY($2) ORDER BY number",
                                      study_id, list(numbers))
        return [_trial(r) for r in rows]

    async def history(self, study_id: uuid.UUID) -> list[StoredTrial]:
        """Every trial with its intermediate values, for rebuilding the study's engine."""
        return await _history(self._pool, study_id)

    async def trial(self, trial_id: uuid.UUID) -> TrialRow:
        return await _get_trial(self._pool, trial_id)

    async def study_of(self, trial_id: uuid.UUID) -> uuid.UUID:
        study_id = await self._pool.fetchval("SELECT study_id FROM trials WHERE id = $1", trial_id)
        if study_id is None:
            raise NotFound(f"trial {trial_id.hex} does not exist")
        return uuid.UUID(str(study_id))

    async def leased_to(self, study_id: uuid.UUID, worker: str) -> TrialRow | None:
        """The running trial leased to `worker`, if any."""
        return await _leased_to(self._pool, study_id, worker)

    async def waiting_ids(self, study_id: uuid.UUID) -> list[uuid.UUID]:
        return await _waiting_ids(self._pool, study_id)

    async def claim(self, study_id: uuid.UUID, trial_id: uuid.UUID, worker: str, lease_s: float,
                    run_id: uuid.UUID | None = None) -> TrialRow | None:
        """Lease a WAITING trial to `worker` if its study runs and has fewer than `parallelism`
        trials running, its run to be `run_id` (started next: `RunsClient.start_trial_run`);
        None otherwise (taken by another worker, deleted, study paused or full). A worker that
        holds a lease in the study already gets that trial (another id) and claims nothing.
        Claims of one study are serialized by its row lock, which the sampler does not hold
        while it samples (only to store what it sampled)."""
        return await _claim(self._pool, study_id, trial_id, worker, lease_s, run_id)

    async def set_trial_run(self, trial_id: uuid.UUID, run_id: uuid.UUID | None) -> TrialRow:
        return _trial(await self._pool.fetchrow("UPDATE trials SET run_id = $2 WHERE id = $1 RETURNING *",
                                                trial_id, run_id))

    async def running_trial_of_run(self, run_id: uuid.UUID) -> uuid.UUID | None:
        """The running trial whose run this is, if any."""
        found = await self._pool.fetchval("SELECT id FROM trials WHERE run_id = $1 AND state = $2", run_id, _RUNNING)
        return None if found is None else uuid.UUID(str(found))

    async def renew_all_leases(self, lease_s: float) -> int:
        """After a controller (re)start: workers could not heartbeat while it was down, so every
        running trial gets a full lease again instead of being reaped for the outage."""
        status = await self._pool.execute(
            """UPDATE trials SET lease_expires = greatest(lease_expires, now() + make_interval(secs => $2::float8))
               WHERE state = $1""", _RUNNING, lease_s)
        return int(status.split()[-1])

    async def active_studies(self) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
        """(id, run id) of the studies running or paused — not those Optuna's clients drive
        through the StorageService (optuna_store.py: no trackd sampler, reaper or queue of theirs)."""
        rows = await self._pool.fetch(
            "SELECT id, run_id FROM studies WHERE state IN ($1, $2) AND sampler <> 'optuna-client'",
            StudyState.RUNNING, StudyState.PAUSED)
        return [(r["id"], r["run_id"]) for r in rows]

    async def running_trial_runs(self) -> list[uuid.UUID]:
        rows = await self._pool.fetch("SELECT run_id FROM trials WHERE state = $1 AND run_id IS NOT NULL", _RUNNING)
        return [r["run_id"] for r in rows]
