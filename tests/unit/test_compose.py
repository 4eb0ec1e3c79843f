"""docker-compose.yml, the Envoy gateway and the collector config agree with the code.

Static checks (no Docker needed): the trackd services read only names the code knows
(`trackd_platform.config.ENV_NAMES`), listen on the default ports, every address they are given
names a compose service, the gateway routes every gRPC service to a cluster that exists and
everything else to the web UI over HTTP/1.1, and the collector's pipelines use components it
defines and scrape every service's /metrics.

The web UI (`trackd_services.web`) is built from the same image but is an HTTP server and a gRPC
client of run, query, artifact and hpo: no gRPC port, no stores, an HTTP health check.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from trackd_platform.config import DEFAULT_PORTS, ENV_NAMES, SERVICES, WEB_PORT, WebConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENVOY = ROOT / "deploy" / "envoy.yaml"
COLLECTOR = ROOT / "deploy" / "otel-collector.yaml"
WEB = "web"  # the compose service (and Kubernetes Deployment) of `python -m trackd_services.web`
WEB_CALLS = ("run", "query", "artifact", "hpo")  # the gRPC services the web UI is a client of
STORE_SETTINGS = {  # what only a process that opens PostgreSQL, Redis, Kafka or S3 needs
    "TRACKD_PG_DSN", "TRACKD_REDIS_URL", "TRACKD_KAFKA_BOOTSTRAP", "TRACKD_S3_ENDPOINT",
    "TRACKD_S3_ACCESS_KEY", "TRACKD_S3_SECRET_KEY", "TRACKD_ADMIN_TOKEN",
}


def _load(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.relative_to(ROOT)} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load(COMPOSE)
    assert isinstance(data.get("services"), dict), "docker-compose.yml has no `services` mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def envoy() -> dict[str, Any]:
    return _load(ENVOY)


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return _load(COLLECTOR)


def _is_trackd(svc: dict[str, Any]) -> bool:
    image = str(svc.get("image", ""))
    return "build" in svc or image.split(":")[0].split("/")[-1] == "trackd"


def _trackd(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if _is_trackd(svc)}


def _grpc_servers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The trackd services that serve gRPC (all but the web UI)."""
    return {name: svc for name, svc in _trackd(services).items() if name != WEB}


