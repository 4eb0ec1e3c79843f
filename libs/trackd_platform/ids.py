"""Entity ids as clients see them: UUIDs written as 32 hex digits."""

from __future__ import annotations

import uuid

from trackd_platform.errors import InvalidArgument


def parse_id(kind: str, value: str) -> uuid.UUID:
    """A run/experiment/project/stream id as sent by a client (hex, with or without dashes)."""
    if not value:
        raise InvalidArgument(f"{kind} is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{kind} {value[:80]!r} is not a valid id (32 hex digits)") from None


def optional_id(kind: str, value: str) -> uuid.UUID | None:
    return parse_id(kind, value) if value else None


def format_id(value: uuid.UUID) -> str:
    return value.hex
