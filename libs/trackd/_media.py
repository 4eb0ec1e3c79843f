"""Media over steps: images, histograms and tables a run logs at steps, read back with
`trackd.get_media(run_id, key)`.

Images (a numpy array, a PIL image or a matplotlib figure) are stored as PNG and tables as JSON,
both as artifacts of the run under `media/<key>/<step>-<sha256 prefix>.png|json` (content-addressed by the
artifact service); a RunDataService row indexes each (run, key, step). Histograms are binned on
the client and stored inline: at most 1,000 bins, never the raw values. A table holds at most
10,000 rows and 4 MiB of JSON. Logging a key at a step again replaces that item.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from trackd_api.artifact.v1 import artifact_pb2
from trackd_api.run.v1 import run_data_pb2

from trackd import _artifacts
from trackd._client import Client
from trackd._logs import stub
from trackd.errors import InvalidArgument, from_rpc_error

KINDS = {run_data_pb2.MEDIA_KIND_IMAGE: "image", run_data_pb2.MEDIA_KIND_HISTOGRAM: "histogram",
         run_data_pb2.MEDIA_KIND_TABLE: "table"}
HISTOGRAM_BINS_MAX = 1_000
TABLE_ROWS_MAX = 10_000
TABLE_BYTES_MAX = 4 * 1024 * 1024


@dataclass(frozen=True)
class Histogram:
    counts: list[float]
    edges: list[float]  # len(counts) + 1, increasing


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[Any]]

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)


@dataclass(frozen=True)
class Media:
    """One logged item: `value` is PNG bytes (image), a Histogram or a Table."""

    key: str
    step: int
    kind: str
    value: bytes | Histogram | Table | None
    info: dict[str, Any] = field(default_factory=dict)
    time: datetime | None = None


# -- encoding -----------------------------------------------------------------------------------

def _png(pixels: Any) -> bytes:
    """A PNG of a uint8 array of shape (h, w) or (h, w, 1|3|4), written with zlib alone."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def part(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + part(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
            + part(b"IDAT", zlib.compress(raw, 6)) + part(b"IEND", b""))


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise InvalidArgument("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def encode_image(image: Any) -> bytes:
    """PNG bytes of a numpy array (h×w grey, h×w×1|3|4; uint8, or floats in [0, 1]), a PIL image or
    a matplotlib figure."""
    if hasattr(image, "savefig"):
        return _artifacts.encode_figure(image, "image.png")
    if hasattr(image, "save") and hasattr(image, "mode"):  # PIL
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    import numpy as np

    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or 0 in array.shape:
        raise InvalidArgument(f"an image array is h×w or h×w×1|3|4, not {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "fiub":
            raise InvalidArgument(f"an image array holds numbers, not {array.dtype}")
        scaled = array.astype(np.float64) * (255 if array.dtype.kind == "f" else 1)
        if not np.isfinite(scaled).all():
            raise InvalidArgument("an image array must be finite")
        array = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return _png(np.ascontiguousarray(array))


def bin_values(values: Any, bins: int) -> Histogram:
    """`values` (or `(counts, edges)`, taken as given) as a histogram of at most 1,000 bins."""
    if not 1 <= bins <= HISTOGRAM_BINS_MAX:
        raise InvalidArgument(f"bins is 1–{HISTOGRAM_BINS_MAX}, not {bins}")
    if isinstance(values, tuple) and len(values) == 2:
        counts, edges = ([float(v) for v in part] for part in values)
        if len(edges) != len(counts) + 1:
            raise InvalidArgument(f"(counts, edges): {len(counts)} counts need {len(counts) + 1} edges, "
                                  f"not {len(edges)}")
        return Histogram(counts, edges)
    import numpy as np

    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise InvalidArgument("a histogram needs at least one finite value")
    low, high = float(array.min()), float(array.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    binned, bin_edges = np.histogram(array, bins=bins, range=(low, high))
    return Histogram([float(c) for c in binned], [float(e) for e in bin_edges])


def encode_table(rows: Any, columns: Sequence[str] | None) -> tuple[bytes, Table]:
    """JSON of a table: a DataFrame, a list of dicts, or a list of lists with `columns`."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas
        table = Table([str(c) for c in rows.columns], rows.astype(object).where(rows.notna(), None).values.tolist())
    else:
        rows = list(rows)
        if rows and isinstance(rows[0], Mapping):
            names = list(columns or dict.fromkeys(k for row in rows for k in row))
            table = Table([str(c) for c in names], [[row.get(c) for c in names] for row in rows])
        else:
            width = max((len(r) for r in rows), default=0)
            names = list(columns) if columns is not None else [f"c{i}" for i in range(width)]
            if any(len(r) != len(names) for r in rows):
                raise InvalidArgument(f"every row needs {len(names)} values (the columns)")
            table = Table([str(c) for c in names], [list(r) for r in rows])
    if len(table.rows) > TABLE_ROWS_MAX:
        raise InvalidArgument(f"a table of {len(table.rows)} rows; the limit is {TABLE_ROWS_MAX}")
    data = json.dumps({"columns": table.columns, "rows": table.rows}, default=_plain).encode()
    if len(data) > TABLE_BYTES_MAX:
        raise InvalidArgument(f"a table of {len(data)} bytes as JSON; the limit is {TABLE_BYTES_MAX}")
    return data, table


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    return str(value)


# -- logging and reading ------------------------------------------------------------------------

class MediaLog:
    """A run's media writer: the next step of each key when none is given."""

    def __init__(self, client: Client, run_id: str) -> None:
        self._client, self._run_id = client, run_id
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    def _step(self, key: str, step: int | None) -> int:
        if not key or len(key) > 250 or key.startswith("/") or ".." in key.split("/"):
            raise InvalidArgument(f"a media key is 1–250 characters, a relative path, not {key[:80]!r}")
        with self._lock:
            chosen = self._next.get(key, 0) if step is None else int(step)
            if chosen < 0:
                raise InvalidArgument(f"a media step is ≥ 0, not {chosen}")
            self._next[key] = max(self._next.get(key, 0), chosen + 1)
            return chosen

    def _index(self, item: run_data_pb2.MediaItem) -> None:
        self._client.call("run", stub(self._client).LogMedia,
                          run_data_pb2.LogMediaRequest(run_id=self._run_id, item=item))

    def _artifact(self, key: str, step: int, kind: int, data: bytes, suffix: str, info: dict[str, Any]) -> None:
        # named by content too: artifacts are immutable, and a step logged again gets new content
        path = f"media/{key}/{step}-{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
        stored = _artifacts.upload(self._client, self._run_id, data, path,
                                   type="figure" if kind == run_data_pb2.MEDIA_KIND_IMAGE else "data")
        self._index(run_data_pb2.MediaItem(key=key, step=step, kind=kind,  # type: ignore[arg-type]
                                           artifact_path=path, sha256=stored.sha256, info_json=json.dumps(info)))

    def image(self, key: str, image: Any, step: int | None, caption: str) -> int:
        data = encode_image(image)
        width, height = png_size(data)
        chosen = self._step(key, step)
        self._artifact(key, chosen, run_data_pb2.MEDIA_KIND_IMAGE, data, "png",
                       {"width": width, "height": height, "bytes": len(data), "caption": caption})
        return chosen

    def histogram(self, key: str, values: Any, step: int | None, bins: int) -> int:
        histogram = bin_values(values, bins)
        chosen = self._step(key, step)
        self._index(run_data_pb2.MediaItem(
            key=key, step=chosen, kind=run_data_pb2.MEDIA_KIND_HISTOGRAM,
            histogram=run_data_pb2.Histogram(counts=histogram.counts, edges=histogram.edges),
            info_json=json.dumps({"total": sum(histogram.counts)})))
        return chosen

    def table(self, key: str, rows: Any, step: int | None, columns: Sequence[str] | None) -> int:
        data, table = encode_table(rows, columns)
        chosen = self._step(key, step)
        self._artifact(key, chosen, run_data_pb2.MEDIA_KIND_TABLE, data, "json",
                       {"columns": table.columns, "rows": len(table.rows)})
        return chosen


def _download(client: Client, run_id: str, path: str, sha256: str) -> bytes:
    try:
        chunks = client.artifacts.DownloadArtifact(artifact_pb2.DownloadArtifactRequest(run_id=run_id, path=path),
                                                   timeout=max(60.0, client.settings.rpc_timeout_s))
        data = b"".join(response.chunk for response in chunks)
    except grpc.RpcError as error:
        raise from_rpc_error(error, client.settings.target("artifact")) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidArgument(f"{path}: downloaded content does not match its sha256; read it again")
    return data


def get_media(run_id: str, key: str = "", *, step: int | None = None, download: bool = True,
              client: Client) -> list[Media]:
    """The media a run logged under `key` (every key when empty), by key then step; only `step`
    when given. Images come as PNG bytes and tables as Table, fetched from the artifact service
    (`download=False`: value None, info only); histograms as Histogram."""
    response = client.call("run", stub(client).ListMedia, run_data_pb2.ListMediaRequest(run_id=run_id, key=key))
    found = []
    for item in response.items:
        if step is not None and item.step != step:
            continue
        value: bytes | Histogram | Table | None = None
        if item.kind == run_data_pb2.MEDIA_KIND_HISTOGRAM:
            value = Histogram(list(item.histogram.counts), list(item.histogram.edges))
        elif download:
            data = _download(client, run_id, item.artifact_path, item.sha256)
            if item.kind == run_data_pb2.MEDIA_KIND_TABLE:
                decoded = json.loads(data)
                value = Table(decoded["columns"], decoded["rows"])
            else:
                value = data
        found.append(Media(item.key, item.step, KINDS.get(item.kind, "unknown"), value,
                           json.loads(item.info_json or "{}"),
                           item.time.ToDatetime() if item.HasField("time") else None))
    return found
