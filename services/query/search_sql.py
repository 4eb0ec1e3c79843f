"""Compiles a parsed search (grammar.py) to one parameterised PostgreSQL query (no database access).

Nothing a user typed becomes SQL text: keys and values travel as bind parameters ($n), and the
SQL text is built only from this module's fragments. Semantics (the property test checks them
against a plain Python evaluation):

- A predicate on something a run lacks (a metric never logged, a param never set, a NULL
  end_time) is false, whatever the operator; `NOT` turns it true. `IS NULL` tests presence.
- A metric predicate uses the latest point (highest step, then timestamp) unless wrapped in
  min() / max(). NaN fails every comparison except `!=` (IEEE 754).
- A param or tag compared with a number compares numerically, only for values that read as a
  number; compared with a string, by code point (collation "C"), like LIKE's patterns.
- Ordering puts missing values (and NaN) last in both directions; ties break on run id.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trackd_platform.errors import InvalidArgument
from trackd_platform.paging import decode_token, encode_token
from trackd_platform.run_records import VIEW_FILTER, View

from .grammar import (
    STATUSES,
    And,
    Compare,
    Expr,
    Field,
    In,
    IsNull,
    Not,
    Or,
    OrderKey,
)

PREFIX = 200  # characters of a param / tag value the (key, left(value, 200)) indexes hold
_TABLES = {"param": "run_params", "tag": "run_tags"}
_INPUT_COLUMNS = {"digest": "i.digest", "uri": "i.uri", "context": "i.context"}
_METRIC_COLUMN = {"last": "last_value", "min": "min_value", "max": "max_value"}
_SQL_OP = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_DURATION_MS = "(EXTRACT(EPOCH FROM (COALESCE(r.end_time, now()) - r.start_time)) * 1000)::float8"
_ATTRIBUTE_SQL = {
    "status": ("r.status", "smallint"), "name": ('r.name COLLATE "C"', "text"),
    "user": ('r.user_name COLLATE "C"', "text"), "run_id": ("r.id", "uuid"),
    "experiment_id": ("r.experiment_id", "uuid"), "start_time": ("r.start_time", "timestamptz"),
    "end_time": ("r.end_time", "timestamptz"), "duration": (_DURATION_MS, "float8"),
}
DEFAULT_ORDER = [OrderKey(Field("attribute", "start_time"), descending=True)]


@dataclass
class _Binds:
    values: list[Any] = field(default_factory=list)

    def __call__(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


@dataclass(frozen=True)
class Search:
    """A compiled page query: rows are (id, o0, o1, …) in order, at most `limit` + 1 of them.
    `parts` are the queries to run in turn until `limit` + 1 rows are found (see compile_search),
    each with its LIMIT as its last bind."""

    sql: str
    args: list[Any]
    order: list[OrderKey]
    parts: tuple[tuple[str, list[Any]], ...] = ()

    @property
    def order_by(self) -> str:
        """The page order over a part's output columns, for a query that selects from a part (the
        valued part has no NULL to place)."""
        keys = (f"o{i} {'DESC' if k.descending else 'ASC'} NULLS LAST" for i, k in enumerate(self.order))
        return ", ".join([*keys, "id"])


def _literal(value: str | float, cast: str) -> Any:
    if cast == "timestamptz":
        return datetime.fromtimestamp(float(value) / 1000, UTC)
    if cast == "smallint":
        return STATUSES[str(value)]
    if cast == "uuid":
        return uuid.UUID(str(value))
    return value


def _compare(column: str, op: str, placeholder: str) -> str:
    return f"{column} {_SQL_OP.get(op, op)} {placeholder}"  # op is ours: a comparison or [NOT] [I]LIKE


def _metric(f: Field, condition: str, bind: _Binds) -> str:
    return (f"EXISTS (SELECT 1 FROM metric_series m WHERE m.run_id = r.id AND m.key = {bind(f.key, 'text')} "
            f"AND m.context = {bind(f.context, 'smallint')} AND m.points > 0{condition})")


def _item(f: Field, condition: str, bind: _Binds, run: str = "r.id", tail: str = "") -> str:
    table = _TABLES[f.kind]
    return (f"EXISTS (SELECT 1 FROM {table} p WHERE p.run_id = {run} AND p.key = {bind(f.key, 'text')}"
            f"{condition}{tail})")


def _walked_param(expr: Compare | In | IsNull, bind: _Binds) -> str:
    """A param predicate tested on the walked series row's copy of its run's params (`o0.run_params`,
    migration 0022): no probe of run_params, unless the copy is NULL (the run's params too large).
    That probe stays one per such run (OFFSET 0 keeps PostgreSQL from turning it into a hashed set
    of every run holding the value, in every experiment: 0.6 s on the bench's data set)."""
    f = expr.field
    if isinstance(expr, IsNull):
        copied = f"(o0.run_params ? {bind(f.key, 'text')})"
        probe = _item(f, "", bind, run="o0.run_id", tail=" OFFSET 0")
        if not expr.negated:
            copied, probe = f"NOT {copied}", f"NOT {probe}"
    else:
        value = f"(o0.run_params ->> {bind(f.key, 'text')})"
        copied = f"COALESCE({_text_condition(expr, value, bind).removeprefix(' AND ')}, false)"
        probe = _item(f, _text_condition(expr, "p.value", bind), bind, run="o0.run_id", tail=" OFFSET 0")
    return f"(CASE WHEN o0.run_params IS NULL THEN {probe} ELSE {copied} END)"


def _input(condition: str) -> str:
    """True when any of the run's inputs meets `condition` (on `i.<column>`)."""
    return f"EXISTS (SELECT 1 FROM run_inputs i WHERE i.run_id = r.id{condition})"


def _predicate(expr: Compare | In | IsNull, bind: _Binds, walked: bool = False) -> str:
    f = expr.field
    if walked and f.kind == "param":
        return _walked_param(expr, bind)
    if f.kind == "input":
        if isinstance(expr, IsNull):  # every input has all three: IS NULL means no inputs at all
            return _input("") if expr.negated else f"NOT {_input('')}"
        return _input(_text_condition(expr, _INPUT_COLUMNS[f.key], bind))
    if isinstance(expr, IsNull):
        present = (_metric(f, "", bind) if f.kind == "metric" else _item(f, "", bind) if f.kind in _TABLES
                   else f"({_ATTRIBUTE_SQL[f.key][0]} IS NOT NULL)")
        return present if expr.negated else f"NOT {present}"
    if f.kind == "metric":
        column = f"m.{_METRIC_COLUMN[f.agg]}"
        if isinstance(expr, In):
            test = f"{column} = ANY({bind(list(expr.values), 'float8[]')})"
            return _metric(f, f" AND {'NOT ' if expr.negated else ''}({test})", bind)
        condition = _compare(column, expr.op, bind(expr.value, "float8"))
        if expr.op in (">", ">="):  # PostgreSQL orders NaN above every number; IEEE says false
            condition += f" AND {column} <> 'NaN'::float8"
        return _metric(f, f" AND {condition}", bind)
    if f.kind in _TABLES:
        return _item(f, _text_condition(expr, "p.value", bind), bind)
    column, cast = _ATTRIBUTE_SQL[f.key]
    if isinstance(expr, In):
        values = [_literal(v, cast) for v in expr.values]
        test = f"{column} = ANY({bind(values, cast + '[]')})"
        return f"COALESCE({'NOT ' if expr.negated else ''}({test}), false)"
    return f"COALESCE({_compare(column, expr.op, bind(_literal(expr.value, cast), cast))}, false)"


def _text_condition(expr: Compare | In, column: str, bind: _Binds) -> str:
    """The condition on a param or tag value (`p.value`)."""
    if isinstance(expr, In):
        if isinstance(expr.values[0], float):
            test = f"trackd_number({column}) = ANY({bind(list(expr.values), 'float8[]')})"
        else:
            test = f'{column} COLLATE "C" = ANY({bind(list(expr.values), "text[]")})'
        return f" AND {'NOT ' if expr.negated else ''}({test})"
    if isinstance(expr.value, float):
        return f" AND {_compare(f'trackd_number({column})', expr.op, bind(expr.value, 'float8'))}"
    if expr.op == "=":  # the prefix lets PostgreSQL use the (key, left(value, 200)) indexes
        value = bind(expr.value, "text")
        if len(expr.value.encode()) < PREFIX:  # bytes: fewer characters whatever the encoding
            # a value shorter than the prefix equals the stored one exactly when the prefixes do:
            # the condition stays in the index, and PostgreSQL estimates its rows right (a second
            # test of the whole value made it count the same condition twice and walk the wrong plan)
            return f" AND left({column}, {PREFIX}) = {value}"
        return f" AND left({column}, {PREFIX}) = left({value}, {PREFIX}) AND {column} = {value}"
    return " AND " + _compare(column + ' COLLATE "C"', expr.op, bind(expr.value, "text"))


def compile_filter(expr: Expr, bind: _Binds, walked: bool = False) -> str:
    """`walked`: the query walks a metric's index as `o0` (compile_search), whose entries carry
    their run's params."""
    if isinstance(expr, And | Or):
        joiner = " AND " if isinstance(expr, And) else " OR "
        return "(" + joiner.join(compile_filter(e, bind, walked) for e in expr.items) + ")"
    if isinstance(expr, Not):
        return f"(NOT {compile_filter(expr.item, bind, walked)})"
    return _predicate(expr, bind, walked)


def _order_expression(i: int, key: OrderKey, bind: _Binds) -> tuple[str, str, str]:
    """(select expression, join clause, cast) of one order key."""
    f = key.field
    if f.kind == "metric":
        column = f"o{i}.{_METRIC_COLUMN[f.agg]}"
        join = (f"LEFT JOIN metric_series o{i} ON o{i}.run_id = r.id AND o{i}.key = {bind(f.key, 'text')} "
                f"AND o{i}.context = {bind(f.context, 'smallint')} AND o{i}.points > 0")
        return f"NULLIF({column}, 'NaN'::float8)", join, "float8"
    if f.kind in _TABLES:
        join = f"LEFT JOIN {_TABLES[f.kind]} o{i} ON o{i}.run_id = r.id AND o{i}.key = {bind(f.key, 'text')}"
        return f'o{i}.value COLLATE "C"', join, "text"
    column, cast = _ATTRIBUTE_SQL[f.key]
    return column, "", cast


def _after(order: list[OrderKey], casts: list[str], position: list[Any], bind: _Binds) -> str:
    """Rows strictly after `position` in the (o0, …, id) order, nulls last."""
    alternatives = []
    equal: list[str] = []
    for i, (key, cast) in enumerate(zip(order, casts, strict=True)):
        value = position[i]
        if value is None:
            equal.append(f"q.o{i} IS NULL")  # nothing sorts after NULL except equal NULLs
            continue
        placeholder = bind(_from_token(value, cast), cast)
        op = "<" if key.descending else ">"
        alternatives.append("(" + " AND ".join([*equal, f"(q.o{i} {op} {placeholder} OR q.o{i} IS NULL)"]) + ")")
        equal.append(f"q.o{i} = {placeholder}")
    alternatives.append("(" + " AND ".join([*equal, f"q.id > {bind(uuid.UUID(position[-1]), 'uuid')}"]) + ")")
    return " OR ".join(alternatives)


def compile_search(
    expr: Expr | None, order: list[OrderKey], *, experiment_ids: list[uuid.UUID], view: View,
    limit: int, page_token: str,
) -> Search:
    """The page query over the runs of `experiment_ids` that `view` covers.

    Ordered by a metric first, the page is found in two parts: the runs having a (non-NaN) value,
    driven from the metric's (key, context, value) index so PostgreSQL reads only as many as the
    page needs (testing param predicates on the index entries' copy of the run's params); then,
    only when the page is not full, the runs without one (they sort last)."""
    order = order or DEFAULT_ORDER
    position = decode_token(page_token, arity=len(order) + 2)
    if position is not None and position[0] != _fingerprint(expr, order, experiment_ids, view):
        raise InvalidArgument("page_token belongs to another search: pass the same filter, order and experiments")
    general = _page_query(expr, order, experiment_ids=experiment_ids, view=view, limit=limit,
                          position=position[1:] if position else None)
    first = order[0].field
    if first.kind != "metric" or (position is not None and position[1] is None):
        return Search(general[0], general[1], order, parts=(general,))
    valued = _page_query(expr, order, experiment_ids=experiment_ids, view=view, limit=limit,
                         position=position[1:] if position else None, valued_first=True)
    rest = _page_query(expr, order, experiment_ids=experiment_ids, view=view, limit=limit, position=None,
                       without_first=True)
    return Search(general[0], general[1], order, parts=(valued, rest))


def _page_query(
    expr: Expr | None, order: list[OrderKey], *, experiment_ids: list[uuid.UUID], view: View, limit: int,
    position: list[Any] | None, valued_first: bool = False, without_first: bool = False,
) -> tuple[str, list[Any]]:
    """One page query. `valued_first`: only runs with a non-NaN value of the first (metric) order
    key, read from that metric's rows; `without_first`: only the runs lacking one."""
    bind = _Binds()
    selects, joins, casts = [], [], []
    for i, key in enumerate(order):
        if i == 0 and valued_first:  # an inner join from the metric's rows: its index gives the order
            selects.append(f"o0.{_METRIC_COLUMN[key.field.agg]} AS o0")
            joins.append("JOIN runs r ON r.id = o0.run_id")
            casts.append("float8")
            continue
        expression, join, cast = _order_expression(i, key, bind)
        selects.append(f"{expression} AS o{i}")
        joins.append(join)
        casts.append(cast)
    where = [f"r.experiment_id = ANY({bind(experiment_ids, 'uuid[]')})", VIEW_FILTER[view]]
    if expr is not None:
        where.append(compile_filter(expr, bind, walked=valued_first))
    if valued_first:
        f = order[0].field
        where += [f"o0.key = {bind(f.key, 'text')}", f"o0.context = {bind(f.context, 'smallint')}",
                  "o0.points > 0", f"o0.{_METRIC_COLUMN[f.agg]} <> 'NaN'::float8"]
        inner = (f"SELECT r.id, {', '.join(selects)} FROM metric_series o0 {' '.join(j for j in joins if j)} "
                 f"WHERE {' AND '.join(where)}")
    else:
        inner = (f"SELECT r.id, {', '.join(selects)} FROM runs r {' '.join(j for j in joins if j)} "
                 f"WHERE {' AND '.join(where)}")
    outer_where = _after(order, casts, position, bind) if position is not None else "true"
    if without_first:
        outer_where = "q.o0 IS NULL"
    directions = []
    for i, k in enumerate(order):
        if i == 0 and valued_first:  # no NULL among them: the plain direction matches the index's
            directions.append(f"q.o0 {'DESC' if k.descending else 'ASC'}")
        else:
            directions.append(f"q.o{i} {'DESC' if k.descending else 'ASC'} NULLS LAST")
    sql = (f"SELECT q.* FROM ({inner}) q WHERE {outer_where} ORDER BY {', '.join(directions)}, q.id "
           f"LIMIT {bind(limit + 1, 'int')}")
    return sql, bind.values


def next_token(search: Search, expr: Expr | None, *, experiment_ids: list[uuid.UUID], view: View,
               last_row: Any) -> str:
    """The token of the page after the one ending with `last_row` (a row of the page query)."""
    values = [_to_token(last_row[f"o{i}"]) for i in range(len(search.order))]
    return encode_token([_fingerprint(expr, search.order, experiment_ids, view), *values, str(last_row["id"])])


def _fingerprint(expr: Expr | None, order: list[OrderKey], experiment_ids: list[uuid.UUID], view: View) -> str:
    text = json.dumps([repr(expr), repr(order), sorted(str(i) for i in experiment_ids), int(view)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _to_token(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # keeps ±inf and every bit of precision through JSON
    return value


def _from_token(value: Any, cast: str) -> Any:
    try:
        if cast == "timestamptz":
            return datetime.fromisoformat(value)
        if cast == "uuid":
            return uuid.UUID(value)
        if cast == "float8":
            number = float(value)
            if math.isnan(number):
                raise ValueError
            return number
        if cast == "smallint":
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        raise InvalidArgument("page_token is malformed: pass back a next_page_token unchanged") from None
