"""The SDK's append-only spool: every metric batch is written here before it is sent, and
deleted once the ingest service has acknowledged it. A stream's spool outlives its process:
`trackd sync` (or the next run of the same process) replays what is left, and the server drops
batches it already committed (same stream id and sequence), so every point arrives once.

Layout: <root>/<stream_id>/meta.json and segment files of length-prefixed records
(8-byte sequence, 4-byte length, payload)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct("<qI")
SEGMENT_BYTES = 32 * 1024 * 1024


@dataclass
class _Segment:
    path: Path
    last_sequence: int = 0


class Spool:
    """Thread-safe: the batcher appends, the streamer reads and acknowledges."""

    def __init__(self, directory: Path, *, run_id: str, stream_id: str) -> None:
        self.directory = directory
        self.run_id = run_id
        self.stream_id = stream_id
        self._lock = threading.Lock()
        self._index: dict[int, tuple[Path, int, int]] = {}  # sequence → (segment, offset, length)
        self._segments: list[_Segment] = []
        self._acked = 0
        self._last = 0
        directory.mkdir(parents=True, exist_ok=True)
        meta = directory / "meta.json"
        if meta.exists():
            self._recover()
        else:
            meta.write_text(json.dumps({"run_id": run_id, "stream_id": stream_id}))
        self._writer = open(self._new_segment().path, "ab")  # noqa: SIM115 — closed in close()

    def _new_segment(self) -> _Segment:
        number = len(list(self.directory.glob("*.seg"))) + 1
        while (self.directory / f"{number:08d}.seg").exists():
            number += 1
        segment = _Segment(self.directory / f"{number:08d}.seg")
        self._segments.append(segment)
        return segment

    def _recover(self) -> None:
        """Index what an earlier process left; a torn last record is dropped."""
        for path in sorted(self.directory.glob("*.seg")):
            segment = _Segment(path)
            data = path.read_bytes()
            offset = 0
            while offset + _HEADER.size <= len(data):
                sequence, length = _HEADER.unpack_from(data, offset)
                if offset + _HEADER.size + length > len(data):
                    break
                self._index[sequence] = (path, offset + _HEADER.size, length)
                segment.last_sequence = max(segment.last_sequence, sequence)
                offset += _HEADER.size + length
            self._segments.append(segment)
            self._last = max(self._last, segment.last_sequence)

    @property
    def last_sequence(self) -> int:
        return self._last

    @property
    def acked(self) -> int:
        return self._acked

    def pending(self) -> int:
        with self._lock:
            return len(self._index)

    def append(self, payload: bytes) -> int:
        """Write the next batch; returns its sequence number."""
        with self._lock:
            self._last += 1
            sequence = self._last
            if self._writer.tell() > SEGMENT_BYTES:
                self._writer.close()
                self._writer = open(self._new_segment().path, "ab")  # noqa: SIM115
            offset = self._writer.tell()
            self._writer.write(_HEADER.pack(sequence, len(payload)) + payload)
            self._writer.flush()  # to the OS: survives the process, not a power cut
            self._index[sequence] = (Path(self._writer.name), offset + _HEADER.size, len(payload))
            self._segments[-1].last_sequence = sequence
            return sequence

    def read(self, sequence: int) -> bytes | None:
        with self._lock:
            entry = self._index.get(sequence)
        if entry is None:
            return None
        path, offset, length = entry
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def next_unsent(self, after: int) -> int | None:
        """The lowest spooled sequence above `after`."""
        with self._lock:
            candidates = [s for s in self._index if s > after]
        return min(candidates) if candidates else None

    def ack(self, sequence: int) -> None:
        """Everything up to `sequence` is committed: forget it, delete finished segments."""
        with self._lock:
            self._acked = max(self._acked, sequence)
            for s in [s for s in self._index if s <= sequence]:
                del self._index[s]
            for segment in self._segments[:-1]:
                if segment.last_sequence <= self._acked:
                    segment.path.unlink(missing_ok=True)
            self._segments = [s for s in self._segments[:-1] if s.path.exists()] + self._segments[-1:]

    def close(self, *, remove_if_empty: bool = True) -> None:
        with self._lock:
            self._writer.close()
            empty = not self._index
        if remove_if_empty and empty:
            shutil.rmtree(self.directory, ignore_errors=True)


def default_root(configured: str) -> Path:
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "trackd" / "spool"


def leftover(root: Path) -> list[Path]:
    """Stream directories with batches not yet acknowledged, oldest first."""
    if not root.exists():
        return []
    found = [d for d in root.iterdir() if (d / "meta.json").exists()]
    return sorted(found, key=lambda d: os.stat(d / "meta.json").st_mtime)
