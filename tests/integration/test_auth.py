"""Authentication, authorization, write limits and TLS on a real stack of their own: TRACKD_AUTH=on,
an admin secret, every service serving TLS with a certificate made here, and a write limit of one
per second with bursts of 200 per token. Every call below goes over TLS."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trackd._client import Client
from trackd._settings import ClientSettings
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc, registry_pb2, registry_pb2_grpc
from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.query.v1 import query_pb2, query_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import EmbeddedStack, StackPorts

pytestmark = pytest.mark.integration
ADMIN_SECRET = "admin-" + uuid.uuid4().hex
BURST = 200
DEADLINE_S = 60.0  # generous bound for "within seconds" (the token cache lives 5 s)
DENIED, UNAUTHENTICATED = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost it signed: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trackd test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@dataclass
class World:
    stack: EmbeddedStack
    ca: Path
    channels: dict[tuple[str, str], grpc.Channel]

    def channel(self, service: str, token: str = "") -> grpc.Channel:
        """A TLS channel to `service` sending `authorization: Bearer <token>` on every call."""
        if (service, token) not in self.channels:
            tls = grpc.ssl_channel_credentials(self.ca.read_bytes())
            if token:
                tls = grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
            self.channels[(service, token)] = grpc.secure_channel(self.target(service), tls)
        return self.channels[(service, token)]

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.stack.service_port(service)}"

    def runs(self, token: str = ADMIN_SECRET) -> Any:
        return run_pb2_grpc.RunServiceStub(self.channel("run", token))

    def tokens(self, token: str = ADMIN_SECRET) -> Any:
        return auth_pb2_grpc.TokenServiceStub(self.channel("run", token))

    def ingest(self, token: str = ADMIN_SECRET) -> Any:
        return ingest_pb2_grpc.IngestServiceStub(self.channel("ingest", token))

    def artifacts(self, token: str = ADMIN_SECRET) -> Any:
        return artifact_pb2_grpc.ArtifactServiceStub(self.channel("artifact", token))

    def registry(self, token: str = ADMIN_SECRET) -> Any:
        return registry_pb2_grpc.ModelRegistryServiceStub(self.channel("artifact", token))

    def query(self, token: str = ADMIN_SECRET) -> Any:
        return query_pb2_grpc.QueryServiceStub(self.channel("query", token))

    def hpo(self, token: str = ADMIN_SECRET) -> Any:
        return hpo_pb2_grpc.HpoServiceStub(self.channel("hpo", token))

    def token(self, project: str, role: int, *, expires_in_s: int = 0) -> tuple[str, str]:
        """A new token's (id, secret), made with the admin secret."""
        made = self.tokens().CreateToken(auth_pb2.CreateTokenRequest(
            project=project, role=role, name="test", expires_in_seconds=expires_in_s), timeout=30)
        return made.token.id, made.secret


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = Path(tmp_path_factory.mktemp("trackd-auth"))
    ca, cert, key = make_certificates(home)
    stack = EmbeddedStack(home / "stack", ports=StackPorts.free(), service_env={
        "TRACKD_AUTH": "on", "TRACKD_ADMIN_TOKEN": ADMIN_SECRET,
        "TRACKD_TLS_CERT_FILE": str(cert), "TRACKD_TLS_KEY_FILE": str(key), "TRACKD_TLS_CA_FILE": str(ca),
        "TRACKD_RATE_LIMIT_WRITES_PER_S": "1", "TRACKD_RATE_LIMIT_BURST": str(BURST),
        "TRACKD_SHUTDOWN_GRACE_S": "2",
    })
    stack.start()
    world = World(stack, ca, {})
    try:
        yield world
    finally:
        for channel in world.channels.values():
            channel.close()
        stack.stop(discard=True)  # its data goes with the test's tmp dir: no clean S3 stop


@dataclass
class Project:
    name: str
    id: str
    run_id: str
    experiment_id: str


