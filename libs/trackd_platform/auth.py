"""The access model, as pure logic (docs/auth.md): roles, principals, token secrets, and the rule
that says who may do what.

A token grants one role on one project; the admin secret (`TRACKD_ADMIN_TOKEN`) is a global
admin. Each service declares, per RPC, the role it needs and how to find the projects the request
touches (`trackd_platform.access`); this module decides.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from trackd_platform.errors import InvalidArgument, PermissionDenied, Unauthenticated

TOKEN_PREFIX = "trk_"
SECRET_BYTES = 32  # 256 bits from `secrets`: a sha256 of it needs no salt or slow hash
TOKEN_MAX_CHARS = 200  # longer bearer values are refused before any hashing or lookup


class Role(enum.IntEnum):
    """Ordered: each role includes the ones below it. Numbers match trackd.auth.v1.Role."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, value: str | int) -> Role:
        try:
            return cls[value.upper()] if isinstance(value, str) else cls(value)
        except (KeyError, ValueError):
            raise InvalidArgument(f"role {value!r}: use read, write or admin") from None


# A target the request touches: a project id, or GLOBAL for what only a global admin may do
# (create projects, touch a resource that belongs to no project).
GLOBAL: None = None
Target = uuid.UUID | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a project token (id, project, role) or the global admin."""

    key: str  # identifies the caller for rate limits: the token id, "admin" or "anonymous"
    project_id: uuid.UUID | None = None
    role: Role = Role.READ
    admin: bool = False

    def may(self, role: Role, target: Target) -> bool:
        if self.admin:
            return True
        return target is not None and target == self.project_id and self.role >= role

    def require(self, role: Role, targets: Iterable[Target]) -> None:
        """Raises PermissionDenied unless this principal holds `role` on every target."""
        for target in targets:
            if not self.may(role, target):
                where = "globally (the admin token)" if target is None else f"on project {target.hex}"
                raise PermissionDenied(f"this token does not grant {role.name} {where}")


ADMIN = Principal(key="admin", admin=True)
ANONYMOUS = Principal(key="anonymous", admin=True)  # auth off: everything allowed, one rate-limit bucket

# The caller of the RPC being handled, set by the access interceptor for the servicer's use.
current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("trackd_principal", default=ANONYMOUS)


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The secret of the call's `authorization: Bearer <secret>` metadata; Unauthenticated when
    it is missing or malformed."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if not values:
        raise Unauthenticated("authentication required: send `authorization: Bearer <token>` "
                              "(the SDK and CLI read TRACKD_TOKEN)")
    value = values[0].decode() if isinstance(values[0], bytes) else values[0]
    scheme, _, secret = value.strip().partition(" ")
    secret = secret.strip()
    if len(values) > 1 or scheme.lower() != "bearer" or not secret or len(secret) > TOKEN_MAX_CHARS:
        raise Unauthenticated("malformed authorization metadata: expected one `Bearer <token>`")
    return secret


def is_admin_secret(secret: str, admin_secret: str) -> bool:
    return bool(admin_secret) and hmac.compare_digest(secret.encode(), admin_secret.encode())
