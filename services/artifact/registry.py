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
from trackd_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,249}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_TAGS = 100  # tags of a model, metadata entries of a version (as artifact metadata)


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
    # the run's inputs (run_inputs, written by the run service), read with the version: lineage
    inputs: list[dict[str, Any]] = field(default_factory=list)


# Whose models a call sees: a project token's project, or None for every project (the admin
# secret, or auth off). Model names are unique per project; a model of no project (registered by
# the admin before any version) is seen with None only.
Scope = uuid.UUID | None

_MODEL = """SELECT m.*, coalesce((SELECT max(version) FROM model_versions v WHERE v.model_id = m.id), 0) AS latest,
                   coalesce((SELECT jsonb_object_agg(alias, version) FROM model_aliases a WHERE a.model_id = m.id),
                            '{}') AS aliases
            FROM registered_models m"""
_VERSION = """SELECT v.*, coalesce((SELECT array_agg(alias ORDER BY alias) FROM model_aliases a
                                    WHERE a.model_id = v.model_id AND a.version = v.version), '{}') AS aliases,
                     coalesce((SELECT jsonb_agg(jsonb_build_object('uri', i.uri, 'digest', i.digest,
                                                                   'context', i.context, 'rows', i.rows) ORDER BY i.id)
                               FROM run_inputs i WHERE i.run_id = v.run_id), '[]') AS inputs
              FROM model_versions v"""


def _name_lock(name: str) -> str:
    return f"model:{name}"  # hashed to an advisory lock key: creations of one name are serialized


