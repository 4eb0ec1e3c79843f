"""The web UI in the Kubernetes manifests (split from test_deploy.py, whose helpers it uses):
its Deployment, Services, disruption budget and autoscaler, its module and settings, HTTP probes,
hardening, and that it calls the services without holding any store's credentials."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from trackd_platform.config import DEFAULT_PORTS, WEB_PORT, WebConfig

from tests.unit.test_compose import STORE_SETTINGS, WEB, WEB_CALLS
from tests.unit.test_deploy import (
    OVERLAYS,
    WEB_LEFT_AT_DEFAULT,
    _Recording,
    env_of,
    find,
    pod_spec,
    render,
    selects,
    servers,
    trackd_container,
    web,
)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def test_the_web_ui_has_a_deployment_services_a_disruption_budget_and_is_autoscaled(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = overlay
    deployment = web(docs)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] != "server", (
        "web is no gRPC server: the server patches (trackd-secrets, gRPC probes) must not reach it"
    )
    assert selects(deployment["spec"]["selector"]["matchLabels"], deployment)
    front = find(docs, "Service", WEB)["spec"]
    assert selects(front["selector"], deployment), "Service web selects no web pod"
    assert [(p["port"], p["targetPort"]) for p in front["ports"]] == [(WEB_PORT, "http")], front["ports"]
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"
               and selects(d["spec"]["selector"]["matchLabels"], deployment)]
    assert len(budgets) == 1 and budgets[0]["spec"].get("maxUnavailable", 0) >= 1, budgets
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns web's replica count"
    assert trackd_container(deployment)["resources"]["requests"]["cpu"], "CPU utilization needs a CPU request"
    hpa = find(docs, "HorizontalPodAutoscaler", WEB)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": WEB}
    assert [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"] == ["cpu"]
    expected = (1, 10) if name == "dev" else (2, 10)
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == expected, f"overlay {name}: web HPA {hpa}"


def test_the_web_ui_runs_its_module_as_configured(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    deployment = web(docs)
    container = trackd_container(deployment)
    assert container["command"] == ["python", "-m", "trackd_services.web"], container["command"]
    assert container["image"] == trackd_container(servers(docs)["run"])["image"], "one image for every service"
    assert importlib.util.find_spec("trackd_services.web.__main__"), "no trackd_services.web (services/web/__main__.py)"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": WEB_PORT}, ports
    env = env_of(docs, container, name)
    config = WebConfig.from_env(env)
    assert (config.host, config.port) == ("0.0.0.0", WEB_PORT), (
        f"web would listen on {config.host}:{config.port}; the pod declares {ports} (TRACKD_WEB_HOST=0.0.0.0)"
    )
    assert env.get("OTEL_SERVICE_NAME") == "trackd-web"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == WEB_PORT, annotations


def test_the_web_ui_probes_its_http_healthz(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    container = trackd_container(web(docs))
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        assert probe, f"overlay {name}, web: no {kind}"
        assert set(probe) & {"grpc", "exec"} == set(), f"overlay {name}, web {kind}: {probe} (web serves HTTP)"
        assert probe["httpGet"]["path"] == "/healthz" and probe["httpGet"]["port"] in ("http", WEB_PORT), probe
        assert probe["httpGet"].get("scheme", "HTTP") == "HTTP", probe


def test_the_web_ui_is_hardened_like_the_servers(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    deployment = web(docs)
    pod, container = pod_spec(deployment), trackd_container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]), "a read-only root needs a writable /tmp"


def test_the_web_ui_calls_the_services_and_holds_no_store_credentials(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = overlay
    container = trackd_container(web(docs))
    env = env_of(docs, container, name)
    config = WebConfig.from_env(env)
    deployments = servers(docs)
    for service in WEB_CALLS:
        host, port = config.client.target(service).rsplit(":", 1)
        target = find(docs, "Service", host)["spec"]
        assert selects(target["selector"], deployments[service]) and int(port) == DEFAULT_PORTS[service], (
            f"overlay {name}: web reaches {service} at {config.client.target(service)!r}"
        )
    collector = urlsplit(config.telemetry.otlp_endpoint)
    assert collector.hostname == "otel-collector" and collector.port == 4317, config.telemetry
    # (Kafka and S3 addresses come with the shared ConfigMap: addresses, not secrets)
    given = sorted(STORE_SETTINGS & set(env) - {"TRACKD_KAFKA_BOOTSTRAP", "TRACKD_S3_ENDPOINT"})
    assert not given, f"overlay {name}: web gets {given}; it never opens the stores and must not hold their secrets"
    refs = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
    assert "trackd-secrets" not in refs, f"overlay {name}: web must not read Secret trackd-secrets ({refs})"
    # every setting WebConfig reads is wired, or knowingly left at its default
    recording = _Recording(env)
    WebConfig.from_env(recording)
    missing = sorted(recording.read - set(env) - WEB_LEFT_AT_DEFAULT)
    assert not missing, (
        f"overlay {name}, web: reads {missing}, which nothing gives it; wire them or add to WEB_LEFT_AT_DEFAULT"
    )
    if config.client.tls_ca_file:  # prod: verifies the services against the CA, and gets nothing else of trackd-tls
        volumes = {v["name"]: v for v in pod_spec(web(docs))["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        volume = mounts.get(str(Path(config.client.tls_ca_file).parent))
        assert volume and volume["secret"]["secretName"] == "trackd-tls", (
            f"web: {config.client.tls_ca_file} is not mounted from Secret trackd-tls"
        )
        files = {item["path"] for item in volume["secret"].get("items", [{"path": "(every key)"}])}
        assert Path(config.client.tls_ca_file).name in files
        if "tls" not in {field.name for field in dataclasses.fields(WebConfig)}:
            assert files == {Path(config.client.tls_ca_file).name}, (
                f"web serves no TLS, yet mounts {files} of trackd-tls (the private key has no business there)"
            )
