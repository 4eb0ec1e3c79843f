"""The trackd ids on RPC spans, continuing a trace from a Kafka message, and the run.ended status
the outbox relay counts. Spans go to an in-memory exporter of a local tracer provider (the global
one is left alone)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trackd_api.events.v1 import events_pb2
from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.ingest.v1 import ingest_pb2
from trackd_api.query.v1 import query_pb2
from trackd_api.run.v1 import run_pb2
from trackd_platform import telemetry
from trackd_platform.outbox import ended_status
from trackd_platform.telemetry import (
    EXPERIMENT_ID,
    MAX_LISTED_IDS,
    RUN_ID,
    RUN_IDS,
    STUDY_ID,
    TRIAL_ID,
    rpc_attributes,
)


def _tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_requests_name_their_run_study_and_trial() -> None:
    assert rpc_attributes(run_pb2.EndRunRequest(run_id="r1")) == {RUN_ID: "r1"}
    assert rpc_attributes(hpo_pb2.AcquireTrialRequest(study_id="s1", worker="w")) == {STUDY_ID: "s1"}
    assert rpc_attributes(hpo_pb2.HeartbeatTrialRequest(trial_id="t1")) == {TRIAL_ID: "t1"}
    assert rpc_attributes(ingest_pb2.StreamMetricsRequest(run_id="r2", sequence=1)) == {RUN_ID: "r2"}


def test_responses_name_what_the_call_created() -> None:
    started = run_pb2.StartRunResponse(run=run_pb2.Run(id="r1", experiment_id="e1", name="n"))
    assert rpc_attributes(started) == {RUN_ID: "r1", EXPERIMENT_ID: "e1"}
    acquired = hpo_pb2.AcquireTrialResponse(
        trial=hpo_pb2.Trial(id="t1", study_id="s1", run_id="r9"), study=hpo_pb2.Study(id="s1")
    )
    assert rpc_attributes(acquired) == {TRIAL_ID: "t1", STUDY_ID: "s1", RUN_ID: "r9"}


def test_lists_of_runs_are_not_taken_for_the_subject_and_run_ids_are_bounded() -> None:
    assert rpc_attributes(run_pb2.ListRunsResponse(runs=[run_pb2.Run(id="a"), run_pb2.Run(id="b")])) == {}
    many = [f"r{i}" for i in range(MAX_LISTED_IDS + 50)]
    assert rpc_attributes(query_pb2.CompareRunsRequest(run_ids=many)) == {RUN_IDS: many[:MAX_LISTED_IDS]}
    assert rpc_attributes(object()) == {}  # a request stream, not a message
    assert rpc_attributes(run_pb2.EndRunRequest()) == {}  # unset fields name nothing


def test_annotate_current_span_sets_the_ids_on_the_rpc_span() -> None:
    tracer, exporter = _tracer()
    with tracer.start_as_current_span("/trackd.run.v1.RunService/EndRun"):
        telemetry.annotate_current_span(run_pb2.EndRunRequest(run_id="r1"))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes[RUN_ID] == "r1"


def test_continue_trace_joins_the_trace_of_the_message() -> None:
    tracer, exporter = _tracer()
    with tracer.start_as_current_span("StartRun") as producer:
        traceparent = telemetry.current_traceparent()
    # the consumer side, later, with no context of its own
    with tracer.start_as_current_span("unrelated"):
        pass
    with telemetry.continue_trace(
        {"traceparent": traceparent}, "run.ended process", attributes={RUN_ID: "r1"}, tracer=tracer
    ):
        pass
    spans = {span.name: span for span in exporter.get_finished_spans()}
    consumer = spans["run.ended process"]
    assert consumer.context.trace_id == producer.get_span_context().trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.get_span_context().span_id
    assert consumer.kind == trace.SpanKind.CONSUMER
    assert consumer.attributes is not None and consumer.attributes[RUN_ID] == "r1"
    assert spans["unrelated"].context.trace_id != consumer.context.trace_id


def test_continue_trace_without_a_header_starts_a_new_trace() -> None:
    tracer, exporter = _tracer()
    with tracer.start_as_current_span("outer"), telemetry.continue_trace({}, "orphan", tracer=tracer):
        pass
    spans = {span.name: span for span in exporter.get_finished_spans()}
    # a message without trace context does not join whatever the consumer loop was doing
    assert spans["orphan"].parent is None


def test_ended_status_reads_the_run_ended_payload() -> None:
    for status, name in ((run_pb2.RUN_STATUS_FAILED, "FAILED"), (run_pb2.RUN_STATUS_CRASHED, "CRASHED"),
                         (run_pb2.RUN_STATUS_FINISHED, "FINISHED")):
        assert ended_status(events_pb2.RunEnded(run_id="r", status=status).SerializeToString()) == name
    assert ended_status(b"\xff\xff\xff") == "UNKNOWN"
