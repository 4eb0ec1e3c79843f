"""`make test`'s runner: the suite as two pytest sessions at once, each with its own embedded stack.
Much of the suite waits (drills wait out timeouts, stacks start, browsers render), so two sessions
on 2 cores take about two thirds of the time of one. The halves are fixed by directory, so that each
session runs its files in the same order every time (unlike pytest-xdist's dynamic scheduling, which
hands files to whichever worker is free). The second half's output follows the first's; the exit
code is the first non-zero of the two."""

from __future__ import annotations

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


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryFile() as second_output:
        second = pytest([*HALVES[1], "-p", "no:cacheprovider"], second_output)
        try:
            first_code = pytest(HALVES[0]).wait()
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
    return first_code or second_code


if __name__ == "__main__":
    sys.exit(main())
