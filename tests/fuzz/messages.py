"""Hypothesis strategies for request messages, built from the proto descriptors alone: a new RPC,
message or field is fuzzed without touching this file.

A request is drawn as serialized bytes, so it can also be something no protobuf library would
write: invalid UTF-8 in a string field (top level or nested), a truncated buffer, a length prefix
larger than what follows, a field with the wrong wire type, unknown fields, nesting deeper than
the parser allows, or plain garbage. Well-formed field values lean on the edges: oversized
strings, negative and huge integers, NaN and infinities, unknown enum numbers, long repeated
fields, random filter expressions, and the real ids in `hints` so that requests also reach past
validation into the stores.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 3
# Lengths at and past the documented limits (250 names, 1,024 paths, 5,000 / 6,000 tag and param
# values, 10,000 filters, 100,000 notes); whole messages past gRPC's 16 MiB come from _too_large.
OVERSIZED = (251, 1_025, 5_001, 6_001, 10_001, 100_001, 200_001)
TOO_LARGE = 16 * 1024 * 1024 + 1
INT32, INT64 = (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
FILTER_TOKENS = (
    "metrics.", "params.", "tags.", "attributes.", "run_name", "status", "start_time", "loss", "lr", "`a b`",
    "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT", "AND", "OR", "(", ")", ",", "'", '"',
    "'x'", "'%'", "0.5", "-1e309", "NaN", "min(", "max(", "\\", ";", "--", "/*", "DROP TABLE runs", "\x00",
)
INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"abc\x80def", b"\xe2\x82")

_INTEGERS: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: INT32, FieldDescriptor.TYPE_SINT32: INT32, FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64, FieldDescriptor.TYPE_SINT64: INT64, FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_WIRE_TYPE = {
    FieldDescriptor.TYPE_DOUBLE: 1, FieldDescriptor.TYPE_FIXED64: 1, FieldDescriptor.TYPE_SFIXED64: 1,
    FieldDescriptor.TYPE_FLOAT: 5, FieldDescriptor.TYPE_FIXED32: 5, FieldDescriptor.TYPE_SFIXED32: 5,
    FieldDescriptor.TYPE_STRING: 2, FieldDescriptor.TYPE_BYTES: 2, FieldDescriptor.TYPE_MESSAGE: 2,
}


# -- the wire format, just enough to write what a library would refuse to --------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers travel as ten-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


# -- well-formed values ----------------------------------------------------------------------------

def boundary_integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted({v for v in (low, low + 1, -1, 0, 1, 2, 1000, 1001, 10_001, 1_000_001, high - 1, high)
                    if low <= v <= high})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def filter_strings() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(FILTER_TOKENS), min_size=1, max_size=12).flatmap(
        lambda tokens: st.sampled_from([" ", ""]).map(lambda sep: sep.join(tokens)))


def page_tokens() -> st.SearchStrategy[str]:
    """Tokens that decode (base64url JSON lists, as the services write them) but were forged: any
    arity, values of every JSON type, huge numbers, NULs, times and ids in the wrong places."""
    values = st.recursive(
        st.none() | st.booleans() | boundary_integers(-(2**70), 2**70) | st.floats(allow_nan=False)
        | st.text(max_size=20) | st.sampled_from(["\x00", "2026-11-30T10:00:00+00:00", "9999-12-31", "-1e309",
                                                 "00000000-0000-0000-0000-000000000000", "not-a-uuid"]),
        lambda inner: st.lists(inner, max_size=3), max_leaves=6)
    return st.lists(values, max_size=6).map(
        lambda position: base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("="))


PREDICATES = (
    "metrics.loss > 0.5", "params.lr = '0.1'", "tags.t LIKE 'a%'", "attributes.status = 'RUNNING'",
    "attributes.start_time > 1e300", "attributes.end_time < -1e17", "attributes.start_time > '99999-01-01'",
    "min(metrics.loss) <= -1e308", "params.x IN ('a', 'b')", "metrics.`a b`@eval IS NULL",
    "attributes.duration > 9.9e307", "params.n > 1e400",
)


def structured_filters() -> st.SearchStrategy[str]:
    """Filters that parse as far as they can: nested parentheses and NOTs (up to hundreds deep),
    long AND / OR chains, and time literals out of any range."""
    leaf = st.sampled_from(PREDICATES)
    nested = st.tuples(st.integers(1, 400), st.sampled_from(["(", "NOT (", "NOT NOT ("]), leaf).map(
        lambda t: t[1] * t[0] + t[2] + ")" * (t[0] * t[1].count("(")))
    chain = st.tuples(st.lists(leaf, min_size=2, max_size=200), st.sampled_from([" AND ", " OR "])).map(
        lambda t: t[1].join(t[0]))
    return st.one_of(leaf, nested, chain)


def strings(known: Sequence[str]) -> st.SearchStrategy[str]:
    parts: list[st.SearchStrategy[str]] = [
        st.text(max_size=40),
        st.sampled_from(OVERSIZED).flatmap(lambda n: st.characters(codec="utf-8").map(lambda c: c * n)),
        filter_strings(),
    ]
    if known:  # half the time: values that get past validation, so requests reach the stores
        return st.one_of(st.sampled_from(list(known)), st.one_of(*parts))
    return st.one_of(*parts)


class Generator:
    """Requests for any message type; `hints` maps a field name to values worth trying in it
    (real ids, names, paths), `common` are tried in every string field."""

    def __init__(self, hints: Mapping[str, Sequence[str]] | None = None, common: Sequence[str] = ()) -> None:
        self.hints = {k: list(v) for k, v in (hints or {}).items()}
        self.common = list(common)

    def request(self, descriptor: Descriptor) -> st.SearchStrategy[bytes]:
        """Serialized request bytes: usually a well-formed message, sometimes mangled on the wire."""
        message = self.message(descriptor).map(lambda m: bytes(m.SerializeToString()))
        garbage = st.one_of(st.binary(max_size=64), st.binary(max_size=64), st.binary(max_size=64),
                            st.just(_too_large()))
        corrupted = st.tuples(message, self.corruption(descriptor)).map(lambda pair: pair[1](pair[0]))
        plausible = self.message(descriptor, plausible=True).map(lambda m: bytes(m.SerializeToString()))
        return st.one_of(plausible, plausible, message, message, corrupted, corrupted, garbage)

    def message(self, descriptor: Descriptor, depth: int = 0, *, plausible: bool = False) -> st.SearchStrategy[Message]:
        """Random field values; `plausible` puts only hinted values in the hinted string fields
        (every other field stays random), so that requests get past the first checks."""
        cls = GetMessageClass(descriptor)
        fields = {f.name: self.field(f, depth, plausible) for f in descriptor.fields} if depth < MAX_DEPTH else {}

        def build(values: dict[str, object]) -> Message:
            message = cls()
            for name, value in values.items():
                _assign(message, descriptor.fields_by_name[name], value)
            return message

        return st.fixed_dictionaries({}, optional=fields).map(build)

    def field(self, field: FieldDescriptor, depth: int, plausible: bool) -> st.SearchStrategy[object]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = self.scalar(field.message_type.fields_by_name["key"], depth, plausible)
            value = self.scalar(field.message_type.fields_by_name["value"], depth, plausible)
            small = st.dictionaries(key, value, max_size=4)
            short = st.just("v") if field.message_type.fields_by_name["value"].type == field.TYPE_STRING else value
            many = st.tuples(st.integers(1_001, 1_500), short).map(lambda p: {f"k{i}": p[1] for i in range(p[0])})
            return small | many if field.message_type.fields_by_name["key"].type == field.TYPE_STRING else small
        one = self.scalar(field, depth, plausible)
        if not field.is_repeated:
            return one
        if field.message_type is not None:
            return st.lists(one, max_size=3)
        short = st.sampled_from([*self.hints.get(field.name, ()), "x"]) if field.type == field.TYPE_STRING else one
        many = st.tuples(st.integers(1_001, 20_000), short).map(lambda pair: [pair[1]] * pair[0])
        return st.lists(one, max_size=4) | many

    def scalar(self, field: FieldDescriptor, depth: int, plausible: bool) -> st.SearchStrategy[object]:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self.message(field.message_type, depth + 1, plausible=plausible)
        if kind == FieldDescriptor.TYPE_STRING:
            if plausible and field.name in self.hints:
                return st.sampled_from(self.hints[field.name])
            found = strings([*self.hints.get(field.name, ()), *self.common])
            if field.name == "page_token":  # structure-aware: tokens that decode, then mislead
                return st.one_of(page_tokens(), found)
            if field.name == "filter":
                return st.one_of(structured_filters(), found)
            return found
        if kind == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=64) | st.sampled_from(OVERSIZED).map(lambda n: b"\xff" * n)
        if kind == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if kind == FieldDescriptor.TYPE_DOUBLE:
            return st.floats()
        if kind == FieldDescriptor.TYPE_FLOAT:
            return st.floats(width=32)
        if kind == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown numbers arrive too
            return st.sampled_from([v.number for v in field.enum_type.values]) | boundary_integers(*INT32)
        return boundary_integers(*_INTEGERS[kind])

    # -- what no library would write -------------------------------------------------------------

    def corruption(self, descriptor: Descriptor) -> st.SearchStrategy[Callable[[bytes], bytes]]:
        """A function from well-formed bytes to mangled ones."""
        numbers = st.integers(1, 2**29 - 1)
        options: list[st.SearchStrategy[Callable[[bytes], bytes]]] = [
            st.integers(1, 64).map(_truncate),
            st.tuples(numbers, st.integers(6, 2**31)).map(_length_beyond_the_end),
            st.tuples(numbers, st.sampled_from([0, 1, 2, 5])).map(_unknown_field),
            st.sampled_from([3, 4, 6, 7]).map(lambda wire: _append(tag(1, wire))),  # groups, reserved types
            st.binary(min_size=1, max_size=32).map(_append),
            st.just(_append(_deep_nesting())),
        ]
        if descriptor.fields:
            options.append(st.sampled_from(list(descriptor.fields)).map(_wrong_wire_type))
        if bad_strings := _string_writers(descriptor):
            options.append(st.tuples(st.sampled_from(bad_strings), st.sampled_from(INVALID_UTF8)).map(
                lambda pair: _append(pair[0](pair[1]))))
        return st.one_of(*options)


def _append(extra: bytes) -> Callable[[bytes], bytes]:
    return lambda raw: raw + extra


def _truncate(cut: int) -> Callable[[bytes], bytes]:
    return lambda raw: raw[: max(0, len(raw) - cut)] or b"\x0a"  # a lone tag, if nothing is left


def _length_beyond_the_end(pair: tuple[int, int]) -> Callable[[bytes], bytes]:
    number, length = pair
    return _append(tag(number, 2) + varint(length) + b"short")


def _unknown_field(pair: tuple[int, int]) -> Callable[[bytes], bytes]:
    number, wire_type = pair
    payload = {0: varint(2**63), 1: b"\x01" * 8, 2: varint(3) + b"abc", 5: b"\x01" * 4}[wire_type]
    return _append(tag(number, wire_type) + payload)


def _wrong_wire_type(field: FieldDescriptor) -> Callable[[bytes], bytes]:
    """A known field sent with another wire type than its own: a varint where a string, message
    or fixed-width number belongs, a string where a varint belongs."""
    if _WIRE_TYPE.get(field.type, 0) != 0:
        return _append(tag(field.number, 0) + varint(2**64 - 1))
    return _append(length_delimited(field.number, b"x"))


def _assign(message: Message, field: FieldDescriptor, value: object) -> None:
    target = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        assert isinstance(value, dict)
        for k, v in value.items():
            if field.message_type.fields_by_name["value"].message_type is not None:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif field.is_repeated:
        assert isinstance(value, list)
        target.extend(value)
    elif field.message_type is not None:
        assert isinstance(value, Message)
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _string_writers(descriptor: Descriptor, depth: int = 0) -> list[Callable[[bytes], bytes]]:
    """Writers that put given bytes into each string field, nested ones included (wrapped in
    their parent fields), e.g. `header.path` of an upload or a map's key."""
    found: list[Callable[[bytes], bytes]] = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            found.append(lambda payload, n=field.number: length_delimited(n, payload))
        elif field.message_type is not None and depth < MAX_DEPTH:
            for inner in _string_writers(field.message_type, depth + 1):
                found.append(lambda payload, n=field.number, w=inner: length_delimited(n, w(payload)))
    return found


def _too_large() -> bytes:
    """A message over the servers' 16 MiB limit, in an unknown field (every type has room)."""
    return length_delimited(19_998, b"x" * TOO_LARGE)


def _deep_nesting() -> bytes:
    """An unknown group nested 200 levels deep (protobuf parsers stop at 100)."""
    payload = b""
    for _ in range(200):
        payload = tag(1, 3) + payload + tag(1, 4)
    return tag(19_999, 3) + payload + tag(19_999, 4)