def make_project(world: World, unique: Callable[[str], str]) -> Project:
    """A project with an experiment, a run with metrics and an artifact — made with the admin secret."""
    name = unique("p")
    project = world.runs().CreateProject(run_pb2.CreateProjectRequest(name=name), timeout=30).project
    run = world.runs().StartRun(run_pb2.StartRunRequest(project_name=name, experiment_name="e"), timeout=30).run
    world.ingest().LogMetrics(ingest_pb2.LogMetricsRequest(run_id=run.id, series=[ingest_pb2.MetricSeries(
        key="loss", steps=[0, 1], values=[1.0, 0.5], timestamps_ms=[1, 2])]), timeout=30)
    upload(world, ADMIN_SECRET, run.id, b"weights")
    return Project(name, project.id, run.id, run.experiment_id)


def upload(world: World, token: str, run_id: str, content: bytes, *, path: str = "model.bin") -> Any:
    header = artifact_pb2.UploadHeader(run_id=run_id, path=path, type=artifact_pb2.ARTIFACT_TYPE_FILE,
                                       expected_sha256=hashlib.sha256(content).hexdigest())
    requests = iter([artifact_pb2.UploadArtifactRequest(header=header), artifact_pb2.UploadArtifactRequest(
        chunk=content)])
    return world.artifacts(token).UploadArtifact(requests, timeout=30)


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        result = call()
        if isinstance(result, Iterator):  # a server stream fails when read
            list(result)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_every_service_wants_a_token_over_tls(world: World, unique: Callable[[str], str]) -> None:
    a = make_project(world, unique)
    nobody = ""
    assert code_of(lambda: world.runs(nobody).GetRun(run_pb2.GetRunRequest(run_id=a.run_id))) == UNAUTHENTICATED
    assert code_of(lambda: world.ingest(nobody).LogMetrics(ingest_pb2.LogMetricsRequest(run_id=a.run_id))) \
        == UNAUTHENTICATED
    assert code_of(lambda: world.artifacts(nobody).ListArtifacts(
        artifact_pb2.ListArtifactsRequest(run_id=a.run_id))) == UNAUTHENTICATED
    assert code_of(lambda: world.query(nobody).GetLatestMetrics(
        query_pb2.GetLatestMetricsRequest(run_id=a.run_id))) == UNAUTHENTICATED
    assert code_of(lambda: world.hpo(nobody).ListStudies(hpo_pb2.ListStudiesRequest())) == UNAUTHENTICATED
    garbage = "trk_" + uuid.uuid4().hex
    assert code_of(lambda: world.runs(garbage).GetRun(run_pb2.GetRunRequest(run_id=a.run_id))) == UNAUTHENTICATED
    # health checking stays open (load balancers and the stack's readiness probe use it)
    health = health_pb2_grpc.HealthStub(world.channel("query"))
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    # and nothing is served in plain text
    with grpc.insecure_channel(world.target("run")) as plain:
        assert code_of(lambda: run_pb2_grpc.RunServiceStub(plain).GetRun(
            run_pb2.GetRunRequest(run_id=a.run_id), timeout=5)) == grpc.StatusCode.UNAVAILABLE


