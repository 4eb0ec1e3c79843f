"""The run read model: runs as the run service writes them (tables `runs`, `run_params`,
`run_tags`) and as the query service reads them — the views (the statuses are the vocabulary's
`RunStatus`), the `Run` record, how a row becomes one, and how one becomes a `trackd.run.v1.Run`
message."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.json_format import ParseDict
from trackd_api.run.v1 import run_pb2

from trackd_platform.errors import InvalidArgument
from trackd_platform.ids import format_id
from trackd_platform.timestamps import timestamp
from trackd_platform.vocabulary import RunStatus as RunStatus  # the vocabulary's, re-exported for its users

NAME_MAX = 250  # characters in the name of a project, experiment, run or study


def validate_name(kind: str, name: str) -> str:
    """`name`, if it is a valid name of a `kind` (project, run, …); else InvalidArgument saying why."""
    if not name or not name.strip():
        raise InvalidArgument(f"{kind} must not be empty")
    if len(name) > NAME_MAX:
        raise InvalidArgument(f"{kind} is {len(name)} characters; the limit is {NAME_MAX}")
    return name


class View(enum.IntEnum):
    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


def parse_view(number: int) -> View:
    """A request's `view_type` (0: ACTIVE_ONLY). Raises InvalidArgument for an unknown one."""
    if number == 0:
        return View.ACTIVE_ONLY
    try:
        return View(number)
    except ValueError:
        raise InvalidArgument(f"unknown view_type {number}") from None


@dataclass(frozen=True)
class Run:
    id: uuid.UUID
    experiment_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    status: RunStatus
    start_time: datetime
    end_time: datetime | None
    last_heartbeat: datetime
    parent_run_id: uuid.UUID | None
    user: str
    notes: str
    source: dict[str, Any]
    environment: dict[str, Any]
    deleted: bool
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def duration_ms(self, now: datetime) -> int:
        end = self.end_time or now
        return max(0, int((end - self.start_time).total_seconds() * 1000))


# SELECT {RUN_COLUMNS} FROM {RUN_FROM}: the columns `run_of` reads, on `runs r` and its experiment.
RUN_COLUMNS = """r.id, r.experiment_id, e.project_id, r.name, r.status, r.start_time, r.end_time,
    r.last_heartbeat, r.parent_run_id, r.user_name, r.notes, r.source, r.environment,
    r.deleted_at IS NOT NULL AS deleted"""
RUN_FROM = "runs r JOIN experiments e ON e.id = r.experiment_id"
# The runs a view covers, as a condition on `runs r`.
VIEW_FILTER = {View.ACTIVE_ONLY: "r.deleted_at IS NULL", View.DELETED_ONLY: "r.deleted_at IS NOT NULL",
               View.ALL: "true"}


def run_of(row: asyncpg.Record, params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> Run:
    """A Run from a row of RUN_COLUMNS (params and tags read separately)."""
    return Run(
        id=row["id"], experiment_id=row["experiment_id"], project_id=row["project_id"], name=row["name"],
        status=RunStatus(row["status"]), start_time=row["start_time"], end_time=row["end_time"],
        last_heartbeat=row["last_heartbeat"], parent_run_id=row["parent_run_id"], user=row["user_name"],
        notes=row["notes"], source=dict(row["source"]), environment=dict(row["environment"]),
        deleted=row["deleted"], params=params or {}, tags=tags or {},
    )


async def with_items(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[Run]:
    """Runs from their rows, with their params and tags (two queries for the whole list)."""
    ids = [r["id"] for r in rows]
    params = await conn.fetch("SELECT run_id, key, value FROM run_params WHERE run_id = ANY($1)", ids)
    tags = await conn.fetch("SELECT run_id, key, value FROM run_tags WHERE run_id = ANY($1)", ids)
    by_run: dict[uuid.UUID, tuple[dict[str, str], dict[str, str]]] = {i: ({}, {}) for i in ids}
    for p in params:
        by_run[p["run_id"]][0][p["key"]] = p["value"]
    for t in tags:
        by_run[t["run_id"]][1][t["key"]] = t["value"]
    return [run_of(r, *by_run[r["id"]]) for r in rows]


async def get_runs(pool: asyncpg.Pool, run_ids: list[uuid.UUID]) -> list[Run]:
    """The runs with these ids, in this order, with params and tags; ids that do not exist are
    left out."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.id = ANY($1::uuid[])", run_ids)
        found = {r["id"]: r for r in rows}
        return await with_items(conn, [found[i] for i in run_ids if i in found])


def run_to_proto(r: Run) -> run_pb2.Run:
    return run_pb2.Run(
        id=format_id(r.id), experiment_id=format_id(r.experiment_id), project_id=format_id(r.project_id),
        name=r.name, status=r.status.proto,
        start_time=timestamp(r.start_time), end_time=timestamp(r.end_time),
        duration_ms=r.duration_ms(datetime.now(UTC)), params=r.params, tags=r.tags, notes=r.notes,
        # ParseDict of an empty dict costs ~6 µs: a search page has 100 runs, often without either
        source=ParseDict(r.source, run_pb2.Source(), ignore_unknown_fields=True) if r.source else run_pb2.Source(),
        environment=(ParseDict(r.environment, run_pb2.Environment(), ignore_unknown_fields=True)
                     if r.environment else run_pb2.Environment()),
        parent_run_id=format_id(r.parent_run_id) if r.parent_run_id else "", user=r.user,
        deleted=r.deleted, last_heartbeat_time=timestamp(r.last_heartbeat),
    )
