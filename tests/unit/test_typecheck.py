"""mypy strict passes on the platform, the SDK and the services — the files pyproject.toml's
[tool.mypy] names, as `make lint` checks them — so a type error fails the suite, not only lint.

Slow for a unit test: about 45 s of CPU from a cold cache (a fresh clone), a few seconds once
.mypy_cache is warm."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_mypy_strict_passes_on_libs_and_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # pyproject.toml's [tool.mypy]: strict, the files, the overrides
    stdout, stderr, status = api.run([])
    assert status == 0, f"mypy found errors:\n{stdout}{stderr}"
    assert "Success: no issues found" in stdout, stdout