def test_a_token_of_project_a_reaches_nothing_of_project_b_in_every_service(
    world: World, unique: Callable[[str], str]
) -> None:
    a, b = make_project(world, unique), make_project(world, unique)
    _, token = world.token(a.name, auth_pb2.ROLE_WRITE)
    hpo_space = json.dumps({"x": {"type": "float", "low": 0, "high": 1}})
    objective = [hpo_pb2.Objective(metric="loss", direction=hpo_pb2.DIRECTION_MINIMIZE)]
    study_b = world.hpo().CreateStudy(hpo_pb2.CreateStudyRequest(
        name=unique("s"), project=b.name, experiment="e", search_space_json=hpo_space, objectives=objective,
        paused=True), timeout=30).study
    name_b = unique("m")
    world.registry().CreateModelVersion(registry_pb2.CreateModelVersionRequest(
        name=name_b, run_id=b.run_id, path="model.bin"), timeout=30)
    run_b, run_a = run_pb2.GetRunRequest(run_id=b.run_id), run_pb2.GetRunRequest(run_id=a.run_id)

    # run service
    assert code_of(lambda: world.runs(token).GetRun(run_a)) == grpc.StatusCode.OK
    assert code_of(lambda: world.runs(token).GetRun(run_b)) == DENIED
    assert code_of(lambda: world.runs(token).SetTags(run_pb2.SetTagsRequest(run_id=b.run_id, tags={"k": "v"}))) \
        == DENIED
    assert code_of(lambda: world.runs(token).StartRun(
        run_pb2.StartRunRequest(project_name=b.name, experiment_name="x"))) == DENIED
    assert code_of(lambda: world.runs(token).StartRun(
        run_pb2.StartRunRequest(project_name=a.name, experiment_name="x", parent_run_id=b.run_id))) == DENIED
    assert code_of(lambda: world.runs(token).StartRun(  # resuming: the resumed run's project decides
        run_pb2.StartRunRequest(project_name=a.name, experiment_name="x", run_id=b.run_id))) == DENIED
    assert code_of(lambda: world.runs(token).StartRun(run_pb2.StartRunRequest(run_id=a.run_id))) in (
        grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)  # allowed; a.run may have ended
    assert code_of(lambda: world.runs(token).CreateProject(run_pb2.CreateProjectRequest(name=unique("p")))) \
        == DENIED
    listed = world.runs(token).ListProjects(run_pb2.ListProjectsRequest(page_size=1000), timeout=30).projects
    assert [p.name for p in listed] == [a.name]
    experiments = world.runs(token).ListExperiments(run_pb2.ListExperimentsRequest(), timeout=30).experiments
    assert {e.project_id for e in experiments} == {a.id}
    assert code_of(lambda: world.tokens(token).ListTokens(auth_pb2.ListTokensRequest(project=b.name))) == DENIED

    # ingest service: unary and the stream
    series = [ingest_pb2.MetricSeries(key="loss", steps=[5], values=[0.1], timestamps_ms=[5])]
    assert code_of(lambda: world.ingest(token).LogMetrics(
        ingest_pb2.LogMetricsRequest(run_id=a.run_id, series=series))) == grpc.StatusCode.OK
    assert code_of(lambda: world.ingest(token).LogMetrics(
        ingest_pb2.LogMetricsRequest(run_id=b.run_id, series=series))) == DENIED
    stream = iter([ingest_pb2.StreamMetricsRequest(stream_id=uuid.uuid4().hex, sequence=1, run_id=b.run_id,
                                                   series=series)])
    assert code_of(lambda: world.ingest(token).StreamMetrics(stream, timeout=30)) == DENIED

    # artifact service, presigned download URLs and the model registry included
    assert upload(world, token, a.run_id, b"mine", path="mine.bin").artifact.size_bytes == 4
    assert code_of(lambda: upload(world, token, b.run_id, b"theirs", path="theirs.bin")) == DENIED
    download_b = artifact_pb2.DownloadArtifactRequest(run_id=b.run_id, path="model.bin")
    assert code_of(lambda: world.artifacts(token).DownloadArtifact(download_b, timeout=30)) == DENIED
    download_a = artifact_pb2.DownloadArtifactRequest(run_id=a.run_id, path="model.bin")
    assert b"".join(c.chunk for c in world.artifacts(token).DownloadArtifact(download_a, timeout=30)) == b"weights"
    assert code_of(lambda: world.artifacts(token).CreatePresignedUrl(artifact_pb2.CreatePresignedUrlRequest(
        run_id=b.run_id, path="model.bin", method=artifact_pb2.PRESIGNED_METHOD_GET))) == DENIED
    # another project's model does not exist for this token (PERMISSION_DENIED would reveal it)
    assert code_of(lambda: world.registry(token).GetRegisteredModel(
        registry_pb2.GetRegisteredModelRequest(name=name_b))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: world.registry(token).SetModelAlias(
        registry_pb2.SetModelAliasRequest(name=name_b, alias="prod", version=1))) == grpc.StatusCode.NOT_FOUND
    mine = world.registry(token).CreateRegisteredModel(
        registry_pb2.CreateRegisteredModelRequest(name=unique("mine")), timeout=30).model
    visible = world.registry(token).ListRegisteredModels(registry_pb2.ListRegisteredModelsRequest(page_size=1000),
                                                         timeout=30).models
    assert mine.name in {m.name for m in visible} and name_b not in {m.name for m in visible}

    # query service: reads by run, and search results narrowed to the token's project
    assert code_of(lambda: world.query(token).GetMetricHistory(
        query_pb2.GetMetricHistoryRequest(run_id=b.run_id, key="loss"))) == DENIED
    assert code_of(lambda: world.query(token).CompareRuns(
        query_pb2.CompareRunsRequest(run_ids=[a.run_id, b.run_id]))) == DENIED
    assert code_of(lambda: world.query(token).SearchRuns(query_pb2.SearchRunsRequest(
        selection=query_pb2.RunSelection(project=b.name)))) == DENIED
    assert code_of(lambda: world.query(token).SearchRuns(query_pb2.SearchRunsRequest(
        selection=query_pb2.RunSelection(experiment_ids=[b.experiment_id])))) == DENIED
    found = world.query(token).SearchRuns(query_pb2.SearchRunsRequest(page_size=1000), timeout=30).results
    assert a.run_id in {r.run.id for r in found} and {r.run.project_id for r in found} == {a.id}
    everything = world.query().SearchRuns(query_pb2.SearchRunsRequest(page_size=1000), timeout=30).results
    assert b.run_id in {r.run.id for r in everything}  # the admin sees both: the narrowing is the token's

    # hpo service
    assert code_of(lambda: world.hpo(token).GetStudy(hpo_pb2.GetStudyRequest(study_id=study_b.id))) == DENIED
    assert code_of(lambda: world.hpo(token).AcquireTrial(
        hpo_pb2.AcquireTrialRequest(study_id=study_b.id, worker="w"))) == DENIED
    assert code_of(lambda: world.hpo(token).CreateStudy(hpo_pb2.CreateStudyRequest(
        name=unique("s"), project=b.name, search_space_json=hpo_space, objectives=objective))) == DENIED
    study_a = world.hpo(token).CreateStudy(hpo_pb2.CreateStudyRequest(
        name=unique("s"), project=a.name, search_space_json=hpo_space, objectives=objective, paused=True),
        timeout=30).study
    studies = {s.id for s in world.hpo(token).ListStudies(hpo_pb2.ListStudiesRequest(page_size=1000),
                                                            timeout=30).studies}
    assert study_a.id in studies and study_b.id not in studies


