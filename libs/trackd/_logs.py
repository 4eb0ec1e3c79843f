"""Console logs of runs: what a training process writes to stdout and stderr goes on to the
terminal as before and, in chunks, to its run (RunDataService.AppendLogs); `read_logs` and
`follow_logs` read them back (`trackd runs logs RUN_ID [-f]`).

Capture is at the Python level (`sys.stdout` / `sys.stderr` are wrapped): `print`, logging's
stream handlers and the traceback of an uncaught exception are captured; output written straight
to the file descriptors by C code or by child processes is not (`pump_process` tees a child's
pipes). Chunks are sent by a background thread every `INTERVAL_S` or when `CHUNK_BYTES` are
waiting; a chunk keeps its (writer, seq) across retries, so the service stores it once. The
buffer is bounded (`BUFFER_BYTES`: the oldest unsent text is dropped and counted); what is left is
sent at the run's end, at interpreter exit (after a crash's traceback is printed) and on SIGTERM.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import IO, Any, TextIO

from trackd_api.run.v1 import run_data_pb2, run_data_pb2_grpc

from trackd._client import Client
from trackd.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, TrackdError

log = logging.getLogger("trackd")

STDOUT, STDERR = run_data_pb2.LOG_STREAM_STDOUT, run_data_pb2.LOG_STREAM_STDERR
CHUNK_BYTES = 32 * 1024  # the service takes up to 64 KiB per chunk
CHUNKS_PER_CALL = 100
BUFFER_BYTES = 8 * 1024 * 1024
INTERVAL_S = 1.0
# Set by a parent that tees this process's pipes to the run already (`trackd hpo worker`): the
# process's own runs do not capture its console again (a marker between processes, like
# TRACKD_TRIAL_ID, not a setting).
ENV_CAPTURED = "TRACKD_CONSOLE_CAPTURED"
CLOSE_TIMEOUT_S = 10.0
FAILING_CLOSE_S = 2.0


def stub(client: Client) -> run_data_pb2_grpc.RunDataServiceStub:
    return run_data_pb2_grpc.RunDataServiceStub(client.channel("run"))


class LogSender:
    """Sends one writer's console text to a run in ordered, bounded chunks from a daemon thread."""

    def __init__(self, client: Client, run_id: str, *, interval_s: float = INTERVAL_S) -> None:
        self._client, self.run_id, self._interval = client, run_id, interval_s
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._open: list[tuple[int, list[str], int]] = []  # (stream, pieces, bytes) not sealed yet
        self._sealed: deque[run_data_pb2.LogChunk] = deque()
        self._buffered = 0
        self._dropped = 0
        self._seq = 0
        self._inflight = 0
        self._closed = False
        self._failing = False  # the last send failed: closing waits briefly (the service may be gone)
        self._thread = threading.Thread(target=self._loop, name=f"trackd-logs-{run_id[:8]}", daemon=True)
        self._thread.start()

    def write(self, stream: int, text: str) -> None:
        if not text:
            return
        size = len(text.encode(errors="replace"))
        with self._lock:
            if self._closed:
                return
            if self._open and self._open[-1][0] == stream and self._open[-1][2] + size <= CHUNK_BYTES:
                kind, pieces, held = self._open[-1]
                pieces.append(text)
                self._open[-1] = (kind, pieces, held + size)
            else:
                self._open.append((stream, [text], size))
            self._buffered += size
            while self._buffered > BUFFER_BYTES and self._drop_oldest():
                pass
            if size >= CHUNK_BYTES or len(self._open) > 1:
                self._wake.notify()

    def _drop_oldest(self) -> bool:
        """Drop the oldest text not being sent; False when there is none."""
        if len(self._sealed) > self._inflight:
            gone = len(self._sealed[self._inflight].text.encode(errors="replace"))
            del self._sealed[self._inflight]
        elif len(self._open) > 1:
            gone = self._open.pop(0)[2]
        else:
            return False
        self._buffered -= gone
        self._dropped += gone
        return True

    def _seal(self) -> None:
        """Turn open text into numbered chunks (split below the service's chunk limit)."""
        if self._dropped:
            note = f"[trackd: {self._dropped} bytes of console output dropped: the service was not reachable]\n"
            self._dropped = 0
            self._open.insert(0, (STDERR, [note], len(note)))
            self._buffered += len(note)
        for stream, pieces, _ in self._open:
            text = "".join(pieces)
            while text:
                part = text[:CHUNK_BYTES // 4] if len(text.encode(errors="replace")) > CHUNK_BYTES else text
                text = text[len(part):]
                chunk = run_data_pb2.LogChunk(seq=self._seq, stream=stream,  # type: ignore[arg-type]
                                              text=part.encode(errors="replace").decode())
                chunk.time.GetCurrentTime()
                self._sealed.append(chunk)
                self._seq += 1
        self._open.clear()

    def _loop(self) -> None:
        backoff = 0.5
        while True:
            with self._lock:
                if not self._closed and not self._sealed:
                    self._wake.wait(self._interval)
                self._seal()
                batch = list(self._sealed)[:CHUNKS_PER_CALL]
                self._inflight = len(batch)
                if not batch and self._closed:
                    self._wake.notify_all()
                    return
            if not batch:
                continue
            try:
                self._client.call("run", stub(self._client).AppendLogs, run_data_pb2.AppendLogsRequest(
                    run_id=self.run_id, writer_id=self._writer, chunks=batch))
            except TrackdError as exc:  # the same chunks (same seqs) are sent again
                with self._lock:
                    self._inflight = 0
                    self._failing = True
                if isinstance(exc, NotFound | InvalidArgument | PermissionDenied | FailedPrecondition):
                    self._give_up(exc)
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            with self._lock:
                self._failing = False
                for _ in batch:
                    if self._sealed:
                        self._buffered -= len(self._sealed.popleft().text.encode(errors="replace"))
                self._inflight = 0
                self._wake.notify_all()

    def _give_up(self, exc: TrackdError) -> None:
        log.warning("console logs of run %s are not sent: %s", self.run_id, exc)
        with self._lock:
            self._closed = True
            self._sealed.clear()
            self._open.clear()
            self._wake.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything written so far is stored; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._seal()
            self._wake.notify_all()
            while self._sealed and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.2))
            return not self._sealed

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        with self._lock:
            if self._closed:
                return not self._sealed
            self._seal()
            self._closed = True
            self._wake.notify_all()
            if self._failing:
                timeout_s = min(timeout_s, FAILING_CLOSE_S)
        self._thread.join(timeout_s)
        with self._lock:
            left = len(self._sealed)
            self._sealed.clear()
        if left:
            log.warning("run %s: %d console log chunks not sent in %.0fs", self.run_id, left, timeout_s)
        return not left


