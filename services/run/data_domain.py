"""Run data domain: console log chunks, media items and inputs of a run, with their limits.
Pure Python, no I/O.

Limits (documented in README.md, enforced with INVALID_ARGUMENT):
console logs: a chunk up to 64 KiB of UTF-8, at most 100 chunks per AppendLogs, a writer id 1–64
characters; a run keeps its newest 16 MiB (older chunks are dropped, and counted).
Media: keys 1–250 characters; a histogram up to 1,000 bins with increasing finite edges and
non-negative finite counts; info up to 16 KiB of JSON; at most 10,000 media items per run.
Inputs: uri 1–2,048 characters, digest 1–256, context 1–64 (letters, digits, `_`, `-`, `.`), schema up
to 64 KiB of JSON, rows ≥ -1 (-1: unknown); at most 100 per request and 1,000 per run.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trackd_platform.errors import InvalidArgument

LOG_CHUNK_MAX_BYTES = 64 * 1024
LOG_CHUNKS_PER_REQUEST_MAX = 100
LOG_RUN_MAX_BYTES = 16 * 1024 * 1024
WRITER_ID_MAX = 64
LOG_READ_MAX = 1_000
LOG_READ_MAX_BYTES = 4 * 1024 * 1024  # one ReadLogs answer: whole chunks up to this (at least one)
STREAMS = (1, 2)  # stdout, stderr (LogStream)

MEDIA_KEY_MAX = 250
HISTOGRAM_BINS_MAX = 1_000
INFO_MAX_BYTES = 16 * 1024
MEDIA_PER_RUN_MAX = 10_000
IMAGE, HISTOGRAM, TABLE = 1, 2, 3  # MediaKind

URI_MAX = 2_048
DIGEST_MAX = 256
CONTEXT_MAX = 64
SCHEMA_MAX_BYTES = 64 * 1024
INPUTS_PER_REQUEST_MAX = 100
INPUTS_PER_RUN_MAX = 1_000
_CONTEXT = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class LogChunk:
    seq: int
    stream: int
    text: str
    time: datetime | None  # None: the server's clock
    position: int = 0

    @property
    def size(self) -> int:
        return len(self.text.encode())


@dataclass(frozen=True)
class MediaItem:
    key: str
    step: int
    kind: int
    artifact_path: str = ""
    sha256: str = ""
    edges: list[float] | None = None
    counts: list[float] | None = None
    info: dict[str, Any] | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class RunInput:
    uri: str
    digest: str
    schema: Any  # parsed JSON, None when not given
    rows: int  # -1: unknown
    context: str
    run_id: uuid.UUID | None = None
    time: datetime | None = None


def validate_chunks(writer_id: str, chunks: list[LogChunk]) -> list[LogChunk]:
    if not writer_id or len(writer_id) > WRITER_ID_MAX:
        raise InvalidArgument(f"writer_id is 1–{WRITER_ID_MAX} characters")
    if len(chunks) > LOG_CHUNKS_PER_REQUEST_MAX:
        raise InvalidArgument(f"{len(chunks)} chunks in one request; the limit is {LOG_CHUNKS_PER_REQUEST_MAX}")
    for chunk in chunks:
        if chunk.seq < 0:
            raise InvalidArgument(f"chunk seq must be ≥ 0, not {chunk.seq}")
        if chunk.stream not in STREAMS:
            raise InvalidArgument("chunk stream must be STDOUT or STDERR")
        if chunk.size > LOG_CHUNK_MAX_BYTES:
            raise InvalidArgument(f"a chunk of {chunk.size} bytes; the limit is {LOG_CHUNK_MAX_BYTES}")
    return chunks


def read_limit(requested: int) -> int:
    if requested < 0 or requested > LOG_READ_MAX:
        raise InvalidArgument(f"limit must be between 0 and {LOG_READ_MAX}, got {requested}")
    return requested or LOG_READ_MAX


def _finite(name: str, values: list[float]) -> None:
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgument(f"histogram {name} must be finite numbers")


def _json(name: str, text: str, limit: int) -> Any:
    if not text:
        return None
    if len(text.encode()) > limit:
        raise InvalidArgument(f"{name} is {len(text.encode())} bytes of JSON; the limit is {limit}")
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidArgument(f"{name} is not valid JSON") from None


def validate_media(item: MediaItem, info_json: str) -> MediaItem:
    """`item` with its info parsed; raises InvalidArgument for a bad key, kind or histogram."""
    if not item.key or not item.key.strip() or len(item.key) > MEDIA_KEY_MAX:
        raise InvalidArgument(f"media key is 1–{MEDIA_KEY_MAX} characters, not blank")
    info = _json("info_json", info_json, INFO_MAX_BYTES) or {}
    if not isinstance(info, dict):
        raise InvalidArgument("info_json must be a JSON object")
    if item.kind == HISTOGRAM:
        edges, counts = list(item.edges or []), list(item.counts or [])
        if not counts or len(edges) != len(counts) + 1:
            raise InvalidArgument(f"a histogram has n ≥ 1 counts and n + 1 edges, not {len(counts)} and {len(edges)}")
        if len(counts) > HISTOGRAM_BINS_MAX:
            raise InvalidArgument(f"a histogram of {len(counts)} bins; the limit is {HISTOGRAM_BINS_MAX}")
        _finite("edges", edges)
        _finite("counts", counts)
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise InvalidArgument("histogram edges must increase")
        if any(c < 0 for c in counts):
            raise InvalidArgument("histogram counts must not be negative")
        return MediaItem(item.key, item.step, item.kind, edges=edges, counts=counts, info=info)
    if item.kind in (IMAGE, TABLE):
        if not item.artifact_path or not item.sha256:
            raise InvalidArgument("an image or table names its artifact (artifact_path and sha256)")
        return MediaItem(item.key, item.step, item.kind, item.artifact_path, item.sha256, info=info)
    raise InvalidArgument("media kind must be IMAGE, HISTOGRAM or TABLE")


def validate_inputs(inputs: list[tuple[RunInput, str]]) -> list[RunInput]:
    """Inputs with their schema JSON parsed; raises InvalidArgument for a bad field."""
    if len(inputs) > INPUTS_PER_REQUEST_MAX:
        raise InvalidArgument(f"{len(inputs)} inputs in one request; the limit is {INPUTS_PER_REQUEST_MAX}")
    valid = []
    for given, schema_json in inputs:
        if not given.uri or len(given.uri) > URI_MAX:
            raise InvalidArgument(f"an input's uri is 1–{URI_MAX} characters")
        if not given.digest or len(given.digest) > DIGEST_MAX:
            raise InvalidArgument(f"an input's digest is 1–{DIGEST_MAX} characters")
        if not _CONTEXT.match(given.context) or len(given.context) > CONTEXT_MAX:
            raise InvalidArgument(f"an input's context is 1–{CONTEXT_MAX} letters, digits, '_', '-' or '.', "
                                  f"not {given.context[:80]!r}")
        if given.rows < -1:
            raise InvalidArgument(f"an input's rows is ≥ 0 (-1: unknown), not {given.rows}")
        valid.append(RunInput(given.uri, given.digest, _json("schema_json", schema_json, SCHEMA_MAX_BYTES),
                              given.rows, given.context))
    return valid
