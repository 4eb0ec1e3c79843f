"""Property: for any filter and ordering, SearchRuns returns exactly what a straightforward
Python evaluation of the same filter over the same runs returns, in the same order."""

from __future__ import annotations

import functools
import math
import random
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import trackd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration

METRICS = ["m1", "m2", "loss"]
PARAMS = ["p1", "p2"]
NUMBERS = [-1.5, 0.0, 0.25, 0.5, 1.0, 2.0, 10.0]
WORDS = ["a", "ab", "Ab", "b%", "1e-3", "0.001", "2", "10", "x_y", "ü"]
STATUSES = ["FINISHED", "FAILED", "KILLED"]


@dataclass
class Row:
    id: str
    name: str
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    series: dict[str, list[float]] = field(default_factory=dict)  # values in step order

    def metric(self, key: str, agg: str) -> float | None:
        values = self.series.get(key)
        if not values:
            return None
        if agg == "last":
            return values[-1]
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return None
        return min(finite) if agg == "min" else max(finite)


@pytest.fixture(scope="module")
def runs(stack: EmbeddedStack) -> Iterator[tuple[str, list[Row]]]:
    rng = random.Random(7)
    experiment = f"property-{time.time_ns()}"
    rows = []
    for i in range(30):
        params = {k: rng.choice(WORDS) for k in PARAMS if rng.random() < 0.8}
        tags = {"t1": rng.choice(WORDS)} if rng.random() < 0.5 else {}
        status = rng.choice(STATUSES)
        with trackd.start_run(experiment=experiment, name=f"run-{i:02d}-{rng.choice(WORDS)}", params=params,
                              tags=tags, system_metrics=False) as run:
            row = Row(run.info.id, run.info.name, status, params, tags)
            for key in METRICS:
                if rng.random() < 0.75:
                    values = [rng.choice([*NUMBERS, math.nan]) for _ in range(rng.randint(1, 3))]
                    for step, value in enumerate(values):
                        run.log_metric(key, value, step=step)
                    row.series[key] = values
            run.end(status)
        rows.append(row)
    yield experiment, rows


def _like(pattern: str, value: str, *, ignore_case: bool) -> bool:
    regex, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.fullmatch("".join(regex), value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _number(value: str) -> float | None:
    if not re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


_OPS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}

# A filter is generated as (text, predicate over Row) pairs.
Gen = tuple[str, object]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


@st.composite
def metric_predicate(draw: st.DrawFn) -> Gen:
    key, agg = draw(st.sampled_from(METRICS)), draw(st.sampled_from(["last", "min", "max"]))
    field_text = f"metrics.{key}" if agg == "last" else f"{agg}(metrics.{key})"
    kind = draw(st.sampled_from(["cmp", "in", "null"]))
    if kind == "null":
        negated = draw(st.booleans())
        return (f"{field_text} IS {'NOT ' if negated else ''}NULL",
                lambda r: (key in r.series) == negated)
    if kind == "in":
        values = draw(st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=3))
        negated = draw(st.booleans())
        text = f"{field_text} {'NOT ' if negated else ''}IN ({', '.join(repr(v) for v in values)})"

        def in_list(r: Row) -> bool:
            v = r.metric(key, agg)
            return v is not None and ((v in values) != negated)
        return text, in_list
    op, number = draw(st.sampled_from(list(_OPS))), draw(st.sampled_from(NUMBERS))

    def compare(r: Row) -> bool:
        v = r.metric(key, agg)
        return v is not None and _OPS[op](v, number)
    return f"{field_text} {op} {number!r}", compare