def test_roles_read_write_admin(world: World, unique: Callable[[str], str]) -> None:
    a = make_project(world, unique)
    _, reader = world.token(a.name, auth_pb2.ROLE_READ)
    _, writer = world.token(a.name, auth_pb2.ROLE_WRITE)
    _, owner = world.token(a.name, auth_pb2.ROLE_ADMIN)
    assert code_of(lambda: world.runs(reader).GetRun(run_pb2.GetRunRequest(run_id=a.run_id))) == grpc.StatusCode.OK
    assert code_of(lambda: world.runs(reader).LogParams(
        run_pb2.LogParamsRequest(run_id=a.run_id, params={"lr": "1"}))) == DENIED
    assert code_of(lambda: world.ingest(reader).LogMetrics(ingest_pb2.LogMetricsRequest(run_id=a.run_id))) == DENIED
    url = artifact_pb2.CreatePresignedUrlRequest(run_id=a.run_id, path="model.bin",
                                                 method=artifact_pb2.PRESIGNED_METHOD_GET)
    assert world.artifacts(reader).CreatePresignedUrl(url, timeout=30).url.startswith("http")
    url.method = artifact_pb2.PRESIGNED_METHOD_PUT
    assert code_of(lambda: world.artifacts(reader).CreatePresignedUrl(url)) == DENIED
    delete = run_pb2.DeleteRunRequest(run_id=a.run_id)
    assert code_of(lambda: world.runs(writer).DeleteRun(delete)) == DENIED
    assert code_of(lambda: world.tokens(writer).ListTokens(auth_pb2.ListTokensRequest())) == DENIED
    assert code_of(lambda: world.runs(owner).DeleteRun(delete)) == grpc.StatusCode.OK
    # a project admin manages its own project's tokens, and only those
    listed = world.tokens(owner).ListTokens(auth_pb2.ListTokensRequest(), timeout=30).tokens
    assert len(listed) == 3 and {t.project_name for t in listed} == {a.name}
    made = world.tokens(owner).CreateToken(auth_pb2.CreateTokenRequest(role=auth_pb2.ROLE_READ), timeout=30)
    assert made.token.project_name == a.name and made.secret.startswith("trk_")
    assert made.secret not in str(world.tokens(owner).ListTokens(auth_pb2.ListTokensRequest(), timeout=30))
    # WhoAmI: any valid token learns its project and role; the admin secret is the global admin
    for token, role in ((reader, auth_pb2.ROLE_READ), (writer, auth_pb2.ROLE_WRITE), (owner, auth_pb2.ROLE_ADMIN)):
        me = world.tokens(token).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=30)
        assert (me.project_name, me.project_id, me.role, me.admin) == (a.name, a.id, role, False), me
    assert world.tokens().WhoAmI(auth_pb2.WhoAmIRequest(), timeout=30).admin
    assert code_of(lambda: world.tokens("trk_" + "0" * 40).WhoAmI(auth_pb2.WhoAmIRequest())) == UNAUTHENTICATED


