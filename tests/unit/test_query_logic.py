"""The search grammar, its SQL compilation and the metric-history numerics (pure logic)."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
from trackd_platform.errors import InvalidArgument
from trackd_services.query import history
from trackd_services.query.grammar import And, Compare, Field, In, IsNull, Not, Or, parse_filter, parse_order_by
from trackd_services.query.search_sql import compile_search
from trackd_services.run.domain import View


def test_precedence_not_binds_tighter_than_and_than_or() -> None:
    expr = parse_filter("metrics.a > 1 OR NOT params.b = 'x' AND tags.c IS NULL")
    assert expr == Or((
        Compare(Field("metric", "a"), ">", 1.0),
        And((Not(Compare(Field("param", "b"), "=", "x")), IsNull(Field("tag", "c"), negated=False))),
    ))


def test_fields_keys_contexts_and_literals() -> None:
    assert parse_filter("max(metrics.`val loss`@eval) <= -1e-3") == Compare(
        Field("metric", "val loss", "max", 2), "<=", -0.001)
    assert parse_filter('metric."a/b:c" <> 2') == Compare(Field("metric", "a/b:c"), "!=", 2.0)
    assert parse_filter("attributes.run_name == 'it''s'") == Compare(Field("attribute", "name"), "=", "it's")
    assert parse_filter("attr.status in ('finished', 'FAILED')") == In(
        Field("attribute", "status"), ("FINISHED", "FAILED"), negated=False)
    assert parse_filter("tags.t NOT ILIKE 'a\\\\%'") == Compare(Field("tag", "t"), "NOT ILIKE", "a\\%")
    start = parse_filter("attributes.start_time > '2026-01-01T00:00:00Z'")
    assert isinstance(start, Compare) and start.value == 1767225600000.0
    assert parse_filter("   ") is None


@pytest.mark.parametrize(("text", "position", "expected"), [
    ("metrics.a >", 12, "expected a value"),
    ("metrics.a > 1 AND", 18, "expected a field"),
    ("(metrics.a > 1", 15, "expected ')'"),
    ("metrics.a > 1 metrics.b > 2", 15, "expected AND, OR"),
    ("metrics.a = 'x'", 13, "compares with numbers"),
    ("params.a = 'x", 12, "unterminated string"),
    ("lr = 1", 1, "unknown name 'lr'"),
    ("attributes.colour = 'red'", 12, "unknown attribute"),
])
def test_syntax_errors_name_the_position_and_what_was_expected(text: str, position: int, expected: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text)
    assert expected in str(caught.value) and f"character {position} " in str(caught.value), str(caught.value)


def test_order_by_clauses() -> None:
    keys = parse_order_by(["metrics.acc DESC", "attributes.start_time", "min(metrics.loss) asc"])
    assert [(k.field.key, k.field.agg, k.descending) for k in keys] == [
        ("acc", "last", True), ("start_time", "last", False), ("loss", "min", False)]
    with pytest.raises(InvalidArgument):
        parse_order_by(["metrics.acc sideways"])


def test_user_text_only_ever_travels_as_bind_parameters() -> None:
    evil = "x'; DROP TABLE runs; --"
    expr = parse_filter(f"params.`{evil}` = '{evil.replace(chr(39), chr(39) * 2)}' OR tags.t LIKE '%{evil[2:]}'")
    search = compile_search(expr, parse_order_by([f"params.`{evil}` DESC"]), experiment_ids=[uuid.uuid4()],
                            view=View.ACTIVE_ONLY, limit=10, page_token="")
    assert "DROP" not in search.sql and evil not in search.sql
    assert evil in search.args and f"%{evil[2:]}" in search.args


def test_downsampling_keeps_first_last_min_max_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    n = 100_000
    values = rng.normal(size=n)
    values[4321], values[77_777], values[10] = 50.0, -60.0, math.nan
    points = history.Points(np.arange(n, dtype=np.int64), values, np.zeros(n, np.int64))
    small = history.downsample(points, 1000)
    assert len(small) == 1000
    assert small.steps[0] == 0 and small.steps[-1] == n - 1
    assert np.nanmax(small.values) == 50.0 and np.nanmin(small.values) == -60.0
    assert (np.diff(small.steps) > 0).all()
    again = history.downsample(points, 1000)
    assert (again.steps == small.steps).all()
    assert history.downsample(points, 2).steps.tolist() == [4321, n - 1]  # the last point, then the max
    assert len(history.downsample(points, 0)) == n


def test_chunks_merge_into_step_then_timestamp_order() -> None:
    def packed(steps: list[int], stamps: list[int]) -> tuple[bytes, bytes, bytes]:
        return (np.asarray(steps, "<i8").tobytes(), np.asarray(steps, "<f8").tobytes(),
                np.asarray(stamps, "<i8").tobytes())
    points = history.from_packed([packed([5, 6, 7], [1, 1, 1]), packed([1, 5, 9], [0, 0, 0])])
    assert points.steps.tolist() == [1, 5, 5, 6, 7, 9] and points.timestamps.tolist() == [0, 0, 1, 1, 1, 0]
    assert history.in_range(points, 5, 7).steps.tolist() == [5, 5, 6, 7]


def test_aggregation_per_bucket_ignores_nan_but_counts_it() -> None:
    steps = np.array([0, 1, 2, 3, 10], np.int64)
    values = np.array([1.0, math.nan, 3.0, 5.0, 7.0])
    points = history.Points(steps, values, np.arange(5, dtype=np.int64))
    buckets = history.aggregate(points, 2)
    assert [(b.start_step, b.end_step, b.count) for b in buckets] == [(0, 1, 2), (2, 3, 2), (10, 11, 1)]
    assert (buckets[0].min, buckets[0].max, buckets[0].mean) == (1.0, 1.0, 1.0)
    assert math.isnan(buckets[0].last) and buckets[1].mean == 4.0 and buckets[1].last == 5.0
    assert history.bucket_width(points, 0, 3) == 4


def test_a_contour_grid_too_large_for_an_answer_is_refused_before_it_is_built() -> None:
    from types import SimpleNamespace

    from trackd_platform.errors import ResourceExhausted
    from trackd_services.query import analysis

    runs = [(SimpleNamespace(id=i, params={"x": str(i), "y": str(i * 7 % 1009)}), float(i)) for i in range(1000)]
    with pytest.raises(ResourceExhausted, match="1,000 × 1,000 cells"):
        analysis.contour(runs, "x", "y")  # type: ignore[arg-type]
    small = analysis.contour(runs[:10], "x", "y")  # type: ignore[arg-type]
    assert len(small.grid_z) == 100


def test_chunks_of_consecutive_steps_read_as_the_general_path_reads_them() -> None:
    from trackd_platform.chunks import pack_ints
    from trackd_services.query.history import Chunk, from_chunks, from_packed

    def chunk(steps: list[int]) -> Chunk:
        s = np.asarray(steps, np.int64)
        return Chunk(int(s.min()), int(s.max()), len(s), pack_ints(s), (s * 0.5).astype("<f8").tobytes(),
                     pack_ints(s + 1000))

    cases = [
        [list(range(0, 100)), list(range(100, 250))],   # consecutive: the fast path
        [[0, 0, 2], [3, 4, 5]],                          # a repeated step hides behind a matching count
        [list(range(0, 100)), list(range(50, 150))],     # overlapping chunks
        [list(range(99, -1, -1))],                       # unsorted within a chunk
    ]
    for steps in cases:
        chunks = [chunk(s) for s in steps]
        fast = from_chunks(chunks)
        general = from_packed((c.steps, c.values, c.timestamps) for c in chunks)
        assert np.array_equal(fast.steps, general.steps) and np.array_equal(fast.values, general.values)
        assert np.array_equal(fast.timestamps, general.timestamps)


def test_a_long_series_downsampled_from_overviews_keeps_every_extreme_and_only_real_points() -> None:
    from trackd_platform.chunks import OVERVIEW_BLOCK, pack_overview

    rng = np.random.default_rng(11)
    n = 300_000
    steps = np.arange(n, dtype=np.int64)
    values = np.cumsum(rng.normal(size=n))
    values[123_456], values[200_001] = 1e6, -1e6
    stamps = 1_700_000_000_000 + steps * 3
    bounds = [0, 1_000, 50_000, 170_000, 170_010, n]  # chunks of every size, one too small for an overview
    overviews = [pack_overview(steps[a:b], values[a:b], stamps[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert overviews[3] is None and all(o is not None for i, o in enumerate(overviews) if i != 3)
    whole = history.Points(steps[170_000:170_010], values[170_000:170_010], stamps[170_000:170_010])
    candidates = history.from_overviews([o for o in overviews if o is not None], whole)
    assert len(candidates) <= 2 * n // OVERVIEW_BLOCK + 2 * len(overviews) + 10
    assert (np.diff(candidates.steps) > 0).all()
    assert (candidates.values == values[candidates.steps]).all()
    assert (candidates.timestamps == stamps[candidates.steps]).all()
    kept = set(candidates.steps.tolist())
    for a in range(1_000, 50_000 - OVERVIEW_BLOCK + 1, OVERVIEW_BLOCK):  # the blocks of chunk [1000, 50000)
        b = a + OVERVIEW_BLOCK
        assert {a + int(values[a:b].argmin()), a + int(values[a:b].argmax())} <= kept
    shown = history.downsample(candidates, 1000)
    assert len(shown) == 1000 and shown.steps[0] == 0 and shown.steps[-1] == n - 1
    assert shown.values.max() == 1e6 and shown.values.min() == -1e6
    assert pack_overview(steps[:100], np.r_[values[:99], np.nan], stamps[:100]) is None  # NaN: read whole
    shuffled = rng.permutation(5_000)  # a chunk's points in any order: the overview is in step order
    back = history.from_overviews([pack_overview(steps[shuffled], values[shuffled], stamps[shuffled])], history.EMPTY)
    assert (np.diff(back.steps) > 0).all() and back.steps[0] == 0 and back.steps[-1] == 4_999


def test_param_equality_stays_in_the_prefix_index_when_the_value_is_shorter_than_the_prefix() -> None:
    def sql(value: str) -> str:
        return compile_search(parse_filter(f"params.p = '{value}'"), [], experiment_ids=[uuid.uuid4()],
                              view=View.ACTIVE_ONLY, limit=10, page_token="").sql

    assert "left(p.value, 200) = $" in sql("v3") and "p.value = $" not in sql("v3")
    long = sql("x" * 200)  # as long as the prefix: the whole value is compared too
    assert "left(p.value, 200) = left($" in long and "AND p.value = $" in long
    assert "AND p.value = $" in sql("é" * 150)  # 300 bytes: counted in bytes, whatever the encoding


@pytest.mark.parametrize("filter", [
    "params.p = 'v'", "params.p != 'v'", "params.p < 'v'", "params.p LIKE 'v%'", "params.p NOT ILIKE 'v%'",
    "params.p > 2", f"params.p = '{'x' * 250}'", "params.p IN ('a', 'b')", "params.p NOT IN (1, 2)",
    "params.p IS NULL", "params.p IS NOT NULL", "NOT (params.p = 'v' OR params.q IS NULL)",
])
def test_a_walk_by_a_metric_tests_params_on_the_walked_rows_binding_every_value(filter: str) -> None:
    """Ordered by a metric, param predicates read the walked series row's copy of its run's params
    (falling back to run_params when it is NULL); every bind parameter appears in the SQL (an unused
    one is an error in PostgreSQL: it cannot infer its type)."""
    search = compile_search(parse_filter(filter), parse_order_by(["metrics.m DESC"]), experiment_ids=[uuid.uuid4()],
                            view=View.ACTIVE_ONLY, limit=10, page_token="")
    walk_sql = search.parts[0][0]
    assert "o0.run_params" in walk_sql and "p.run_id = o0.run_id" in walk_sql
    assert walk_sql.count("p.run_id = o0.run_id") == walk_sql.count("OFFSET 0)")  # probed run by run, never hashed
    for sql, args in search.parts:
        assert [n for n in range(1, len(args) + 1) if f"${n}::" not in sql] == [], sql
    assert "o0.run_params" not in search.parts[1][0]  # runs without the metric: no walk


@pytest.mark.parametrize("order", [[], ["metrics.m DESC"], ["params.p", "attributes.start_time DESC"]])
def test_each_part_of_a_page_query_ends_with_its_limit(order: list[str]) -> None:
    """QueryStore.search binds a later part's LIMIT to only the rows the page still misses: each
    part's last bind is its LIMIT (limit + 1), written as the last bind of its SQL."""
    search = compile_search(parse_filter("params.p = 'a'"), parse_order_by(order), experiment_ids=[uuid.uuid4()],
                            view=View.ACTIVE_ONLY, limit=10, page_token="")
    for sql, args in search.parts:
        assert args[-1] == 11 and sql.endswith(f"LIMIT ${len(args)}::int"), sql
