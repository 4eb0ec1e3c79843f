"""`make test`'s runner: the suite as two pytest sessions at once, each with its own embedded stack.
Much of the suite waits (drills wait out timeouts, stacks start, browsers render), so two sessions
on 2 cores take about two thirds of the time of one. The halves are fixed by directory, so that each
session runs its files in the same order every time (unlike pytest-xdist's dynamic scheduling, which
hands files to whichever worker is free). The second half's output follows the first's; then each
failed half's short summary (its FAILED / ERROR lines) is printed again at the very end, so the tail
of the output CI keeps names what failed; the exit code is the first non-zero of the two."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import IO

HALVES = (
    ["tests/integration", "tests/optuna_storage", "tests/ui"],
    ["tests/unit", "tests/faults", "tests/fuzz"],
)


def pytest(args: list[str], output: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "--durations=15", *args],
                            stdout=output, stderr=subprocess.STDOUT if output else None)


def basetemp(half: int) -> str:
    """A temporary directory of this session's own. With pytest's default, both sessions share
    /tmp/pytest-of-<user>, which each pytest tightens to 0700 as it starts: as root, one session's
    start could cut off the other's embedded PostgreSQL (run as its own user) in the middle of
    initdb (seen once: every test of that half errored). Kept for its logs when its session fails."""
    parent = tempfile.mkdtemp(prefix=f"trackd-tests-{half + 1}-")
    os.chmod(parent, 0o755)  # the PostgreSQL user walks through it to its data directory
    return os.path.join(parent, "pytest")


def short_summary(output: bytes) -> str:
    """pytest's "short test summary info" section (one FAILED / ERROR line a test), or ''."""
    text = output.decode(errors="replace")
    start = text.rfind("short test summary info")
    if start < 0:
        return ""
    lines = text[start:].splitlines()[1:]
    return "\n".join(line for line in lines if line.startswith(("FAILED", "ERROR")))


def main() -> int:
    started = time.monotonic()
    temps = [basetemp(0), basetemp(1)]
    with tempfile.TemporaryFile() as second_output:
        second = pytest([*HALVES[1], "-p", "no:cacheprovider", f"--basetemp={temps[1]}"], second_output)
        try:
            first = pytest([*HALVES[0], f"--basetemp={temps[0]}"], subprocess.PIPE)
            assert first.stdout is not None
            first_output = bytearray()
            for line in first.stdout:  # shown as it runs, and kept for the summary at the end
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
                first_output += line
            first_code = first.wait()
            second_code = second.wait()
        finally:
            if second.poll() is None:
                second.terminate()
                second.wait()
        print(f"\n======== {' '.join(HALVES[1])} (run at the same time) ========", flush=True)
        second_output.seek(0)
        outputs = (bytes(first_output), second_output.read())
        sys.stdout.buffer.write(outputs[1])
    print(f"\n{' '.join(HALVES[0])}: exit {first_code}; {' '.join(HALVES[1])}: exit {second_code}; "
          f"{time.monotonic() - started:.0f} s in all", flush=True)
    for half, temp, code, output in zip(HALVES, temps, (first_code, second_code), outputs, strict=True):
        if code == 0:
            shutil.rmtree(os.path.dirname(temp), ignore_errors=True)
            continue
        with open(os.path.join(os.path.dirname(temp), "output.txt"), "wb") as kept:
            kept.write(output)
        print(f"{' '.join(half)} failed:\n{short_summary(output) or '(no summary: see its output)'}\n"
              f"its output, stacks and logs: {os.path.dirname(temp)}", flush=True)
    return first_code or second_code


if __name__ == "__main__":
    sys.exit(main())
