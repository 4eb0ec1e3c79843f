"""`make test`'s runner: the suite as two pytest sessions at once, each with its own embedded stack.
Much of the suite waits (drills wait out timeouts, stacks start, browsers render), so two sessions
on 2 cores take about two thirds of the time of one. The halves are fixed by directory, so that each
session runs its files in the same order every time (unlike pytest-xdist's dynamic scheduling, which
hands files to whichever worker is free). The second half's output follows the first's; the exit
code is the first non-zero of the two."""

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


def main() -> int:
    started = time.monotonic()
    temps = [basetemp(0), basetemp(1)]
    with tempfile.TemporaryFile() as second_output:
        second = pytest([*HALVES[1], "-p", "no:cacheprovider", f"--basetemp={temps[1]}"], second_output)
        try:
            first_code = pytest([*HALVES[0], f"--basetemp={temps[0]}"]).wait()
            second_code = second.wait()
        finally:
            if second.poll() is None:
                second.terminate()
                second.wait()
        print(f"\n======== {' '.join(HALVES[1])} (run at the same time) ========", flush=True)
        second_output.seek(0)
        sys.stdout.buffer.write(second_output.read())
    print(f"\n{' '.join(HALVES[0])}: exit {first_code}; {' '.join(HALVES[1])}: exit {second_code}; "
          f"{time.monotonic() - started:.0f} s in all", flush=True)
    for temp, code in zip(temps, (first_code, second_code), strict=True):
        if code == 0:
            shutil.rmtree(os.path.dirname(temp), ignore_errors=True)
        else:
            print(f"the failed session's stacks and logs: {temp}", flush=True)
    return first_code or second_code


if __name__ == "__main__":
    sys.exit(main())
