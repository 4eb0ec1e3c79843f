"""Which project a resource belongs to: the lookups behind every access check.

Runs, experiments, studies and trials never move between projects, so their answers are cached
for the life of the process (bounded LRU). A model's project may still be unset (only its first
version sets it), so only set answers are cached. Unknown resources answer nothing: the servicer
then reports NOT_FOUND as it would without auth.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable

import asyncpg
import cachetools

CACHE_ENTRIES = 100_000

_QUERIES = {
    "run": """SELECT r.id AS key, e.project_id FROM runs r JOIN experiments e ON e.id = r.experiment_id
              WHERE r.id = ANY($1::uuid[])""",
    "experiment": "SELECT id AS key, project_id FROM experiments WHERE id = ANY($1::uuid[])",
    "project": "SELECT id AS key, id AS project_id FROM projects WHERE id = ANY($1::uuid[])",
    "project_name": "SELECT name AS key, id AS project_id FROM projects WHERE name = ANY($1::text[])",
    "study": """SELECT s.id AS key, e.project_id FROM studies s JOIN experiments e ON e.id = s.experiment_id
                WHERE s.id = ANY($1::uuid[])""",
    "study_name": """SELECT s.name AS key, e.project_id FROM studies s JOIN experiments e ON e.id = s.experiment_id
                     WHERE s.name = ANY($1::text[])""",
    "trial": """SELECT t.id AS key, e.project_id FROM trials t JOIN studies s ON s.id = t.study_id
                JOIN experiments e ON e.id = s.experiment_id WHERE t.id = ANY($1::uuid[])""",
    "model": "SELECT name AS key, project_id FROM registered_models WHERE name = ANY($1::text[])",
    "token": "SELECT id AS key, project_id FROM api_tokens WHERE id = ANY($1::uuid[])",
}


class Unowned(enum.Enum):
    """The owner of a resource that exists but belongs to no project (a model before its first version)."""

    UNOWNED = "unowned"


UNOWNED = Unowned.UNOWNED


class Owners:
    """Resource → project lookups against the shared PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: cachetools.LRUCache[tuple[str, object], uuid.UUID] = cachetools.LRUCache(CACHE_ENTRIES)

    async def projects(self, kind: str, keys: Iterable[uuid.UUID | str]) -> dict[uuid.UUID | str, uuid.UUID | Unowned]:
        """Key → project id (or UNOWNED) for the keys of `kind` that exist; unknown keys are absent."""
        wanted = list(dict.fromkeys(keys))
        found: dict[uuid.UUID | str, uuid.UUID | Unowned] = {}
        missing = []
        for key in wanted:
            cached = self._cache.get((kind, key))
            if cached is None:
                missing.append(key)
            else:
                found[key] = cached
        if missing:
            for row in await self._pool.fetch(_QUERIES[kind], missing):
                if row["project_id"] is None:
                    found[row["key"]] = UNOWNED
                else:
                    found[row["key"]] = self._cache[(kind, row["key"])] = row["project_id"]
        return found

    async def project_name(self, project_id: uuid.UUID) -> str | None:
        name: str | None = await self._pool.fetchval("SELECT name FROM projects WHERE id = $1", project_id)
        return name
