"""Search spaces: parse and validate (from the API's JSON or a YAML file), then sample them
through an Optuna trial, define-by-run, so conditional parameters exist only when their
condition holds. Pure: no database, no gRPC.

    lr:        {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
    layers:    {type: int, low: 1, high: 8}
    optimizer: {type: categorical, choices: [adam, sgd]}
    momentum:  {type: float, low: 0.0, high: 0.99, step: 0.01, when: {optimizer: sgd}}

`when` maps a parent parameter to the value (or list of values) it must have.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from trackd_platform.errors import InvalidArgument

MAX_PARAMS = 100
MAX_CHOICES = 1_000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")
Choice = str | int | float | bool | None


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # float, int, categorical
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Choice, ...] = ()
    when: Mapping[str, tuple[Choice, ...]] = field(default_factory=dict)

    def distribution(self) -> BaseDistribution:
        if self.type == "categorical":
            return CategoricalDistribution(self.choices)
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        return _describe(self)

    def spec(self) -> dict[str, Any]:
        """As a search space entry (what `parse` reads)."""
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        found: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.type == "int":
            found.update(low=int(self.low), high=int(self.high))
        if self.log:
            found["log"] = True
        if self.step is not None:
            found["step"] = int(self.step) if self.type == "int" else self.step
        return found

    def suggest(self, trial: optuna.Trial) -> Choice:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Space:
    """Parameters in an order where every parent comes before the parameters conditioned on it."""

    params: tuple[Param, ...]

    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution() for p in self.params}

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise InvalidArgument unless each of `params` is a param of the space with a value it
        may take (a subset: the others are sampled)."""
        known = {p.name: p for p in self.params}
        for name, value in params.items():
            if (p := known.get(name)) is None:
                raise InvalidArgument(f"the study has no param {name!r} (params: {', '.join(known)})")
            dist = p.distribution()
            try:
                ok = not isinstance(value, bool) or p.type == "categorical"
                ok = ok and dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                raise InvalidArgument(f"param {name!r}: {value!r} is outside the space ({_describe(p)})")

    def suggest(self, trial: optuna.Trial) -> dict[str, Choice]:
        """Draw one configuration through `trial`; conditional parameters whose condition does not
        hold are left out (and never suggested, so samplers do not see them)."""
        chosen: dict[str, Choice] = {}
        for p in self.params:
            if all(chosen.get(parent, _MISSING) in values for parent, values in p.when.items()):
                chosen[p.name] = p.suggest(trial)
        return chosen


_MISSING = object()


def _describe(p: Param) -> str:
    if p.type == "categorical":
        return "one of " + ", ".join(map(repr, p.choices))
    step = f", step {p.step:g}" if p.step is not None else ""
    return f"{p.type} from {p.low:g} to {p.high:g}{step}{', log' if p.log else ''}"


def _number(name: str, spec: Mapping[str, Any], key: str) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"param {name!r}: {key} must be a finite number, got {value!r}")
    return float(value)


