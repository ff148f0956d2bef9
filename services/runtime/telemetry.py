"""OpenTelemetry: the tracer provider, and trace context in NATS headers.

Spans follow the messaging semantic conventions: span names carry the subject *template*
(low cardinality), attributes carry the concrete subject, message id, event type, aggregate id
and jurisdiction. Trace context travels as W3C ``traceparent``/``tracestate`` headers, injected
and extracted with OpenTelemetry's own propagator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TRACER_NAME = "duban"


def setup_tracing(service: str, jurisdiction: str, *, processors: list[SpanProcessor] | None = None) -> TracerProvider:
    """Install a tracer provider for this process.

    Exports over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; ``processors`` adds
    others (tests pass an in-memory exporter).
    """
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": f"duban-{service}",
                "service.namespace": "duban",
                "duban.jurisdiction": jurisdiction,
            }
        )
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    for processor in processors or ():
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context to NATS headers (and return them)."""
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context a message carries (an empty context when it carries none)."""
    return propagate.extract(dict(headers or {}))


def current_trace_context() -> dict[str, str]:
    """The current context as a W3C carrier, for storing in an envelope."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
