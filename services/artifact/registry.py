"""The model registry: names and rules (pure) and its PostgreSQL store."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from trackd_platform.errors import AlreadyExists, InvalidArgument, NotFound

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,249}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(f"model name {name[:60]!r}: 1–250 of letters, digits, '.', '_', '/', '-'")
    return name


def validate_alias(alias: str) -> str:
    if not _ALIAS.match(alias) or alias.startswith("v") and alias[1:].isdigit():
        raise InvalidArgument(f"alias {alias[:60]!r}: lowercase letters, digits, '_' or '-', "
                              "starting with a letter, and not of the form v<number>")
    return alias


def manifest_digest(files: list[tuple[str, str]]) -> str:
    """The digest of a directory version: sha256 over its sorted (path, sha256) pairs."""
    return hashlib.sha256("".join(f"{p}\t{s}\n" for p, s in sorted(files)).encode()).hexdigest()


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, int]
    latest_version: int
    created_at: datetime


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str
    path: str
    sha256: str
    metadata: dict[str, str]
    metrics: dict[str, float]
    created_at: datetime
    aliases: list[str] = field(default_factory=list)


class RegistryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_model(self, name: str, description: str, tags: dict[str, str],
                           project_id: uuid.UUID | None = None) -> RegisteredModel:
        """`project_id`: the owning project (docs/auth.md); None: set by the first version's run."""
        try:
            await self._pool.execute(
                "INSERT INTO registered_models (name, description, tags, project_id) VALUES ($1, $2, $3, $4)",
                name, description, tags, project_id)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"model {name!r} is registered already") from None
        return await self.get_model(name)

    async def get_model(self, name: str) -> RegisteredModel:
        row = await self._pool.fetchrow(
            """SELECT m.*, coalesce((SELECT max(version) FROM model_versions v WHERE v.name = m.name), 0) AS latest,
                      coalesce((SELECT jsonb_object_agg(alias, version) FROM model_aliases a WHERE a.name = m.name),
                               '{}') AS aliases
               FROM registered_models m WHERE m.name = $1""", name)
        if row is None:
            raise NotFound(f"model {name!r} is not registered")
        return _model(row)

    async def list_models(self, *, name_contains: str, tags: dict[str, str], limit: int, after: str
                          ) -> list[RegisteredModel]:
        rows = await self._pool.fetch(
            """SELECT m.*, coalesce((SELECT max(version) FROM model_versions v WHERE v.name = m.name), 0) AS latest,
                      coalesce((SELECT jsonb_object_agg(alias, version) FROM model_aliases a WHERE a.name = m.name),
                               '{}') AS aliases
               FROM registered_models m
               WHERE strpos(m.name, $1) > 0 AND m.tags @> $2::jsonb AND m.name > $3
               ORDER BY m.name LIMIT $4""", name_contains, tags, after, limit)
        return [_model(r) for r in rows]

    async def create_version(self, name: str, run_id: uuid.UUID, path: str, sha256: str,
                             metadata: dict[str, str], metrics: dict[str, float]) -> ModelVersion:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO registered_models (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
            await conn.execute("SELECT 1 FROM registered_models WHERE name = $1 FOR UPDATE", name)  # numbers in order
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE name = $1", name)
            await conn.execute(
                """INSERT INTO model_versions (name, version, run_id, path, sha256, metadata, metrics)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                name, version, run_id, path, sha256, metadata, json.loads(json.dumps(metrics)))
        return await self.get_version(name, version=version)

    async def get_version(self, name: str, *, version: int = 0, alias: str = "") -> ModelVersion:
        if alias:
            found = await self._pool.fetchval("SELECT version FROM model_aliases WHERE name = $1 AND alias = $2",
                                              name, alias)
            if found is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            version = found
        row = await self._pool.fetchrow(
            """SELECT v.*, coalesce((SELECT array_agg(alias ORDER BY alias) FROM model_aliases a
                                      WHERE a.name = v.name AND a.version = v.version), '{}') AS aliases
               FROM model_versions v WHERE v.name = $1 AND v.version = $2""", name, version)
        if row is None:
            raise NotFound(f"model {name!r} has no version {version}")
        return _version(row)

    async def list_versions(self, name: str) -> list[ModelVersion]:
        await self.get_model(name)
        rows = await self._pool.fetch(
            """SELECT v.*, coalesce((SELECT array_agg(alias ORDER BY alias) FROM model_aliases a
                                      WHERE a.name = v.name AND a.version = v.version), '{}') AS aliases
               FROM model_versions v WHERE v.name = $1 ORDER BY v.version""", name)
        return [_version(r) for r in rows]

    async def set_alias(self, name: str, alias: str, version: int) -> None:
        """One statement: concurrent moves leave the alias on exactly one of the versions."""
        try:
            await self._pool.execute(
                """INSERT INTO model_aliases (name, alias, version) VALUES ($1, $2, $3)
                   ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version""", name, alias, version)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"model {name!r} has no version {version}") from None

    async def delete_alias(self, name: str, alias: str) -> None:
        if await self._pool.fetchval("DELETE FROM model_aliases WHERE name = $1 AND alias = $2 RETURNING 1",
                                     name, alias) is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")


def _model(row: Any) -> RegisteredModel:
    return RegisteredModel(name=row["name"], description=row["description"], tags=dict(row["tags"]),
                           aliases={k: int(v) for k, v in dict(row["aliases"]).items()},
                           latest_version=row["latest"], created_at=row["created_at"])


def _version(row: Any) -> ModelVersion:
    return ModelVersion(name=row["name"], version=row["version"], run_id=row["run_id"].hex, path=row["path"],
                        sha256=row["sha256"], metadata=dict(row["metadata"]),
                        metrics={k: float(v) for k, v in dict(row["metrics"]).items()},
                        created_at=row["created_at"], aliases=list(row["aliases"]))