def _env(svc: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, as a mapping, whether written as a mapping or a list."""
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {key: value for key, _, value in pairs}
    assert isinstance(raw, dict), f"environment must be a mapping or a list, not {type(raw).__name__}"
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _depends(svc: dict[str, Any]) -> dict[str, str]:
    """depends_on as {name: condition} (the short list form means service_started)."""
    raw = svc.get("depends_on") or {}
    if isinstance(raw, list):
        return {str(name): "service_started" for name in raw}
    return {str(name): (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def _find(services: dict[str, dict[str, Any]], *needles: str) -> list[str]:
    """Compose services whose image names one of `needles`."""
    return [
        name for name, svc in services.items()
        if any(needle in str(svc.get("image", "")).lower() for needle in needles)
    ]


def _grpc_service_names() -> dict[str, str]:
    """{trackd service: its main gRPC full name}, from the generated stubs (the protos are the truth)."""
    names = {}
    for service in SERVICES:
        module = importlib.import_module(f"trackd_api.{service}.v1.{service}_pb2")
        found = [s.full_name for s in module.DESCRIPTOR.services_by_name.values()]
        assert len(found) == 1, f"trackd_api.{service}.v1 defines services {found}, expected one"
        names[service] = found[0]
    return names


def _all_grpc_services() -> list[tuple[str, str]]:
    """(trackd service, gRPC full name) for every gRPC service in every proto file of a domain:
    a domain's extra services (e.g. the model registry) are served by that domain's process."""
    import pkgutil

    found = []
    for service in SERVICES:
        package = importlib.import_module(f"trackd_api.{service}.v1")
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.endswith("_pb2"):
                module = importlib.import_module(f"trackd_api.{service}.v1.{info.name}")
                found += [(service, s.full_name) for s in module.DESCRIPTOR.services_by_name.values()]
    return found


# -- docker-compose.yml ---------------------------------------------------------------------------


def test_the_trackd_services_are_the_five_and_the_web_ui_and_run_their_module(
    services: dict[str, Any],
) -> None:
    trackd = _trackd(services)
    assert set(trackd) == {*SERVICES, WEB}, (
        f"services built from the trackd image: {sorted(trackd)}; expected {sorted({*SERVICES, WEB})}"
    )
    for name, svc in trackd.items():
        command = svc.get("command")
        text = " ".join(command) if isinstance(command, list) else str(command)
        assert f"-m trackd_services.{name}" in text, (
            f"{name}: command {command!r} does not run `python -m trackd_services.{name}`"
        )


def test_the_trackd_image_is_built_from_the_dockerfile(services: dict[str, Any]) -> None:
    for name, svc in _trackd(services).items():
        build = svc.get("build")
        if build is None:
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        path = ROOT / context / dockerfile
        assert path.is_file(), f"{name}: builds from {path}, which does not exist"
    assert 'pip install ".[server]"' in (ROOT / "Dockerfile").read_text(), "Dockerfile must install the server extra"


def test_trackd_services_use_only_env_names_the_code_reads(services: dict[str, Any]) -> None:
    unknown = {
        name: sorted(set(_env(svc)) - ENV_NAMES) for name, svc in _trackd(services).items()
    }
    unknown = {name: names for name, names in unknown.items() if names}
    assert not unknown, (
        f"environment names that trackd_platform.config.ENV_NAMES does not list (the code would "
        f"never read them): {unknown}"
    )


def test_trackd_services_listen_on_the_default_ports(services: dict[str, Any]) -> None:
    for name, svc in _grpc_servers(services).items():
        env = _env(svc)
        assert "TRACKD_GRPC_PORT" in env, f"{name}: TRACKD_GRPC_PORT is not set"
        assert env["TRACKD_GRPC_PORT"] == str(DEFAULT_PORTS[name]), (
            f"{name}: TRACKD_GRPC_PORT={env['TRACKD_GRPC_PORT']}, "
            f"expected DEFAULT_PORTS[{name!r}]={DEFAULT_PORTS[name]}"
        )


def test_the_web_ui_listens_on_its_port_on_every_interface(services: dict[str, Any]) -> None:
    assert WEB in services, "docker-compose.yml has no web service"
    config = WebConfig.from_env(_env(services[WEB]))
    # the default host, 127.0.0.1, would be unreachable from the gateway's container
    assert (config.host, config.port) == ("0.0.0.0", WEB_PORT), (
        f"web listens on {config.host}:{config.port}; set TRACKD_WEB_HOST=0.0.0.0, TRACKD_WEB_PORT={WEB_PORT}"
    )
    assert "TRACKD_GRPC_PORT" not in _env(services[WEB]), "web serves HTTP, not gRPC"


def _host_ip(port: Any) -> str:
    """The host address a `ports` entry binds: "" (every interface) unless one is given."""
    if isinstance(port, dict):
        return str(port.get("host_ip", ""))
    parts = str(port).split(":")  # [HOST_IP:]HOST_PORT:CONTAINER_PORT, or CONTAINER_PORT alone
    return parts[0] if len(parts) == 3 else ""


def test_the_web_ui_is_only_published_through_the_gateway(services: dict[str, Any]) -> None:
    for port in services[WEB].get("ports", []):
        assert _host_ip(port) == "127.0.0.1", (
            f"web publishes {port!r} on every interface; the gateway fronts it (loopback only, if at all)"
        )


def test_only_the_gateways_front_door_is_published_beyond_loopback(services: dict[str, Any]) -> None:
    """Envoy's admin port can drain and stop the gateway, the broker has no credentials, Jaeger
    shows every trace: everything but the front door (8080) stays on 127.0.0.1."""
    (gateway,) = _find(services, "envoyproxy/envoy")
    front_door = (gateway, ["8080", "8080"])
    exposed = [(name, str(port)) for name, spec in services.items() for port in spec.get("ports", [])
               if _host_ip(port) != "127.0.0.1" and (name, str(port).split(":")[-2:]) != front_door]
    assert not exposed, f"published on every interface: {exposed}"


def test_the_web_ui_calls_the_services_by_their_compose_names(services: dict[str, Any]) -> None:
    env = _env(services[WEB])
    config = WebConfig.from_env(env)
    for service in WEB_CALLS:
        assert config.client.target(service) == f"{service}:{DEFAULT_PORTS[service]}", (
            f"web reaches {service} at {config.client.target(service)!r}, expected "
            f"TRACKD_{service.upper()}_TARGET={service}:{DEFAULT_PORTS[service]}"
        )
    assert urlsplit(config.telemetry.otlp_endpoint).hostname in services, config.telemetry
    assert env.get("OTEL_SERVICE_NAME") == "trackd-web"
    given = sorted(STORE_SETTINGS & set(env))
    assert not given, f"web never opens the stores, yet gets {given} (credentials it must not hold)"
    depends = _depends(services[WEB])
    for service in WEB_CALLS:
        assert depends.get(service) == "service_healthy", (
            f"web must wait for {service} (depends_on condition service_healthy), has {depends}"
        )


def test_the_web_ui_health_check_asks_its_http_healthz(services: dict[str, Any]) -> None:
    test = services[WEB]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:3] == ["python", "-c"], test
    script = test[-1]
    compile(script, "web healthcheck", "exec")
    assert "/healthz" in script and "TRACKD_WEB_PORT" in script, script
    assert "HealthStub" not in script, "web serves no gRPC health service: probe /healthz over HTTP"


def test_trackd_services_get_the_infrastructure_addresses(services: dict[str, Any]) -> None:
    required = {
        "TRACKD_PG_DSN", "TRACKD_REDIS_URL", "TRACKD_KAFKA_BOOTSTRAP", "TRACKD_S3_ENDPOINT",
        "TRACKD_S3_ACCESS_KEY", "TRACKD_S3_SECRET_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
    }
    for name, svc in _grpc_servers(services).items():
        missing = required - set(_env(svc))
        assert not missing, f"{name}: missing environment {sorted(missing)}"
    assert _env(services["hpo"]).get("TRACKD_RUN_TARGET") == f"run:{DEFAULT_PORTS['run']}", (
        "hpo must reach the run service at TRACKD_RUN_TARGET=run:50051"
    )


def test_every_address_a_trackd_service_gets_names_a_compose_service(
    services: dict[str, Any],
) -> None:
    for name, svc in _trackd(services).items():
        env = _env(svc)
        hosts: dict[str, str | None] = {
            "TRACKD_PG_DSN": urlsplit(env.get("TRACKD_PG_DSN", "")).hostname,
            "TRACKD_REDIS_URL": urlsplit(env.get("TRACKD_REDIS_URL", "")).hostname,
            "TRACKD_S3_ENDPOINT": urlsplit(env.get("TRACKD_S3_ENDPOINT", "")).hostname,
            "OTEL_EXPORTER_OTLP_ENDPOINT": urlsplit(
                env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
            ).hostname,
        }
        targets = [f"TRACKD_{service.upper()}_TARGET" for service in SERVICES]
        for key in ("TRACKD_KAFKA_BOOTSTRAP", *targets):
            if key in env:
                hosts[key] = env[key].split(",")[0].rsplit(":", 1)[0]
        for key, host in hosts.items():
            if key not in env:
                continue
            assert host in services, (
                f"{name}: {key}={env.get(key)!r} points at host {host!r}, which is not a "
                f"compose service ({sorted(services)})"
            )


def test_ingest_runs_two_replicas(services: dict[str, Any]) -> None:
    assert "ingest" in services, "docker-compose.yml has no ingest service"
    replicas = (services["ingest"].get("deploy") or {}).get("replicas")
    assert replicas == 2, f"ingest: deploy.replicas is {replicas!r}, expected 2"
    for key in ("container_name", "ports"):
        assert key not in services["ingest"], (
            f"ingest sets {key!r}: two replicas cannot share a container name or host port"
        )


@pytest.mark.parametrize(
    ("part", "needles"),
    [
        ("postgres", ("postgres",)),
        ("kafka", ("apache/kafka", "kafka")),
        ("s3", ("seaweedfs", "minio")),
        ("redis/valkey", ("valkey", "redis")),
        ("otel collector", ("opentelemetry-collector",)),
        ("jaeger", ("jaegertracing/",)),
        ("envoy", ("envoyproxy/envoy",)),
    ],
)
def test_compose_has_the_infrastructure(
    services: dict[str, Any], part: str, needles: tuple[str, ...]
) -> None:
    assert _find(services, *needles), (
        f"no compose service runs {part} (an image containing one of {needles})"
    )


def test_depends_on_names_exist(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dependency, condition in _depends(svc).items():
            assert dependency in services, f"{name} depends on {dependency!r}, which is not defined"
            assert condition in {
                "service_started", "service_healthy", "service_completed_successfully"
            }, f"{name} -> {dependency}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, but {dependency} has no "
                    f"healthcheck"
                )


def test_services_wait_for_the_stores_they_use(services: dict[str, Any]) -> None:
    stores = {}
    for part in ("postgres", "kafka"):
        found = _find(services, part)
        assert found, f"no compose service runs {part}"
        stores[part] = found[0]
    for name, svc in _grpc_servers(services).items():  # web uses no store (see the web tests)
        depends = _depends(svc)
        for part, store in stores.items():
            assert depends.get(store) == "service_healthy", (
                f"{name} must depend on {store} ({part}) with condition service_healthy"
            )


def test_the_gateway_and_collector_configs_are_mounted(services: dict[str, Any]) -> None:
    for needle, config in (("envoyproxy/envoy", ENVOY), ("opentelemetry-collector", COLLECTOR)):
        (name,) = _find(services, needle)
        mounts = [str(volume).split(":")[0] for volume in services[name].get("volumes", [])]
        sources = {(ROOT / mount).resolve() for mount in mounts if mount.startswith(".")}
        assert config.resolve() in sources, (
            f"{name} does not mount {config.relative_to(ROOT)} (volumes: {mounts})"
        )


def test_the_gateway_listens_on_8080(services: dict[str, Any]) -> None:
    (name,) = _find(services, "envoyproxy/envoy")
    ports = [str(port) for port in services[name].get("ports", [])]
    assert any(port.split(":")[-2:] == ["8080", "8080"] for port in ports), (
        f"{name} must publish 8080:8080 (TRACKD_TARGET=localhost:8080), has {ports}"
    )


# -- deploy/envoy.yaml ----------------------------------------------------------------------------


def _envoy_routes(envoy: dict[str, Any]) -> dict[str, str]:
    """{path prefix: cluster} over every listener's HTTP connection manager."""
    routes: dict[str, str] = {}
    for listener in envoy.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                config = network_filter.get("typed_config", {})
                for host in config.get("route_config", {}).get("virtual_hosts", []):
                    for route in host.get("routes", []):
                        prefix = route.get("match", {}).get("prefix")
                        cluster = route.get("route", {}).get("cluster")
                        if prefix is not None and cluster is not None:
                            routes.setdefault(prefix, cluster)
    return routes


def _envoy_clusters(envoy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    clusters = envoy.get("static_resources", {}).get("clusters", [])
    return {cluster["name"]: cluster for cluster in clusters}


def _envoy_route_list(envoy: dict[str, Any]) -> list[dict[str, Any]]:
    """The routes of the (one) HTTP listener's virtual host, in the order Envoy tries them."""
    found = []
    for listener in envoy.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                for host in network_filter.get("typed_config", {}).get("route_config", {}).get("virtual_hosts", []):
                    found += host.get("routes", [])
    return found


def envoy_pick(envoy: dict[str, Any], path: str, *, grpc: bool) -> tuple[str, Any]:
    """What the gateway does with a request for `path`: ("cluster", name), ("direct", status) or
    ("none", None). Follows Envoy's rules: first match wins, the query string is ignored, `grpc: {}`
    matches only gRPC requests (content-type application/grpc)."""
    path = path.split("?", 1)[0]
    for route in _envoy_route_list(envoy):
        match = dict(route["match"])
        if match.pop("grpc", None) is not None and not grpc:
            continue
        ((kind, value),) = match.items()  # one path matcher; anything else this reader does not know
        if kind == "prefix":
            hit = path.startswith(value)
        elif kind == "path":
            hit = path == value
        elif kind == "path_separated_prefix":
            hit = path == value or path.startswith(value + "/")
        else:
            raise AssertionError(f"route matcher {kind!r} is not understood by this test: {route}")
        if hit:
            if "direct_response" in route:
                return "direct", route["direct_response"]["status"]
            return "cluster", route["route"]["cluster"]
    return "none", None


def _http1_upstream(cluster: dict[str, Any]) -> bool:
    options = cluster.get("typed_extension_protocol_options", {}).get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}
    )
    explicit = options.get("explicit_http_config", {})
    return "http_protocol_options" in explicit and "http2_protocol_options" not in cluster


