"""The repository's own invariants: generated code is fresh, every package is installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_protos() -> None:
    result = subprocess.run([sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT / "libs").parts) for p in (ROOT / "libs").rglob("__init__.py")}
    found |= {".".join(("trackd_services", *p.parent.relative_to(ROOT / "services").parts)).rstrip(".")
              for p in (ROOT / "services").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