def _param(name: str, spec: Any) -> Param:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(f"param name {name!r}: 1–100 of letters, digits, '_', '.', '-', not starting "
                              "with a digit")
    if not isinstance(spec, Mapping):
        raise InvalidArgument(f"param {name!r}: expected a mapping with a type, got {spec!r}")
    kind = spec.get("type")
    known = {"type", "low", "high", "log", "step", "choices", "when"}
    if unknown := set(spec) - known:
        raise InvalidArgument(f"param {name!r}: unknown field {sorted(unknown)[0]!r} "
                              f"(fields: {', '.join(sorted(known))})")
    when = _when(name, spec.get("when") or {})
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InvalidArgument(f"param {name!r}: categorical needs a non-empty list of choices")
        if len(choices) > MAX_CHOICES or len({repr(c) for c in choices}) != len(choices):
            raise InvalidArgument(f"param {name!r}: choices must be distinct, at most {MAX_CHOICES}")
        if not all(c is None or isinstance(c, str | int | float | bool) for c in choices):
            raise InvalidArgument(f"param {name!r}: choices are strings, numbers, booleans or null")
        return Param(name, "categorical", choices=tuple(choices), when=when)
    if kind not in ("float", "int"):
        raise InvalidArgument(f"param {name!r}: type must be float, int or categorical, got {kind!r}")
    low, high = _number(name, spec, "low"), _number(name, spec, "high")
    log = bool(spec.get("log", False))
    step = None if spec.get("step") is None else _number(name, spec, "step")
    if low > high:
        raise InvalidArgument(f"param {name!r}: low {low:g} is above high {high:g}")
    if log and low <= 0:
        raise InvalidArgument(f"param {name!r}: a log scale needs low > 0, got {low:g}")
    if step is not None:
        if step <= 0:
            raise InvalidArgument(f"param {name!r}: step must be positive")
        if log and step != 1:
            raise InvalidArgument(f"param {name!r}: step and log cannot be combined")
        span = (high - low) / step
        if abs(span - round(span)) > 1e-9 * max(1.0, abs(span)):
            raise InvalidArgument(f"param {name!r}: step {step:g} does not divide the range {low:g}..{high:g}")
    if kind == "int":
        if low != int(low) or high != int(high) or (step is not None and step != int(step)):
            raise InvalidArgument(f"param {name!r}: int bounds and step must be whole numbers")
    return Param(name, kind, low=low, high=high, log=log, step=step if not log else None, when=when)


def _when(name: str, when: Any) -> dict[str, tuple[Choice, ...]]:
    if not isinstance(when, Mapping):
        raise InvalidArgument(f"param {name!r}: 'when' maps a parent param to its value(s)")
    return {parent: tuple(v) if isinstance(v, list) else (v,) for parent, v in when.items()}


def parse_param(name: str, spec: Any) -> Param:
    """One param suggested define-by-run (no condition: the code's control flow is the condition)."""
    if isinstance(spec, Mapping) and spec.get("when"):
        raise InvalidArgument(f"param {name!r}: a suggested param has no 'when' (the code decides whether to ask)")
    return _param(name, spec)


def parse(spec: Any, *, allow_empty: bool = False) -> Space:
    """A validated space from a mapping of name → param spec (`allow_empty`: a define-by-run
    study's, learnt so far). Raises InvalidArgument naming the first problem: bounds, log scale,
    step, choices, or a condition on a missing or cyclic parent."""
    if allow_empty and spec == {}:
        return Space(())
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidArgument("a search space maps parameter names to their specs and has at least one")
    if len(spec) > MAX_PARAMS:
        raise InvalidArgument(f"{len(spec)} parameters; the limit is {MAX_PARAMS}")
    params = {name: _param(name, s) for name, s in spec.items()}
    for p in params.values():
        for parent, values in p.when.items():
            if parent not in params:
                raise InvalidArgument(f"param {p.name!r} is conditioned on {parent!r}, which is not in the space")
            dist = params[parent]
            if dist.type == "categorical" and any(v not in dist.choices for v in values):
                raise InvalidArgument(f"param {p.name!r}: its condition on {parent!r} names a value that is not "
                                      f"one of {list(dist.choices)}")
    return Space(tuple(params[n] for n in _ordered(params)))


def _ordered(params: Mapping[str, Param]) -> list[str]:
    """Parents before children (Kahn's algorithm); a cycle is InvalidArgument."""
    order: list[str] = []
    placed: set[str] = set()
    pending = list(params)
    while pending:
        ready = [n for n in pending if all(parent in placed for parent in params[n].when)]
        if not ready:
            raise InvalidArgument(f"the conditions between {sorted(pending)} form a cycle")
        order += ready
        placed.update(ready)
        pending = [n for n in pending if n not in placed]
    return order


def parse_yaml(text: str) -> Space:
    import yaml

    try:
        return parse(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"the search space is not valid YAML: {exc}") from None

