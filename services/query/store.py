"""Read access for the query service: PostgreSQL (runs, params, metric summaries and chunks)
and the Redis latest-metric cache. Writes nothing."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg
import numpy as np
import prometheus_client
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from trackd_platform.cache_keys import latest_metrics
from trackd_platform.errors import InvalidArgument, NotFound
from trackd_platform.ids import format_id
from trackd_platform.metric_series import Summary, decode_latest, summary_of
from trackd_platform.paging import INT64
from trackd_platform.run_records import VIEW_FILTER, Run, RunStatus, View, get_runs

from . import history
from .analysis import ParamPoint
from .grammar import Expr, OrderKey
from .search_sql import compile_search, next_token

log = logging.getLogger(__name__)

MAX_ANALYZED_RUNS = 10_000
MAX_LISTED_KEYS = 2_000
EXPORT_PART_POINTS = 65_536
EXPORT_PAGE_CHUNKS = 16  # chunks per keyset page of an export (a chunk is one batch of one series)
BULK_PREFETCH_CHUNKS = 64  # chunks a bulk history read takes from its cursor at a time
T = TypeVar("T")
BEFORE_ANY_STEP = -(2**63)  # steps are int64: the keyset position before a series' first chunk

# The chunks of one series ($1 run, $2 key, $3 context) that reach into [$4, $5] (NULL: unbounded).
_SERIES_RANGE = """s.run_id = $1 AND s.key = $2 AND s.context = $3
    AND ($4::bigint IS NULL OR c.last_step >= $4) AND ($5::bigint IS NULL OR c.first_step <= $5)"""

# The rows of a page (search_page.PageRow), in one statement (a round trip each took most of a
# search's time): the runs of a page query ({page}: id, o0, o1, …) in its order ({order}), with
# their params, tags and series summaries as arrays, one row a run: only the keys in {params} /
# {tags} / {metrics} when given; notes and the environment (less its packages) when {full}. Times
# are integer epoch microseconds (`*_us`): search_page.py fills protobuf Timestamps from them.
_PAGE_ROWS = """SELECT page.*, r.experiment_id, e.project_id, r.name, r.status,
       (extract(epoch FROM r.start_time) * 1000000)::int8 AS start_us,
       (extract(epoch FROM r.end_time) * 1000000)::int8 AS end_us,
       (extract(epoch FROM r.last_heartbeat) * 1000000)::int8 AS heartbeat_us,
       r.parent_run_id, r.user_name, r.source, r.deleted_at IS NOT NULL AS deleted,
       CASE WHEN {full} THEN r.notes ELSE '' END AS notes,
       CASE WHEN {full} THEN r.environment - 'packages' ELSE '{{}}'::jsonb END AS environment,
       p.keys AS param_keys, p.vals AS param_values, t.keys AS tag_keys, t.vals AS tag_values,
       m.metric_keys, m.contexts, m.steps, m.last_values, m.stamps, m.mins, m.maxs, m.counts
    FROM ({page}) page JOIN runs r ON r.id = page.id JOIN experiments e ON e.id = r.experiment_id
    LEFT JOIN LATERAL (SELECT array_agg(key) AS keys, array_agg(value) AS vals FROM run_params
                       WHERE run_id = r.id AND ({params} IS NULL OR key = ANY({params}))) p ON true
    LEFT JOIN LATERAL (SELECT array_agg(key) AS keys, array_agg(value) AS vals FROM run_tags
                       WHERE run_id = r.id AND ({tags} IS NULL OR key = ANY({tags}))) t ON true
    LEFT JOIN LATERAL (SELECT array_agg(key) AS metric_keys, array_agg(context) AS contexts,
                              array_agg(last_step) AS steps, array_agg(last_value) AS last_values,
                              array_agg(last_ts) AS stamps, array_agg(COALESCE(min_value, 'NaN')) AS mins,
                              array_agg(COALESCE(max_value, 'NaN')) AS maxs, array_agg(points) AS counts
                       FROM (SELECT * FROM metric_series WHERE run_id = r.id AND points > 0
                               AND ({metrics} IS NULL OR key = ANY({metrics})) ORDER BY key, context) s) m ON true
    ORDER BY {order}"""


def _page_rows_sql(page: str, order: str, first_bind: int) -> str:
    """_PAGE_ROWS over the page query `page`, whose binds end before ${first_bind}: the params',
    tags' and metrics' keys and the `full` flag are the four binds from there."""
    params, tags, metrics, full = (f"${first_bind + i}" for i in range(4))
    return _PAGE_ROWS.format(page=page, order=order, params=f"{params}::text[]", tags=f"{tags}::text[]",
                             metrics=f"{metrics}::text[]", full=f"{full}::bool")


# (run, key, context) → summary
Latest = dict[tuple[str, int], Summary]


@dataclass(frozen=True)
class Columns:
    """What a runs table shows: only these params, tags and metric keys."""

    params: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExperimentStats:
    experiment_id: uuid.UUID
    runs: int
    running: int
    last_activity: datetime | None


@dataclass(frozen=True)
class Selection:
    experiment_ids: list[uuid.UUID]
    expr: Expr | None
    view: View


class QueryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def experiment_ids(self, ids: list[uuid.UUID], names: list[str], project: str) -> list[uuid.UUID]:
        """The experiments to search: the given ids and names (NOT_FOUND for unknown ones), or
        every experiment of `project` (of every project when empty) when none is given."""
        if not ids and not names:
            rows = await self._pool.fetch(
                """SELECT e.id FROM experiments e JOIN projects p ON p.id = e.project_id
                   WHERE $1 = '' OR p.name = $1""", project)
            return [r["id"] for r in rows]
        found = list(ids)
        if ids:
            known = {r["id"] for r in await self._pool.fetch(
                "SELECT id FROM experiments WHERE id = ANY($1::uuid[])", ids)}
            if missing := [i for i in ids if i not in known]:
                raise NotFound(f"experiment {format_id(missing[0])} does not exist")
        if names:
            rows = await self._pool.fetch(
                """SELECT e.id, e.name FROM experiments e JOIN projects p ON p.id = e.project_id
                   WHERE p.name = $1 AND e.name = ANY($2::text[])""", project or "default", names)
            by_name = {r["name"]: r["id"] for r in rows}
            if missing_names := [n for n in names if n not in by_name]:
                raise NotFound(f"experiment {missing_names[0]!r} does not exist in project "
                               f"{project or 'default'!r}: check the name with `trackd experiments`")
            found += [by_name[n] for n in names]
        return list(dict.fromkeys(found))

    async def search(
        self, selection: Selection, order: list[OrderKey], *, limit: int, page_token: str,
        columns: Columns | None = None,
    ) -> tuple[list[asyncpg.Record], str]:
        """One page of runs as rows of _PAGE_ROWS (search_page.PageRow), in order, and the next page
        token ("" on the last page). With `columns`, each row carries only those params, tags and
        metrics, and no notes or environment; without, every one, and the environment without its
        packages (SearchRuns leaves them out)."""
        search = compile_search(selection.expr, order, experiment_ids=selection.experiment_ids, view=selection.view,
                                limit=limit, page_token=page_token)
        keys = (None, None, None) if columns is None else (list(columns.params), list(columns.tags),
                                                           list(columns.metrics))
        rows: list[asyncpg.Record] = []
        try:
            for sql, args in search.parts:  # in turn, until the page is full
                *binds, _limit = args  # a part's last bind is its LIMIT: a later part reads only what is missing
                rows += await self._pool.fetch(_page_rows_sql(sql, search.order_by, len(args) + 1),
                                               *binds, limit + 1 - len(rows), *keys, columns is None)
                if len(rows) > limit:
                    break
        except asyncpg.DataError as exc:  # e.g. a time beyond PostgreSQL's range
            raise InvalidArgument(f"the filter cannot be evaluated: {exc}") from None
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = next_token(search, selection.expr, experiment_ids=selection.experiment_ids, view=selection.view,
                               last_row=rows[-1])
        return rows, token

    async def run_keys(self, selection: Selection, max_runs: int
                       ) -> tuple[list[str], list[str], list[tuple[str, int]], int]:
        """(param keys, tag keys, (metric key, context)s, runs scanned) of the newest `max_runs`
        runs of a selection, each list sorted and cut at MAX_LISTED_KEYS."""
        if selection.expr is None and len(selection.experiment_ids) == 1:  # the common case: the index's order
            ids = [r["id"] for r in await self._pool.fetch(
                f"""SELECT id FROM runs r WHERE r.experiment_id = $1 AND {VIEW_FILTER[selection.view]}
                    ORDER BY r.start_time DESC, r.id DESC LIMIT $2""", selection.experiment_ids[0], max_runs)]
        else:
            search = compile_search(selection.expr, [], experiment_ids=selection.experiment_ids,
                                    view=selection.view, limit=max_runs - 1, page_token="")
            try:
                ids = [r["id"] for r in await self._pool.fetch(search.sql, *search.args)]
            except asyncpg.DataError as exc:
                raise InvalidArgument(f"the filter cannot be evaluated: {exc}") from None
        async with self._pool.acquire() as conn:
            params = await conn.fetch(
                "SELECT DISTINCT key FROM run_params WHERE run_id = ANY($1::uuid[]) ORDER BY key LIMIT $2",
                ids, MAX_LISTED_KEYS)
            tags = await conn.fetch(
                "SELECT DISTINCT key FROM run_tags WHERE run_id = ANY($1::uuid[]) ORDER BY key LIMIT $2",
                ids, MAX_LISTED_KEYS)
            metrics = await conn.fetch(
                """SELECT DISTINCT key, context FROM metric_series WHERE run_id = ANY($1::uuid[]) AND points > 0
                   ORDER BY key, context LIMIT $2""", ids, MAX_LISTED_KEYS)
        return ([r["key"] for r in params], [r["key"] for r in tags], [(r["key"], r["context"]) for r in metrics],
                len(ids))

    async def experiment_stats(self, ids: list[uuid.UUID]) -> list[ExperimentStats]:
        """Runs (not deleted), RUNNING runs and the last start / end / heartbeat per experiment;
        experiments without runs are listed with zeros."""
        rows = await self._pool.fetch(
            """SELECT experiment_id, count(*) AS runs, count(*) FILTER (WHERE status = $2) AS running,
                      max(greatest(start_time, end_time, last_heartbeat)) AS last_activity
               FROM runs WHERE experiment_id = ANY($1::uuid[]) AND deleted_at IS NULL GROUP BY experiment_id""",
            ids, RunStatus.RUNNING)
        found = {r["experiment_id"]: r for r in rows}
        return [ExperimentStats(i, found[i]["runs"], found[i]["running"], found[i]["last_activity"])
                if i in found else ExperimentStats(i, 0, 0, None) for i in ids]

    async def select_run_ids(self, selection: Selection) -> list[uuid.UUID]:
        """Every run a selection covers (for analysis), newest first; at most MAX_ANALYZED_RUNS."""
        search = compile_search(selection.expr, [], experiment_ids=selection.experiment_ids,
                                view=selection.view, limit=MAX_ANALYZED_RUNS, page_token="")
        rows = await self._pool.fetch(search.sql, *search.args)
        if len(rows) > MAX_ANALYZED_RUNS:
            raise InvalidArgument(f"more than {MAX_ANALYZED_RUNS} runs selected: narrow the filter")
        return [uuid.UUID(str(r["id"])) for r in rows]

    async def get_runs(self, run_ids: list[uuid.UUID]) -> list[Run]:
        runs: list[Run] = await get_runs(self._pool, run_ids)
        if len(runs) < len(set(run_ids)):
            missing = set(run_ids) - {r.id for r in runs}
            raise NotFound(f"run {format_id(next(iter(missing)))} does not exist")
        return runs

    async def latest_from_db(self, run_ids: list[uuid.UUID], keys: tuple[str, ...] | None = None
                             ) -> dict[uuid.UUID, Latest]:
        """The latest point of every series of these runs (of the series named `keys` only, when given)."""
        rows = await self._pool.fetch(
            """SELECT run_id, key, context, last_step, last_value, last_ts, min_value, max_value, points
               FROM metric_series WHERE run_id = ANY($1::uuid[]) AND points > 0
                 AND ($2::text[] IS NULL OR key = ANY($2::text[])) ORDER BY key, context""",
            run_ids, None if keys is None else list(keys))
        found: dict[uuid.UUID, Latest] = {i: {} for i in run_ids}
        for r in rows:
            found[r["run_id"]][(r["key"], r["context"])] = summary_of(r)
        return found

    async def param_points(self, run_ids: list[uuid.UUID], metric: str, context: int
                           ) -> tuple[list[tuple[ParamPoint, float]], list[str]]:
        """Parallel coordinates' input in two plain set-based queries (whole runs and every latest
        metric of 10,000 runs took over a second): the runs having a finite latest value of the
        metric, in `run_ids` order, with their params and that value; and every param key of the runs."""
        values = {r["run_id"]: r["last_value"] for r in await self._pool.fetch(
            """SELECT run_id, last_value FROM metric_series
               WHERE run_id = ANY($1::uuid[]) AND key = $2 AND context = $3 AND points > 0""",
            run_ids, metric, context)}
        params: dict[uuid.UUID, dict[str, str]] = {}
        for run_id, key, value in await self._pool.fetch(
                "SELECT run_id, key, value FROM run_params WHERE run_id = ANY($1::uuid[])", run_ids):
            params.setdefault(run_id, {})[key] = value
        points = [(ParamPoint(i, params.get(i, {})), values[i]) for i in run_ids
                  if i in values and math.isfinite(values[i])]
        return points, sorted({k for p in params.values() for k in p})

    async def require_run(self, run_id: uuid.UUID) -> int:
        """The run's status; NOT_FOUND when it does not exist."""
        status = await self._pool.fetchval("SELECT status FROM runs WHERE id = $1", run_id)
        if status is None:
            raise NotFound(f"run {format_id(run_id)} does not exist")
        return int(status)

    async def needs_repair(self, run_id: uuid.UUID) -> bool:
        """Whether the Redis cache of this run missed updates (ingest queued it for repair)."""
        return bool(await self._pool.fetchval("SELECT 1 FROM latest_cache_repairs WHERE run_id = $1", run_id))

    async def points(self, run_id: uuid.UUID, key: str, context: int, start: int | None = None,
                     end: int | None = None) -> history.Points:
        """Every point of a series within [start, end], in (step, timestamp) order."""
        rows = await self._pool.fetch(
            f"""SELECT c.first_step, c.last_step, c.points, c.steps, c.vals, c.timestamps FROM metric_series s
               JOIN metric_chunks c ON c.run_id = s.run_id AND c.series_id = s.id
               WHERE {_SERIES_RANGE} ORDER BY c.first_step, c.chunk_id""",
            run_id, key, context, start, end)
        if not rows:
            await self.require_run(run_id)
        points = history.from_chunks([history.Chunk(r["first_step"], r["last_step"], r["points"], r["steps"],
                                                    r["vals"], r["timestamps"]) for r in rows])
        return history.in_range(points, start, end)

    async def downsampled(self, run_id: uuid.UUID, key: str, context: int, start: int | None, end: int | None,
                          max_points: int) -> tuple[history.Points, int]:
        """A series within [start, end] downsampled to at most `max_points` points, and the number
        of points it holds there. A long series (OVERVIEW_RATIO points or more per point shown) is
        drawn from its chunks' overviews: chunks without one, or cut by the range, are read whole.
        One query: the series' point count is a window over the same rows, and only the columns
        each chunk is read by leave PostgreSQL."""
        threshold: int | None = history.OVERVIEW_RATIO * max_points if max_points > 0 else None
        if threshold is not None and threshold > INT64[1]:  # no series holds that many: read whole
            threshold = None
        rows = await self._pool.fetch(
            f"""SELECT first_step, last_step, points, overview,
                       CASE WHEN overview IS NULL THEN steps END AS steps,
                       CASE WHEN overview IS NULL THEN vals END AS vals,
                       CASE WHEN overview IS NULL THEN timestamps END AS timestamps
                FROM (SELECT c.first_step, c.last_step, c.points, c.steps, c.vals, c.timestamps, c.chunk_id,
                             CASE WHEN $6::bigint IS NOT NULL AND sum(c.points) OVER () >= $6
                                   AND ($4::bigint IS NULL OR c.first_step >= $4)
                                   AND ($5::bigint IS NULL OR c.last_step <= $5) THEN c.overview END AS overview
                      FROM metric_series s JOIN metric_chunks c ON c.run_id = s.run_id AND c.series_id = s.id
                      WHERE {_SERIES_RANGE}) inside
                ORDER BY first_step, chunk_id""", run_id, key, context, start, end, threshold)
        if not rows:
            await self.require_run(run_id)
        summarized = [r["overview"] for r in rows if r["overview"] is not None]
        whole = history.in_range(history.from_chunks([
            history.Chunk(r["first_step"], r["last_step"], r["points"], r["steps"], r["vals"], r["timestamps"])
            for r in rows if r["overview"] is None]), start, end)
        if not summarized:
            return history.downsample(whole, max_points), len(whole)
        counted = sum(r["points"] for r in rows if r["overview"] is not None) + len(whole)
        return history.downsample(history.from_overviews(summarized, whole), max_points), counted

    async def extent(self, run_ids: list[uuid.UUID], key: str, context: int) -> tuple[int, int, int]:
        """(points, first step, last step) of one series over several runs, from the series and
        chunk rows alone (no point is read): what an aggregation would cover."""
        row = await self._pool.fetchrow(
            """SELECT (SELECT coalesce(sum(points), 0) FROM metric_series
                       WHERE run_id = ANY($1::uuid[]) AND key = $2 AND context = $3) AS points,
                      min(c.first_step) AS first, max(c.last_step) AS last
               FROM metric_series s JOIN metric_chunks c ON c.run_id = s.run_id AND c.series_id = s.id
               WHERE s.run_id = ANY($1::uuid[]) AND s.key = $2 AND s.context = $3""", run_ids, key, context)
        return int(row["points"]), int(row["first"] or 0), int(row["last"] or 0)

    async def each_series(self, run_ids: list[uuid.UUID], keys: list[str], context: int,
                          reduce: Callable[[history.Points], T]) -> dict[tuple[uuid.UUID, str], T]:
        """`reduce` of every point (in step order) of several series of several runs, read in one
        query: (run, key) → its result, for the series that have points. The rows come through a
        cursor series by series, so only one series is held decoded at a time, whatever the
        number of runs and keys."""
        found: dict[tuple[uuid.UUID, str], T] = {}
        name: tuple[uuid.UUID, str] | None = None
        parts: list[tuple[bytes, bytes, bytes]] = []
        async with self._pool.acquire() as connection, connection.transaction():
            async for r in connection.cursor(
                    """SELECT s.run_id, s.key, c.steps, c.vals, c.timestamps FROM metric_series s
                       JOIN metric_chunks c ON c.run_id = s.run_id AND c.series_id = s.id
                       WHERE s.run_id = ANY($1::uuid[]) AND s.key = ANY($2::text[]) AND s.context = $3
                       ORDER BY s.run_id, s.key, c.first_step""",
                    run_ids, keys, context, prefetch=BULK_PREFETCH_CHUNKS):
                if (r["run_id"], r["key"]) != name:
                    if name is not None:
                        found[name] = reduce(history.from_packed(parts))
                    name, parts = (r["run_id"], r["key"]), []
                parts.append((r["steps"], r["vals"], r["timestamps"]))
        if name is not None:
            found[name] = reduce(history.from_packed(parts))
        return found

    async def require_runs(self, run_ids: list[uuid.UUID]) -> None:
        """NOT_FOUND naming the first of `run_ids` that does not exist."""
        known = {r["id"] for r in await self._pool.fetch("SELECT id FROM runs WHERE id = ANY($1::uuid[])", run_ids)}
        for run_id in run_ids:
            if run_id not in known:
                raise NotFound(f"run {format_id(run_id)} does not exist")

    async def points_since(self, run_id: uuid.UUID, from_step: int, keys: list[str]
                           ) -> dict[tuple[str, int], history.Points]:
        """Every series of a run (or only `keys`) from `from_step` on."""
        rows = await self._pool.fetch(
            """SELECT s.key, s.context, c.steps, c.vals, c.timestamps FROM metric_series s
               JOIN metric_chunks c ON c.run_id = s.run_id AND c.series_id = s.id
               WHERE s.run_id = $1 AND c.last_step >= $2 AND (cardinality($3::text[]) = 0 OR s.key = ANY($3))""",
            run_id, from_step, keys)
        grouped: dict[tuple[str, int], list[tuple[bytes, bytes, bytes]]] = {}
        for r in rows:
            grouped.setdefault((r["key"], r["context"]), []).append((r["steps"], r["vals"], r["timestamps"]))
        return {name: history.in_range(history.from_packed(parts), from_step, None)
                for name, parts in grouped.items()}

    async def export(self, run_id: uuid.UUID, key: str, context: int, start: int | None = None,
                     end: int | None = None) -> AsyncIterator[history.Points]:
        """A series within [start, end] in step order, in parts of about EXPORT_PART_POINTS
        (none empty), holding in memory only the chunks whose steps overlap. Chunks are read by
        keyset, in pages of EXPORT_PAGE_CHUNKS in (first_step, chunk_id) order, each page with a
        connection of its own for one query: no pooled connection is held while a part waits for
        the client to take it, however slowly it reads.
        Points committed while an export runs may or may not be in it."""
        series_id = await self._pool.fetchval(
            "SELECT id FROM metric_series WHERE run_id = $1 AND key = $2 AND context = $3", run_id, key, context)
        if series_id is None:
            await self.require_run(run_id)
            return
        pending: list[history.Points] = []
        size = 0
        after = (BEFORE_ANY_STEP, -1)
        while True:
            rows = await self._pool.fetch(
                """SELECT first_step, chunk_id, steps, vals, timestamps FROM metric_chunks
                   WHERE run_id = $1 AND series_id = $2 AND (first_step, chunk_id) > ($3, $4)
                     AND ($6::bigint IS NULL OR last_step >= $6) AND ($7::bigint IS NULL OR first_step <= $7)
                   ORDER BY first_step, chunk_id LIMIT $5""",
                run_id, series_id, after[0], after[1], EXPORT_PAGE_CHUNKS, start, end)
            for row in rows:
                if size >= EXPORT_PART_POINTS:  # every pending point below this chunk's first step is final
                    merged = history.merge_sorted(pending)
                    cut = int(np.searchsorted(merged.steps, row["first_step"], "left"))
                    for at in range(0, cut, EXPORT_PART_POINTS):
                        yield merged.take(slice(at, min(at + EXPORT_PART_POINTS, cut)))
                    pending, size = [merged.take(slice(cut, None))], len(merged) - cut
                chunk = history.in_range(history.from_packed([(row["steps"], row["vals"], row["timestamps"])]),
                                         start, end)
                pending.append(chunk)
                size += len(chunk)
            if len(rows) < EXPORT_PAGE_CHUNKS:
                break
            after = (rows[-1]["first_step"], rows[-1]["chunk_id"])
        rest = history.merge_sorted(pending)
        for at in range(0, len(rest), EXPORT_PART_POINTS):
            yield rest.take(slice(at, at + EXPORT_PART_POINTS))


class LatestReader:
    """Latest metrics from the Redis cache, falling back to PostgreSQL when the cache is cold,
    marked for repair, or Redis is unreachable. Both hold the same numbers (ingest writes both)."""

    def __init__(
        self, redis: aioredis.Redis, store: QueryStore, *, registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self._redis = redis
        self._store = store
        self._lookups = prometheus_client.Counter(
            "trackd_query_latest_cache", "Latest-metric reads: hit (from Redis) or miss (from PostgreSQL)",
            ["result"], registry=registry)

    async def latest(self, run_id: uuid.UUID) -> tuple[Latest, bool]:
        """(summaries, True when from the cache)."""
        if not await self._store.needs_repair(run_id):
            try:
                raw = await self._redis.hgetall(latest_metrics(run_id))
            except (TimeoutError, RedisError, OSError) as exc:
                log.warning("Redis unavailable (%s): latest metrics of %s read from PostgreSQL", exc, run_id.hex)
                raw = {}
            if raw:
                self._lookups.labels("hit").inc()
                return decode_latest(raw), True
        self._lookups.labels("miss").inc()
        await self._store.require_run(run_id)
        return (await self._store.latest_from_db([run_id]))[run_id], False
