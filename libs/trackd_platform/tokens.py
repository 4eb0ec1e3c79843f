"""API tokens in PostgreSQL: created and revoked by the run service's TokenService, looked up by
every service's access check.

A lookup is cached for `CACHE_TTL_S` seconds (answers for unknown secrets too, so a flood of bad
tokens does not reach PostgreSQL): a revoked or expired token stops working on every service
within that bound.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg
import cachetools

from trackd_platform.auth import Principal, Role, hash_secret, new_secret
from trackd_platform.errors import InvalidArgument, NotFound, Unauthenticated

CACHE_TTL_S = 3.0  # a revoked token is refused within this; the web UI is back at its login page within 5 s
CACHE_ENTRIES = 10_000
NAME_MAX = 250
MAX_EXPIRES_S = 5 * 365 * 24 * 3600
LIST_MAX = 1_000  # tokens listed per call, newest first


@dataclass(frozen=True)
class Token:
    id: uuid.UUID
    project_id: uuid.UUID
    project_name: str
    name: str
    role: Role
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Token:
        return cls(row["id"], row["project_id"], row["project_name"], row["name"], Role(row["role"]),
                   row["created_at"], row["expires_at"], row["revoked_at"])


_SELECT = """SELECT t.*, p.name AS project_name FROM api_tokens t JOIN projects p ON p.id = t.project_id"""


class TokenStore:
    def __init__(self, pool: asyncpg.Pool, *, cache_ttl_s: float = CACHE_TTL_S) -> None:
        self._pool = pool
        # secret hash → (principal, expiry) or None; an expiry is honoured to the second even when cached
        self._cache: cachetools.TTLCache[str, tuple[Principal, dt.datetime | None] | None] = cachetools.TTLCache(
            CACHE_ENTRIES, cache_ttl_s)

    async def authenticate(self, secret: str) -> Principal:
        """The principal of a token secret; Unauthenticated when unknown, expired or revoked."""
        digest = hash_secret(secret)
        if digest in self._cache:
            found = self._cache[digest]
        else:
            row = await self._pool.fetchrow(
                """SELECT id, project_id, role, expires_at FROM api_tokens WHERE secret_hash = $1
                   AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""", digest)
            found = (Principal(key=row["id"].hex, project_id=row["project_id"], role=Role(row["role"])),
                     row["expires_at"]) if row else None
            self._cache[digest] = found
        if found is None or (found[1] is not None and found[1] <= dt.datetime.now(dt.UTC)):
            raise Unauthenticated("the token is unknown, expired or revoked: create one with `trackd tokens create`")
        return found[0]

    async def create(self, project: str, role: Role, name: str, expires_in_s: int) -> tuple[Token, str]:
        """A new token and its secret (returned this once; only its sha256 is kept)."""
        if len(name) > NAME_MAX:
            raise InvalidArgument(f"a token name is at most {NAME_MAX} characters")
        if not 0 <= expires_in_s <= MAX_EXPIRES_S:
            raise InvalidArgument(f"expires_in_seconds is 0 (never) to {MAX_EXPIRES_S} (5 years)")
        project_id = await self._pool.fetchval("SELECT id FROM projects WHERE name = $1", project)
        if project_id is None:
            raise NotFound(f"project {project!r} does not exist")
        secret, token_id = new_secret(), uuid.uuid4()
        await self._pool.execute(
            """INSERT INTO api_tokens (id, secret_hash, project_id, role, name, expires_at)
               VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::bigint > 0 THEN now() + make_interval(secs => $6) END)""",
            token_id, hash_secret(secret), project_id, int(role), name, expires_in_s)
        return await self.get(token_id), secret

    async def get(self, token_id: uuid.UUID) -> Token:
        row = await self._pool.fetchrow(f"{_SELECT} WHERE t.id = $1", token_id)
        if row is None:
            raise NotFound(f"token {token_id.hex} does not exist")
        return Token.from_row(row)

    async def list(self, project: str, *, include_revoked: bool) -> list[Token]:
        """Tokens of the project named `project` (empty: of every project), newest first, at most
        LIST_MAX."""
        rows = await self._pool.fetch(
            f"""{_SELECT} WHERE ($1 = '' OR p.name = $1) AND ($2 OR t.revoked_at IS NULL)
                ORDER BY t.created_at DESC LIMIT {LIST_MAX}""",
            project, include_revoked)
        return [Token.from_row(r) for r in rows]

    async def project_name(self, project_id: uuid.UUID) -> str:
        """The name of the project `project_id` ("" when it does not exist)."""
        return str(await self._pool.fetchval("SELECT name FROM projects WHERE id = $1", project_id) or "")

    async def revoke(self, token_id: uuid.UUID) -> Token:
        """Idempotent: revoking a revoked token keeps its first revocation time."""
        await self._pool.execute(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1", token_id)
        return await self.get(token_id)
