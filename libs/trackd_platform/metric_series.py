"""The metric-series read model: what the ingest service writes about each series (run, key,
context) and the query and artifact services read — the limit on keys (the contexts are the
vocabulary's), the latest-point summary kept in `metric_series` and in the Redis cache, and how
both store it: this module alone encodes and decodes the Redis latest-metric hash."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from trackd_platform.vocabulary import CONTEXTS as CONTEXTS  # a series' context: its number → its name

if TYPE_CHECKING:
    import asyncpg

KEY_MAX = 250  # characters in a metric key


@dataclass(frozen=True)
class Summary:
    """A series' latest point (highest step, then timestamp) and its min / max (NaN ignored) and
    point count."""

    step: int
    value: float
    timestamp: int
    min: float
    max: float
    count: int


def summary_of(row: Mapping[str, Any]) -> Summary:
    """A Summary from the summary columns of a `metric_series` row (last_step, last_value, last_ts,
    min_value, max_value, points)."""
    return Summary(
        step=row["last_step"], value=row["last_value"], timestamp=row["last_ts"],
        min=math.nan if row["min_value"] is None else row["min_value"],
        max=math.nan if row["max_value"] is None else row["max_value"], count=row["points"],
    )


async def run_summaries(pool: asyncpg.Pool, run_id: uuid.UUID) -> dict[tuple[str, int], Summary]:
    """The summary of every series of a run that holds a point, by (key, context), as committed in
    PostgreSQL. Raises asyncpg errors as they come (the caller's edge maps them)."""
    rows = await pool.fetch(
        """SELECT key, context, last_step, last_value, last_ts, min_value, max_value, points
           FROM metric_series WHERE run_id = $1 AND points > 0""",
        run_id,
    )
    return {(r["key"], r["context"]): summary_of(r) for r in rows}


def encode_summary(s: Summary) -> str:
    """A Summary as the Redis cache stores it (JSON; ±Inf and NaN kept)."""
    return json.dumps({"step": str(s.step), "value": repr(s.value), "ts": str(s.timestamp),
                       "min": _number(s.min), "max": _number(s.max), "count": s.count})


def decode_summary(raw: bytes | str) -> Summary:
    """The inverse of `encode_summary`. Raises ValueError / KeyError on anything else."""
    d = json.loads(raw)
    return Summary(step=int(d["step"]), value=float(d["value"]), timestamp=int(d["ts"]), min=float(d["min"]),
                   max=float(d["max"]), count=int(d["count"]))


def _number(value: float) -> str:
    if math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return repr(value)


def latest_field(key: str, context: int) -> str:
    """A series' field in its run's latest-metric hash (`cache_keys.latest_metrics`)."""
    return f"{key}\t{context}"


def encode_latest(summaries: Mapping[tuple[str, int], Summary]) -> dict[str, str]:
    """Summaries by (key, context) as the fields and values of a latest-metric hash."""
    return {latest_field(key, context): encode_summary(s) for (key, context), s in summaries.items()}


_Field = TypeVar("_Field", bound=bytes | str)  # HGETALL gives bytes, or str when the client decodes


def decode_latest(raw: Mapping[_Field, bytes | str]) -> dict[tuple[str, int], Summary]:
    """The inverse of `encode_latest` (a hash as HGETALL returns it), sorted by (key, context).
    Raises ValueError / KeyError on anything else."""
    found: dict[tuple[str, int], Summary] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else field
        key, _, context = name.rpartition("\t")
        found[(key, int(context))] = decode_summary(value)
    return dict(sorted(found.items()))
