"""The framework integrations import their framework only when imported themselves, and say what
to install when it is missing (the frameworks are tested for real in tests/frameworks)."""

from __future__ import annotations

import importlib
import sys

import pytest

MODULES = {"lightning": ("lightning", "pytorch_lightning"), "transformers": ("transformers",),
           "keras": ("keras",), "xgboost": ("xgboost",), "lightgbm": ("lightgbm",)}


def test_the_integrations_package_imports_no_framework() -> None:
    import trackd.integrations  # noqa: F401

    assert not {"torch", "lightning", "transformers", "keras", "xgboost", "lightgbm"} & set(sys.modules)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_an_integration_without_its_framework_says_what_to_install(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for framework in MODULES[name]:
        monkeypatch.setitem(sys.modules, framework, None)  # None in sys.modules: importing it raises ImportError
    monkeypatch.delitem(sys.modules, f"trackd.integrations.{name}", raising=False)
    with pytest.raises(ImportError, match=f"pip install {MODULES[name][0]}"):
        importlib.import_module(f"trackd.integrations.{name}")
