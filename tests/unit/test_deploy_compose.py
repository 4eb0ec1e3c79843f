"""docker-compose.yml publishes only the front door (Envoy's gRPC / HTTP port) on every interface:
admin, broker, tracing and metrics ports stay on loopback (finding 6 of the review)."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
FRONT_DOOR = {("envoy", "8080:8080")}


def test_only_the_front_door_is_published_beyond_loopback() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = [(name, str(port)) for name, spec in services.items() for port in spec.get("ports", [])]
    assert FRONT_DOOR <= set(published), published
    exposed = [(name, port) for name, port in published if (name, port) not in FRONT_DOOR
               and not port.startswith("127.0.0.1:")]
    assert not exposed, f"published on every interface: {exposed}"