def check_the_web_route(envoy: dict[str, Any], where: str) -> dict[str, Any]:
    """The gateway sends every request that is not a trackd gRPC call to the web UI, over HTTP/1.1
    with no route timeout (live updates stay open), and keeps unknown gRPC calls and the web UI's
    /metrics away from it. Returns the web cluster (its endpoints are checked by the caller)."""
    kind, web = envoy_pick(envoy, "/", grpc=False)
    assert kind == "cluster", f"{where}: a browser's GET / is not routed to a cluster ({kind} {web})"
    cluster = _envoy_clusters(envoy)[web]
    assert _http1_upstream(cluster), (
        f"{where}: GET / goes to cluster {web}, which must be the web UI's: HTTP/1.1 (uvicorn has no HTTP/2)"
    )
    for path in ("/runs?experiment=1&page=2", "/static/app.js", "/api/2.0/mlflow/runs/search", "/healthz"):
        assert envoy_pick(envoy, path, grpc=False) == ("cluster", web), f"{where}: {path} does not reach {web}"
    for service, full_name in _all_grpc_services():
        picked = envoy_pick(envoy, f"/{full_name}/Method", grpc=True)
        assert picked == ("cluster", service), f"{where}: gRPC /{full_name}/ goes to {picked}, expected {service}"
    # a gRPC call to a service nobody serves: Envoy's local 404, which it sends as UNIMPLEMENTED
    assert envoy_pick(envoy, "/trackd.nothing.v1.NoService/Call", grpc=True) == ("direct", 404), where
    # Prometheus scrapes the web pods themselves; the public address does not show their /metrics
    for path in ("/metrics", "/metrics/"):
        picked = envoy_pick(envoy, path, grpc=False)
        assert picked[0] == "direct" and picked[1] >= 400, f"{where}: {path} is served through the gateway: {picked}"
    for route in _envoy_route_list(envoy):
        if route.get("route", {}).get("cluster") == web:
            assert route["route"].get("timeout") == "0s", (
                f"{where}: {route['match']} needs timeout: 0s (Envoy's default 15 s ends every live-update stream)"
            )
    (check,) = cluster["health_checks"]
    assert check["http_health_check"]["path"] == "/healthz", f"{where}: cluster {web}: {check}"
    return cluster


