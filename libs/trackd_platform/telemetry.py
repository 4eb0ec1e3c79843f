"""OpenTelemetry set-up shared by every service: the tracer provider, the instrumentation of
asyncpg, Redis and Kafka, the trackd ids carried by each RPC span, and the W3C trace-context
helpers the outbox uses to carry a request's trace into its Kafka message."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from trackd_platform.config import TelemetrySettings

log = logging.getLogger(__name__)

# Span attributes naming the trackd objects an RPC is about (searchable in Jaeger: trackd.run_id=…).
RUN_ID = "trackd.run_id"
STUDY_ID = "trackd.study_id"
TRIAL_ID = "trackd.trial_id"
EXPERIMENT_ID = "trackd.experiment_id"
RUN_IDS = "trackd.run_ids"
MAX_LISTED_IDS = 100  # a span lists at most this many of a request's run ids

# Request fields that hold an id, by name, in any trackd request message.
_ID_FIELDS = {"run_id": RUN_ID, "study_id": STUDY_ID, "trial_id": TRIAL_ID, "experiment_id": EXPERIMENT_ID}
# Messages (in requests or responses) that carry an id under the field `id`.
_ID_OF_MESSAGE = {
    "trackd.run.v1.Run": RUN_ID,
    "trackd.run.v1.Experiment": EXPERIMENT_ID,
    "trackd.hpo.v1.Study": STUDY_ID,
    "trackd.hpo.v1.Trial": TRIAL_ID,
}


def setup_tracing(settings: TelemetrySettings, *, processors: Iterable[SpanProcessor] = ()) -> TracerProvider:
    """Install a tracer provider (OTLP export when an endpoint is configured, plus `processors`)
    and instrument aiokafka, and asyncpg and redis when spans go somewhere. gRPC is instrumented
    by the server bootstrap's interceptor. The aiokafka instrumentation gives every message sent a producer span and its
    `traceparent` header, and every message received a consumer span continuing that trace."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    processors = list(processors)
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        log.info("exporting traces to %s", settings.otlp_endpoint)
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    if processors:  # a span per query or Redis command is pure overhead when no one receives it
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        AsyncPGInstrumentor().instrument(tracer_provider=provider)
        RedisInstrumentor().instrument(tracer_provider=provider)
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)  # traceparent headers travel either way
    return provider


def kafka_instrumented() -> bool:
    """Whether sends get their `traceparent` header from the aiokafka instrumentation."""
    return bool(AIOKafkaInstrumentor().is_instrumented_by_opentelemetry)


def current_traceparent() -> str:
    """The current context as a W3C `traceparent` value, or "" outside any trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context:
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


@contextmanager
def continue_trace(
    headers: Mapping[str, str], name: str, *, attributes: Mapping[str, str] | None = None,
    tracer: trace.Tracer | None = None,
) -> Iterator[trace.Span]:
    """A current CONSUMER span continuing the trace of a message's `traceparent` header (a new
    trace without one), for the work a consumer does on one message: its database calls then join
    the producer's trace. `headers` as `kafka.to_event` decodes them."""
    parent = context_from_traceparent(headers.get("traceparent", ""))
    tracer = tracer or trace.get_tracer(__name__)
    with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.CONSUMER,
                                      attributes=dict(attributes or {})) as span:
        yield span


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else "-"


def rpc_attributes(message: Any) -> dict[str, str | list[str]]:
    """The trackd ids a request or response names, as span attributes: top-level `run_id`,
    `study_id`, `trial_id`, `experiment_id` fields, `run_ids` lists (up to MAX_LISTED_IDS), and the
    `id` of a Run, Experiment, Study or Trial message field (e.g. StartRun's new run)."""
    found: dict[str, str | list[str]] = {}
    if not isinstance(message, Message):
        return found
    for field, value in message.ListFields():
        if field.name in _ID_FIELDS and isinstance(value, str):
            found.setdefault(_ID_FIELDS[field.name], value)
        elif field.name == "run_ids" and field.type == field.TYPE_STRING:
            found[RUN_IDS] = list(value)[:MAX_LISTED_IDS]
        elif field.message_type is not None and field.message_type.full_name in _ID_OF_MESSAGE:
            if not field.is_repeated:  # one Run / Study / Trial is what the RPC is about; a list is not
                for attribute, id_ in _ids_of(value).items():
                    found.setdefault(attribute, id_)
    return found


def _ids_of(message: Message) -> dict[str, str]:
    """The ids of one Run / Experiment / Study / Trial message: its own and those it refers to."""
    found = {}
    if own := getattr(message, "id", ""):
        found[_ID_OF_MESSAGE[message.DESCRIPTOR.full_name]] = own
    for name, attribute in _ID_FIELDS.items():
        value = getattr(message, name, "") if name in message.DESCRIPTOR.fields_by_name else ""
        if value:
            found.setdefault(attribute, value)
    return found


def annotate_current_span(message: Any) -> None:
    """Set rpc_attributes(message) on the current span (the RPC's server span in a servicer)."""
    span = trace.get_current_span()
    if span.is_recording():
        attributes = rpc_attributes(message)
        if attributes:
            span.set_attributes(attributes)
