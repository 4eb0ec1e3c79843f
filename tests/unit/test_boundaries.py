"""No service imports another service's modules: what two services share is a typed read model
in libs/trackd_platform (run_records, metric_series, …) or a gRPC call.

Both spellings are caught: absolute (`trackd_services.query.x`, `services.query.x`) and
relative (`from ..query import x`, `from .. import query`), the latter resolved against the
importing file's package."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
ROOTS = ("trackd_services", "services")


def _package(path: Path) -> list[str]:
    """The package a file under services/ belongs to, as `services.<svc>[.<sub>…]` parts."""
    parts = ["services", *path.relative_to(SERVICES).parts]
    return parts[:-1]  # drop the module's file name (an __init__.py is its own package too)


def imported(source: str, package: list[str]) -> set[str]:
    """Every module name an import in `source` may refer to, relative ones made absolute
    against `package` (`from .. import query` in services.web may bind services.query).
    A relative import that climbs above services/ yields "<above services>"."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module.split(".") if node.module else []
            if node.level:
                if node.level > len(package):
                    names.add("<above services>")
                    continue
                module = [*package[: len(package) - node.level + 1], *module]
            names.add(".".join(module))
            # `from X import y` may import the submodule X.y
            names |= {".".join([*module, alias.name]) for alias in node.names}
    return names


def crossings(source: str, service: str, package: list[str]) -> list[str]:
    """The imports in `source` (a file of `service`, in `package`) that reach another service."""
    found = []
    for name in sorted(imported(source, package)):
        parts = name.split(".")
        if name == "<above services>" or (parts[0] in ROOTS and len(parts) > 1 and parts[1] != service):
            found.append(name)
    return found


def test_no_service_imports_another_services_modules() -> None:
    services = sorted(p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists())
    assert {"run", "ingest", "artifact", "query", "hpo", "web"} <= set(services), services
    found = [
        f"{path.relative_to(SERVICES.parent)} imports {name}"
        for service in services for path in sorted((SERVICES / service).rglob("*.py"))
        for name in crossings(path.read_text(), service, _package(path))
    ]
    assert not found, "\n".join(found)


def test_the_check_flags_relative_and_absolute_crossings() -> None:
    """The resolver itself: a check that finds nothing because it resolves nothing would pass."""
    package = ["services", "web"]
    assert crossings("from ..query import store\n", "web", package) == [
        "services.query", "services.query.store"]
    assert crossings("from .. import query\n", "web", package) == ["services.query"]
    assert crossings("from ..query.store import QueryStore\n", "web", package) == [
        "services.query.store", "services.query.store.QueryStore"]
    assert crossings("import trackd_services.run.store\n", "web", package) == ["trackd_services.run.store"]
    assert crossings("from trackd_services.hpo import api\n", "web", package) == [
        "trackd_services.hpo", "trackd_services.hpo.api"]
    # one level deeper: `...` from services/web/sub/x.py is services/
    assert crossings("from ...run import api\n", "web", ["services", "web", "sub"]) == [
        "services.run", "services.run.api"]
    assert crossings("from ... import trackd_platform\n", "web", package) == ["<above services>"]
    # within the service: fine
    assert crossings("from . import views\nfrom .backends import Backends\n", "web", package) == []
    assert crossings("from trackd_services.web.views import ENDED\n", "web", package) == []
    assert crossings("from trackd_platform.run_records import Run\n", "web", package) == []
