"""PostgreSQL access for the run service. Every write that changes a run's lifecycle also
writes its event to the outbox in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
from trackd_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from trackd_platform.event_contract import RUN_ENDED, RUN_STARTED
from trackd_platform.outbox import enqueue
from trackd_platform.run_records import RUN_COLUMNS, RUN_FROM, VIEW_FILTER, get_runs, run_of, with_items

from . import events
from .domain import (
    Experiment,
    NewRun,
    Project,
    Run,
    RunStatus,
    View,
    check_end,
    check_end_time,
    check_resume,
    format_id,
    new_params,
    require_running,
)


def _project(row: asyncpg.Record) -> Project:
    return Project(id=row["id"], name=row["name"], description=row["description"], created_at=row["created_at"])


def _experiment(row: asyncpg.Record) -> Experiment:
    return Experiment(
        id=row["id"], project_id=row["project_id"], name=row["name"], description=row["description"],
        tags=dict(row["tags"]), archived=row["archived"], created_at=row["created_at"],
    )


class RunStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- projects -----------------------------------------------------------------------------

    async def create_project(self, name: str, description: str) -> Project:
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO projects (id, name, description) VALUES ($1, $2, $3) RETURNING *",
                uuid.uuid4(), name, description,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"project {name!r} exists already") from None
        return _project(row)

    async def get_project(self, *, project_id: uuid.UUID | None = None, name: str = "") -> Project:
        if project_id is not None:
            row = await self._pool.fetchrow("SELECT * FROM projects WHERE id = $1", project_id)
        else:
            row = await self._pool.fetchrow("SELECT * FROM projects WHERE name = $1", name)
        if row is None:
            raise NotFound(f"project {format_id(project_id) if project_id else repr(name)} does not exist")
        return _project(row)

    async def list_projects(self, *, limit: int, after: list[Any] | None) -> list[Project]:
        rows = await self._pool.fetch(
            """SELECT * FROM projects WHERE $1::text IS NULL OR name > $1
               ORDER BY name LIMIT $2""",
            after[0] if after else None, limit,
        )
        return [_project(r) for r in rows]

    # -- experiments --------------------------------------------------------------------------

    async def create_experiment(
        self, project_id: uuid.UUID, name: str, description: str, tags: dict[str, str]
    ) -> Experiment:
        await self.get_project(project_id=project_id)
        try:
            row = await self._pool.fetchrow(
                """INSERT INTO experiments (id, project_id, name, description, tags)
                   VALUES ($1, $2, $3, $4, $5) RETURNING *""",
                uuid.uuid4(), project_id, name, description, tags,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"experiment {name!r} exists already in this project") from None
        return _experiment(row)

    async def get_experiment(
        self, *, experiment_id: uuid.UUID | None = None, project_name: str = "", name: str = ""
    ) -> Experiment:
        if experiment_id is not None:
            row = await self._pool.fetchrow("SELECT * FROM experiments WHERE id = $1", experiment_id)
            what = format_id(experiment_id)
        else:
            row = await self._pool.fetchrow(
                """SELECT e.* FROM experiments e JOIN projects p ON p.id = e.project_id
                   WHERE p.name = $1 AND e.name = $2""",
                project_name, name,
            )
            what = f"{project_name}/{name}"
        if row is None:
            raise NotFound(f"experiment {what} does not exist")
        return _experiment(row)

    async def list_experiments(
        self, *, project_id: uuid.UUID | None, include_archived: bool, limit: int, after: list[Any] | None
    ) -> list[Experiment]:
        rows = await self._pool.fetch(
            """SELECT * FROM experiments
               WHERE ($1::uuid IS NULL OR project_id = $1) AND ($2 OR NOT archived)
                 AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))
               ORDER BY created_at, id LIMIT $5""",
            project_id, include_archived, _ts(after, 0), _uuid(after, 1), limit,
        )
        return [_experiment(r) for r in rows]

    async def update_experiment(
        self, experiment_id: uuid.UUID, *, description: str | None, tags: dict[str, str], archived: bool | None,
        name: str | None = None, delete_tag_keys: list[str] | None = None,
    ) -> Experiment:
        """Change what is given: description, tags (merged, then `delete_tag_keys` removed),
        archived, name (AlreadyExists when its project has an experiment of that name)."""
        try:
            row = await self._pool.fetchrow(
                """UPDATE experiments SET description = coalesce($2, description),
                                          tags = (tags || $3::jsonb) - $6::text[],
                                          archived = coalesce($4, archived),
                                          name = coalesce($5, name)
                   WHERE id = $1 RETURNING *""",
                experiment_id, description, tags, archived, name, delete_tag_keys or [],
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"experiment {name!r} exists already in this project") from None
        if row is None:
            raise NotFound(f"experiment {format_id(experiment_id)} does not exist")
        return _experiment(row)

    # -- runs ---------------------------------------------------------------------------------

    async def start_run(self, new: NewRun) -> tuple[Run, bool]:
        """Start a run, or resume the one holding `new.resume_key` in its experiment: (the run,
        True when resumed). Two first starts with one key at once: one creates, the other resumes."""
        try:
            return await self._start_run(new)
        except asyncpg.UniqueViolationError:  # a concurrent first start took the key: resume its run
            return await self._start_run(new)

    async def _start_run(self, new: NewRun) -> tuple[Run, bool]:
        # Round trips on every run's path (an hpo trial's run is on AcquireTrial's): the checks
        # in one query, the run with its params and tags in one statement, its event in one.
        run_id, event_id = new.run_id or uuid.uuid4(), uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            experiment_id = new.experiment_id or await self._ensure_experiment(
                conn, new.project_name, new.experiment_name
            )
            found = await conn.fetchrow(
                """SELECT $1::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM runs WHERE id = $1) AS taken,
                          EXISTS (SELECT 1 FROM experiments WHERE id = $2) AS experiment,
                          (SELECT id FROM runs WHERE experiment_id = $2 AND resume_key = $3) AS resumed,
                          $4::uuid IS NULL OR EXISTS (SELECT 1 FROM runs WHERE id = $4) AS parent""",
                new.run_id, experiment_id, new.resume_key or None, new.parent_run_id)
            if found["taken"]:
                raise AlreadyExists(f"run {format_id(run_id)} exists already")
            if not found["experiment"]:
                raise NotFound(f"experiment {format_id(experiment_id)} does not exist")
            if found["resumed"]:
                return await self._resume(conn, found["resumed"], new.params, new.tags), True
            if new.parent_run_id is not None and not found["parent"]:
                raise NotFound(f"parent run {format_id(new.parent_run_id)} does not exist")
            row = await conn.fetchrow(
                f"""WITH r AS (INSERT INTO runs (id, experiment_id, name, status, start_time, last_heartbeat,
                                                 parent_run_id, user_name, notes, source, environment, heartbeats,
                                                 resume_key)
                               VALUES ($1, $2, $3, $4, coalesce($10, now()), now(), $5, $6, $7, $8, $9, $11,
                                       nullif($12, ''))
                               RETURNING *),
                         p AS (INSERT INTO run_params (run_id, key, value)
                               SELECT $1, k, v FROM unnest($13::text[], $14::text[]) AS u(k, v)),
                         t AS (INSERT INTO run_tags (run_id, key, value)
                               SELECT $1, k, v FROM unnest($15::text[], $16::text[]) AS u(k, v))
                    SELECT {RUN_COLUMNS} FROM r JOIN experiments e ON e.id = r.experiment_id""",
                run_id, experiment_id, new.name or f"run-{run_id.hex[:8]}", RunStatus.RUNNING,
                new.parent_run_id, new.user, new.notes, new.source, new.environment, new.start_time,
                not new.unattended, new.resume_key, list(new.params), list(new.params.values()),
                list(new.tags), list(new.tags.values()),
            )
            run = run_of(row, dict(new.params), dict(new.tags))
            await enqueue(conn, topic=RUN_STARTED, key=format_id(run_id), event_id=event_id,
                          payload=events.run_started(run, event_id))
        return run, False

    async def resume_run(self, run_id: uuid.UUID, params: dict[str, str], tags: dict[str, str]) -> Run:
        """Reattach to a RUNNING or CRASHED run (CRASHED becomes RUNNING again), with its
        `run.started` event marked resumed; FailedPrecondition for an ended or deleted run."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._resume(conn, run_id, params, tags)

    async def _resume(self, conn: asyncpg.Connection, run_id: uuid.UUID, params: dict[str, str],
                      tags: dict[str, str]) -> Run:
        run = await self._load(conn, run_id, lock=True)
        check_resume(run)
        await _insert_pairs(conn, "run_params", run_id, new_params(run.params, params))
        await conn.executemany(
            """INSERT INTO run_tags (run_id, key, value) VALUES ($1, $2, $3)
               ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value""",
            [(run_id, k, v) for k, v in tags.items()])
        await conn.execute("UPDATE runs SET status = $2, end_time = NULL, last_heartbeat = now() WHERE id = $1",
                           run_id, RunStatus.RUNNING)
        run, event_id = await self._load(conn, run_id), uuid.uuid4()
        await enqueue(conn, topic=RUN_STARTED, key=format_id(run_id), event_id=event_id,
                      payload=events.run_started(run, event_id, resumed=True))
        return run

    async def _ensure_experiment(self, conn: asyncpg.Connection, project_name: str, name: str) -> uuid.UUID:
        """Find or create (project, experiment) by name; safe against concurrent creators."""
        await conn.execute(
            "INSERT INTO projects (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            uuid.uuid4(), project_name,
        )
        project_id = await conn.fetchval("SELECT id FROM projects WHERE name = $1", project_name)
        await conn.execute(
            """INSERT INTO experiments (id, project_id, name) VALUES ($1, $2, $3)
               ON CONFLICT (project_id, name) DO NOTHING""",
            uuid.uuid4(), project_id, name,
        )
        experiment_id: uuid.UUID = await conn.fetchval(
            "SELECT id FROM experiments WHERE project_id = $1 AND name = $2", project_id, name
        )
        return experiment_id

    async def get_run(self, run_id: uuid.UUID) -> Run:
        async with self._pool.acquire() as conn:
            return await self._load(conn, run_id)

    async def _load(self, conn: asyncpg.Connection, run_id: uuid.UUID, *, lock: bool = False) -> Run:
        row = await conn.fetchrow(
            f"SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.id = $1" + (" FOR UPDATE OF r" if lock else ""),
            run_id,
        )
        if row is None:
            raise NotFound(f"run {format_id(run_id)} does not exist")
        params = await conn.fetch("SELECT key, value FROM run_params WHERE run_id = $1", run_id)
        tags = await conn.fetch("SELECT key, value FROM run_tags WHERE run_id = $1", run_id)
        return run_of(row, {r["key"]: r["value"] for r in params}, {r["key"]: r["value"] for r in tags})

    async def list_runs(
        self, *, experiment_ids: list[uuid.UUID], view: View, parent_run_id: uuid.UUID | None,
        limit: int, after: list[Any] | None,
    ) -> list[Run]:
        deleted = VIEW_FILTER[view]
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {RUN_COLUMNS} FROM {RUN_FROM}
                    WHERE (cardinality($1::uuid[]) = 0 OR r.experiment_id = ANY($1)) AND {deleted}
                      AND ($2::uuid IS NULL OR r.parent_run_id = $2)
                      AND ($3::timestamptz IS NULL OR (r.start_time, r.id) < ($3, $4::uuid))
                    ORDER BY r.start_time DESC, r.id DESC LIMIT $5""",
                experiment_ids, parent_run_id, _ts(after, 0), _uuid(after, 1), limit,
            )
            return await with_items(conn, rows)

    async def get_runs(self, run_ids: list[uuid.UUID]) -> list[Run]:
        """The runs with these ids, in this order; ids that do not exist are left out."""
        return await get_runs(self._pool, run_ids)

    async def end_run(self, run_id: uuid.UUID, status: RunStatus, end_time: datetime | None = None) -> Run:
        """End a run at `end_time` (the client's), or now."""
        event_id = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            run = await self._load(conn, run_id, lock=True)
            check_end(run, status)
            check_end_time(run, end_time)
            end_time = await conn.fetchval(
                """UPDATE runs SET status = $2, end_time = coalesce($3, clock_timestamp()) WHERE id = $1
                   RETURNING end_time""",
                run_id, status, end_time,
            )
            run = replace(run, status=status, end_time=end_time)
            await enqueue(conn, topic=RUN_ENDED, key=format_id(run_id), event_id=event_id,
                          payload=events.run_ended(run, event_id))
        return run

    async def rename_run(self, run_id: uuid.UUID, name: str) -> Run:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require_active(conn, run_id)
            await conn.execute("UPDATE runs SET name = $2 WHERE id = $1", run_id, name)
            return await self._load(conn, run_id)

    async def writable(self) -> None:
        """Write what a heartbeat writes (one running run's row, unchanged): Unavailable when
        PostgreSQL cannot take it — unreachable, read-only or out of disk alike."""
        try:
            await self._pool.execute(
                """UPDATE runs SET last_heartbeat = last_heartbeat
                   WHERE id = (SELECT id FROM runs WHERE status = $1 LIMIT 1)""", RunStatus.RUNNING, timeout=10)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from None

    async def crash_stale_runs(self, timeout_s: float) -> list[Run]:
        """Mark CRASHED every RUNNING run whose last heartbeat is older than `timeout_s`, each
        with its `run.ended` event. Safe to run from several replicas at once."""
        crashed = []
        async with self._pool.acquire() as conn, conn.transaction():
            ids = await conn.fetch(
                """UPDATE runs SET status = $1, end_time = last_heartbeat
                   WHERE id IN (SELECT id FROM runs WHERE status = $2 AND heartbeats
                                  AND last_heartbeat < now() - make_interval(secs => $3)
                                FOR UPDATE SKIP LOCKED LIMIT 500)
                   RETURNING id""",
                RunStatus.CRASHED, RunStatus.RUNNING, timeout_s,
            )
            for row in ids:
                run, event_id = await self._load(conn, row["id"]), uuid.uuid4()
                await enqueue(conn, topic=RUN_ENDED, key=format_id(run.id), event_id=event_id,
                              payload=events.run_ended(run, event_id))
                crashed.append(run)
        return crashed

    async def log_params(self, run_id: uuid.UUID, params: dict[str, str]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            run = await self._load(conn, run_id, lock=True)
            require_running(run, "log params")
            await _insert_pairs(conn, "run_params", run_id, new_params(run.params, params))

    async def set_tags(self, run_id: uuid.UUID, tags: dict[str, str]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require_active(conn, run_id)
            await conn.executemany(
                """INSERT INTO run_tags (run_id, key, value) VALUES ($1, $2, $3)
                   ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value""",
                [(run_id, k, v) for k, v in tags.items()],
            )

    async def delete_tags(self, run_id: uuid.UUID, keys: list[str]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require_active(conn, run_id)
            await conn.execute("DELETE FROM run_tags WHERE run_id = $1 AND key = ANY($2)", run_id, keys)

    async def set_notes(self, run_id: uuid.UUID, notes: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require_active(conn, run_id)
            await conn.execute("UPDATE runs SET notes = $2 WHERE id = $1", run_id, notes)

    async def _require_active(self, conn: asyncpg.Connection, run_id: uuid.UUID) -> None:
        deleted = await conn.fetchval("SELECT deleted_at IS NOT NULL FROM runs WHERE id = $1 FOR UPDATE", run_id)
        if deleted is None:
            raise NotFound(f"run {format_id(run_id)} does not exist")
        if deleted:
            raise FailedPrecondition(f"run {format_id(run_id)} is deleted: restore it first")

    async def heartbeat(self, run_id: uuid.UUID) -> RunStatus:
        status = await self._pool.fetchval(
            """UPDATE runs SET last_heartbeat = CASE WHEN status = $2 THEN now() ELSE last_heartbeat END
               WHERE id = $1 RETURNING status""",
            run_id, RunStatus.RUNNING,
        )
        if status is None:
            raise NotFound(f"run {format_id(run_id)} does not exist")
        return RunStatus(status)

    async def set_deleted(self, run_id: uuid.UUID, deleted: bool) -> None:
        found = await self._pool.fetchval(
            """UPDATE runs SET deleted_at = CASE WHEN $2 THEN coalesce(deleted_at, now()) END
               WHERE id = $1 RETURNING id""",
            run_id, deleted,
        )
        if found is None:
            raise NotFound(f"run {format_id(run_id)} does not exist")


async def _insert_pairs(conn: asyncpg.Connection, table: str, run_id: uuid.UUID, items: dict[str, str]) -> None:
    if items:  # one statement: run_params' trigger (migration 0022) then refreshes the run's series once
        await conn.execute(
            f"INSERT INTO {table} (run_id, key, value) SELECT $1, * FROM unnest($2::text[], $3::text[])",
            run_id, list(items), list(items.values()),
        )


def _ts(position: list[Any] | None, index: int) -> datetime | None:
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position[index])
    except (TypeError, ValueError):
        raise InvalidArgument("page_token is malformed: pass back a next_page_token unchanged") from None


def _uuid(position: list[Any] | None, index: int) -> uuid.UUID | None:
    if position is None:
        return None
    try:
        return uuid.UUID(position[index])
    except (TypeError, ValueError, AttributeError):
        raise InvalidArgument("page_token is malformed: pass back a next_page_token unchanged") from None