def wait_until_refused(world: World, token: str, run_id: str) -> float:
    """Seconds until `token` is refused (polling; the bound is DEADLINE_S)."""
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        if code_of(lambda: world.runs(token).GetRun(run_pb2.GetRunRequest(run_id=run_id))) == UNAUTHENTICATED:
            return time.monotonic() - started
        time.sleep(0.2)
    pytest.fail(f"the token still worked after {DEADLINE_S}s")


def test_revoked_and_expired_tokens_stop_working_within_seconds(world: World, unique: Callable[[str], str]) -> None:
    a = make_project(world, unique)
    token_id, token = world.token(a.name, auth_pb2.ROLE_WRITE)
    assert code_of(lambda: world.runs(token).GetRun(run_pb2.GetRunRequest(run_id=a.run_id))) == grpc.StatusCode.OK
    revoked = world.tokens().RevokeToken(auth_pb2.RevokeTokenRequest(token_id=token_id), timeout=30).token
    assert revoked.HasField("revoke_time")
    print(f"revocation took effect after {wait_until_refused(world, token, a.run_id):.1f}s")
    assert code_of(lambda: world.hpo(token).ListStudies(hpo_pb2.ListStudiesRequest())) == UNAUTHENTICATED
    _, short = world.token(a.name, auth_pb2.ROLE_READ, expires_in_s=1)
    print(f"expiry (1 s) took effect after {wait_until_refused(world, short, a.run_id):.1f}s")


def test_write_limit_answers_resource_exhausted_with_a_hint_the_sdk_honours(
    world: World, unique: Callable[[str], str]
) -> None:
    a = make_project(world, unique)
    _, token = world.token(a.name, auth_pb2.ROLE_WRITE)
    heartbeat = run_pb2.HeartbeatRequest(run_id=a.run_id)

    def drain() -> grpc.RpcError:
        for _ in range(BURST * 2):
            try:
                world.runs(token).Heartbeat(heartbeat, timeout=30)
            except grpc.RpcError as error:
                return error
        pytest.fail(f"{BURST * 2} writes were all allowed at 1 per second with bursts of {BURST}")

    refused = drain()
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    hint = dict(refused.trailing_metadata() or ())["retry-after-ms"]
    assert 0 < int(hint) <= 1000
    assert code_of(lambda: world.runs(token).GetRun(run_pb2.GetRunRequest(run_id=a.run_id))) == grpc.StatusCode.OK

    client = Client(ClientSettings.from_env({**world.stack.client_env(), "TRACKD_TOKEN": token,
                                             "TRACKD_TLS_CA_FILE": str(world.ca)}))
    attempts = []

    def heartbeat_after_draining(request: Any, timeout: float) -> Any:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise drain()  # the server's own refusal, with its hint
        return client.runs.Heartbeat(request, timeout=timeout)

    try:
        assert client.call("run", heartbeat_after_draining, heartbeat).status == run_pb2.RUN_STATUS_RUNNING
    finally:
        client.close()
    assert len(attempts) == 2
    print(f"the SDK waited {attempts[1] - attempts[0]:.2f}s before retrying")


