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


def decode_token(token: str, *, arity: int) -> list[Any] | None:
    """The position a token encodes (a list of `arity` values), None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, list) or len(position) != arity:
        raise InvalidArgument("page_token is malformed: pass back a next_page_token unchanged")
    return position
