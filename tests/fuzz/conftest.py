"""Prints what the fuzzed RPCs answered: the figures docs/reliability.md quotes."""

from __future__ import annotations

from collections import Counter

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.fuzz.test_fuzz import SEEN

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
