"""The SDK's append-only spool: every metric batch is written here before it is sent, and
deleted once the ingest service has acknowledged it. A stream's spool outlives its process:
`trackd sync` replays what is left, and the server drops batches it already committed (same
stream id and sequence), so every point arrives once.

A spool belongs to one process at a time: its writer holds an exclusive `flock` on
`<dir>/lock` for as long as it is open (the kernel drops it when the process dies), and opening a
spool someone holds raises `SpoolInUse` — so `trackd sync` never takes the spool of a live run.

Disk use is bounded: appending a batch that would take the spool's segment files past
`max_bytes` raises `SpoolFull` (the caller keeps the batch and retries once acknowledgements
have freed space). Acknowledged records are freed segment by segment, and the current segment
is emptied whenever everything in it is acknowledged.

Layout: <root>/<stream_id>/meta.json, lock, and segment files of length-prefixed records
(8-byte sequence, 4-byte length, payload)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from trackd_platform.errors import FailedPrecondition, ResourceExhausted

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per spool is then up to the user
    fcntl = None  # type: ignore[assignment]

_HEADER = struct.Struct("<qI")
SEGMENT_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_BYTES = 1024**3  # TRACKD_SPOOL_MAX_BYTES


class SpoolInUse(FailedPrecondition):
    """Another live process (a training run, or `trackd sync`) has this spool open."""


class SpoolFull(ResourceExhausted):
    """The spool holds `max_bytes` of batches the ingest service has not acknowledged yet."""


@dataclass
class _Segment:
    path: Path
    last_sequence: int = 0
    size: int = 0


def hold(directory: Path, what: str = "the metric spool") -> int | None:
    """An exclusive lock on `directory` (a spool, or an offline run's journal: trackd._offline),
    held until the returned descriptor is closed; SpoolInUse when a live process holds it."""
    fd = os.open(directory / "lock", os.O_CREAT | os.O_RDWR, 0o600)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolInUse(f"{what} {directory} is open in another live process (a run still "
                         "logging, or `trackd sync`); it is left alone") from None
    return fd


class Spool:
    """Thread-safe: the batcher appends, the streamer reads and acknowledges.

    `create=False` opens an existing spool only (FileNotFoundError when it is gone); either way
    SpoolInUse is raised when another process holds it."""

    def __init__(self, directory: Path, *, run_id: str, stream_id: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 create: bool = True) -> None:
        self.directory = directory
        self.run_id = run_id
        self.stream_id = stream_id
        self.max_bytes = max_bytes
        self._segment_bytes = min(SEGMENT_BYTES, max(64 * 1024, max_bytes // 8))
        self._lock = threading.Lock()
        self._index: dict[int, tuple[_Segment, int, int]] = {}  # sequence → (segment, offset, length)
        self._segments: list[_Segment] = []
        self._acked = 0
        self._last = 0
        self._used = 0  # bytes of the segment files
        self._open = True  # once closed, reads find nothing and acknowledgements are ignored
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = hold(directory)
        try:
            meta = directory / "meta.json"
            if meta.exists():
                self._recover()
            elif create:
                meta.write_text(json.dumps({"run_id": run_id, "stream_id": stream_id}))
            else:  # delivered and removed by its writer just before we got the lock
                raise FileNotFoundError(f"{directory} holds no spool any more")
            self._writer = open(self._new_segment().path, "ab")  # noqa: SIM115 — closed in close()
        except BaseException:
            self._unlock()
            raise

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
            segment.size = len(data)
            offset = 0
            while offset + _HEADER.size <= len(data):
                sequence, length = _HEADER.unpack_from(data, offset)
                if offset + _HEADER.size + length > len(data):
                    break
                self._index[sequence] = (segment, offset + _HEADER.size, length)
                segment.last_sequence = max(segment.last_sequence, sequence)
                offset += _HEADER.size + length
            self._segments.append(segment)
            self._used += segment.size
            self._last = max(self._last, segment.last_sequence)

    @property
    def last_sequence(self) -> int:
        return self._last

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def used_bytes(self) -> int:
        """Bytes of segment files on disk (what `max_bytes` bounds)."""
        return self._used

    def pending(self) -> int:
        with self._lock:
            return len(self._index)

    def append(self, payload: bytes, *, force: bool = False) -> int:
        """Write the next batch; returns its sequence number. Raises SpoolFull when the batch
        would take the spool past `max_bytes` (unless `force`: the last batches of a closing
        writer, which must not be lost), OSError when the disk refuses it (nothing is kept)."""
        record = _HEADER.size + len(payload)
        with self._lock:
            if not force and self._used + record > self.max_bytes:
                raise SpoolFull(
                    f"the metric spool {self.directory} holds {self._used / 2**20:.1f} MiB of batches the ingest "
                    f"service has not acknowledged yet, its limit (TRACKD_SPOOL_MAX_BYTES={self.max_bytes})")
            if self._writer.tell() > self._segment_bytes:
                self._writer.close()
                self._writer = open(self._new_segment().path, "ab")  # noqa: SIM115
            segment = self._segments[-1]
            sequence = self._last + 1
            offset = self._writer.tell()
            try:
                self._writer.write(_HEADER.pack(sequence, len(payload)) + payload)
                self._writer.flush()  # to the OS: survives the process, not a power cut
            except OSError:
                # a torn record would hide the ones after it from recovery: cut it off
                with contextlib.suppress(OSError):
                    self._writer.truncate(offset)
                    self._writer.seek(offset)
                raise
            self._last = sequence
            self._index[sequence] = (segment, offset + _HEADER.size, len(payload))
            segment.last_sequence = sequence
            segment.size = offset + record
            self._used += record
            return sequence

    def read(self, sequence: int) -> bytes | None:
        """A spooled batch; None once acknowledged."""
        with self._lock:  # held while reading: ack() may delete or empty the segment
            entry = self._index.get(sequence) if self._open else None
            if entry is None:
                return None
            segment, offset, length = entry
            with open(segment.path, "rb") as f:
                f.seek(offset)
                return f.read(length)

    def next_unsent(self, after: int) -> int | None:
        """The lowest spooled sequence above `after`."""
        with self._lock:
            candidates = [s for s in self._index if s > after] if self._open else []
        return min(candidates) if candidates else None

    def ack(self, sequence: int) -> None:
        """Everything up to `sequence` is committed: forget it, free the disk it used."""
        with self._lock:
            if not self._open:  # another process may own the spool now
                return
            self._acked = max(self._acked, sequence)
            for s in [s for s in self._index if s <= sequence]:
                del self._index[s]
            kept = []
            for segment in self._segments[:-1]:
                if segment.last_sequence <= self._acked:
                    segment.path.unlink(missing_ok=True)
                    self._used -= segment.size
                else:
                    kept.append(segment)
            self._segments = [*kept, self._segments[-1]]
            current = self._segments[-1]
            if not self._index and current.size:  # all acknowledged: empty the current segment
                self._writer.truncate(0)
                self._writer.seek(0)
                self._used -= current.size
                current.size = 0

    def close(self, *, remove_if_empty: bool = True) -> None:
        """Close the spool and release it to other processes (`trackd sync`); an empty one is
        removed. A thread still holding it afterwards can neither read nor acknowledge."""
        with self._lock:
            self._open = False
            self._writer.close()
            empty = not self._index
        if remove_if_empty and empty:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def default_root(configured: str) -> Path:
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "trackd" / "spool"


def leftover(root: Path) -> list[Path]:
    """Stream directories with batches not yet acknowledged, oldest first (live ones included:
    opening one tells whether its process still holds it)."""
    if not root.exists():
        return []
    found = [d for d in root.iterdir() if (d / "meta.json").exists()]
    return sorted(found, key=lambda d: os.stat(d / "meta.json").st_mtime)
