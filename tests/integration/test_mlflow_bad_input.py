"""Bad input on every MLflow endpoint over raw HTTP: malformed JSON, a body that is not an object,
each field in turn of the wrong type, each required field left out, unknown ids and over-limit
values each get MLflow's error JSON (`error_code`, `message`) with its HTTP status — never a 500 —
and write nothing (the rows of trackd's tables and the MLflow JSON of every entity the requests
name are the same after them). Each route's variants come from one request that would succeed
(never sent): the generator changes one thing at a time."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from trackd_platform.stack import EmbeddedStack

pytestmark = pytest.mark.integration
mlflow = pytest.importorskip("mlflow")

API = "/api/2.0/mlflow"
UNKNOWN_RUN = "0" * 32
WRONG = {"not": ["the", "right", "type"]}  # a JSON object where a string, number or list belongs
TABLES = ("experiments", "runs", "run_params", "run_tags", "metric_series", "metric_chunks", "run_inputs",
          "registered_models", "model_versions", "model_aliases", "artifacts")


@dataclass(frozen=True)
class Entities:
    experiment_id: str
    experiment_name: str
    run_id: str
    model_id: str
    model: str
    version: str = "1"
    alias: str = "champion"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{model_id}" is the logged model's id
    good: dict[str, Any] = field(default_factory=dict)  # a request that would succeed
    required: tuple[str, ...] = ()
    ids: dict[str, Any] = field(default_factory=dict)  # field -> an id nothing has
    ints: tuple[str, ...] = ()  # GET fields that are numbers (the only ones a query string can mistype)
    over: tuple[tuple[str, Any], ...] = ()  # (field, a value beyond its limit)


def routes(e: Entities) -> list[Route]:
    run, exp, model, version = e.run_id, e.experiment_id, e.model, e.version
    metric = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    return [
        Route("POST", "/experiments/create", {"name": "never-made", "tags": []}, ("name",),
              over=(("name", "n" * 501), ("tags", [{"key": "k", "value": "v" * 5001}]))),
        Route("GET", "/experiments/get", {"experiment_id": exp}, ("experiment_id",), {"experiment_id": UNKNOWN_RUN}),
        Route("GET", "/experiments/get-by-name", {"experiment_name": e.experiment_name}, ("experiment_name",),
              {"experiment_name": "no-such-experiment-anywhere"}),
        Route("POST", "/experiments/search", {"max_results": 10, "filter": "", "order_by": [],
                                              "view_type": "ACTIVE_ONLY"}, over=(("max_results", 50_001),)),
        Route("POST", "/experiments/update", {"experiment_id": exp, "new_name": "never-renamed"},
              ("experiment_id", "new_name"), {"experiment_id": UNKNOWN_RUN}, over=(("new_name", "n" * 501),)),
        Route("POST", "/experiments/delete", {"experiment_id": exp}, ("experiment_id",),
              {"experiment_id": UNKNOWN_RUN}),
        Route("POST", "/experiments/restore", {"experiment_id": exp}, ("experiment_id",),
              {"experiment_id": UNKNOWN_RUN}),
        Route("POST", "/experiments/set-experiment-tag", {"experiment_id": exp, "key": "k", "value": "v"},
              ("experiment_id", "key"), {"experiment_id": UNKNOWN_RUN},
              over=(("key", "k" * 251), ("value", "v" * 5001))),
        Route("POST", "/experiments/delete-experiment-tag", {"experiment_id": exp, "key": "team"},
              ("experiment_id", "key"), {"experiment_id": UNKNOWN_RUN, "key": "never-set"}),
        Route("POST", "/runs/create", {"experiment_id": exp, "run_name": "r", "start_time": 1, "tags": []},
              ids={"experiment_id": UNKNOWN_RUN}, over=(("run_name", "r" * 251),)),
        Route("GET", "/runs/get", {"run_id": run}, ("run_id",), {"run_id": UNKNOWN_RUN}),
        Route("POST", "/runs/update", {"run_id": run, "status": "FINISHED", "end_time": 2, "run_name": "x"},
              ("run_id",), {"run_id": UNKNOWN_RUN}, over=(("run_name", "r" * 251),)),
        Route("POST", "/runs/delete", {"run_id": run}, ("run_id",), {"run_id": UNKNOWN_RUN}),
        Route("POST", "/runs/restore", {"run_id": run}, ("run_id",), {"run_id": UNKNOWN_RUN}),
        Route("POST", "/runs/search", {"experiment_ids": [exp], "filter": "", "max_results": 10, "order_by": [],
                                       "run_view_type": "ACTIVE_ONLY"}, ids={"experiment_ids": [UNKNOWN_RUN]},
              over=(("max_results", 50_001),)),
        Route("POST", "/runs/log-metric", {"run_id": run, **metric}, ("run_id", "key", "value", "timestamp"),
              {"run_id": UNKNOWN_RUN}, over=(("key", "k" * 251),)),
        Route("POST", "/runs/log-parameter", {"run_id": run, "key": "new", "value": "v"}, ("run_id", "key"),
              {"run_id": UNKNOWN_RUN}, over=(("key", "k" * 251), ("value", "v" * 6001))),
        Route("POST", "/runs/set-tag", {"run_id": run, "key": "k", "value": "v"}, ("run_id", "key"),
              {"run_id": UNKNOWN_RUN}, over=(("key", "k" * 251), ("value", "v" * 5001))),
        Route("POST", "/runs/delete-tag", {"run_id": run, "key": "team"}, ("run_id", "key"),
              {"run_id": UNKNOWN_RUN, "key": "never-set"}),
        Route("POST", "/runs/log-batch", {"run_id": run, "metrics": [metric], "params": [], "tags": []}, ("run_id",),
              {"run_id": UNKNOWN_RUN}, over=(("metrics", [metric] * 1001),
                                             ("params", [{"key": f"p{i}", "value": "v"} for i in range(101)]))),
        Route("POST", "/runs/log-inputs", {"run_id": run, "datasets": [{"dataset": {
            "name": "d", "digest": "1", "source_type": "local", "source": "{}"}}]}, ("run_id",),
            {"run_id": UNKNOWN_RUN}),
        Route("GET", "/metrics/get-history", {"run_id": run, "metric_key": "m", "max_results": 10},
              ("run_id", "metric_key"), {"run_id": UNKNOWN_RUN}, ints=("max_results",),
              over=(("max_results", 25_001),)),
        Route("GET", "/metrics/get-history-bulk-interval", {"run_ids": [run], "metric_key": "m", "max_results": 10},
              ("run_ids", "metric_key"), {"run_ids": [UNKNOWN_RUN]}, ints=("max_results",),
              over=(("max_results", 2501), ("run_ids", [run] * 101))),
        Route("POST", "/logged-models", {"experiment_id": exp, "name": "net", "source_run_id": run},
              ("experiment_id",), {"experiment_id": UNKNOWN_RUN, "source_run_id": UNKNOWN_RUN}),
        Route("POST", "/logged-models/search", {"experiment_ids": [exp], "max_results": 10}, ("experiment_ids",)),
        Route("GET", "/logged-models/{model_id}"),
        Route("PATCH", "/logged-models/{model_id}", {"status": "LOGGED_MODEL_READY"}),
        Route("DELETE", "/logged-models/{model_id}"),
        Route("PATCH", "/logged-models/{model_id}/tags", {"tags": [{"key": "k", "value": "v"}]}),
        Route("DELETE", "/logged-models/{model_id}/tags/k"),
        Route("POST", "/logged-models/{model_id}/params", {"params": [{"key": "k", "value": "v"}]}),
        Route("POST", "/runs/outputs", {"run_id": run, "models": [{"model_id": e.model_id, "step": 0}]}, ("run_id",),
              {"run_id": UNKNOWN_RUN}),
        Route("POST", "/registered-models/create", {"name": "never-registered", "tags": []}, ("name",)),
        Route("GET", "/registered-models/get", {"name": model}, ("name",), {"name": "no-such-model"}),
        Route("PATCH", "/registered-models/update", {"name": model, "description": "d"}, ("name",),
              {"name": "no-such-model"}),
        Route("POST", "/registered-models/rename", {"name": model, "new_name": "never-renamed"}, ("name", "new_name"),
              {"name": "no-such-model"}),
        Route("DELETE", "/registered-models/delete", {"name": model}, ("name",), {"name": "no-such-model"}),
        Route("POST", "/registered-models/set-tag", {"name": model, "key": "k", "value": "v"}, ("name", "key"),
              {"name": "no-such-model"}, over=(("key", "k" * 251), ("value", "v" * 5001))),
        Route("DELETE", "/registered-models/delete-tag", {"name": model, "key": "team"}, ("name", "key"),
              {"name": "no-such-model", "key": "never-set"}),
        Route("GET", "/registered-models/search", {"filter": "", "max_results": 10}, ints=("max_results",),
              over=(("max_results", 1_000_001),)),
        Route("POST", "/registered-models/get-latest-versions", {"name": model, "stages": []}, ("name",),
              {"name": "no-such-model"}),
        Route("POST", "/registered-models/alias", {"name": model, "alias": "new", "version": version},
              ("name", "alias", "version"), {"name": "no-such-model", "version": "99"}),
        Route("DELETE", "/registered-models/alias", {"name": model, "alias": e.alias}, ("name", "alias"),
              {"name": "no-such-model", "alias": "never-set"}),
        Route("GET", "/registered-models/alias", {"name": model, "alias": e.alias}, ("name", "alias"),
              {"name": "no-such-model", "alias": "never-set"}),
        Route("POST", "/model-versions/create", {"name": model, "source": f"models:/{e.model_id}", "run_id": run},
              ("name", "source"), {"name": "no-such-model"}),
        Route("GET", "/model-versions/get", {"name": model, "version": version}, ("name", "version"),
              {"name": "no-such-model", "version": "99"}, ints=("version",)),
        Route("PATCH", "/model-versions/update", {"name": model, "version": version, "description": "d"},
              ("name", "version"), {"name": "no-such-model", "version": "99"}),
        Route("DELETE", "/model-versions/delete", {"name": model, "version": version}, ("name", "version"),
              {"name": "no-such-model", "version": "99"}),
        Route("POST", "/model-versions/set-tag", {"name": model, "version": version, "key": "k", "value": "v"},
              ("name", "version", "key"), {"name": "no-such-model", "version": "99"},
              over=(("key", "k" * 251), ("value", "v" * 5001))),
        Route("DELETE", "/model-versions/delete-tag", {"name": model, "version": version, "key": "stage"},
              ("name", "version", "key"), {"name": "no-such-model", "version": "99", "key": "never-set"}),
        Route("GET", "/model-versions/search", {"filter": "", "max_results": 10}, ints=("max_results",),
              over=(("max_results", 1_000_001),)),
        Route("GET", "/model-versions/get-download-uri", {"name": model, "version": version}, ("name", "version"),
              {"name": "no-such-model", "version": "99"}, ints=("version",)),
    ]


Variant = tuple[str, Any, str, int]  # (what, body or query, error_code, status)


def variants(route: Route) -> list[Variant]:
    """The bad requests made of `route.good`, one change each."""
    good = route.good
    found: list[Variant] = []
    if route.method != "GET":
        found += [("malformed JSON", b'{"run_id": "', "BAD_REQUEST", 400),
                  ("not an object", b"[1, 2]", "BAD_REQUEST", 400)]
    for name in good:
        if route.method != "GET":
            found.append((f"{name} of the wrong type", {**good, name: WRONG}, "INVALID_PARAMETER_VALUE", 400))
        elif name in route.ints:
            found.append((f"{name} not a number", {**good, name: "many"}, "INVALID_PARAMETER_VALUE", 400))
    for name in route.required:
        found.append((f"{name} missing", {k: v for k, v in good.items() if k != name}, "INVALID_PARAMETER_VALUE", 400))
    for name, unknown in route.ids.items():
        found.append((f"unknown {name}", {**good, name: unknown}, "RESOURCE_DOES_NOT_EXIST", 404))
    for name, value in route.over:
        found.append((f"{name} over its limit", {**good, name: value}, "INVALID_PARAMETER_VALUE", 400))
    return found


@pytest.fixture(scope="module")
def entities(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Entities]:
    """An experiment, a run, a logged model with files, a registered model with version 1 and an
    alias, each with a tag — what the variants name."""
    from mlflow import MlflowClient

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MLFLOW_")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        client = MlflowClient(tracking_uri=stack.web_url, registry_uri=stack.web_url)
        tag = os.urandom(4).hex()
        name = f"bad-input-{tag}"
        experiment_id = client.create_experiment(name, tags={"team": "a"})
        run_id = client.create_run(experiment_id, tags={"team": "a"}).info.run_id
        client.log_metric(run_id, "m", 1.0, timestamp=1, step=0)
        logged = client.create_logged_model(experiment_id, name="net", source_run_id=run_id)
        files = tmp_path_factory.mktemp("bad-input-model")
        (files / "weights.txt").write_text("w")
        client.log_model_artifacts(logged.model_id, str(files))
        model = f"bad-input-model-{tag}"
        client.create_registered_model(model, tags={"team": "a"})
        version = client.create_model_version(model, f"models:/{logged.model_id}", run_id=run_id,
                                              tags={"stage": "qa"})
        client.set_registered_model_alias(model, "champion", version.version)
        yield Entities(experiment_id, name, run_id, logged.model_id, model, version.version)
    finally:
        for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
            del os.environ[k]
        os.environ.update(saved)


# metric rows are counted for the variants' run only: other tests' runs on the shared stack (system
# metrics, buffered writers finishing) may still be writing theirs while this test runs
SCOPED_TO_RUN = ("metric_series", "metric_chunks")


def _counts(dsn: str, run_id: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow("SELECT " + ", ".join(
                f"(SELECT count(*) FROM {t}{' WHERE run_id = $1::uuid' if t in SCOPED_TO_RUN else ''}) AS {t}"
                for t in TABLES), run_id)
            return dict(row)
        finally:
            await conn.close()
    return asyncio.run(go())


def _state(http: httpx.Client, e: Entities) -> list[Any]:
    """The MLflow JSON of every entity the variants name."""
    reads = [("/runs/get", {"run_id": e.run_id}), ("/experiments/get", {"experiment_id": e.experiment_id}),
             ("/registered-models/get", {"name": e.model}),
             ("/model-versions/get", {"name": e.model, "version": e.version}),
             (f"/logged-models/{e.model_id}", {}),
             ("/metrics/get-history", {"run_id": e.run_id, "metric_key": "m"})]
    found = []
    for path, params in reads:
        response = http.get(API + path, params=params)
        assert response.status_code == 200, response.text
        found.append(response.json())
    return found


def _send(http: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    if method == "GET":
        return http.get(path, params=body)
    if isinstance(body, bytes):
        return http.request(method, path, content=body, headers={"content-type": "application/json"})
    return http.request(method, path, json=body)


def test_bad_input_on_every_endpoint_gets_mlflow_error_json_and_writes_nothing(
        entities: Entities, stack: EmbeddedStack) -> None:
    failures: list[str] = []
    sent = 0
    with httpx.Client(base_url=stack.web_url, timeout=30) as http:
        before = (_counts(stack.pg_dsn, entities.run_id), _state(http, entities))
        for route in routes(entities):
            path = API + route.path.replace("{model_id}", entities.model_id)
            cases = [(what, path, body, code, status) for what, body, code, status in variants(route)]
            if "{model_id}" in route.path:
                cases.append(("unknown logged model",
                              API + route.path.replace("{model_id}", f"m-{entities.run_id}-000000000000"),
                              route.good, "RESOURCE_DOES_NOT_EXIST", 404))
            for what, target, body, code, status in cases:
                response = _send(http, route.method, target, body)
                sent += 1
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                got = (response.status_code, answer.get("error_code") if isinstance(answer, dict) else None)
                if got != (status, code) or not (isinstance(answer, dict) and answer.get("message")):
                    failures.append(f"{route.method} {route.path}, {what}: {got} {response.text[:160]!r}, "
                                    f"expected {(status, code)}")
        after = (_counts(stack.pg_dsn, entities.run_id), _state(http, entities))
    assert sent > 250
    assert not failures, "\n".join(failures)
    assert after == before, "a refused request wrote something"


def test_json_that_only_pythons_parser_takes_is_still_taken(entities: Entities, stack: EmbeddedStack) -> None:
    """The body is parsed with orjson and, where orjson refuses, with json (protocol.py): bare NaN
    and Infinity literals (Python's json.dumps writes them) are metric values as MLflow's server
    takes them, and invalid JSON is still MLflow's 400."""
    metrics = ('[{"key": "literal", "value": NaN, "timestamp": 1, "step": 0}, '
               '{"key": "literal", "value": -Infinity, "timestamp": 2, "step": 1}, '
               '{"key": "literal", "value": 0.5, "timestamp": 3, "step": 2}]')
    body = f'{{"run_id": "{entities.run_id}", "metrics": {metrics}}}'
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=stack.web_url, timeout=30) as http:
        logged = http.post(f"{API}/runs/log-batch", content=body, headers=headers)
        bad = http.post(f"{API}/runs/log-batch", content=body[:-2], headers=headers)
        history = http.get(f"{API}/metrics/get-history", params={"run_id": entities.run_id, "metric_key": "literal"})
    assert logged.status_code == 200, logged.text
    assert (bad.status_code, bad.json()["error_code"]) == (400, "BAD_REQUEST")
    assert [(m["step"], m["value"]) for m in history.json()["metrics"]] == [(0, "NaN"), (1, "-Infinity"), (2, 0.5)]
