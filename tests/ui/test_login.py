"""Sign-in with TRACKD_AUTH=on, in a real headless Chromium against a stack of its own: a token
signs in (kept in an HttpOnly, SameSite=Strict cookie, never in a URL); the pages and their data
show the token's project only (another project's run, study or model: 403/404); a read token sees
no write controls and a forged write is refused; a write without the CSRF token is refused; a
revoked token is back at the login page within 5 s (the services' token cache, 3 s, and a 1 s poll);
signing out."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from playwright.sync_api import Browser, Page, expect
from trackd_api.artifact.v1 import artifact_pb2, artifact_pb2_grpc, registry_pb2, registry_pb2_grpc
from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc
from trackd_api.hpo.v1 import hpo_pb2, hpo_pb2_grpc
from trackd_api.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from trackd_api.run.v1 import run_pb2, run_pb2_grpc
from trackd_platform.stack import EmbeddedStack

from tests.conftest import AUTH_ADMIN_SECRET
from tests.ui.conftest import Watched

pytestmark = pytest.mark.ui
ADMIN_SECRET = AUTH_ADMIN_SECRET  # the shared auth_stack's (tests/conftest.py)
RECHECK_BOUND_S = 5.0  # as docs/auth.md promises: the services' token cache (3 s) and the page's poll (1 s) fit


@dataclass
class Project:
    name: str
    run_id: str
    experiment_id: str
    study_id: str
    model: str
    write: str  # a write token's secret
    read: str


class World:
    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack
        self.channels: dict[str, grpc.Channel] = {}

    def stub(self, kind: Any, service: str) -> Any:
        if service not in self.channels:
            self.channels[service] = grpc.insecure_channel(f"127.0.0.1:{self.stack.service_port(service)}")
        return kind(self.channels[service])

    def call(self, method: Any, request: Any, token: str = ADMIN_SECRET) -> Any:
        return method(request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)

    def token(self, project: str, role: int) -> tuple[str, str]:
        made = self.call(self.stub(auth_pb2_grpc.TokenServiceStub, "run").CreateToken, auth_pb2.CreateTokenRequest(
            project=project, role=role, name="ui"))
        return made.token.id, made.secret

    def project(self) -> Project:
        """A project with a run (metrics, an artifact registered as a model) and a paused study."""
        runs = self.stub(run_pb2_grpc.RunServiceStub, "run")
        name = f"p-{uuid.uuid4().hex[:6]}"
        self.call(runs.CreateProject, run_pb2.CreateProjectRequest(name=name))
        _, write = self.token(name, auth_pb2.ROLE_WRITE)
        _, read = self.token(name, auth_pb2.ROLE_READ)
        run = self.call(runs.StartRun, run_pb2.StartRunRequest(project_name=name, experiment_name="e"), write).run
        self.call(self.stub(ingest_pb2_grpc.IngestServiceStub, "ingest").LogMetrics, ingest_pb2.LogMetricsRequest(
            run_id=run.id, series=[ingest_pb2.MetricSeries(key="loss", steps=[0, 1], values=[1.0, 0.5],
                                                          timestamps_ms=[1, 2])]), write)
        content = b"weights"
        header = artifact_pb2.UploadHeader(run_id=run.id, path="model.bin", type=artifact_pb2.ARTIFACT_TYPE_FILE,
                                           expected_sha256=hashlib.sha256(content).hexdigest())
        upload = self.stub(artifact_pb2_grpc.ArtifactServiceStub, "artifact").UploadArtifact
        upload(iter([artifact_pb2.UploadArtifactRequest(header=header), artifact_pb2.UploadArtifactRequest(
            chunk=content)]), metadata=(("authorization", f"Bearer {write}"),), timeout=30)
        model = f"m-{uuid.uuid4().hex[:6]}"
        self.call(self.stub(registry_pb2_grpc.ModelRegistryServiceStub, "artifact").CreateModelVersion,
                  registry_pb2.CreateModelVersionRequest(name=model, run_id=run.id, path="model.bin"), write)
        study = self.call(self.stub(hpo_pb2_grpc.HpoServiceStub, "hpo").CreateStudy, hpo_pb2.CreateStudyRequest(
            name=f"s-{uuid.uuid4().hex[:6]}", project=name, experiment="e", paused=True,
            search_space_json=json.dumps({"x": {"type": "float", "low": 0, "high": 1}}),
            objectives=[hpo_pb2.Objective(metric="loss", direction=hpo_pb2.DIRECTION_MINIMIZE)]), write).study
        return Project(name, run.id, run.experiment_id, study.id, model, write, read)


@pytest.fixture(scope="module")
def world(auth_stack: EmbeddedStack) -> Iterator[World]:
    world = World(auth_stack)
    try:
        yield world
    finally:
        for channel in world.channels.values():
            channel.close()


@pytest.fixture(scope="module")
def projects(world: World) -> tuple[Project, Project]:
    return world.project(), world.project()


@pytest.fixture
def web(world: World, browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    watched = Watched(page, world.stack.web_url)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    yield watched
    context.close()


def sign_in(web: Watched, token: str, path: str = "/") -> None:
    web.goto(path)
    expect(web.page).to_have_url(f"{web.base}/login?next={path.replace('/', '%2F')}")
    web.page.fill("#token", token)
    web.page.click("#login-submit")
    expect(web.page).to_have_url(f"{web.base}{path}")


def csrf_of(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "trackd_csrf")


def test_a_token_signs_in_to_its_own_project_only(web: Watched, projects: tuple[Project, Project]) -> None:
    a, b = projects
    assert web.goto("/") == 200  # the login page, after a redirect
    expect(web.page).to_have_url(f"{web.base}/login?next=%2F")
    web.shot("login")
    web.page.fill("#token", "trk_" + uuid.uuid4().hex)
    web.page.click("#login-submit")
    expect(web.page.locator("#login-error")).to_contain_text("unknown, expired or revoked")
    web.page.fill("#token", a.write)
    web.page.click("#login-submit")
    expect(web.page).to_have_url(f"{web.base}/")
    expect(web.page.locator(f"section[data-project='{a.name}']")).to_have_count(1)
    expect(web.page.locator(f"section[data-project='{b.name}']")).to_have_count(0)
    expect(web.page.locator("#who")).to_contain_text(a.name)
    expect(web.page.locator("#who")).to_contain_text("write")
    session = next(c for c in web.page.context.cookies() if c["name"] == "trackd_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert a.write not in web.page.url
    web.page.click("nav.sections a:text('Studies')")
    expect(web.page.locator(f"#studies-table a[href='/studies/{a.study_id}']")).to_have_count(1)
    expect(web.page.locator(f"#studies-table a[href='/studies/{b.study_id}']")).to_have_count(0)
    web.page.click("nav.sections a:text('Models')")
    expect(web.page.locator(f"tr[data-model='{a.model}']")).to_have_count(1)
    expect(web.page.locator(f"tr[data-model='{b.model}']")).to_have_count(0)
    assert web.goto(f"/studies/{a.study_id}") == 200
    expect(web.page.locator("#study-resume")).to_be_visible()  # a writer sees the controls
    assert web.goto(f"/models/{a.model}") == 200
    expect(web.page.locator("#alias-form")).to_be_visible()
    assert not web.errors, web.errors


def test_another_projects_run_study_and_model_are_refused_with_their_data(
    web: Watched, projects: tuple[Project, Project]
) -> None:
    a, b = projects
    sign_in(web, a.write)
    pages = [f"/runs/{b.run_id}", f"/runs/{b.run_id}?tab=artifacts", f"/experiments/{b.experiment_id}",
             f"/studies/{b.study_id}", f"/models/{b.model}"]
    data = [f"/api/runs/{b.run_id}/metrics", f"/api/runs/{b.run_id}/history?key=loss&context=",
            f"/api/runs/{b.run_id}/live", f"/api/studies/{b.study_id}", f"/api/studies/{b.study_id}/intermediate",
            f"/api/studies/{b.study_id}/importance"]
    for path in pages + data:
        status = web.page.request.get(f"{web.base}{path}").status
        assert status in (403, 404), (path, status)
    for path in (f"/runs/{a.run_id}", f"/studies/{a.study_id}", f"/models/{a.model}", f"/api/studies/{a.study_id}"):
        assert web.page.request.get(f"{web.base}{path}").status == 200, path
    # a write to the other project, with this session's CSRF token: refused
    answer = web.page.request.post(f"{web.base}/studies/{b.study_id}/resume", form={"csrf": csrf_of(web.page)})
    assert answer.status in (403, 404)


def test_a_read_token_sees_no_write_controls_and_a_forged_write_is_refused(
    web: Watched, world: World, projects: tuple[Project, Project]
) -> None:
    a, _ = projects
    sign_in(web, a.read, f"/studies/{a.study_id}")
    expect(web.page.locator("#who")).to_contain_text("read")
    expect(web.page.locator("#study-actions")).to_have_count(0)
    web.goto(f"/models/{a.model}")
    expect(web.page.locator("#alias-form")).to_have_count(0)
    csrf = csrf_of(web.page)
    answer = web.page.request.post(f"{web.base}/studies/{a.study_id}/resume", form={"csrf": csrf})
    assert answer.status == 403
    answer = web.page.request.post(f"{web.base}/models/{a.model}/alias", form={
        "csrf": csrf, "alias": "prod", "version": "1", "confirm": "yes"})
    assert answer.status == 403
    study = world.call(world.stub(hpo_pb2_grpc.HpoServiceStub, "hpo").GetStudy,
                       hpo_pb2.GetStudyRequest(study_id=a.study_id)).study
    assert study.state == hpo_pb2.STUDY_STATE_PAUSED


def test_a_write_without_the_csrf_token_is_refused(web: Watched, projects: tuple[Project, Project]) -> None:
    a, _ = projects
    sign_in(web, a.write, f"/studies/{a.study_id}")
    for form in ({}, {"csrf": "x" * 43}):
        answer = web.page.request.post(f"{web.base}/studies/{a.study_id}/resume", form=form)
        assert answer.status == 403 and "CSRF" in answer.text()
    answer = web.page.request.post(f"{web.base}/studies/{a.study_id}/resume", form={"csrf": csrf_of(web.page)},
                                   headers={"origin": "https://evil.example"})
    assert answer.status == 403


def test_a_revoked_token_is_back_at_the_login_page_and_sign_out(
    web: Watched, world: World, projects: tuple[Project, Project]
) -> None:
    a, _ = projects
    token_id, secret = world.token(a.name, auth_pb2.ROLE_READ)
    sign_in(web, secret, f"/studies/{a.study_id}")
    expect(web.page.locator("#study")).to_have_attribute("data-ready", "1")
    world.call(world.stub(auth_pb2_grpc.TokenServiceStub, "run").RevokeToken,
               auth_pb2.RevokeTokenRequest(token_id=token_id))
    revoked = time.monotonic()
    web.page.wait_for_url(f"{web.base}/login**", timeout=RECHECK_BOUND_S * 1000)
    took = time.monotonic() - revoked
    print(f"revoked token at the login page after {took:.1f} s")
    assert took <= RECHECK_BOUND_S
    # sign in again with a live token, then out
    sign_in(web, a.write)
    web.page.click("#logout")
    expect(web.page).to_have_url(f"{web.base}/login")
    assert not any(c["name"] == "trackd_session" for c in web.page.context.cookies())
    web.goto(f"/studies/{a.study_id}")
    expect(web.page).to_have_url(f"{web.base}/login?next=%2Fstudies%2F{a.study_id}")
