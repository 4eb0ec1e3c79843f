"""The pure parts of the MLflow tracking API: experiment names and projects, metric keys with a
context, the run JSON MLflow's client parses, datasets kept as run tags, and search-experiments'
filter and order_by."""

from __future__ import annotations

import json
import math

import pytest
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_services.web.mlflow import convert
from trackd_services.web.mlflow.experiments import parse_filter, parse_order
from trackd_services.web.mlflow.protocol import MlflowError


def test_experiment_names_carry_their_project() -> None:
    assert convert.split_name("llm/lr-sweep") == ("llm", "lr-sweep")
    assert convert.split_name("lr-sweep") == ("default", "lr-sweep")
    assert convert.split_name("/odd") == ("default", "/odd") and convert.split_name("a/") == ("default", "a/")
    assert convert.join_name("default", "x") == "x" and convert.join_name("llm", "x") == "llm/x"


def test_metric_keys_spell_a_context_as_the_search_grammar_does() -> None:
    assert convert.metric_name("loss", 2) == "loss@eval" and convert.metric_name("loss", 0) == "loss"
    assert convert.parse_metric_name("loss@eval") == ("loss", 2)
    assert convert.parse_metric_name("a@b") == ("a@b", 0)


def test_run_json_has_mlflow_fields_system_tags_and_datasets() -> None:
    run = run_pb2.Run(id="ab" * 16, experiment_id="cd" * 16, name="r", status=run_pb2.RUN_STATUS_CRASHED,
                      user="ann", parent_run_id="ef" * 16, params={"lr": "0.1"}, tags={"team": "x"})
    run.start_time.FromMilliseconds(1_000)
    key, value = convert.dataset_tag({"dataset": {"name": "iris", "digest": "d1", "source_type": "local",
                                                  "source": "{}", "schema": "s" * 6000}, "tags": []})
    run.tags[key] = value
    found = convert.run_json(run, [query_pb2.LatestMetric(key="loss", value=math.nan, step=3, timestamp_ms=7)])
    info = found["info"]
    assert info["status"] == "FAILED" and info["start_time"] == 1000 and info["end_time"] is None
    assert info["artifact_uri"] == f"mlflow-artifacts:/{'cd' * 16}/{'ab' * 16}/artifacts"
    assert found["data"]["metrics"] == [{"key": "loss", "value": "NaN", "timestamp": 7, "step": 3}]
    tags = {t["key"]: t["value"] for t in found["data"]["tags"]}
    assert tags == {"team": "x", "mlflow.runName": "r", "mlflow.user": "ann", "mlflow.parentRunId": "ef" * 16}
    [dataset] = found["inputs"]["dataset_inputs"]
    assert dataset["dataset"]["name"] == "iris" and "schema" not in dataset["dataset"]  # too long: dropped
    json.dumps(found, allow_nan=False)


def test_bad_values_are_invalid_parameter_value() -> None:
    for call in (lambda: convert.check_key("param", "k" * 251), lambda: convert.check_key("tag", ""),
                 lambda: convert.check_value("param", "k", "v" * 6001, convert.PARAM_VALUE_MAX),
                 lambda: convert.metric_value("m", "high"), lambda: convert.integer("step", 1.5),
                 lambda: convert.from_millis(10**18), lambda: convert.dataset_tag({"dataset": {"name": "x"}})):
        with pytest.raises(MlflowError) as refused:
            call()
        assert refused.value.code == "INVALID_PARAMETER_VALUE"


def test_search_experiments_filter_and_order() -> None:
    experiments = [{"name": "bert-base", "creation_time": 5, "tags": [{"key": "team", "value": "nlp"}]},
                   {"name": "resnet", "creation_time": 9, "tags": []}]
    [like, tag] = parse_filter("name LIKE 'bert%' AND tags.`team` = 'nlp'")
    assert [e["name"] for e in experiments if like(e) and tag(e)] == ["bert-base"]
    [newer] = parse_filter("attributes.creation_time > 6")
    assert [e["name"] for e in experiments if newer(e)] == ["resnet"]
    [ilike] = parse_filter("name ILIKE 'RES%'")
    assert [e["name"] for e in experiments if ilike(e)] == ["resnet"]
    assert parse_order("creation_time DESC") == ("creation_time", True) and parse_order("name") == ("name", False)
    for bad in ("name ~ 'x'", "creation_time LIKE 'x'", "name > 'a'", "size = 1"):
        with pytest.raises(MlflowError):
            parse_filter(bad)
    with pytest.raises(MlflowError):
        parse_order("size")


def test_mlflow_search_syntax_becomes_trackds_grammar() -> None:
    cases = {
        "status = 'FAILED' and params.status = 'x'": "attributes.status = 'FAILED' and params.status = 'x'",
        "parameters.lr = '0.1' AND run.run_name = 'a'": "params.lr = '0.1' AND attributes.run_name = 'a'",
        "tags.`status` = 'status = 1'": "tags.`status` = 'status = 1'",
        "metrics.my-status > 1 or metrics.a/start_time < 2": "metrics.my-status > 1 or metrics.a/start_time < 2",
        "start_time DESC": "attributes.start_time DESC",
        "attribute.created ASC": "attributes.start_time ASC",
        "run_id IN ('a', 'b')": "attributes.run_id IN ('a', 'b')",
        "attributes.status != 'RUNNING'": "attributes.status != 'RUNNING'",
    }
    for mlflow_syntax, trackd_syntax in cases.items():
        assert convert.search_syntax(mlflow_syntax) == trackd_syntax
