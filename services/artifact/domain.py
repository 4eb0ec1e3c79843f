"""Artifact domain: path rules and limits. Pure Python.

Limits (documented in README.md): a path is 1–1,024 characters of `/`-separated segments, none
empty, `.` or `..`, without NUL or backslash, not absolute; an artifact is at most 50 GiB;
at most 100 metadata entries (keys ≤ 250, values ≤ 5,000 characters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from trackd_platform.errors import InvalidArgument

PATH_MAX = 1_024
MAX_ARTIFACT_BYTES = 50 * 1024**3
PART_BYTES = 8 * 1024 * 1024  # S3 multipart part size: bounds the server's memory per upload
METADATA_MAX = 100
TYPES = {1: "file", 2: "model", 3: "figure", 4: "data", 5: "text"}


@dataclass(frozen=True)
class Artifact:
    run_id: str
    path: str
    size: int
    sha256: str
    type: int
    metadata: dict[str, str]
    created_at: datetime | None


def validate_path(path: str, *, allow_empty: bool = False) -> str:
    """A relative artifact path; `allow_empty` for prefixes (the run's root)."""
    if not path:
        if allow_empty:
            return ""
        raise InvalidArgument("artifact path must not be empty")
    if len(path) > PATH_MAX:
        raise InvalidArgument(f"artifact path is {len(path)} characters; the limit is {PATH_MAX}")
    if "\x00" in path or "\\" in path:
        raise InvalidArgument("artifact paths use '/' and contain no NUL or backslash")
    if path.startswith("/"):
        raise InvalidArgument(f"artifact path {path[:80]!r} must be relative to the run, not absolute")
    segments = path.rstrip("/").split("/") if allow_empty else path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidArgument(f"artifact path {path[:80]!r} has an empty, '.' or '..' segment")
    return path


def validate_type(number: int) -> int:
    if number not in TYPES:
        raise InvalidArgument("artifact type is required: file, model, figure, data or text")
    return number


def validate_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if len(metadata) > METADATA_MAX:
        raise InvalidArgument(f"{len(metadata)} metadata entries; the limit is {METADATA_MAX}")
    for key, value in metadata.items():
        if not key or len(key) > 250 or len(value) > 5_000:
            raise InvalidArgument(f"metadata {key[:40]!r}: keys are 1–250 characters, values at most 5,000")
    return dict(metadata)


def validate_sha256(digest: str) -> str:
    if digest and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise InvalidArgument("expected_sha256 is 64 lowercase hex digits")
    return digest


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"
