"""Figures the drills measure (points acknowledged and stored, duplicates, recovery times),
printed at the end of the session: the numbers docs/reliability.md quotes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

FIGURES: list[str] = []


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record one line of figures for the session summary."""
    return lambda line: FIGURES.append(f"{request.node.name}: {line}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault drills: figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
