"""Prints what the fuzzed RPCs answered: the figures docs/reliability.md quotes. Each test keeps
its RPC's counts in its report, so that they reach the summary from pytest-xdist's workers too."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fuzz.test_fuzz import ANSWERS

SEEN: dict[str, Counter[str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        for name, value in report.user_properties:
            if name == ANSWERS:
                rpc, counts = value
                SEEN.setdefault(rpc, Counter()).update(counts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SEEN:
        return
    total: Counter[str] = Counter()
    for counts in SEEN.values():
        total.update(counts)
    terminalreporter.section("fuzz: answers per status")
    terminalreporter.write_line(f"{len(SEEN)} RPCs, {sum(total.values())} calls: "
                                + ", ".join(f"{code} {n}" for code, n in total.most_common()))
    for rpc, counts in sorted(SEEN.items()):
        terminalreporter.write_line(f"  {rpc}: " + ", ".join(f"{code} {n}" for code, n in counts.most_common()))
