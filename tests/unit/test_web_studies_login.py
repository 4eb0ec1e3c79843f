"""The study page's and the model pages' pure conversions, and sign-in's cookie, against fake
services (no stack): what the templates and scripts get, and the session cookie's flags."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc
import prometheus_client
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from trackd_api.artifact.v1 import registry_pb2
from trackd_api.auth.v1 import auth_pb2
from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform.auth import Role
from trackd_services.web.app import templates
from trackd_services.web.backends import SESSION_COOKIE, Caller
from trackd_services.web.http import CSRF_COOKIE, Edge
from trackd_services.web.login import Session, Sessions
from trackd_services.web.models import model_row, version_row
from trackd_services.web.studies import importance_points, study_json, trial_json


def trial(number: int, state: int, values: list[float], **params: Any) -> hpo_pb2.Trial:
    return hpo_pb2.Trial(number=number, state=state, values=values, params_json=json.dumps(params),
                         run_id=f"run{number}")


def test_study_json_orders_trials_and_counts_them() -> None:
    study = hpo_pb2.Study(id="s", name="n", state=hpo_pb2.STUDY_STATE_RUNNING, trials_complete=2, trials_pruned=1,
                          objectives=[hpo_pb2.Objective(metric="loss", direction=hpo_pb2.DIRECTION_MINIMIZE)])
    trials = [trial(2, hpo_pb2.TRIAL_STATE_WAITING, [], x=0.3), trial(0, hpo_pb2.TRIAL_STATE_COMPLETE, [0.5], x=0.1),
              trial(1, hpo_pb2.TRIAL_STATE_PRUNED, [0.9], x=0.2)]
    data = study_json(study, sorted((trial_json(t) for t in trials), key=lambda t: t["number"]), [0])
    assert [t["number"] for t in data["trials"]] == [0, 1, 2]
    assert [t["state"] for t in data["trials"]] == ["COMPLETE", "PRUNED", "WAITING"]
    assert data["best"] == [0] and data["live"]
    assert data["counts"] == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 0, "RUNNING": 0, "WAITING": 1}
    assert data["objectives"] == [{"metric": "loss", "direction": "minimize"}]
    stopped = hpo_pb2.Study(id="s", state=hpo_pb2.STUDY_STATE_STOPPED)
    assert not study_json(stopped, [trial_json(t) for t in trials[1:]], [])["live"]
    assert study_json(stopped, [trial_json(trial(3, hpo_pb2.TRIAL_STATE_RUNNING, []))], [])["live"]  # still runs


def test_importance_uses_the_params_every_completed_trial_has() -> None:
    done = [{"state": "COMPLETE", "values": [float(i)], "params": {"lr": 0.1 * (i + 1), "opt": ["adam", "sgd"][i % 2],
                                                                   **({"momentum": 0.9} if i % 2 else {})}}
            for i in range(4)] + [{"state": "PRUNED", "values": [9.0], "params": {"lr": 1.0, "opt": "adam"}}]
    names, categories, points = importance_points(done)
    assert names == ["lr", "opt"]  # momentum is conditional: left out
    assert categories == {"opt": ['"adam"', '"sgd"']}
    assert len(points) == 4 and points[1] == ({"lr": 0.2, "opt": '"sgd"'}, 1.0)
    assert importance_points(done[:1]) == ([], {}, [])


def test_model_rows_sort_aliases_by_version_and_keep_the_snapshot() -> None:
    model = registry_pb2.RegisteredModel(name="m", latest_version=3, aliases={"champion": 2, "challenger": 3})
    version = registry_pb2.ModelVersion(name="m", version=3, run_id="r", metrics={"acc": 0.9, "loss": 0.2},
                                        metadata={"framework": "torch"}, aliases=["challenger"])
    row = model_row(model, version)
    assert row["aliases"] == [("challenger", 3), ("champion", 2)]
    assert row["latest"] == version_row(version)
    assert row["latest"]["metrics"] == [("acc", 0.9), ("loss", 0.2)]
    assert row["latest"]["tags"] == [("framework", "torch")]


def test_only_writers_see_write_controls() -> None:
    assert Session(auth=False).may_write
    assert Session(auth=True, project="p", role=Role.WRITE).may_write
    assert not Session(auth=True, project="p", role=Role.READ).may_write


# -- sign-in against fake services ----------------------------------------------------------------

GOOD = "trk_" + "a" * 43


def refused(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


@dataclass
class FakeRuns:
    calls: list[str] = field(default_factory=list)

    async def ListProjects(self, request: Any, *, metadata: Any, **options: Any) -> run_pb2.ListProjectsResponse:
        self.calls.append(dict(metadata)["authorization"])
        if dict(metadata)["authorization"] != f"Bearer {GOOD}":
            raise refused(grpc.StatusCode.UNAUTHENTICATED)
        return run_pb2.ListProjectsResponse(projects=[run_pb2.Project(id="p1", name="vision")])



@dataclass
class FakeTokens:
    calls: list[str] = field(default_factory=list)

    async def WhoAmI(self, request: Any, *, metadata: Any, **options: Any) -> auth_pb2.WhoAmIResponse:
        self.calls.append(dict(metadata)["authorization"])
        if dict(metadata)["authorization"] != f"Bearer {GOOD}":
            raise refused(grpc.StatusCode.UNAUTHENTICATED)
        return auth_pb2.WhoAmIResponse(project_id="p1", project_name="vision", role=auth_pb2.ROLE_READ)


class FakeBackends:
    def __init__(self) -> None:
        self.runs, self.tokens = FakeRuns(), FakeTokens()

    def caller(self, request: Any) -> Caller:
        return Caller(request.cookies.get(SESSION_COOKIE, ""))


def client(base_url: str) -> tuple[TestClient, FakeBackends]:
    backends = FakeBackends()
    sessions = Sessions(backends, templates(), auth_enabled=True)  # type: ignore[arg-type]
    app = Starlette(routes=sessions.routes(),
                    middleware=[Middleware(Edge, registry=prometheus_client.CollectorRegistry())])
    return TestClient(app, base_url=base_url, follow_redirects=False), backends


def test_sign_in_sets_an_http_only_strict_cookie_secure_under_tls() -> None:
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        web, backends = client(base)
        web.get("/login")
        csrf = web.cookies[CSRF_COOKIE]
        answer = web.post("/login", data={"csrf": csrf, "token": GOOD, "next": "/studies"})
        assert answer.status_code == 303 and answer.headers["location"] == "/studies"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert ("secure" in flags) == secure
        assert GOOD not in answer.headers["location"]
        session = web.get("/api/session", cookies={SESSION_COOKIE: GOOD})
        assert session.status_code == 200 and backends.runs.calls[-1] == f"Bearer {GOOD}"


def test_a_bad_token_or_a_missing_csrf_token_does_not_sign_in() -> None:
    web, _ = client("http://testserver")
    web.get("/login")
    csrf = web.cookies[CSRF_COOKIE]
    answer = web.post("/login", data={"csrf": csrf, "token": "trk_wrong"})
    assert answer.status_code == 401 and "unknown, expired or revoked" in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert web.post("/login", data={"csrf": csrf, "token": "x" * 500}).status_code == 400
    assert web.post("/login", data={"token": GOOD}).status_code == 403
    assert web.post("/login", data={"csrf": csrf, "token": GOOD, "next": "https://evil.example/"}
                    ).headers["location"] == "/"  # never redirected elsewhere
    out = web.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