def test_envoy_listens_on_8080(envoy: dict[str, Any]) -> None:
    ports = [
        listener["address"]["socket_address"]["port_value"]
        for listener in envoy.get("static_resources", {}).get("listeners", [])
    ]
    assert 8080 in ports, f"no Envoy listener on 8080 (listeners on {ports})"


def test_envoy_routes_every_grpc_service_to_a_cluster_that_exists(envoy: dict[str, Any]) -> None:
    routes = _envoy_routes(envoy)
    clusters = _envoy_clusters(envoy)
    assert routes, "deploy/envoy.yaml has no routes"
    for service, full_name in _all_grpc_services():
        prefix = f"/{full_name}/"
        assert prefix in routes, f"no route for prefix {prefix!r} (routes: {sorted(routes)})"
        assert routes[prefix] in clusters, (
            f"{prefix} routes to cluster {routes[prefix]!r}, which is not defined "
            f"(clusters: {sorted(clusters)})"
        )
        assert routes[prefix] == service, (
            f"{prefix} routes to cluster {routes[prefix]!r}, expected the {service!r} cluster"
        )
    for prefix, cluster in routes.items():
        assert cluster in clusters, f"{prefix} routes to undefined cluster {cluster!r}"


def test_envoy_clusters_reach_the_compose_services_over_http2(
    envoy: dict[str, Any], services: dict[str, Any]
) -> None:
    ports = {**DEFAULT_PORTS, WEB: WEB_PORT}
    web = check_the_web_route(envoy, "deploy/envoy.yaml")["name"]
    for name, cluster in _envoy_clusters(envoy).items():
        options = cluster.get("typed_extension_protocol_options", {}).get(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}
        )
        http2 = "http2_protocol_options" in options.get("explicit_http_config", {})
        assert name == web or http2 or "http2_protocol_options" in cluster, (
            f"cluster {name}: upstream must be HTTP/2 (gRPC)"
        )
        endpoints = [
            lb["endpoint"]["address"]["socket_address"]
            for group in cluster["load_assignment"]["endpoints"]
            for lb in group["lb_endpoints"]
        ]
        assert endpoints, f"cluster {name} has no endpoints"
        for address in endpoints:
            host, port = address["address"], address["port_value"]
            assert host in services, f"cluster {name}: {host!r} is not a compose service"
            if host in ports:
                assert port == ports[host], (
                    f"cluster {name}: {host}:{port}, but {host} listens on {ports[host]}"
                )
            assert (name == web) == (host == WEB), f"cluster {name} reaches {host}: the web route goes to web"