def test_the_sdk_and_cli_send_trackd_token(
    world: World, unique: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trackd
    import trackd._client
    from trackd.cli import app
    from typer.testing import CliRunner

    a = make_project(world, unique)
    env = {**world.stack.client_env(), "TRACKD_TLS_CA_FILE": str(world.ca), "TRACKD_TOKEN": ADMIN_SECRET,
           "TRACKD_SPOOL_DIR": str(tmp_path / "spool")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(trackd._client, "_default", None)  # the CLI's client is built from this environment

    cli = CliRunner()
    made = cli.invoke(app, ["tokens", "create", "--project", a.name, "--role", "write", "--name", "ci",
                            "--expires", "30d"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert secret.startswith("trk_")
    listed = cli.invoke(app, ["tokens", "list", "--project", a.name])
    assert listed.exit_code == 0 and "ci" in listed.output and secret not in listed.output

    # the SDK as a trainer uses it: TRACKD_TOKEN, TLS, the metric stream included
    client = Client(ClientSettings.from_env({**env, "TRACKD_TOKEN": secret}))
    try:
        with trackd.start_run("trained", project=a.name, capture_env=False, system_metrics=False,
                              client=client) as run:
            for step in range(100):
                run.log_metric("loss", 1 / (step + 1), step=step)
        history = client.call("query", client.query.GetMetricHistory,
                              query_pb2.GetMetricHistoryRequest(run_id=run.id, key="loss"))
        assert history.total_points == 100
        with pytest.raises(trackd.errors.PermissionDenied):
            trackd.start_run("elsewhere", project="default", capture_env=False, system_metrics=False, client=client)
    finally:
        client.close()

    token_id = next(line.split()[1] for line in made.output.splitlines() if line.startswith("token "))
    revoked = cli.invoke(app, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    monkeypatch.setenv("TRACKD_TOKEN", secret)
    monkeypatch.setattr(trackd._client, "_default", None)
    print(f"revoked via the CLI; refused after {wait_until_refused(world, secret, a.run_id):.1f}s")
    refused = cli.invoke(app, ["runs", "show", a.run_id])
    assert refused.exit_code != 0 and "token" in refused.output


def test_the_web_ui_acts_with_the_callers_token_and_never_more(world: World, unique: Callable[[str], str]) -> None:
    import re

    import httpx

    a, b = make_project(world, unique), make_project(world, unique)
    _, reader = world.token(a.name, auth_pb2.ROLE_READ)
    web = world.stack.web_url
    with httpx.Client(base_url=web, timeout=30) as anonymous:
        page = anonymous.get(f"/runs/{a.run_id}")  # a page sends the browser to sign in; data answers 401
        assert page.status_code == 303 and page.headers["location"].startswith("/login"), page.headers
        assert anonymous.get(f"/api/runs/{a.run_id}/history?key=loss").status_code == 401
    with httpx.Client(base_url=web, timeout=30, headers={"authorization": f"Bearer {reader}"}) as client:
        page = client.get(f"/runs/{a.run_id}?tab=overview")
        assert page.status_code == 200
        assert client.get(f"/runs/{b.run_id}").status_code == 403, "another project's run"
        assert client.get(f"/api/runs/{b.run_id}/history?key=loss").status_code == 403
        assert client.get(f"/experiments/{b.experiment_id}").status_code == 403
        home = client.get("/")
        assert home.status_code == 200 and a.name in home.text and b.name not in home.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        write = client.post(f"/runs/{a.run_id}/tags", data={"key": "k", "value": "v", "csrf": token.group(1)})
        assert write.status_code == 403, "a read token cannot write through the web service"
    assert "k" not in world.runs().GetRun(run_pb2.GetRunRequest(run_id=a.run_id), timeout=30).run.tags


def test_mlflow_tracking_token_is_a_trackd_token(world: World, unique: Callable[[str], str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_TRACKING_TOKEN reaches trackd as `Authorization: Bearer`: a write token of a
    project logs through MLflow's client there; a read token reads but cannot log; none is 401."""
    import httpx
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    a = make_project(world, unique)
    _, writer = world.token(a.name, auth_pb2.ROLE_WRITE)
    _, reader = world.token(a.name, auth_pb2.ROLE_READ)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", writer)
    client = MlflowClient(tracking_uri=world.stack.web_url)
    experiment = client.get_experiment_by_name(f"{a.name}/e")
    assert experiment.experiment_id == a.experiment_id
    run = client.create_run(a.experiment_id)
    client.log_metric(run.info.run_id, "acc", 0.5, step=3)
    client.set_terminated(run.info.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", reader)
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.5}
    with pytest.raises(MlflowException) as refused:
        client.log_param(a.run_id, "p", "1")
    assert refused.value.error_code == "PERMISSION_DENIED"
    anonymous = httpx.get(f"{world.stack.web_url}/api/2.0/mlflow/runs/get", params={"run_id": a.run_id}, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "UNAUTHENTICATED"


def test_optuna_storage_takes_a_token_and_keeps_to_its_project(world: World, unique: Callable[[str], str]) -> None:
    """The hpo service's Optuna port (plaintext: GrpcStorageProxy speaks no TLS, docs/optuna.md)
    wants a token like every port; a study belongs to its creator's project, which another
    project's token neither lists nor reaches."""
    from optuna.storages._grpc.auto_generated import api_pb2, api_pb2_grpc

    a, b = make_project(world, unique), make_project(world, unique)
    _, token_a = world.token(a.name, auth_pb2.ROLE_WRITE)
    _, token_b = world.token(b.name, auth_pb2.ROLE_WRITE)
    channel = grpc.insecure_channel(f"127.0.0.1:{world.stack.ports.optuna}")
    storage = api_pb2_grpc.StorageServiceStub(channel)

    def as_(token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    name = unique("optuna")
    create = api_pb2.CreateNewStudyRequest(directions=[api_pb2.MINIMIZE], study_name=name)
    assert code_of(lambda: storage.CreateNewStudy(create, timeout=30)) == grpc.StatusCode.UNAUTHENTICATED
    study_id = storage.CreateNewStudy(create, metadata=as_(token_a), timeout=30).study_id
    assert storage.CreateNewTrial(api_pb2.CreateNewTrialRequest(study_id=study_id, template_trial_is_none=True),
                                  metadata=as_(token_a), timeout=30).trial_id

    listed = storage.GetAllStudies(api_pb2.GetAllStudiesRequest(), metadata=as_(token_a), timeout=30).studies
    assert [s.study_name for s in listed] == [name]
    assert name not in {s.study_name for s in storage.GetAllStudies(
        api_pb2.GetAllStudiesRequest(), metadata=as_(token_b), timeout=30).studies}
    for call in (lambda: storage.GetStudyNameFromId(api_pb2.GetStudyNameFromIdRequest(study_id=study_id),
                                                    metadata=as_(token_b), timeout=30),
                 lambda: storage.CreateNewTrial(api_pb2.CreateNewTrialRequest(
                     study_id=study_id, template_trial_is_none=True), metadata=as_(token_b), timeout=30),
                 lambda: storage.GetStudyIdFromName(api_pb2.GetStudyIdFromNameRequest(study_name=name),
                                                    metadata=as_(token_b), timeout=30)):
        assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED
    study = world.hpo().GetStudy(hpo_pb2.GetStudyRequest(name=name), timeout=30).study
    experiment = world.runs().GetExperiment(run_pb2.GetExperimentRequest(experiment_id=study.experiment_id),
                                            timeout=30).experiment
    assert experiment.project_id == a.id
    channel.close()