@st.composite
def text_predicate(draw: st.DrawFn) -> Gen:
    prefix, key = draw(st.sampled_from([("params", "p1"), ("params", "p2"), ("tags", "t1")]))

    def value_of(r: Row) -> str | None:
        return (r.params if prefix == "params" else r.tags).get(key)
    kind = draw(st.sampled_from(["cmp", "num", "like", "in", "null"]))
    name = f"{prefix}.{key}"
    if kind == "null":
        negated = draw(st.booleans())
        return f"{name} IS {'NOT ' if negated else ''}NULL", lambda r: (value_of(r) is None) != negated
    if kind == "like":
        op = draw(st.sampled_from(["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]))
        pattern = draw(st.sampled_from(["a%", "%b", "_", "%", "A_", "b\\%", "%1%", "x\\_y"]))

        def like(r: Row) -> bool:
            v = value_of(r)
            return v is not None and (_like(pattern, v, ignore_case="ILIKE" in op) != op.startswith("NOT"))
        return f"{name} {op} {_quote(pattern)}", like
    if kind == "in":
        values = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
        negated = draw(st.booleans())

        def in_list(r: Row) -> bool:
            v = value_of(r)
            return v is not None and ((v in values) != negated)
        return f"{name} {'NOT ' if negated else ''}IN ({', '.join(_quote(v) for v in values)})", in_list
    op = draw(st.sampled_from(list(_OPS)))
    if kind == "num":
        number = draw(st.sampled_from([0.001, 1.0, 2.0, 5.0, 10.0]))

        def numeric(r: Row) -> bool:
            v = value_of(r)
            n = None if v is None else _number(v)
            return n is not None and _OPS[op](n, number)
        return f"{name} {op} {number!r}", numeric
    word = draw(st.sampled_from(WORDS))

    def textual(r: Row) -> bool:
        v = value_of(r)
        return v is not None and _OPS[op](v, word)
    return f"{name} {op} {_quote(word)}", textual


@st.composite
def attribute_predicate(draw: st.DrawFn) -> Gen:
    if draw(st.booleans()):
        statuses = draw(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=2))
        return (f"attributes.status IN ({', '.join(_quote(s) for s in statuses)})",
                lambda r: r.status in statuses)
    pattern = draw(st.sampled_from(["run-0%", "%a", "%-1_-%", "run-2_-ü"]))
    return f"attributes.run_name LIKE {_quote(pattern)}", lambda r: _like(pattern, r.name, ignore_case=False)


def filters(depth: int = 3) -> st.SearchStrategy[Gen]:
    leaf = st.one_of(metric_predicate(), text_predicate(), attribute_predicate())
    if depth == 0:
        return leaf

    def combine(parts: list[Gen], joiner: str) -> Gen:
        text = "(" + f" {joiner} ".join(p[0] for p in parts) + ")"
        tests = [p[1] for p in parts]
        if joiner == "AND":
            return text, lambda r: all(t(r) for t in tests)  # type: ignore[operator]
        return text, lambda r: any(t(r) for t in tests)  # type: ignore[operator]

    sub = filters(depth - 1)
    return st.one_of(
        leaf,
        st.lists(sub, min_size=2, max_size=3).map(lambda ps: combine(ps, "AND")),
        st.lists(sub, min_size=2, max_size=3).map(lambda ps: combine(ps, "OR")),
        sub.map(lambda p: (f"NOT {p[0]}" if p[0].startswith("(") else f"NOT ({p[0]})",
                           lambda r, t=p[1]: not t(r))),  # type: ignore[operator]
    )


def _sort_key(rows: list[Row], order: tuple[str, str, bool]) -> list[str]:
    kind, key, descending = order

    def value(r: Row) -> object:
        if kind == "metric":
            v = r.metric(key, "last")
            return None if v is None or math.isnan(v) else v
        return r.params.get(key) if kind == "param" else r.name

    def compare(a: Row, b: Row) -> int:
        va, vb = value(a), value(b)
        if va is None or vb is None:  # missing values last, whatever the direction
            if va is None and vb is None:
                return 0
            return 1 if va is None else -1
        if va != vb:
            less = va < vb  # type: ignore[operator]
            return (1 if less else -1) if descending else (-1 if less else 1)
        return 0

    def by_id(a: Row, b: Row) -> int:
        return compare(a, b) or (-1 if uuid.UUID(a.id) < uuid.UUID(b.id) else 1)

    return [r.id for r in sorted(rows, key=functools.cmp_to_key(by_id))]


ORDERS = st.sampled_from([("metric", "m1", True), ("metric", "loss", False), ("param", "p1", False),
                          ("param", "p2", True), ("name", "name", True)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=filters(), order=ORDERS)
def test_search_equals_a_python_evaluation(runs: tuple[str, list[Row]], generated: Gen,
                                           order: tuple[str, str, bool]) -> None:
    experiment, rows = runs
    text, predicate = generated
    kind, key, descending = order
    clause = {"metric": f"metrics.{key}", "param": f"params.{key}", "name": "attributes.name"}[kind]
    found = [r.id for r in trackd.search_runs(experiment, text, [f"{clause} {'DESC' if descending else 'ASC'}"])]
    expected = _sort_key([r for r in rows if predicate(r)], order)  # type: ignore[operator]
    assert found == expected, text