class RegistryStore:
    """Registered models, their versions and aliases. Every lookup is by (scope, name): a project
    token never sees, and never learns of, another project's model (NOT_FOUND, never
    PERMISSION_DENIED or ALREADY_EXISTS)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_model(self, scope: Scope, name: str, description: str, tags: dict[str, str]) -> RegisteredModel:
        """A model in the caller's project (scope None: of no project, until its first version's run
        gives it one). ALREADY_EXISTS when the caller already sees a model of that name."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _name_lock(name))
            taken = await conn.fetchval(
                "SELECT 1 FROM registered_models WHERE name = $1 AND ($2::uuid IS NULL OR project_id = $2)",
                name, scope)
            if taken:
                raise AlreadyExists(f"model {name!r} is registered already")
            await conn.execute(
                "INSERT INTO registered_models (name, description, tags, project_id) VALUES ($1, $2, $3, $4)",
                name, description, tags, scope)
        return await self.get_model(scope, name)

    async def _resolve(self, conn: asyncpg.Pool | asyncpg.Connection, scope: Scope, name: str) -> uuid.UUID:
        rows = await conn.fetch(
            "SELECT id FROM registered_models WHERE name = $1 AND ($2::uuid IS NULL OR project_id = $2) LIMIT 2",
            name, scope)
        if not rows:
            raise NotFound(f"model {name!r} is not registered")
        if len(rows) > 1:  # only without a project scope: the admin sees every project's models
            raise FailedPrecondition(f"several projects have a model {name!r}: call with a token of the project "
                                     "whose model you mean")
        model_id: uuid.UUID = rows[0]["id"]
        return model_id

    async def get_model(self, scope: Scope, name: str) -> RegisteredModel:
        model_id = await self._resolve(self._pool, scope, name)
        return _model(await self._pool.fetchrow(f"{_MODEL} WHERE m.id = $1", model_id))

    async def list_models(self, scope: Scope, *, name_contains: str, tags: dict[str, str], limit: int,
                          after: tuple[str, str]) -> list[tuple[RegisteredModel, str]]:
        """(model, id hex) in (name, id) order after `after`."""
        rows = await self._pool.fetch(
            f"""{_MODEL}
               WHERE ($1::uuid IS NULL OR m.project_id = $1) AND strpos(m.name, $2) > 0 AND m.tags @> $3::jsonb
                 AND (m.name, m.id::text) > ($4, $5)
               ORDER BY m.name, m.id::text LIMIT $6""", scope, name_contains, tags, after[0], after[1], limit)
        return [(_model(r), r["id"].hex) for r in rows]

    async def create_version(self, scope: Scope, name: str, run_id: uuid.UUID, path: str,
                             metadata: dict[str, str], metrics: dict[str, float]) -> ModelVersion:
        """A new version of the model `name` of the run's project, made from the run's artifact at
        `path` (a file, or every artifact under that directory). One transaction, with creations
        of the name serialized: the model is found or created atomically, and the artifacts are
        locked so that a concurrent DeleteArtifact either sees this version or makes this fail
        NOT_FOUND. Without a scope (admin, auth off), a name another project holds already is
        FAILED_PRECONDITION: a model never holds versions of two projects."""
        async with self._pool.acquire() as conn, conn.transaction():
            project = await conn.fetchval(
                "SELECT e.project_id FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = $1", run_id)
            if project is None or scope not in (None, project):  # the access rule checked the run already
                raise NotFound(f"run {run_id.hex} does not exist")
            sha256 = await self._artifact_digest(conn, run_id, path)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _name_lock(name))
            model_id = await self._model_for(conn, scope, project, name, run_id)
            version = await conn.fetchval(  # the row lock gives numbers out in order; never one given before
                """UPDATE registered_models SET next_version = greatest(next_version, (
                       SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE model_id = $1)) + 1
                   WHERE id = $1 RETURNING next_version - 1""", model_id)
            await conn.execute(
                """INSERT INTO model_versions (model_id, name, version, run_id, path, sha256, metadata, metrics)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                model_id, name, version, run_id, path, sha256, metadata, json.loads(json.dumps(metrics)))
        return _version(await self._pool.fetchrow(f"{_VERSION} WHERE v.model_id = $1 AND v.version = $2",
                                                  model_id, version))

    @staticmethod
    async def _artifact_digest(conn: asyncpg.Connection, run_id: uuid.UUID, path: str) -> str:
        """The digest of the live artifact at `path`, or of the directory of artifacts under it —
        locked (FOR SHARE) until the version is committed."""
        sha256 = await conn.fetchval(
            "SELECT sha256 FROM artifacts WHERE run_id = $1 AND path = $2 AND deleted_at IS NULL FOR SHARE",
            run_id, path)
        if sha256 is not None:
            return str(sha256)
        files = await conn.fetch(
            """SELECT path, sha256 FROM artifacts WHERE run_id = $1 AND starts_with(path, $2 || '/')
                 AND deleted_at IS NULL ORDER BY path FOR SHARE""", run_id, path)
        if not files:
            raise NotFound(f"run {run_id.hex} has no artifact at {path!r}: log the model first")
        return manifest_digest([(f["path"], f["sha256"]) for f in files])

    @staticmethod
    async def _model_for(conn: asyncpg.Connection, scope: Scope, project: uuid.UUID, name: str,
                         run_id: uuid.UUID) -> uuid.UUID:
        """The model `name` of `project`; else one of no project, which the version adopts; else a
        new one (under the name lock, so two first versions of one name make one model)."""
        found = await conn.fetchrow(
            """SELECT id, project_id FROM registered_models WHERE name = $1 AND (project_id = $2 OR project_id IS NULL)
               ORDER BY project_id NULLS LAST LIMIT 1""", name, project)
        if found is not None:
            if found["project_id"] is None:
                await conn.execute("UPDATE registered_models SET project_id = $2 WHERE id = $1", found["id"], project)
            model_id: uuid.UUID = found["id"]
            return model_id
        if scope is None and await conn.fetchval("SELECT 1 FROM registered_models WHERE name = $1", name):
            raise FailedPrecondition(f"model {name!r} belongs to another project than run {run_id.hex}; a model "
                                     "holds the versions of one project: register this run under another name")
        created: uuid.UUID = await conn.fetchval(
            "INSERT INTO registered_models (name, project_id) VALUES ($1, $2) RETURNING id", name, project)
        return created

    async def get_version(self, scope: Scope, name: str, *, version: int = 0, alias: str = "") -> ModelVersion:
        model_id = await self._resolve(self._pool, scope, name)
        if alias:
            found = await self._pool.fetchval(
                "SELECT version FROM model_aliases WHERE model_id = $1 AND alias = $2", model_id, alias)
            if found is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            version = found
        row = await self._pool.fetchrow(f"{_VERSION} WHERE v.model_id = $1 AND v.version = $2", model_id, version)
        if row is None:
            raise NotFound(f"model {name!r} has no version {version}")
        return _version(row)

    async def list_versions(self, scope: Scope, name: str) -> list[ModelVersion]:
        model_id = await self._resolve(self._pool, scope, name)
        rows = await self._pool.fetch(f"{_VERSION} WHERE v.model_id = $1 ORDER BY v.version", model_id)
        return [_version(r) for r in rows]

    async def set_alias(self, scope: Scope, name: str, alias: str, version: int) -> None:
        """One statement: concurrent moves leave the alias on exactly one of the versions."""
        model_id = await self._resolve(self._pool, scope, name)
        try:
            await self._pool.execute(
                """INSERT INTO model_aliases (model_id, name, alias, version) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version""",
                model_id, name, alias, version)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"model {name!r} has no version {version}") from None

    async def delete_alias(self, scope: Scope, name: str, alias: str) -> None:
        model_id = await self._resolve(self._pool, scope, name)
        if await self._pool.fetchval("DELETE FROM model_aliases WHERE model_id = $1 AND alias = $2 RETURNING 1",
                                     model_id, alias) is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")

    async def update_model(self, scope: Scope, name: str, *, description: str | None, set_tags: dict[str, str],
                           delete_tags: list[str]) -> RegisteredModel:
        """Description (when given) and tags in one statement; INVALID_ARGUMENT past the tag limit."""
        async with self._pool.acquire() as conn, conn.transaction():
            model_id = await self._resolve(conn, scope, name)
            tags = dict(await conn.fetchval("SELECT tags FROM registered_models WHERE id = $1 FOR UPDATE", model_id))
            tags = {k: v for k, v in {**tags, **set_tags}.items() if k not in delete_tags}
            if len(tags) > MAX_TAGS:
                raise InvalidArgument(f"a model holds at most {MAX_TAGS} tags")
            await conn.execute("UPDATE registered_models SET tags = $2, description = coalesce($3, description) "
                               "WHERE id = $1", model_id, tags, description)
        return await self.get_model(scope, name)

    async def rename_model(self, scope: Scope, name: str, new_name: str) -> RegisteredModel:
        """The model, its versions and aliases under `new_name`, under both names' locks;
        ALREADY_EXISTS when the caller sees a model of that name, or one of no project has it."""
        async with self._pool.acquire() as conn, conn.transaction():
            for lock in sorted({_name_lock(name), _name_lock(new_name)}):
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lock)
            model_id = await self._resolve(conn, scope, name)
            # as create_model: a name the caller sees (the admin: any), or one of no project, is taken
            if await conn.fetchval(
                    """SELECT 1 FROM registered_models WHERE name = $1 AND id <> $3
                         AND ($2::uuid IS NULL OR project_id = $2 OR project_id IS NULL)""",
                    new_name, scope, model_id):
                raise AlreadyExists(f"model {new_name!r} is registered already")
            await conn.execute("UPDATE registered_models SET name = $2 WHERE id = $1", model_id, new_name)
            await conn.execute("UPDATE model_versions SET name = $2 WHERE model_id = $1", model_id, new_name)
            await conn.execute("UPDATE model_aliases SET name = $2 WHERE model_id = $1", model_id, new_name)
        return await self.get_model(scope, new_name)

    async def delete_model(self, scope: Scope, name: str) -> None:
        """The model with its versions and aliases, in one transaction under the name's lock."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _name_lock(name))
            model_id = await self._resolve(conn, scope, name)
            await conn.execute("DELETE FROM model_aliases WHERE model_id = $1", model_id)
            await conn.execute("DELETE FROM model_versions WHERE model_id = $1", model_id)
            await conn.execute("DELETE FROM registered_models WHERE id = $1", model_id)

    async def update_version(self, scope: Scope, name: str, version: int, *, set_metadata: dict[str, str],
                             delete_keys: list[str]) -> ModelVersion:
        """Metadata entries set and removed in one statement; INVALID_ARGUMENT past the limit."""
        async with self._pool.acquire() as conn, conn.transaction():
            model_id = await self._resolve(conn, scope, name)
            found = await conn.fetchval("SELECT metadata FROM model_versions WHERE model_id = $1 AND version = $2 "
                                        "FOR UPDATE", model_id, version)
            if found is None:
                raise NotFound(f"model {name!r} has no version {version}")
            metadata = {k: v for k, v in {**dict(found), **set_metadata}.items() if k not in delete_keys}
            if len(metadata) > MAX_TAGS:
                raise InvalidArgument(f"a model version holds at most {MAX_TAGS} metadata entries")
            await conn.execute("UPDATE model_versions SET metadata = $3 WHERE model_id = $1 AND version = $2",
                               model_id, version, metadata)
        return await self.get_version(scope, name, version=version)

    async def delete_version(self, scope: Scope, name: str, version: int) -> None:
        """The version and the aliases on it. Its number is not given out again (`next_version`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            model_id = await self._resolve(conn, scope, name)
            await conn.execute("SELECT 1 FROM registered_models WHERE id = $1 FOR UPDATE", model_id)
            await conn.execute("DELETE FROM model_aliases WHERE model_id = $1 AND version = $2", model_id, version)
            if await conn.fetchval("DELETE FROM model_versions WHERE model_id = $1 AND version = $2 RETURNING 1",
                                   model_id, version) is None:
                raise NotFound(f"model {name!r} has no version {version}")


def _model(row: Any) -> RegisteredModel:
    return RegisteredModel(name=row["name"], description=row["description"], tags=dict(row["tags"]),
                           aliases={k: int(v) for k, v in dict(row["aliases"]).items()},
                           latest_version=row["latest"], created_at=row["created_at"])


def _version(row: Any) -> ModelVersion:
    return ModelVersion(name=row["name"], version=row["version"], run_id=row["run_id"].hex, path=row["path"],
                        sha256=row["sha256"], metadata=dict(row["metadata"]),
                        metrics={k: float(v) for k, v in dict(row["metrics"]).items()},
                        created_at=row["created_at"], aliases=list(row["aliases"]),
                        inputs=list(row["inputs"]) if "inputs" in row.keys() else [])
