"""Turning user values into what the run service stores: flat string params and tags."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def plain(value: Any) -> Any:
    """numpy scalars and arrays, enums and paths as plain Python values."""
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy scalar or array, torch tensor
        return value.tolist()
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    return value


def to_text(value: Any) -> str:
    value = plain(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int | float):
        return repr(value)
    try:
        return json.dumps(value, default=lambda v: str(plain(v)), sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"model": {"hidden": 4096}} → {"model.hidden": "4096"}."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = to_text(value)
    return flat
