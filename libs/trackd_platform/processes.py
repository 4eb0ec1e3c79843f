"""Child processes for the embedded stack: start, readiness, stop, and a supervisor that restarts
what dies with exponential back-off, as an orchestrator would.

Children run in their own session (Ctrl-C reaches only the launcher, which stops them in order)
and get their stop signal from the kernel if the launcher itself dies (`setpriv --pdeathsig`), so no
process is left behind either way.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("trackd.stack")

CLAIM_S = 120.0  # a port chosen for a server is not chosen again by any process for this long

def _with_parent_death_signal(argv: Sequence[str], sig: int) -> list[str]:
    """Run `argv` under util-linux `setpriv --pdeathsig`, so the kernel sends it SIGTERM if the
    launcher dies. (A `preexec_fn` could do this too, but Python code between fork and exec can
    deadlock in a process whose gRPC threads are busy.) Without setpriv, Ctrl-C and SIGTERM
    still stop every child; only a SIGKILLed launcher would leave them."""
    setpriv = shutil.which("setpriv")
    name = signal.Signals(sig).name.removeprefix("SIG")
    return [setpriv, "--pdeathsig", name, "--", *argv] if setpriv else list(argv)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ephemeral_start() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range (where outbound connections could take
    it before the server binds), whose +10000 neighbour is free and below that range too
    (SeaweedFS puts its gRPC ports there)."""
    top = _ephemeral_start() - 10_000
    with _claims() as claimed:
        while True:
            port = random.randint(10_000, top - 1)
            if not claimed & {port, port + 10_000} and _bindable(port) and _bindable(port + 10_000):
                claimed.update((port, port + 10_000))
                return port


@contextlib.contextmanager
def _claims() -> Iterator[set[int]]:
    """The ports this user's processes chose in the last CLAIM_S seconds, under a file lock: two
    processes picking ports at once (a test stack per pytest-xdist worker, a test beside `trackd
    up`) never choose the same one before either server has bound it. Ports added to the set are
    recorded as chosen now."""
    path = Path(tempfile.gettempdir()) / f"trackd-ports-{os.getuid()}"
    with open(path, "a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        now = time.time()
        recent: dict[int, float] = {}
        for line in file.read().split("\n"):
            with contextlib.suppress(ValueError):
                port, at = line.split()
                if now - float(at) < CLAIM_S:
                    recent[int(port)] = float(at)
        claimed = set(recent)
        yield claimed
        recent.update((port, now) for port in claimed - recent.keys())
        file.seek(0)
        file.truncate()
        file.write("".join(f"{port} {at}\n" for port, at in recent.items()))


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports; no port is another's +10000 neighbour."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        taken = set(chosen) | {p + 10_000 for p in chosen}
        if port not in taken and port + 10_000 not in taken:
            chosen.append(port)
    return chosen


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Managed:
    """One supervised child process."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    ready: Callable[[], bool] = lambda: True
    prepare: Callable[[], None] = lambda: None  # before every start, restarts included
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 15.0
    process: subprocess.Popen[bytes] | None = None
    wanted: bool = False  # the supervisor restarts it only while wanted
    restarts: int = 0
    _started_at: float = 0.0
    _backoff_s: float = 1.0
    _restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.prepare()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                _with_parent_death_signal(self.argv, self.stop_signal), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=dict(self.env) if self.env else None,
                start_new_session=True, user=self.user,
            )
        self.wanted = True
        self._started_at = time.monotonic()
        self._restart_at = None

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.send_stop()
        self.wait_stopped()

    def send_stop(self) -> None:
        """Ask it to stop (no restart); `wait_stopped()` waits, then kills if it must."""
        self.wanted = False
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)

    def wait_stopped(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.name, self.stop_timeout_s)
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would; the supervisor restarts it if it is still wanted."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def check(self) -> None:
        """Restart with back-off if it died while wanted. Called by the supervisor."""
        if not self.wanted or self.alive() or self.process is None:
            return
        now = time.monotonic()
        if self._restart_at is None:
            if now - self._started_at > 60:
                self._backoff_s = 1.0  # it had been healthy for a while: start over
            self._restart_at = now + self._backoff_s
            log.warning("%s exited with code %s; restarting in %.0fs (see %s)",
                        self.name, self.process.returncode, self._backoff_s, self.log_path)
            self._backoff_s = min(self._backoff_s * 2, 30.0)
        elif now >= self._restart_at:
            self.restarts += 1
            log.warning("restarting %s (restart %d)", self.name, self.restarts)
            self.start()


class Supervisor:
    """Polls managed processes from a background thread and restarts those that died."""

    def __init__(self, parts: Callable[[], Sequence[Managed]], interval_s: float = 0.5) -> None:
        self._parts = parts
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trackd-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            for part in self._parts():
                try:
                    part.check()
                except Exception:
                    log.exception("could not restart %s", part.name)
