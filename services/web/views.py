"""gRPC messages → what the templates and the chart scripts show. Pure: no I/O, unit-tested.

Templates only loop and format; every decision about what a page shows is made here."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from trackd_api.run.v1 import run_pb2
from trackd_platform.vocabulary import CONTEXT_NUMBERS, CONTEXTS, RunStatus

PAGE_SIZES = (25, 50, 100, 250)
DEFAULT_PAGE_SIZE = 50
MAX_COLUMNS = 100  # per kind (params, metrics, tags): the query service's limit
VIEWS = {"active": run_pb2.VIEW_TYPE_ACTIVE_ONLY, "deleted": run_pb2.VIEW_TYPE_DELETED_ONLY,
         "all": run_pb2.VIEW_TYPE_ALL}
CONTEXT_NAMES, CONTEXTS_BY_NAME = CONTEXTS, CONTEXT_NUMBERS
SYSTEM_PREFIX = "system/"
ENDED = frozenset(s.name for s in RunStatus if s.terminal)
_POSITION = re.compile(r"at character (\d+)")


def status_name(status: int) -> str:
    return run_pb2.RunStatus.Name(status).removeprefix("RUN_STATUS_") if status else "UNKNOWN"


def format_duration(ms: int) -> str:
    """1.2s, 3m 04s, 2h 05m, 3d 04h."""
    if ms < 0:
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {m:02d}m"
    days, h = divmod(hours, 24)
    return f"{days}d {h:02d}h"


def format_time(ts: Timestamp | None) -> str:
    """A protobuf Timestamp as `2026-11-30 13:15:25` UTC; empty when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ts: Timestamp | None) -> str:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=UTC).isoformat()


def format_value(value: float) -> str:
    """A metric value compactly: 4 significant digits, NaN and ±Inf by name."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) or abs(value) < 1e15 else f"{value:g}"


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def metric_label(key: str, context: int) -> str:
    name = CONTEXT_NAMES.get(context, str(context))
    return f"{key}@{name}" if name else key


def filter_error_position(message: str) -> int | None:
    """The 1-based character the query service's filter error names, if it names one."""
    found = _POSITION.search(message)
    return int(found.group(1)) if found else None


# -- the runs table -------------------------------------------------------------------------------

def _keys(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))[:MAX_COLUMNS]


@dataclass(frozen=True)
class TableQuery:
    """The state of an experiment's runs table, all of it in the query string."""

    filter: str = ""
    order_by: str = ""
    view: str = "active"
    params: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    page_token: str = ""
    page_size: int = DEFAULT_PAGE_SIZE

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> TableQuery:
        view = query.get("view", "active")
        try:
            size = int(query.get("page_size", DEFAULT_PAGE_SIZE))
        except ValueError:
            size = DEFAULT_PAGE_SIZE
        return cls(
            filter=query.get("filter", "").strip(), order_by=query.get("order_by", "").strip(),
            view=view if view in VIEWS else "active",
            params=_keys(query.get("params", "")), metrics=_keys(query.get("metrics", "")),
            tags=_keys(query.get("tags", "")), page_token=query.get("page_token", ""),
            page_size=size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE,
        )

    @property
    def view_type(self) -> run_pb2.ViewType:
        return VIEWS[self.view]

    def params_dict(self, **changes: Any) -> dict[str, str]:
        state = replace(self, **changes)
        items = {"filter": state.filter, "order_by": state.order_by,
                 "view": "" if state.view == "active" else state.view,
                 "params": ",".join(state.params), "metrics": ",".join(state.metrics), "tags": ",".join(state.tags),
                 "page_size": "" if state.page_size == DEFAULT_PAGE_SIZE else str(state.page_size),
                 "page_token": state.page_token}
        return {k: v for k, v in items.items() if v}

    def url(self, path: str, **changes: Any) -> str:
        """This view with `changes`; any change but paging returns to the first page."""
        if "page_token" not in changes:
            changes["page_token"] = ""
        query = urlencode(self.params_dict(**changes))
        return f"{path}?{query}" if query else path

    def sort_field(self) -> tuple[str, bool]:
        """(field, descending) of the first order_by clause; ("", True) for the default order."""
        if not self.order_by:
            return "", True
        first = self.order_by.split(",")[0].strip()
        upper = first.upper()
        if upper.endswith(" DESC"):
            return first[:-5].strip(), True
        if upper.endswith(" ASC"):
            return first[:-4].strip(), False
        return first, False

    def sort_url(self, path: str, fld: str) -> str:
        """Sort by `fld`: descending first for metrics and times, toggled when already sorted by it."""
        current, descending = self.sort_field()
        if current == fld:
            return self.url(path, order_by=f"{fld} {'ASC' if descending else 'DESC'}")
        first_desc = fld.startswith("metrics.") or fld in ("attributes.start_time", "attributes.duration")
        return self.url(path, order_by=f"{fld} {'DESC' if first_desc else 'ASC'}")

    def sort_mark(self, fld: str) -> str:
        current, descending = self.sort_field()
        if not current and fld == "attributes.start_time":
            return "▼"
        return ("▼" if descending else "▲") if current == fld else ""


