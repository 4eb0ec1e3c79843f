"""The search grammar: a superset of MLflow's `search_runs` filter syntax with OR, NOT and
parentheses. Pure Python: text in, a typed syntax tree out (see docs/search.md).

    filter    := or
    or        := and ("OR" and)*
    and       := unary ("AND" unary)*
    unary     := "NOT" unary | "(" or ")" | predicate
    predicate := field op value | field ["NOT"] ("LIKE" | "ILIKE") string
               | field ["NOT"] "IN" "(" value ("," value)* ")" | field "IS" ["NOT"] "NULL"
    field     := ("metrics" | "params" | "tags" | "attributes") "." key ["@" context]
               | "inputs" "." ("digest" | "uri" | "context")
               | ("min" | "max") "(" "metrics." key ["@" context] ")"
    order_by  := field ["ASC" | "DESC"]

Keys are bare (letters, digits, `_ - . / :`) or quoted with backticks or double quotes; strings
are single- or double-quoted, a backslash escapes the next character and a doubled quote stands
for itself. Keywords are case-insensitive. Errors are InvalidArgument naming the 1-based
character position and what was expected there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from trackd_platform.errors import InvalidArgument
from trackd_platform.vocabulary import CONTEXT_NUMBERS, RunStatus

MAX_FILTER_LENGTH = 10_000
MAX_IN_VALUES = 1_000
MAX_ORDER_KEYS = 5
MAX_NESTING = 64  # parentheses and NOTs inside one another
# times PostgreSQL and Python both hold: 0001-01-01 to 9999-12-31, in milliseconds since the epoch
MIN_TIME_MS, MAX_TIME_MS = -62_135_596_800_000.0, 253_402_300_799_000.0

Kind = Literal["metric", "param", "tag", "attribute", "input"]
Agg = Literal["last", "min", "max"]
Value = str | float

_PREFIXES: dict[str, Kind] = {
    "metrics": "metric", "metric": "metric", "params": "param", "param": "param",
    "tags": "tag", "tag": "tag", "attributes": "attribute", "attribute": "attribute", "attr": "attribute",
    "inputs": "input", "input": "input",
}
# what a run's inputs (RunDataService.LogInputs) are searched by: true when any input matches
INPUT_FIELDS = ("digest", "uri", "context")
CONTEXTS = CONTEXT_NUMBERS  # "eval" → 2

# attribute name (and its MLflow aliases) → (canonical name, type)
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "status": ("status", "status"), "name": ("name", "text"), "run_name": ("name", "text"),
    "user": ("user", "text"), "user_id": ("user", "text"), "run_id": ("run_id", "id"), "id": ("run_id", "id"),
    "experiment_id": ("experiment_id", "id"), "start_time": ("start_time", "time"),
    "end_time": ("end_time", "time"), "duration": ("duration", "number"),
}
STATUSES = {s.name: s.value for s in RunStatus}  # "FAILED" → 3
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS", "NULL", "ASC", "DESC"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_\-./:]+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Field:
    kind: Kind
    key: str  # for attributes, the canonical name
    agg: Agg = "last"
    context: int = 0

    @property
    def type(self) -> str:
        """number, text, status, id or time: what literals it compares with."""
        if self.kind == "metric":
            return "number"
        if self.kind == "attribute":
            return ATTRIBUTES[self.key][1]
        return "text"


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # one of COMPARISONS, LIKE, ILIKE, NOT LIKE, NOT ILIKE
    value: Value


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull:
    field: Field
    negated: bool


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr = Compare | In | IsNull | And | Or | Not


@dataclass(frozen=True)
class OrderKey:
    field: Field
    descending: bool


@dataclass(frozen=True)
class _Token:
    kind: str  # field, func, kw, op, string, number, "(", ")", ",", end
    text: str
    pos: int  # 0-based
    value: object = None


def _error(source: str, pos: int, message: str) -> InvalidArgument:
    near = source[pos:pos + 20] or "the end"
    return InvalidArgument(f"{message} at character {pos + 1} (near {near!r})")


def _quoted(source: str, pos: int) -> tuple[str, int]:
    """The string starting with the quote at `pos`, and the position after it."""
    quote, out, i = source[pos], [], pos + 1
    while i < len(source):
        c = source[i]
        if c == "\\" and i + 1 < len(source):
            out.append(source[i + 1])
            i += 2
        elif c == quote:
            if source[i + 1:i + 2] == quote:
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise _error(source, pos, f"unterminated string: add the closing {quote}")


def _field(source: str, pos: int, word: str, end: int) -> tuple[Field, int]:
    kind = _PREFIXES[word.lower()]
    i = end + 1  # past the dot
    if i < len(source) and source[i] in "`\"":
        key, i = _quoted(source, i)
    else:
        m = _BARE_KEY.match(source, i)
        if not m:
            raise _error(source, i, f"expected a key after '{word}.' (quote it with backticks if it has spaces)")
        key, i = m.group(), m.end()
    context = 0
    if source[i:i + 1] == "@":
        m = _WORD.match(source, i + 1)
        if m is None or not CONTEXTS.get(m.group().lower()):
            raise _error(source, i + 1, "expected a metric context: train, eval or test")
        if kind != "metric":
            raise _error(source, i, "only metrics have a context")
        context, i = CONTEXTS[m.group().lower()], m.end()
    if not key:
        raise _error(source, end + 1, f"empty key after '{word}.'")
    if kind == "input":
        if key.lower() not in INPUT_FIELDS:
            raise _error(source, end + 1, f"unknown input field {key!r}: use one of {', '.join(INPUT_FIELDS)}")
        key = key.lower()
    if kind == "attribute":
        if key.lower() not in ATTRIBUTES:
            raise _error(source, end + 1, f"unknown attribute {key!r}: use one of {', '.join(sorted(ATTRIBUTES))}")
        key = ATTRIBUTES[key.lower()][0]
    return Field(kind, key, context=context), i


def tokenize(source: str) -> list[_Token]:
    if len(source) > MAX_FILTER_LENGTH:
        raise InvalidArgument(f"the filter is {len(source)} characters; the limit is {MAX_FILTER_LENGTH}")
    if "\x00" in source:
        raise _error(source, source.index("\x00"), "a filter cannot hold a NUL character (nothing stored can)")
    tokens: list[_Token] = []
    i = 0
    while i < len(source):
        c = source[i]
        if c.isspace():
            i += 1
        elif c in "(),":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c in "'\"":
            text, end = _quoted(source, i)
            tokens.append(_Token("string", source[i:end], i, text))
            i = end
        elif source.startswith(("!=", "<>", "<=", ">="), i):
            tokens.append(_Token("op", "!=" if source[i:i + 2] == "<>" else source[i:i + 2], i))
            i += 2
        elif c in "=<>":
            tokens.append(_Token("op", "=" if source[i:i + 2] == "==" else c, i))
            i += 2 if source[i:i + 2] == "==" else 1
        elif m := _NUMBER.match(source, i):
            tokens.append(_Token("number", m.group(), i, float(m.group())))
            i = m.end()
        elif m := _WORD.match(source, i):
            word, end = m.group(), m.end()
            if word.lower() in _PREFIXES and source[end:end + 1] == ".":
                field, i = _field(source, i, word, end)
                tokens.append(_Token("field", source[m.start():i], m.start(), field))
            elif word.upper() in _KEYWORDS:
                tokens.append(_Token("kw", word.upper(), i))
                i = end
            elif word.lower() in ("min", "max"):
                tokens.append(_Token("func", word.lower(), i))
                i = end
            else:
                raise _error(source, i, f"unknown name {word!r}: fields are metrics.<key>, params.<key>, "
                                        "tags.<key> or attributes.<name>, and strings are quoted")
        else:
            raise _error(source, i, f"unexpected character {c!r}")
    tokens.append(_Token("end", "", len(source)))
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0
        self.depth = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        token = self.peek
        if token.kind == kind and (text is None or token.text == text):
            self.i += 1
            return token
        return None

    def fail(self, expected: str) -> InvalidArgument:
        found = self.peek.text or "the end of the filter"
        return _error(self.source, self.peek.pos, f"expected {expected}, found {found!r}")

    def expect(self, kind: str, text: str | None, expected: str) -> _Token:
        token = self.accept(kind, text)
        if token is None:
            raise self.fail(expected)
        return token

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.accept("kw", "OR"):
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Expr:
        items = [self.parse_unary()]
        while self.accept("kw", "AND"):
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_unary(self) -> Expr:
        token = self.peek
        if token.kind == "(" or (token.kind == "kw" and token.text == "NOT"):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise _error(self.source, token.pos, f"parentheses and NOTs nest at most {MAX_NESTING} deep")
            try:
                if self.accept("kw", "NOT"):
                    return Not(self.parse_unary())
                self.take()
                inner = self.parse_or()
                self.expect(")", None, "')' or AND / OR")
                return inner
            finally:
                self.depth -= 1
        return self.parse_predicate()

    def parse_field(self) -> Field:
        if func := self.accept("func"):
            self.expect("(", None, f"'(' after {func.text}")
            token = self.expect("field", None, f"metrics.<key> inside {func.text}()")
            field = token.value
            assert isinstance(field, Field)
            if field.kind != "metric":
                raise _error(self.source, token.pos, f"{func.text}() applies to metrics only")
            self.expect(")", None, f"')' closing {func.text}(")
            return Field("metric", field.key, "min" if func.text == "min" else "max", field.context)
        token = self.expect("field", None, "a field (metrics.<key>, params.<key>, tags.<key>, attributes.<name>)"
                                           ", NOT or '('")
        assert isinstance(token.value, Field)
        return token.value

    def parse_predicate(self) -> Expr:
        start = self.peek.pos
        field = self.parse_field()
        if op := self.accept("op"):
            return Compare(field, op.text, self.parse_value(field, op.text))
        if self.accept("kw", "IS"):
            negated = bool(self.accept("kw", "NOT"))
            self.expect("kw", "NULL", "NULL after IS")
            return IsNull(field, negated)
        negated = bool(self.accept("kw", "NOT"))
        if word := self.accept("kw", "LIKE") or self.accept("kw", "ILIKE"):
            if field.type != "text":
                raise _error(self.source, start, f"{word.text} applies to params, tags and text attributes")
            pattern = self.expect("string", None, f"a quoted pattern after {word.text}")
            if _lone_escape(str(pattern.value)):
                raise _error(self.source, pattern.pos, "a LIKE pattern cannot end with a lone backslash (its escape "
                                                       "character): write \\\\ for a literal backslash")
            return Compare(field, ("NOT " if negated else "") + word.text, str(pattern.value))
        if self.accept("kw", "IN"):
            self.expect("(", None, "'(' after IN")
            values = [self.parse_value(field, "IN")]
            while self.accept(","):
                values.append(self.parse_value(field, "IN"))
            self.expect(")", None, "',' or ')' in the IN list")
            if len(values) > MAX_IN_VALUES:
                raise _error(self.source, start, f"more than {MAX_IN_VALUES} values in an IN list")
            if len({type(v) for v in values}) > 1:
                raise _error(self.source, start, "an IN list holds either numbers or strings, not both")
            return In(field, tuple(values), negated)
        raise self.fail("an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL)")

    def parse_value(self, field: Field, op: str) -> Value:
        token = self.peek
        if token.kind not in ("string", "number"):
            raise self.fail("a value (a number or a quoted string)")
        self.i += 1
        return _typed(self.source, token, field, op)


def _typed(source: str, token: _Token, field: Field, op: str) -> Value:
    """Check a literal against the field it is compared with; returns it in canonical form."""
    value = token.value
    assert isinstance(value, str | float)
    kind = field.type
    if kind == "number" and not isinstance(value, float):
        raise _error(source, token.pos, f"{_name(field)} compares with numbers: remove the quotes")
    if kind == "status":
        if op not in ("=", "!=", "IN") or not isinstance(value, str) or value.upper() not in STATUSES:
            raise _error(source, token.pos, "attributes.status compares (=, !=, IN) with one of "
                                            + ", ".join(f"'{s}'" for s in STATUSES))
        return value.upper()
    if kind == "id":
        if op not in ("=", "!=", "IN") or not isinstance(value, str) or not _is_id(value):
            raise _error(source, token.pos, f"{_name(field)} compares (=, !=, IN) with a quoted run id")
        return value.replace("-", "").lower()
    if kind == "time":
        return _timestamp_ms(source, token, value)
    if kind == "text" and field.kind == "attribute" and isinstance(value, float):
        raise _error(source, token.pos, f"{_name(field)} compares with strings: quote the value")
    return value


def _lone_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


def _name(field: Field) -> str:
    prefix = {"metric": "metrics", "param": "params", "tag": "tags", "attribute": "attributes",
              "input": "inputs"}[field.kind]
    return f"{prefix}.{field.key}"


def _is_id(value: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]{32}", value.replace("-", "")) is not None


def _timestamp_ms(source: str, token: _Token, value: str | float) -> float:
    """Times compare as milliseconds since the epoch (MLflow's convention) or ISO 8601 strings."""
    if isinstance(value, float):
        if not MIN_TIME_MS <= value <= MAX_TIME_MS:
            raise _error(source, token.pos, f"a time in milliseconds since the epoch lies between {MIN_TIME_MS:.0f} "
                                            f"(year 1) and {MAX_TIME_MS:.0f} (year 9999)")
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _error(source, token.pos, "a time is milliseconds since the epoch or an ISO 8601 string such as "
                                        "'2026-11-22T10:00:00Z'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def parse_filter(source: str) -> Expr | None:
    """The syntax tree of a filter; None for an empty one. Raises InvalidArgument."""
    if not source.strip():
        if len(source) > MAX_FILTER_LENGTH:
            tokenize(source)
        return None
    parser = _Parser(source)
    expr = parser.parse_or()
    if parser.peek.kind != "end":
        raise parser.fail("AND, OR or the end of the filter")
    return expr


def parse_order_by(clauses: list[str]) -> list[OrderKey]:
    """Each clause is `field [ASC|DESC]`. Raises InvalidArgument."""
    if len(clauses) > MAX_ORDER_KEYS:
        raise InvalidArgument(f"at most {MAX_ORDER_KEYS} order_by clauses")
    keys = []
    for clause in clauses:
        parser = _Parser(clause)
        field = parser.parse_field()
        if field.kind == "input":
            raise InvalidArgument(f"order_by {clause!r}: runs are not ordered by their inputs (a run has several)")
        word = parser.accept("kw", "ASC") or parser.accept("kw", "DESC")
        if parser.peek.kind != "end":
            raise InvalidArgument(f"order_by {clause!r}: " + str(parser.fail("ASC, DESC or the end")))
        keys.append(OrderKey(field, descending=word is not None and word.text == "DESC"))
    return keys
