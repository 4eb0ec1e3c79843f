"""No service imports another service's modules: what two services share is a typed read model
in libs/trackd_platform (run_records, metric_series, …) or a gRPC call."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_service_imports_another_services_modules() -> None:
    services = sorted(p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists())
    assert {"run", "ingest", "artifact", "query", "hpo", "web"} <= set(services), services
    crossings = [
        f"{path.relative_to(SERVICES.parent)} imports {name}"
        for service in services for path in sorted((SERVICES / service).rglob("*.py"))
        for name in imported(path)
        if name.split(".")[0] in ("trackd_services", "services") and len(name.split(".")) > 1
        and name.split(".")[1] != service
    ]
    assert not crossings, "\n".join(crossings)