def quote_key(kind: str, key: str) -> str:
    """A field for the filter / order_by grammar; keys with other characters in backticks."""
    if re.fullmatch(r"[A-Za-z0-9_\-./:]+", key):
        return f"{kind}.{key}"
    return f"{kind}.`{key.replace('`', '``')}`"


@dataclass(frozen=True)
class RunRow:
    id: str
    name: str
    status: str
    user: str
    start: str
    duration: str
    deleted: bool
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, str]  # key → latest value, formatted (several contexts: key@context)


def run_rows(results: Iterable[Any]) -> list[RunRow]:
    rows = []
    for result in results:
        run = result.run
        metrics: dict[str, str] = {}
        for m in result.metrics:
            metrics.setdefault(m.key, format_value(m.value))
            metrics[metric_label(m.key, m.context)] = format_value(m.value)
        rows.append(RunRow(
            id=run.id, name=run.name or run.id[:8], status=status_name(run.status), user=run.user,
            start=format_time(run.start_time), duration=format_duration(run.duration_ms), deleted=run.deleted,
            params=dict(run.params), tags=dict(run.tags), metrics=metrics))
    return rows


# -- a run's page ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chart:
    key: str
    contexts: list[int]


@dataclass
class ChartGroups:
    """Charts of a run: one per metric key, grouped by the key's prefix (`train/…`), system
    metrics apart."""

    groups: dict[str, list[Chart]] = field(default_factory=dict)
    system: list[Chart] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.groups.values())


def chart_groups(latest: Iterable[Any]) -> ChartGroups:
    by_key: dict[str, list[int]] = {}
    for m in latest:
        by_key.setdefault(m.key, []).append(m.context)
    found = ChartGroups()
    for key in sorted(by_key):
        chart = Chart(key, sorted(set(by_key[key])))
        if key.startswith(SYSTEM_PREFIX):
            found.system.append(chart)
            continue
        prefix = key.split("/", 1)[0] if "/" in key else ""
        found.groups.setdefault(prefix, []).append(chart)
    # ungrouped keys first, then prefixes alphabetically
    found.groups = dict(sorted(found.groups.items(), key=lambda item: (item[0] != "", item[0])))
    return found


@dataclass(frozen=True)
class TreeEntry:
    path: str
    name: str
    depth: int
    is_dir: bool
    size: str = ""
    sha256: str = ""
    preview: str = ""  # image, text, markdown, json, yaml, csv; "" when not previewed


PREVIEWS = {".png": "image", ".jpg": "image", ".jpeg": "image", ".gif": "image", ".webp": "image",
            ".txt": "text", ".log": "text", ".py": "text", ".md": "markdown", ".json": "json",
            ".yaml": "yaml", ".yml": "yaml", ".csv": "csv", ".tsv": "csv"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp"}


def preview_kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return PREVIEWS.get(name[dot:], "") if dot >= 0 else ""


def artifact_tree(artifacts: Sequence[Any]) -> list[TreeEntry]:
    """Flat, sorted artifact paths → a tree in display order: each directory once, before its
    contents."""
    entries: list[TreeEntry] = []
    seen_dirs: set[str] = set()
    for a in sorted(artifacts, key=lambda a: a.path.split("/")):
        parts = a.path.split("/")
        for depth in range(len(parts) - 1):
            directory = "/".join(parts[: depth + 1])
            if directory not in seen_dirs:
                seen_dirs.add(directory)
                entries.append(TreeEntry(path=directory, name=parts[depth], depth=depth, is_dir=True))
        entries.append(TreeEntry(path=a.path, name=parts[-1], depth=len(parts) - 1, is_dir=False,
                                 size=format_bytes(a.size_bytes), sha256=a.sha256, preview=preview_kind(a.path)))
    return entries


def group_params(params: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted(params.items())


def environment_summary(env: Any) -> list[tuple[str, str]]:
    rows = [("Python", env.python_version), ("Platform", env.platform), ("Host", env.hostname)]
    if env.cpu_count:
        rows.append(("CPUs", str(env.cpu_count)))
    if env.memory_bytes:
        rows.append(("Memory", format_bytes(env.memory_bytes)))
    rows += [(f"GPU {i}", f"{g.model} ({format_bytes(g.memory_bytes)})") for i, g in enumerate(env.gpus)]
    rows += [(name, version) for name, version in sorted(env.frameworks.items())]
    return [(k, v) for k, v in rows if v]


# -- chart data -----------------------------------------------------------------------------------

def series_json(series: Any, *, total_points: int | None = None, downsampled: bool = False) -> dict[str, Any]:
    """A series for the chart script: columns, with NaN / ±Inf as null (a gap) and listed apart
    (JSON has no NaN) so the chart can mark them."""
    values: list[float | None] = list(series.values)
    special: list[list[Any]] = []
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            value = array[i]
            special.append([series.steps[i], "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")])
            values[i] = None
    found: dict[str, Any] = {"key": series.key, "context": CONTEXT_NAMES.get(series.context, ""),
                             "steps": list(series.steps), "values": values, "ts": list(series.timestamps_ms),
                             "special": special}
    if total_points is not None:
        found["total"] = total_points
        found["downsampled"] = downsampled
    return found


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
