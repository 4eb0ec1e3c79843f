"""The pure parts of the MLflow artifact proxy, logged models and registry: where an MLflow
artifact path lives in trackd, logged model ids, and the registry's filter grammar."""

from __future__ import annotations

import pytest
from trackd_services.web.mlflow.artifacts import Location, parse_location, parse_uri
from trackd_services.web.mlflow.models import run_of
from trackd_services.web.mlflow.protocol import MlflowError
from trackd_services.web.mlflow.registry import matches, parse_filter

RUN = "0123456789abcdef0123456789abcdef"


def test_artifact_paths_name_a_run_and_a_path_inside_it() -> None:
    assert parse_location(f"7/{RUN}/artifacts/model/MLmodel") == Location("7", RUN, "model/MLmodel")
    assert parse_location(f"7/{RUN}/artifacts", allow_root=True).path == ""
    assert parse_uri(f"mlflow-artifacts:/7/{RUN}/artifacts/models/m") == Location("7", RUN, "models/m")
    assert parse_uri(f"http://h:8080/api/2.0/mlflow-artifacts/artifacts/7/{RUN}/artifacts/x").path == "x"
    assert parse_uri(f"mlflow-artifacts://host:5000/7/{RUN}/artifacts/x").run_id == RUN
    assert Location("7", RUN, "a/b").uri == f"mlflow-artifacts:/7/{RUN}/artifacts/a/b"


@pytest.mark.parametrize("path", [
    f"7/{RUN}/artifacts", f"7/{RUN}/other/x", "7/not-a-run/artifacts/x", f"7/{RUN}/artifacts/a/../b",
    f"7/{RUN}/artifacts/a//b", f"7/{RUN}/artifacts/a\\b", "x",
])
def test_bad_artifact_paths_are_invalid_parameter_values(path: str) -> None:
    with pytest.raises(MlflowError) as caught:
        parse_location(path)
    assert caught.value.code == "INVALID_PARAMETER_VALUE"


def test_a_source_trackd_does_not_hold_is_refused() -> None:
    for uri in ("s3://bucket/model", "/tmp/model", "runs:/x/model"):
        with pytest.raises(MlflowError):
            parse_uri(uri)


def test_a_logged_model_id_names_its_run() -> None:
    assert run_of(f"m-{RUN}-0123456789ab") == RUN
    for bad in ("m-123", f"m-{RUN}", f"m-{RUN}-0123456789aZ", f"x-{RUN}-0123456789ab"):
        with pytest.raises(MlflowError) as caught:
            run_of(bad)
        assert caught.value.code == "RESOURCE_DOES_NOT_EXIST"


def test_registry_filters() -> None:
    prompts = parse_filter("name = 'a' AND tag.`mlflow.prompt.is_prompt` != 'true'", ("name",))
    assert prompts == [("name", "=", "a"), ("tags.mlflow.prompt.is_prompt", "!=", "true")]
    assert matches(prompts, {"name": "a"}, {})
    assert not matches(prompts, {"name": "a"}, {"mlflow.prompt.is_prompt": "true"})
    assert not matches(prompts, {"name": "b"}, {})
    like = parse_filter("name ILIKE '%Sent_ment%'", ("name",))
    assert matches(like, {"name": "bert-sentiment-v2"}, {}) and not matches(like, {"name": "bert"}, {})
    assert matches(parse_filter("name LIKE 'a%'", ("name",)), {"name": "abc"}, {})
    assert not matches(parse_filter("name LIKE 'A%'", ("name",)), {"name": "abc"}, {}), "LIKE is case-sensitive"
    versions = parse_filter(f"name='m' and run_id = '{RUN}'", ("name", "run_id", "source_path"))
    assert versions == [("name", "=", "m"), ("run_id", "=", RUN)]
    assert parse_filter("", ("name",)) == []


@pytest.mark.parametrize("text", ["metrics.x > 1", "name = unquoted", "run_id LIKE '%x%'", "user = 'me'",
                                  "name = 'a' OR name = 'b'"])
def test_unsupported_filters_are_invalid(text: str) -> None:
    with pytest.raises(MlflowError) as caught:
        parse_filter(text, ("name", "run_id"))
    assert caught.value.code == "INVALID_PARAMETER_VALUE"
