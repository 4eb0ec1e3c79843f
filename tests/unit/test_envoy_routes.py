"""The gateway's route table (scripts/gen_envoy.py) covers every gRPC service, and the three Envoy
configs generated from it are the committed ones.

The protos are the truth for which services exist: a service added to protos/ without a row in
ROUTES fails here, before a client behind the gateway gets UNIMPLEMENTED. Which cluster serves a
service is checked against what services/<name>/app.py registers.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from trackd_platform.config import DEFAULT_PORTS, SERVICES, WEB_PORT

from tests.unit.test_deploy import grpc_services_served

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
# served by every trackd server next to its own services (trackd_platform.server); the gateway
# routes them to one of them
STANDARD = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_envoy", ROOT / "scripts" / "gen_envoy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _proto_services() -> set[str]:
    """Full names of every gRPC service declared in protos/ (package trackd.<domain>.v1)."""
    found = set()
    for path in PROTOS.rglob("*.proto"):
        text = path.read_text()
        (package,) = re.findall(r"^package\s+([\w.]+)\s*;", text, re.MULTILINE)
        found |= {f"{package}.{name}" for name in re.findall(r"^service\s+(\w+)\s*\{", text, re.MULTILINE)}
    return found


def test_the_committed_envoy_configs_are_generated_from_the_table(gen: ModuleType) -> None:
    assert gen.stale() == [], "stale Envoy configs: run `make envoy` and commit the result"


def test_every_grpc_service_in_the_protos_has_a_route(gen: ModuleType) -> None:
    declared = _proto_services()
    assert {"trackd.run.v1.RunService", "trackd.auth.v1.TokenService"} <= declared, "the proto reader found nothing"
    routed = [route.service for route in gen.ROUTES]
    assert len(routed) == len(set(routed)), f"a service has two routes (the first one wins): {routed}"
    missing = (declared | set(STANDARD)) - set(routed)
    assert not missing, f"no route in scripts/gen_envoy.py ROUTES for {sorted(missing)}"
    unknown = set(routed) - declared - set(STANDARD)
    assert not unknown, f"ROUTES names services no proto declares: {sorted(unknown)}"


def test_each_route_goes_to_the_service_that_registers_it(gen: ModuleType) -> None:
    served_by = {name: service for service in SERVICES for name in grpc_services_served(service)}
    clusters = {cluster.name: cluster for cluster in gen.CLUSTERS}
    for route in gen.ROUTES:
        assert route.cluster in clusters, f"{route.service} routes to undefined cluster {route.cluster!r}"
        if route.service in served_by:
            assert route.cluster == served_by[route.service], (
                f"{route.service} is registered by services/{served_by[route.service]}/app.py, "
                f"but routed to {route.cluster}"
            )
        else:
            assert route.service in STANDARD, f"no trackd service registers {route.service}"
            assert route.cluster in SERVICES, f"{route.service} must go to a trackd gRPC server"


def test_the_clusters_are_the_services_on_their_ports(gen: ModuleType) -> None:
    clusters = {cluster.name: cluster for cluster in gen.CLUSTERS}
    assert set(clusters) == {*SERVICES, gen.WEB}
    assert clusters[gen.WEB].port == WEB_PORT and not clusters[gen.WEB].grpc
    for service in SERVICES:
        cluster = clusters[service]
        assert cluster.port == DEFAULT_PORTS[service], f"cluster {service}: port {cluster.port}"
        assert cluster.health in grpc_services_served(service), f"cluster {service} checks {cluster.health}"


def test_every_target_renders_yaml_with_every_route(gen: ModuleType) -> None:
    for target in gen.TARGETS:
        config = yaml.safe_load(gen.render(target))
        (listener,) = config["static_resources"]["listeners"]
        (chain,) = listener["filter_chains"]
        (host,) = chain["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
        prefixes = [route["match"]["prefix"] for route in host["routes"] if "grpc" in route["match"]]
        assert prefixes == [f"/{route.service}/" for route in gen.ROUTES] + ["/"], target.path
        assert ("transport_socket" in chain) == target.tls, target.path


def test_check_fails_on_a_hand_edited_file_and_regeneration_fixes_it(
    gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for target in gen.TARGETS:
        (tmp_path / target.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / target.path, tmp_path / target.path)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 0
    edited = tmp_path / gen.TARGETS[1].path
    edited.write_text(edited.read_text().replace("cluster: hpo,", "cluster: run,"))
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    assert edited.read_text() == (ROOT / gen.TARGETS[1].path).read_text()
