"""The run page's Logs and Media tabs: a run's console output (its last LOG_PAGE_BYTES, escaped
text) and its media by key, one step at a time chosen with a slider (`?tab=media&key=K&step=N`;
other keys show their latest step). Images are shown from the artifact file route, histograms
as server-drawn SVG bars, tables as their first TABLE_ROWS rows. The conversions are pure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.datastructures import QueryParams
from trackd_api.artifact.v1 import artifact_pb2
from trackd_api.run.v1 import run_data_pb2

from .backends import Backends, Caller, page_call

LOG_PAGE_BYTES = 1024 * 1024
LOG_READ_PAGE = 1_000  # chunks in a full ReadLogs answer
TABLE_ROWS = 50
TABLE_BYTES = 1024 * 1024
BARS_WIDTH, BARS_HEIGHT = 480, 160
KINDS = {run_data_pb2.MEDIA_KIND_IMAGE: "image", run_data_pb2.MEDIA_KIND_HISTOGRAM: "histogram",
         run_data_pb2.MEDIA_KIND_TABLE: "table"}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass
class MediaKey:
    """One key of a run's media: its steps, and the item shown (at `index`)."""

    key: str
    kind: str
    steps: list[int]
    index: int
    item: run_data_pb2.MediaItem
    image_url: str = ""
    bars: list[Bar] = field(default_factory=list)
    table: dict[str, Any] | None = None
    caption: str = ""

    @property
    def step(self) -> int:
        return self.steps[self.index]


def histogram_bars(counts: list[float], edges: list[float], *, width: float = BARS_WIDTH,
                   height: float = BARS_HEIGHT) -> list[Bar]:
    """SVG rectangles of a histogram: bins side by side across `width`, heights relative to the
    largest count."""
    if not counts:
        return []
    top = max(counts) or 1.0
    each = width / len(counts)
    return [Bar(round(i * each, 2), round(height - c / top * height, 2), round(max(each - 1, 0.5), 2),
                round(c / top * height, 2), f"[{edges[i]:.4g}, {edges[i + 1]:.4g}): {c:g}")
            for i, c in enumerate(counts)]


def media_keys(items: list[run_data_pb2.MediaItem], chosen_key: str, chosen_step: int | None) -> list[MediaKey]:
    """Items grouped by key (in key then step order, as ListMedia answers); each key shows its
    latest step, the chosen key the chosen step (the nearest one logged at or before it)."""
    grouped: dict[str, list[run_data_pb2.MediaItem]] = {}
    for item in items:
        grouped.setdefault(item.key, []).append(item)
    keys = []
    for key, found in grouped.items():
        steps = [i.step for i in found]
        index = len(steps) - 1
        if key == chosen_key and chosen_step is not None:
            index = max([i for i, s in enumerate(steps) if s <= chosen_step] or [0])
        keys.append(MediaKey(key, KINDS.get(found[index].kind, "unknown"), steps, index, found[index]))
    return keys


def _info(item: run_data_pb2.MediaItem) -> dict[str, Any]:
    try:
        info = json.loads(item.info_json or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _step(params: QueryParams) -> int | None:
    try:
        return int(params.get("step", ""))
    except ValueError:
        return None


async def logs_context(backends: Backends, run_id: str, caller: Caller) -> dict[str, Any]:
    """The last LOG_PAGE_BYTES (about) of the run's console, chunk by chunk (stderr marked)."""
    answer = await page_call(backends.run_data.ReadLogs, run_data_pb2.ReadLogsRequest(
        run_id=run_id, tail_bytes=LOG_PAGE_BYTES), caller)
    chunks = list(answer.chunks)
    while len(answer.chunks) == LOG_READ_PAGE and sum(len(c.text) for c in chunks) < 2 * LOG_PAGE_BYTES:
        answer = await page_call(backends.run_data.ReadLogs, run_data_pb2.ReadLogsRequest(
            run_id=run_id, after_position=answer.next_position), caller)
        chunks += answer.chunks
    return {"log_chunks": [(c.text, c.stream == run_data_pb2.LOG_STREAM_STDERR) for c in chunks],
            "log_dropped": answer.dropped_bytes, "log_page_bytes": LOG_PAGE_BYTES}


async def media_context(backends: Backends, run_id: str, params: QueryParams, caller: Caller) -> dict[str, Any]:
    listed = await page_call(backends.run_data.ListMedia, run_data_pb2.ListMediaRequest(run_id=run_id), caller)
    keys = media_keys(list(listed.items), params.get("key", ""), _step(params))
    for shown in keys:
        item = shown.item
        if shown.kind == "image":
            shown.caption = str(_info(item).get("caption", ""))
            shown.image_url = f"/runs/{run_id}/artifacts/file?path={quote(item.artifact_path)}"
        elif shown.kind == "histogram":
            shown.bars = histogram_bars(list(item.histogram.counts), list(item.histogram.edges))
        elif shown.kind == "table":
            shown.table = await _table(backends, run_id, item.artifact_path, caller)
    return {"media": keys, "bars_width": BARS_WIDTH, "bars_height": BARS_HEIGHT}


async def _table(backends: Backends, run_id: str, path: str, caller: Caller) -> dict[str, Any]:
    parts = []
    call = backends.artifacts.DownloadArtifact(artifact_pb2.DownloadArtifactRequest(
        run_id=run_id, path=path, length=TABLE_BYTES), metadata=caller.metadata, timeout=30.0)
    async for part in call:
        parts.append(part.chunk)
    try:
        decoded = json.loads(b"".join(parts))
    except ValueError:  # longer than TABLE_BYTES: cut off
        return {"columns": [], "rows": [], "total": 0, "unreadable": True}
    rows = decoded.get("rows", [])
    return {"columns": decoded.get("columns", []), "rows": rows[:TABLE_ROWS], "total": len(rows)}
