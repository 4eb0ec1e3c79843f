"""The access model's pure parts: roles, principals, bearer metadata, secrets, rate-limit settings,
and the access tables — every RPC of every service has a rule (derived from the proto
descriptors, so a new RPC without one fails here)."""

from __future__ import annotations

import uuid

import pytest
import typer
from trackd.cli.tokens import parse_duration
from trackd_api.artifact.v1 import artifact_pb2, registry_pb2
from trackd_api.auth.v1 import auth_pb2
from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_data_pb2, run_pb2
from trackd_platform import auth
from trackd_platform.access import Rule
from trackd_platform.auth import GLOBAL, Principal, Role
from trackd_platform.config import AuthSettings, TlsSettings
from trackd_platform.errors import InvalidArgument, PermissionDenied, Unauthenticated
from trackd_platform.ratelimit import Limit
from trackd_services.artifact import access as artifact_access
from trackd_services.hpo import access as hpo_access
from trackd_services.ingest import access as ingest_access
from trackd_services.query import access as query_access
from trackd_services.run import access as run_access

SERVED = {
    "run": (run_access.RULES, [(run_pb2, "RunService"), (run_data_pb2, "RunDataService"),
                                   (auth_pb2, "TokenService")]),
    "ingest": (ingest_access.RULES, [(ingest_pb2, "IngestService")]),
    "artifact": (artifact_access.RULES, [(artifact_pb2, "ArtifactService"), (registry_pb2, "ModelRegistryService")]),
    "query": (query_access.RULES, [(query_pb2, "QueryService")]),
    "hpo": (hpo_access.RULES, [(hpo_pb2, "HpoService")]),
}


@pytest.mark.parametrize("service", sorted(SERVED))
def test_every_rpc_has_exactly_one_rule(service: str) -> None:
    rules, protos = SERVED[service]
    methods = {f"/{d.full_name}/{m.name}" for module, name in protos
               for d in [module.DESCRIPTOR.services_by_name[name]] for m in d.methods}
    assert sorted(methods - set(rules)) == [], "RPCs without an access rule"
    assert sorted(set(rules) - methods) == [], "rules for RPCs that do not exist"
    assert all(isinstance(r, Rule) for r in rules.values())


def test_writes_and_deletes_need_more_than_read() -> None:
    rules = {**run_access.RULES, **artifact_access.RULES, **ingest_access.RULES, **hpo_access.RULES}
    assert rules["/trackd.run.v1.RunService/CreateProject"].role is Role.ADMIN
    assert rules["/trackd.run.v1.RunService/DeleteRun"].role is Role.ADMIN
    assert rules["/trackd.artifact.v1.ArtifactService/DeleteArtifact"].role is Role.ADMIN
    assert rules["/trackd.ingest.v1.IngestService/StreamMetrics"].role is Role.WRITE
    assert rules["/trackd.hpo.v1.HpoService/CompleteTrial"].role is Role.WRITE
    # managing tokens needs ADMIN; asking who one is (WhoAmI) any valid token may
    assert all(r.role is Role.ADMIN for m, r in rules.items() if "TokenService" in m and not m.endswith("/WhoAmI"))
    assert rules["/trackd.auth.v1.TokenService/WhoAmI"].role is Role.READ
    presign = rules["/trackd.artifact.v1.ArtifactService/CreatePresignedUrl"]
    url = artifact_pb2.CreatePresignedUrlRequest
    assert presign.role_for(url(method=artifact_pb2.PRESIGNED_METHOD_PUT)) is Role.WRITE
    assert presign.role_for(url(method=artifact_pb2.PRESIGNED_METHOD_GET)) is Role.READ
    # every read-only RPC of the query service needs READ, nothing more
    assert {r.role for r in query_access.RULES.values()} == {Role.READ}


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.READ < Role.WRITE < Role.ADMIN
    assert Role.parse("write") is Role.WRITE and Role.parse("ADMIN") is Role.ADMIN
    assert Role.parse(auth_pb2.ROLE_READ) is Role.READ
    with pytest.raises(InvalidArgument):
        Role.parse("owner")
    with pytest.raises(InvalidArgument):
        Role.parse(0)


