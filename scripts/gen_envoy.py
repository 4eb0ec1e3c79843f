"""Generate the three Envoy gateway configs from one route table (the only way they are produced).

The gateway is the same in every deployment: one listener on :8080 that routes gRPC calls by the
path `/<package>.<Service>/<Method>` to the service that serves them and every other request to
the web UI. The deployments differ only in the hosts the clusters resolve and in TLS:

    deploy/envoy.yaml                     docker-compose: compose service names, plain h2c
    deploy/base/gateway/envoy.yaml        Kubernetes: the headless Services of ingest and web
    deploy/overlays/prod/envoy-tls.yaml   Kubernetes prod: as the base, TLS on both sides

ROUTES says which cluster serves each gRPC service, CLUSTERS what each cluster is, TARGETS what
each file changes. A new gRPC service gets a row in ROUTES (tests/unit/test_envoy_routes.py fails
for a service in protos/ that has none), then `make envoy`.

    python scripts/gen_envoy.py           # regenerate in place
    python scripts/gen_envoy.py --check   # exit 1 when a committed file is stale
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Route:
    """gRPC calls to `service` (its full name) go to `cluster`."""

    service: str
    cluster: str
    note: str = ""  # a comment on the route's line


@dataclass(frozen=True)
class Cluster:
    """An upstream: a gRPC service (HTTP/2, gRPC health check of `health`) or the web UI (HTTP/1.1)."""

    name: str
    port: int
    health: str = ""  # the gRPC health check's service name; empty: HTTP GET /healthz (the web UI)

    @property
    def grpc(self) -> bool:
        return bool(self.health)


@dataclass(frozen=True)
class Target:
    """One generated file: what it is for (its header comment), the host each cluster resolves
    (default: the cluster's name) and whether the gateway speaks TLS on both sides."""

    path: str
    about: str
    hosts: dict[str, str] = field(default_factory=dict)
    tls: bool = False

    def host(self, cluster: str) -> str:
        return self.hosts.get(cluster, cluster)


# First match wins: the gRPC routes come first, then the web UI takes every other request.
ROUTES = (
    Route("trackd.run.v1.RunService", "run"),
    Route("trackd.run.v1.RunDataService", "run", "console logs, media and inputs: served by the run service"),
    Route("trackd.auth.v1.TokenService", "run", "API tokens: served by the run service"),
    Route("trackd.ingest.v1.IngestService", "ingest"),
    Route("trackd.artifact.v1.ArtifactService", "artifact"),
    Route("trackd.artifact.v1.ModelRegistryService", "artifact"),
    Route("trackd.query.v1.QueryService", "query"),
    Route("trackd.hpo.v1.HpoService", "hpo"),
    Route("grpc.health.v1.Health", "run", "the gateway's own health: the run service's"),
    Route("grpc.reflection.v1alpha.ServerReflection", "run"),
    Route("grpc.reflection.v1.ServerReflection", "run"),
)

WEB = "web"  # the cluster of every request that is not a gRPC call
CLUSTERS = (
    Cluster("run", 50051, "trackd.run.v1.RunService"),
    Cluster("ingest", 50052, "trackd.ingest.v1.IngestService"),
    Cluster("artifact", 50053, "trackd.artifact.v1.ArtifactService"),
    Cluster("query", 50054, "trackd.query.v1.QueryService"),
    Cluster("hpo", 50055, "trackd.hpo.v1.HpoService"),
    Cluster(WEB, 8080),
)

_HEADLESS = {"ingest": "ingest-headless", "web": "web-headless"}
TARGETS = (
    Target(
        "deploy/envoy.yaml",
        """\
Envoy gateway for docker-compose.yml: one address (localhost:8080) for all five trackd gRPC services
(TRACKD_TARGET=localhost:8080) and the web UI (http://localhost:8080 in a browser). gRPC requests
are routed on the path `/<package>.<Service>/<Method>` by service-name prefix to upstreams that
speak HTTP/2 (h2c); every other request goes to the web service over HTTP/1.1. Every cluster is
STRICT_DNS, so every address a compose service name resolves to is a host: the two ingest replicas
(and any added with --scale) share the load ROUND_ROBIN, one gRPC call (stream) at a time. Active
health checks (gRPC; HTTP /healthz for web) take a draining or dead replica out (a trackd service
reports NOT_SERVING as soon as it receives SIGTERM).""",
    ),
    Target(
        "deploy/base/gateway/envoy.yaml",
        """\
Envoy gateway in Kubernetes (ConfigMap trackd-gateway): one address (Service `gateway`, :8080) for
all five trackd gRPC services, routed by the gRPC path `/<package>.<Service>/<Method>`, and for the
web UI, which gets every other request (a browser at http://<gateway>:8080). gRPC upstreams speak
HTTP/2 cleartext (h2c), the web service HTTP/1.1. Clusters are STRICT_DNS: the ingest and web
clusters resolve the headless Services `ingest-headless` and `web-headless`, so every pod is a host
and the load is spread over all of them as the HorizontalPodAutoscalers add and remove pods (DNS
every 5 s). Active health checks (gRPC; HTTP /healthz for web) take a draining pod out (a gRPC
service reports NOT_SERVING from SIGTERM on).""",
        hosts=_HEADLESS,
    ),
    Target(
        "deploy/overlays/prod/envoy-tls.yaml",
        """\
Envoy gateway, prod overlay: as deploy/base/gateway/envoy.yaml, with TLS on both sides.
Downstream: clients (and browsers, https://<gateway>:8080) speak TLS to :8080 with the certificate
of Secret trackd-tls (mounted at /etc/envoy/tls); ALPN offers h2 (gRPC) and http/1.1 (HTTP/1.1-only
clients such as MLflow's, which uses `requests`). Upstream: the gRPC services serve TLS
(TRACKD_TLS_CERT_FILE); Envoy verifies them against the same CA (ca.crt). The web service serves
plain HTTP inside the cluster (see its cluster below). The access token (authorization: Bearer ...)
passes through unchanged.""",
        hosts=_HEADLESS,
        tls=True,
    ),
)

TLS_DIR = "/etc/envoy/tls"  # where the prod gateway mounts Secret trackd-tls
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

# -- rendering: plain text templates, so the files keep their comments and compact flow style --

_HEAD = Template("""\
admin:
  address:
    socket_address: { address: 0.0.0.0, port_value: 9901 }

static_resources:
  listeners:
    - name: grpc_gateway
      address:
        socket_address: { address: 0.0.0.0, port_value: 8080 }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": ${hcm}
                stat_prefix: grpc_gateway
                codec_type: AUTO  # gRPC clients speak h2c with prior knowledge, browsers HTTP/1.1
                # metric streams and live watches are long-lived: no idle or request timeout
                stream_idle_timeout: 0s
                request_timeout: 0s
                http2_protocol_options:
                  max_concurrent_streams: 1024
                access_log:
                  - name: envoy.access_loggers.stdout
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                route_config:
                  name: trackd
                  virtual_hosts:
                    - name: trackd
                      domains: ["*"]
                      routes:
""")

# the 24 spaces of indentation are added by render()
_GRPC_ROUTE = Template("""\
- match: { prefix: "/${service}/", grpc: {} }${note}
  route: { cluster: ${cluster}, timeout: 0s, max_stream_duration: { grpc_timeout_header_max: 0s } }
""")

_WEB_ROUTES = Template("""\
                        # -- not a trackd gRPC service: the web UI, after every gRPC route (first match wins)
                        # any other gRPC path names a service nobody serves: UNIMPLEMENTED (Envoy answers a
                        # gRPC request's local 404 with grpc-status 12), never an HTTP/1.1 page
                        - match: { prefix: "/", grpc: {} }
                          direct_response: { status: 404 }
                        # the web UI's own Prometheus /metrics is scraped from each replica, not served to the world
                        - match: { path_separated_prefix: "/metrics" }
                          direct_response: { status: 404 }
                        # everything else: the browser UI and its HTTP APIs. No timeout: live charts are
                        # Server-Sent Events responses that stay open (the web service bounds its own calls).
                        - match: { prefix: "/" }
                          route: { cluster: ${web}, timeout: 0s }
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
""")

_DOWNSTREAM_TLS = Template("""\
          transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                alpn_protocols: ["h2", "http/1.1"]
                tls_certificates:
                  - certificate_chain: { filename: ${tls_dir}/tls.crt }
                    private_key: { filename: ${tls_dir}/tls.key }
""")

_WEB_COMMENT = """\
    # the web UI: HTTP/1.1 (uvicorn), every replica a host; LEAST_REQUEST because a live chart holds
    # its request open, so the replica with the fewest open streams takes the next one
"""

_CLUSTER = Template("""\
    - name: ${name}
      type: STRICT_DNS
      lb_policy: ${lb_policy}
      dns_lookup_family: V4_ONLY
      dns_refresh_rate: 5s
      respect_dns_ttl: false
      connect_timeout: 2s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
${protocol}
      load_assignment:
        cluster_name: ${name}
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: { address: ${host}, port_value: ${port} }
      health_checks:
        - timeout: 1s
          interval: 5s
          unhealthy_threshold: 2
          healthy_threshold: 1
          ${health}
      outlier_detection:
${outlier}
""")

_HTTP2 = """\
            http2_protocol_options:
              connection_keepalive: { interval: 30s, timeout: 5s }"""

_HTTP1 = """\
            http_protocol_options: {}"""

_GRPC_OUTLIER = """\
        consecutive_5xx: 5
        base_ejection_time: 10s"""

_WEB_OUTLIER = """\
        # eject a replica that refuses or resets connections, not one that answers 5xx: a 502/503
        # from the web UI means a service behind it is down, which no other replica would change
        split_external_local_origin_errors: true
        consecutive_local_origin_failure: 5
        enforcing_consecutive_5xx: 0
        base_ejection_time: 10s"""

_UPSTREAM_TLS = Template("""\
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: ${host}
          common_tls_context:
            alpn_protocols: ["h2"]
            validation_context:
              trusted_ca: { filename: ${tls_dir}/ca.crt }
""")

_WEB_NO_TLS = """\
      # no transport_socket: the web service serves plain HTTP (trackd_platform.config.WebConfig has no
      # TLS settings), so this hop stays inside the cluster network unencrypted. When WebConfig
      # learns TRACKD_TLS_CERT_FILE, add an UpstreamTlsContext here (tests/unit/test_deploy.py asks).
"""


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" for line in text.splitlines())


def _cluster(cluster: Cluster, target: Target) -> str:
    host = target.host(cluster.name)
    if cluster.grpc:
        health = f"grpc_health_check: {{ service_name: {cluster.health} }}"
    else:
        health = "http_health_check: { path: /healthz }"
    text = "" if cluster.grpc else _WEB_COMMENT
    text += _CLUSTER.substitute(
        name=cluster.name,
        lb_policy="ROUND_ROBIN" if cluster.grpc else "LEAST_REQUEST",
        protocol=_HTTP2 if cluster.grpc else _HTTP1,
        host=host,
        port=cluster.port,
        health=health,
        outlier=_GRPC_OUTLIER if cluster.grpc else _WEB_OUTLIER,
    )
    if target.tls:
        text += _UPSTREAM_TLS.substitute(host=host, tls_dir=TLS_DIR) if cluster.grpc else _WEB_NO_TLS
    return text


def render(target: Target) -> str:
    """The text of `target`'s file."""
    text = _comment(f"generated by scripts/gen_envoy.py from its ROUTES table; do not edit (`make envoy`).\n"
                    f"{target.about}")
    text += _HEAD.substitute(hcm=_HCM)
    routes = "".join(
        _GRPC_ROUTE.substitute(service=r.service, cluster=r.cluster, note=f"  # {r.note}" if r.note else "")
        for r in ROUTES
    )
    text += textwrap.indent(routes, " " * 24)
    text += _WEB_ROUTES.substitute(web=WEB)
    if target.tls:
        text += _DOWNSTREAM_TLS.substitute(tls_dir=TLS_DIR)
    text += "\n  clusters:\n"
    text += "".join(_cluster(cluster, target) for cluster in CLUSTERS)
    return text


def stale() -> list[str]:
    """The committed files that differ from what the table generates."""
    return [t.path for t in TARGETS if not (ROOT / t.path).is_file() or (ROOT / t.path).read_text() != render(t)]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        paths = stale()
        for path in paths:
            print(f"{path} is stale: run `make envoy` and commit the result", file=sys.stderr)
        return 1 if paths else 0
    for target in TARGETS:
        (ROOT / target.path).write_text(render(target))
        print(f"generated {target.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