def test_envoy_balances_every_ingest_replica(envoy: dict[str, Any]) -> None:
    routes = _envoy_routes(envoy)
    ingest = _envoy_clusters(envoy)[routes[f"/{_grpc_service_names()['ingest']}/"]]
    assert ingest.get("type") == "STRICT_DNS", (
        f"ingest cluster type {ingest.get('type')!r}: STRICT_DNS makes every replica a host"
    )
    assert ingest.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN", (
        f"ingest cluster lb_policy {ingest.get('lb_policy')!r}, expected ROUND_ROBIN"
    )


def test_envoy_sends_browsers_to_the_web_ui_and_grpc_to_the_services(envoy: dict[str, Any]) -> None:
    web = check_the_web_route(envoy, "deploy/envoy.yaml")
    (endpoint,) = [
        lb["endpoint"]["address"]["socket_address"]
        for group in web["load_assignment"]["endpoints"] for lb in group["lb_endpoints"]
    ]
    assert (endpoint["address"], endpoint["port_value"]) == (WEB, WEB_PORT), endpoint
    assert web.get("type") == "STRICT_DNS", "every web replica a host (and --scale web=N works)"


# -- deploy/otel-collector.yaml -------------------------------------------------------------------


def test_collector_pipelines_use_defined_components(collector: dict[str, Any]) -> None:
    pipelines = collector.get("service", {}).get("pipelines", {})
    assert "traces" in pipelines, "the collector has no traces pipeline"
    for pipeline_name, pipeline in pipelines.items():
        assert pipeline.get("receivers"), f"pipeline {pipeline_name} has no receivers"
        assert pipeline.get("exporters"), f"pipeline {pipeline_name} has no exporters"
        for kind in ("receivers", "processors", "exporters"):
            defined = set(collector.get(kind) or {})
            for component in pipeline.get(kind, []):
                assert component in defined, (
                    f"pipeline {pipeline_name} uses {kind[:-1]} {component!r}, which is not "
                    f"defined (defined: {sorted(defined)})"
                )
    defined_extensions = set(collector.get("extensions") or {})
    for extension in collector.get("service", {}).get("extensions", []):
        assert extension in defined_extensions, f"extension {extension!r} is not defined"


