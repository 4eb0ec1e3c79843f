"""OpenTelemetry set-up shared by every service, and the W3C trace-context helpers the outbox
uses to carry a request's trace into its Kafka message."""

from __future__ import annotations

import logging

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from trackd_platform.config import TelemetrySettings

log = logging.getLogger(__name__)


def setup_tracing(settings: TelemetrySettings) -> TracerProvider:
    """Install a tracer provider (OTLP export when an endpoint is configured) and instrument
    asyncpg and redis. gRPC is instrumented by the server bootstrap's interceptor; Kafka by the
    outbox relay, which must continue the trace of the transaction that wrote the event rather
    than the relay's own context."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        log.info("exporting traces to %s", settings.otlp_endpoint)
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    return provider


def current_traceparent() -> str:
    """The current context as a W3C `traceparent` value, or "" outside any trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context:
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else "-"
