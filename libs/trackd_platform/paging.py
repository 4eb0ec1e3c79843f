"""Opaque page tokens for keyset pagination: pages do not shift when rows are added."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from trackd_platform.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """0 means the default; negative or above MAX_PAGE_SIZE is INVALID_ARGUMENT."""
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE_SIZE}, got {requested}")
    return requested or DEFAULT_PAGE_SIZE


def encode_token(position: list[Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


INT64 = (-(2**63), 2**63 - 1)


def decode_token(token: str, *, arity: int, kinds: tuple[type, ...] | None = None) -> list[Any] | None:
    """The position a token encodes (a list of `arity` values), None for the first page. With
    `kinds`, each value must be of its kind (an int within int64): a forged token is
    INVALID_ARGUMENT, never a database error."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, list) or len(position) != arity or (
            kinds is not None and not all(_of_kind(v, k) for v, k in zip(position, kinds, strict=True))):
        raise InvalidArgument("page_token is malformed: pass back a next_page_token unchanged")
    return position


def _of_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]
    if kind is str:
        return isinstance(value, str) and "\x00" not in value
    return isinstance(value, kind)
