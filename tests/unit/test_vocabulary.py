"""The one vocabulary (trackd_platform.vocabulary) against the protos, and the SDK's and the
services' names for statuses, contexts and states, which must be the vocabulary's."""

from __future__ import annotations

import enum

import pytest
import trackd.hpo
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from trackd import _metrics, _query, _run
from trackd.errors import InvalidArgument
from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform import metric_series, run_records
from trackd_platform.vocabulary import (
    CLIENT_END_STATUSES,
    CONTEXT_NUMBERS,
    CONTEXTS,
    MetricContext,
    RunStatus,
    StudyState,
    TrialState,
)

PAIRS = [(RunStatus, run_pb2.RunStatus, "RUN_STATUS_"), (StudyState, hpo_pb2.StudyState, "STUDY_STATE_"),
         (TrialState, hpo_pb2.TrialState, "TRIAL_STATE_")]


@pytest.mark.parametrize(("vocabulary", "proto", "prefix"), PAIRS, ids=lambda p: getattr(p, "__name__", ""))
def test_every_proto_value_but_unspecified_is_a_member_of_the_same_name(
    vocabulary: type[enum.IntEnum], proto: EnumTypeWrapper, prefix: str
) -> None:
    expected = {name.removeprefix(prefix): number for name, number in proto.items() if number != 0}
    assert {m.name: m.value for m in vocabulary} == expected


def test_metric_contexts_match_the_proto_and_their_names() -> None:
    assert [int(c) for c in MetricContext] == sorted(ingest_pb2.MetricContext.values())
    assert CONTEXTS == {0: "", 1: "train", 2: "eval", 3: "test"}
    assert CONTEXT_NUMBERS == {name: number for number, name in CONTEXTS.items()}
    assert MetricContext.EVAL.proto == ingest_pb2.METRIC_CONTEXT_EVAL


def test_a_member_goes_into_a_message_as_its_proto_value() -> None:
    request = run_pb2.EndRunRequest(run_id="r", status=RunStatus.KILLED.proto)
    assert request.status == run_pb2.RUN_STATUS_KILLED
    assert RunStatus(request.status) is RunStatus.KILLED


def test_terminal_statuses_and_what_a_client_may_end_with() -> None:
    assert [s.name for s in RunStatus if not s.terminal] == ["RUNNING"]
    assert CLIENT_END_STATUSES == {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED}
    assert {s.name for s in TrialState if s.ended} == {"COMPLETE", "PRUNED", "FAIL"}
    assert {s.name for s in StudyState if s.ended} == {"STOPPED", "FINISHED"}


def test_the_read_models_re_export_the_vocabulary() -> None:
    assert run_records.RunStatus is RunStatus
    assert metric_series.CONTEXTS is CONTEXTS


def test_the_sdk_status_names_round_trip() -> None:
    assert _run.STATUSES == ("RUNNING", "FINISHED", "FAILED", "KILLED", "CRASHED")
    for status in RunStatus:
        assert _run._status(status.name.lower()) is status
        info = _run.RunInfo.from_proto(run_pb2.Run(id="r", status=status.proto))
        assert info.status == status.name
    with pytest.raises(ValueError, match="status must be one of RUNNING, FINISHED"):
        _run._status("DONE")


def test_the_sdk_contexts_round_trip() -> None:
    for context in (None, "", "train", "eval", "test"):
        code = _metrics.context_code(context)
        assert isinstance(code, int) and type(code) is int
        assert CONTEXTS[code] == (context or "")
    assert _query.metric_name("loss", MetricContext.EVAL) == "loss@eval"
    assert _query.metric_name("loss", 0) == "loss"
    with pytest.raises(InvalidArgument, match="context must be None"):
        _metrics.context_code("validation")


def test_the_sdk_trial_and_study_state_names() -> None:
    assert trackd.hpo.STATES == {0: "UNSPECIFIED", 1: "WAITING", 2: "RUNNING", 3: "COMPLETE", 4: "PRUNED", 5: "FAIL"}
    assert trackd.hpo.STUDY_STATES == {0: "UNSPECIFIED", 1: "CREATED", 2: "RUNNING", 3: "PAUSED", 4: "STOPPED",
                                       5: "FINISHED"}
    trial = trackd.hpo.TrialInfo.from_proto(hpo_pb2.Trial(id="t", state=hpo_pb2.TRIAL_STATE_PRUNED))
    assert trial.state == TrialState.PRUNED.name
