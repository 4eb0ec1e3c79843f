"""The stack fixtures live in tests/conftest.py (shared with tests/faults and tests/fuzz); these
names stay importable from here."""

from tests.conftest import HEARTBEAT_TIMEOUT_S, HPO_LEASE_S, collect_events

__all__ = ["HEARTBEAT_TIMEOUT_S", "HPO_LEASE_S", "collect_events"]