def test_collector_scrapes_every_trackd_service(
    collector: dict[str, Any], services: dict[str, Any]
) -> None:
    (scrape,) = collector["receivers"]["prometheus"]["config"]["scrape_configs"]
    targets = {t for group in scrape.get("static_configs", []) for t in group["targets"]}
    targets |= {
        f"{name}:{group['port']}" for group in scrape.get("dns_sd_configs", []) for name in group["names"]
    }
    assert scrape.get("metrics_path", "/metrics") == "/metrics"
    for name, svc in _trackd(services).items():
        env = _env(svc)
        if name == WEB:  # /metrics on the HTTP port
            port = WebConfig.from_env(env).port
        else:
            port = int(env.get("TRACKD_METRICS_PORT", DEFAULT_PORTS[name] + 1000))
        assert f"{name}:{port}" in targets, f"the collector does not scrape {name}:{port} (targets {sorted(targets)})"


def test_collector_sends_traces_to_jaeger(
    collector: dict[str, Any], services: dict[str, Any]
) -> None:
    exporters = collector.get("exporters") or {}
    traces = collector["service"]["pipelines"]["traces"]["exporters"]
    otlp = [name for name in traces if name.split("/")[0] == "otlp"]
    assert otlp, f"the traces pipeline has no otlp exporter (exporters: {traces})"
    jaeger = _find(services, "jaegertracing/")
    config = exporters[otlp[0]]
    assert config.get("endpoint", "").rsplit(":", 1)[0] in jaeger, (
        f"exporter {otlp[0]} sends to {config.get('endpoint')!r}, not to the jaeger service"
    )
    assert config.get("tls", {}).get("insecure") is True, f"exporter {otlp[0]} needs tls.insecure"
    assert any(name.split("/")[0] == "debug" for name in traces), "no debug exporter on traces"
    grpc = (collector["receivers"].get("otlp") or {}).get("protocols", {}).get("grpc") or {}
    assert grpc.get("endpoint", "").endswith(":4317"), (
        "the collector's OTLP gRPC receiver must listen on 4317 (OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