def test_a_project_token_reaches_only_its_project_up_to_its_role() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    writer = Principal(key="t1", project_id=a, role=Role.WRITE)
    assert writer.may(Role.READ, a) and writer.may(Role.WRITE, a)
    assert not writer.may(Role.ADMIN, a)
    assert not writer.may(Role.READ, b)
    assert not writer.may(Role.READ, GLOBAL)
    writer.require(Role.WRITE, [a, a])
    with pytest.raises(PermissionDenied, match="READ on project"):
        writer.require(Role.READ, [a, b])
    with pytest.raises(PermissionDenied, match="globally"):
        writer.require(Role.READ, [GLOBAL])
    admin = Principal(key="admin", admin=True)
    admin.require(Role.ADMIN, [a, b, GLOBAL])


def test_bearer_metadata() -> None:
    assert auth.bearer([("authorization", "Bearer trk_abc")]) == "trk_abc"
    assert auth.bearer([("x", "y"), ("authorization", "bearer  trk_abc ")]) == "trk_abc"
    for bad in ([], [("authorization", "trk_abc")], [("authorization", "Basic dXNlcg==")],
                [("authorization", "Bearer ")], [("authorization", "Bearer " + "x" * 500)],
                [("authorization", "Bearer a"), ("authorization", "Bearer b")]):
        with pytest.raises(Unauthenticated):
            auth.bearer(bad)


def test_secrets_are_random_and_only_their_hash_is_compared() -> None:
    first, second = auth.new_secret(), auth.new_secret()
    assert first.startswith("trk_") and len(first) > 40 and first != second
    assert auth.hash_secret(first) == auth.hash_secret(first) != auth.hash_secret(second)
    assert len(auth.hash_secret(first)) == 64
    assert auth.is_admin_secret("s" * 20, "s" * 20)
    assert not auth.is_admin_secret("s" * 20, "t" * 20)
    assert not auth.is_admin_secret("", "")  # no admin secret configured: nobody is the admin


def test_auth_settings_from_env() -> None:
    assert AuthSettings.from_env({}) == AuthSettings(enabled=False, admin_token="", writes_per_s=0, burst=0)
    on = AuthSettings.from_env({"TRACKD_AUTH": "on", "TRACKD_ADMIN_TOKEN": "x" * 32,
                                "TRACKD_RATE_LIMIT_WRITES_PER_S": "5", "TRACKD_RATE_LIMIT_BURST": "10"})
    assert on.enabled and on.writes_per_s == 5 and on.burst == 10
    assert "x" * 32 not in repr(on)  # the secret never reaches a log line
    for bad in ({"TRACKD_AUTH": "yes"}, {"TRACKD_ADMIN_TOKEN": "short"}, {"TRACKD_RATE_LIMIT_WRITES_PER_S": "-1"}):
        with pytest.raises(InvalidArgument):
            AuthSettings.from_env(bad)
    assert TlsSettings.from_env({"TRACKD_TLS_CERT_FILE": "c", "TRACKD_TLS_KEY_FILE": "k"}).serving
    with pytest.raises(InvalidArgument):
        TlsSettings.from_env({"TRACKD_TLS_CERT_FILE": "c"})


def test_rate_limit_settings() -> None:
    assert Limit.of(0, 100) is None
    assert Limit.of(5, 0) == Limit(5, 5)
    assert Limit.of(0.5, 0) == Limit(0.5, 1)
    assert Limit.of(5, 20) == Limit(5, 20)


def test_token_lifetimes_on_the_command_line() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200 and parse_duration("90m") == 5400 and parse_duration("45") == 45
    assert parse_duration("never") == 0
    with pytest.raises(typer.BadParameter):
        parse_duration("soon")