class _Tee:
    """A text stream that writes to `original` and copies what it writes to a LogSender."""

    def __init__(self, original: TextIO, sender: LogSender, stream: int) -> None:
        self._original, self._sender, self._stream = original, sender, stream

    def write(self, text: str) -> int:
        written = self._original.write(text)
        with contextlib.suppress(Exception):  # never let logging break the user's output
            self._sender.write(self._stream, text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with contextlib.suppress(ValueError):  # the original was closed under us (a test runner's capture)
            self._original.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty, buffer, …
        return getattr(self._original, name)


class ConsoleCapture:
    """Tees `sys.stdout` and `sys.stderr` to a run until closed (at the latest at interpreter exit).
    A run that ends FAILED or KILLED keeps capturing until exit, so the traceback printed after
    it ends is kept; a later capture in the process closes it first."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.sender = LogSender(client, run_id)
        self.run_ended = False
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self.sender, STDOUT)
        sys.stderr = _Tee(sys.stderr, self.sender, STDERR)
        # logging handlers made before the run (logging.basicConfig) hold the original streams
        self._handlers = [(h, h.stream) for h in _stream_handlers() if h.stream in self._streams]
        for handler, original in self._handlers:
            handler.setStream(sys.stdout if original is self._streams[0] else sys.stderr)
        atexit.register(self.close)
        self._previous_term: Any = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._previous_term = signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, number: int, frame: FrameType | None) -> None:
        """Send what is buffered, then die of SIGTERM as the process would have."""
        self.close(timeout_s=3.0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        for stream, original in zip(("stdout", "stderr"), self._streams, strict=True):
            current = getattr(sys, stream)
            if isinstance(current, _Tee) and current._sender is self.sender:
                current.flush()
                setattr(sys, stream, original)
        for handler, original in self._handlers:
            if isinstance(handler.stream, _Tee) and handler.stream._sender is self.sender:
                handler.setStream(original)
        self._handlers = []
        if self._previous_term is not None and signal.getsignal(signal.SIGTERM) == self._on_term and \
                threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_term)
        self._previous_term = None
        atexit.unregister(self.close)
        _captures.pop(self.sender, None)
        self.sender.close(timeout_s)

    def run_end(self, status: str) -> None:
        """The run ended: stop now when FINISHED, else keep capturing until exit (the traceback)."""
        if status == "FINISHED":
            self.close()
        else:
            self.run_ended = True
            self.sender.flush(2.0)


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    """Every logging handler writing to a stream (the root's and every named logger's)."""
    loggers: list[Any] = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [h for logger in loggers for h in getattr(logger, "handlers", [])
            if type(h) is logging.StreamHandler]


def capture(client: Client, run_id: str) -> ConsoleCapture | None:
    """Start capturing this process's console for `run_id`; None when another live run of the
    process captures it already (its output stays with that run), or the parent process does."""
    if os.environ.get(ENV_CAPTURED) or sys.stdout is None or sys.stderr is None:  # None: pythonw, no console
        return None
    current = sys.stdout
    if isinstance(current, _Tee):
        owner = _capture_of(current._sender)
        if owner is None or not owner.run_ended:
            return None
        owner.close()
    found = ConsoleCapture(client, run_id)
    _captures[found.sender] = found
    return found


# The capture that owns a tee: sys.stdout is process-wide, so this lookup is too (an entry
# leaves when its capture closes).
_captures: dict[LogSender, ConsoleCapture] = {}


def _capture_of(sender: LogSender) -> ConsoleCapture | None:
    return _captures.get(sender)


class ProcessPump:
    """Tees a child's stdout and stderr pipes to this process's streams and to a run (the
    `trackd hpo worker` trial commands). `close()` after the child exits."""

    def __init__(self, client: Client, run_id: str, child: subprocess.Popen[bytes]) -> None:
        self.sender = LogSender(client, run_id)
        self._threads = [threading.Thread(target=self._pump, args=(pipe, stream, out), daemon=True)
                         for pipe, stream, out in ((child.stdout, STDOUT, sys.stdout),
                                                   (child.stderr, STDERR, sys.stderr))]
        for thread in self._threads:
            thread.start()

    def _pump(self, pipe: IO[bytes] | None, stream: int, out: TextIO) -> None:
        if pipe is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        read = getattr(pipe, "read1", pipe.read)
        while block := read(64 * 1024):
            text = decoder.decode(block)
            out.write(text)
            out.flush()
            self.sender.write(stream, text)
        self.sender.write(stream, decoder.decode(b"", final=True))

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        for thread in self._threads:
            thread.join(timeout_s)
        self.sender.close(timeout_s)


@dataclass(frozen=True)
class LogLine:
    """A chunk of a run's console output as stored."""

    position: int
    stream: str  # "stdout" or "stderr"
    text: str
    time: datetime | None


def _line(chunk: run_data_pb2.LogChunk) -> LogLine:
    return LogLine(chunk.position, "stderr" if chunk.stream == STDERR else "stdout", chunk.text,
                   chunk.time.ToDatetime() if chunk.HasField("time") else None)


def read_logs(run_id: str, *, after: int = 0, tail_bytes: int = 0, client: Client) -> Iterator[LogLine]:
    """The run's console chunks after position `after` (every one stored so far), oldest first;
    `tail_bytes`: only about the last that many bytes."""
    while True:
        response = client.call("run", stub(client).ReadLogs, run_data_pb2.ReadLogsRequest(
            run_id=run_id, after_position=after, tail_bytes=tail_bytes))
        tail_bytes = 0
        yield from (_line(c) for c in response.chunks)
        if not response.chunks:
            return
        after = response.next_position


def follow_logs(run_id: str, *, after: int = 0, tail_bytes: int = 0, poll_s: float = 1.0,
                client: Client) -> Iterator[LogLine]:
    """`read_logs`, then what is appended, until the run has ended and its output is read."""
    from trackd._run import get_run  # the run module imports this one

    while True:
        ended = get_run(run_id, client=client).status not in ("RUNNING", "CRASHED")
        for line in read_logs(run_id, after=after, tail_bytes=tail_bytes, client=client):
            after = line.position
            yield line
        tail_bytes = 0
        if ended:
            return
        time.sleep(poll_s)


def dropped_bytes(run_id: str, *, client: Client) -> int:
    """Bytes dropped from the start of the run's log by the service's per-run limit."""
    response = client.call("run", stub(client).ReadLogs, run_data_pb2.ReadLogsRequest(run_id=run_id, limit=1))
    return response.dropped_bytes
