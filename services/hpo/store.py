"""PostgreSQL access for the hpo service: studies, trials, intermediate values. Every trial
change happens in a transaction holding the study's row lock, so trial numbers, counts and
leases stay consistent whichever replica or restart serves the call."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from trackd_platform.errors import AlreadyExists, NotFound
from trackd_services.hpo.engine import COMPLETE, FAIL, PRUNED, RUNNING, WAITING, StoredTrial

# trackd.hpo.v1.StudyState numbers
CREATED, STUDY_RUNNING, PAUSED, STOPPED, FINISHED = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class StudyRow:
    id: uuid.UUID
    name: str
    experiment_id: uuid.UUID
    run_id: uuid.UUID | None
    objectives: list[dict[str, Any]]
    search_space: dict[str, Any]
    sampler: str
    sampler_options: dict[str, Any]
    pruner: str
    pruner_options: dict[str, Any]
    max_trials: int
    max_duration_s: int
    parallelism: int
    max_failed_trials: int
    retries_per_trial: int
    seed: int | None
    state: int
    created_at: datetime
    started_at: datetime | None
    counts: dict[int, int]


@dataclass(frozen=True)
class TrialRow:
    id: uuid.UUID
    study_id: uuid.UUID
    number: int
    state: int
    params: dict[str, Any]
    values: list[float] | None
    run_id: uuid.UUID | None
    attempt: int
    worker: str
    lease_expires: datetime | None
    started_at: datetime | None
    ended_at: datetime | None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _study(row: asyncpg.Record, counts: dict[int, int]) -> StudyRow:
    return StudyRow(
        id=row["id"], name=row["name"], experiment_id=row["experiment_id"], run_id=row["run_id"],
        objectives=_json(row["objectives"]), search_space=_json(row["search_space"]), sampler=row["sampler"],
        sampler_options=_json(row["sampler_options"]), pruner=row["pruner"],
        pruner_options=_json(row["pruner_options"]),
        max_trials=row["max_trials"], max_duration_s=row["max_duration_s"], parallelism=row["parallelism"],
        max_failed_trials=row["max_failed_trials"], retries_per_trial=row["retries_per_trial"], seed=row["seed"],
        state=row["state"], created_at=row["created_at"], started_at=row["started_at"], counts=counts)


def _trial(row: asyncpg.Record) -> TrialRow:
    return TrialRow(
        id=row["id"], study_id=row["study_id"], number=row["number"], state=row["state"],
        params=_json(row["params"]), values=list(row["objective_values"]) if row["objective_values"] else None,
        run_id=row["run_id"], attempt=row["attempt"], worker=row["worker"], lease_expires=row["lease_expires"],
        started_at=row["started_at"], ended_at=row["ended_at"])


class StudyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, study: dict[str, Any]) -> uuid.UUID:
        study_id = uuid.uuid4()
        columns = ["id", *study]
        values = [study_id, *(json.dumps(v) if isinstance(v, dict | list) else v for v in study.values())]
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        try:
            await self.pool.execute(f"INSERT INTO studies ({', '.join(columns)}) VALUES ({placeholders})", *values)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a study named {study['name']!r} exists already") from None
        return study_id

    async def get(self, conn: asyncpg.Connection | asyncpg.Pool | None = None, *, study_id: uuid.UUID | None = None,
                  name: str = "", lock: bool = False) -> StudyRow:
        db = conn or self.pool
        where, key = ("id = $1", study_id) if study_id is not None else ("name = $1", name)
        row = await db.fetchrow(f"SELECT * FROM studies WHERE {where}" + (" FOR UPDATE" if lock else ""), key)
        if row is None:
            raise NotFound(f"study {study_id.hex if study_id else repr(name)} does not exist: see `trackd hpo list`")
        counts = {r["state"]: r["n"] for r in await db.fetch(
            "SELECT state, count(*) AS n FROM trials WHERE study_id = $1 GROUP BY state", row["id"])}
        return _study(row, counts)

    async def list_studies(self, *, limit: int, after: str | None) -> list[StudyRow]:
        rows = await self.pool.fetch(
            "SELECT * FROM studies WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2", after, limit)
        return [_study(r, {}) for r in rows]

    async def set_state(self, conn: asyncpg.Connection, study_id: uuid.UUID, state: int) -> None:
        await conn.execute(
            "UPDATE studies SET state = $2::smallint, started_at = CASE WHEN $2::smallint = 2 "
            "THEN coalesce(started_at, now()) ELSE started_at END WHERE id = $1", study_id, state)

    async def trials(self, study_id: uuid.UUID, *, states: Sequence[int], limit: int, after: int) -> list[TrialRow]:
        rows = await self.pool.fetch(
            """SELECT * FROM trials WHERE study_id = $1 AND number > $2
                 AND (cardinality($3::smallint[]) = 0 OR state = ANY($3)) ORDER BY number LIMIT $4""",
            study_id, after, list(states), limit)
        return [_trial(r) for r in rows]

    async def trials_by_number(self, study_id: uuid.UUID, numbers: Sequence[int]) -> list[TrialRow]:
        rows = await self.pool.fetch("SELECT * FROM trials WHERE study_id = $1 AND number = ANY($2) ORDER BY number",
                                     study_id, list(numbers))
        return [_trial(r) for r in rows]

    async def history(self, study_id: uuid.UUID) -> list[StoredTrial]:
        """Every trial with its intermediate values, for rebuilding the study's engine."""
        rows = await self.pool.fetch("SELECT * FROM trials WHERE study_id = $1 ORDER BY number", study_id)
        reports = await self.pool.fetch(
            """SELECT i.trial_id, i.step, i.value FROM trial_intermediates i JOIN trials t ON t.id = i.trial_id
               WHERE t.study_id = $1""", study_id)
        by_trial: dict[uuid.UUID, dict[int, float]] = {}
        for r in reports:
            by_trial.setdefault(r["trial_id"], {})[r["step"]] = r["value"]
        return [StoredTrial(r["number"], r["state"], _json(r["params"]),
                            list(r["objective_values"]) if r["objective_values"] else None, by_trial.get(r["id"], {}))
                for r in rows]

    async def trial(self, conn: asyncpg.Connection | asyncpg.Pool, trial_id: uuid.UUID) -> TrialRow:
        row = await conn.fetchrow("SELECT * FROM trials WHERE id = $1", trial_id)
        if row is None:
            raise NotFound(f"trial {trial_id.hex} does not exist")
        return _trial(row)

    async def study_of(self, trial_id: uuid.UUID) -> uuid.UUID:
        study_id = await self.pool.fetchval("SELECT study_id FROM trials WHERE id = $1", trial_id)
        if study_id is None:
            raise NotFound(f"trial {trial_id.hex} does not exist")
        return uuid.UUID(str(study_id))

    async def expired(self, conn: asyncpg.Connection, study_id: uuid.UUID) -> list[TrialRow]:
        rows = await conn.fetch(
            "SELECT * FROM trials WHERE study_id = $1 AND state = $2 AND lease_expires < now() ORDER BY number",
            study_id, RUNNING)
        return [_trial(r) for r in rows]

    async def requeue(self, conn: asyncpg.Connection, trial_id: uuid.UUID) -> None:
        await conn.execute(
            """UPDATE trials SET state = $2, attempt = attempt + 1, worker = '', lease_expires = NULL, run_id = NULL
               WHERE id = $1""", trial_id, WAITING)

    async def leased_to(self, conn: asyncpg.Connection, study_id: uuid.UUID, worker: str) -> TrialRow | None:
        row = await conn.fetchrow(
            "SELECT * FROM trials WHERE study_id = $1 AND state = $2 AND worker = $3 ORDER BY number LIMIT 1",
            study_id, RUNNING, worker)
        return _trial(row) if row else None

    async def next_number(self, conn: asyncpg.Connection, study_id: uuid.UUID) -> int:
        return int(await conn.fetchval("SELECT coalesce(max(number) + 1, 0) FROM trials WHERE study_id = $1",
                                       study_id))

    async def insert_trial(self, conn: asyncpg.Connection, study_id: uuid.UUID, number: int,
                           params: dict[str, Any]) -> TrialRow:
        return _trial(await conn.fetchrow(
            "INSERT INTO trials (id, study_id, number, state, params) VALUES ($1, $2, $3, $4, $5) RETURNING *",
            uuid.uuid4(), study_id, number, WAITING, json.dumps(params)))

    async def claim(self, conn: asyncpg.Connection, study_id: uuid.UUID, trial_id: uuid.UUID, worker: str,
                    lease_s: float) -> TrialRow | None:
        """Lease a WAITING trial to `worker` if its study runs and has fewer than `parallelism`
        trials running; None otherwise (taken by another worker, deleted, study paused or full).
        Claims of one study are serialized by an advisory lock rather than the study row lock,
        so they do not wait for the sampler, which holds the row lock while sampling ahead."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))", study_id.hex)
            row = await conn.fetchrow(
                """UPDATE trials t SET state = $2, worker = $3,
                                       lease_expires = now() + make_interval(secs => $4::float8),
                                       started_at = coalesce(t.started_at, now())
                   FROM studies s
                   WHERE t.id = $1 AND t.state = $5 AND s.id = t.study_id AND s.state = $6
                     AND (SELECT count(*) FROM trials r WHERE r.study_id = s.id AND r.state = $2) < s.parallelism
                   RETURNING t.*""",
                trial_id, RUNNING, worker, lease_s, WAITING, STUDY_RUNNING)
        return _trial(row) if row else None

    async def waiting_ids(self, conn: asyncpg.Connection | asyncpg.Pool, study_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await conn.fetch("SELECT id FROM trials WHERE study_id = $1 AND state = $2 ORDER BY number",
                                study_id, WAITING)
        return [r["id"] for r in rows]

    async def drop_unstarted(self, conn: asyncpg.Connection, study_id: uuid.UUID) -> int:
        """Delete the trials sampled ahead that no worker ever started (the study ended before
        they were needed); retries waiting for a worker stay."""
        status = await conn.execute(
            "DELETE FROM trials WHERE study_id = $1 AND state = $2 AND started_at IS NULL", study_id, WAITING)
        return int(status.split()[-1])

    async def set_trial_run(self, trial_id: uuid.UUID, run_id: uuid.UUID) -> TrialRow:
        return _trial(await self.pool.fetchrow("UPDATE trials SET run_id = $2 WHERE id = $1 RETURNING *",
                                               trial_id, run_id))

    async def running_trial_of_run(self, run_id: uuid.UUID) -> uuid.UUID | None:
        """The running trial whose run this is, if any."""
        found = await self.pool.fetchval("SELECT id FROM trials WHERE run_id = $1 AND state = $2", run_id, RUNNING)
        return None if found is None else uuid.UUID(str(found))

    async def extend(self, conn: asyncpg.Connection, trial_id: uuid.UUID, lease_s: float) -> datetime:
        expires: datetime = await conn.fetchval(
            "UPDATE trials SET lease_expires = now() + make_interval(secs => $2::float8) WHERE id = $1 "
            "RETURNING lease_expires",
            trial_id, lease_s)
        return expires

    async def add_intermediate(self, conn: asyncpg.Connection, trial_id: uuid.UUID, step: int, value: float) -> bool:
        """False when this step was reported already (the first report stands, as in Optuna)."""
        status = await conn.execute(
            "INSERT INTO trial_intermediates (trial_id, step, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            trial_id, step, value)
        return bool(status.endswith(" 1"))

    async def end_trial(self, conn: asyncpg.Connection, trial_id: uuid.UUID, state: int,
                        values: Sequence[float] | None) -> None:
        await conn.execute(
            """UPDATE trials SET state = $2, objective_values = $3, ended_at = now(), lease_expires = NULL
               WHERE id = $1""", trial_id, state, list(values) if values is not None else None)

    async def last_intermediate(self, conn: asyncpg.Connection, trial_id: uuid.UUID) -> float | None:
        value = await conn.fetchval(
            "SELECT value FROM trial_intermediates WHERE trial_id = $1 ORDER BY step DESC LIMIT 1", trial_id)
        return None if value is None else float(value)

    async def renew_all_leases(self, lease_s: float) -> int:
        """After a controller (re)start: workers could not heartbeat while it was down, so every
        running trial gets a full lease again instead of being reaped for the outage."""
        status = await self.pool.execute(
            """UPDATE trials SET lease_expires = greatest(lease_expires, now() + make_interval(secs => $2::float8))
               WHERE state = $1""", RUNNING, lease_s)
        return int(status.split()[-1])

    async def active_studies(self) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
        rows = await self.pool.fetch("SELECT id, run_id FROM studies WHERE state IN ($1, $2)", STUDY_RUNNING, PAUSED)
        return [(r["id"], r["run_id"]) for r in rows]

    async def running_trial_runs(self) -> list[uuid.UUID]:
        rows = await self.pool.fetch("SELECT run_id FROM trials WHERE state = $1 AND run_id IS NOT NULL", RUNNING)
        return [r["run_id"] for r in rows]


ENDED = (COMPLETE, PRUNED, FAIL)
