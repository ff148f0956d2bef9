"""OpenTelemetry: the tracer provider, and trace context in NATS headers.

Spans follow the messaging semantic conventions: span names carry the subject *template*
(low cardinality), attributes carry the concrete subject, message id, event type, aggregate id
and jurisdiction. Trace context travels as W3C ``traceparent``/``tracestate`` headers, injected
and extracted with OpenTelemetry's own propagator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

TRACER_NAME = "duban"


def setup_tracing(
    service: str,
    jurisdiction: str,
    *,
    processors: list[SpanProcessor] | None = None,
    trace_dir: Path | None = None,
    worker: int = 0,
) -> TracerProvider:
    """Install a tracer provider for this process.

    Exports over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; writes finished spans to
    ``trace_dir`` (``tracefile.py``: what ``duban trace`` reads on the embedded default) when
    given (a file per process: ``worker`` is its index among the service's HTTP processes);
    ``processors`` adds others (tests pass an in-memory exporter).
    """
    provider = TracerProvider(
        # Every span recorded, whatever a caller's ``traceparent`` says of its own sampling: the
        # SDK's default (parent-based) would record nothing of a matter whose first request came
        # with "not sampled" from another system, at any level, since its journey carries that
        # context on. ``OTEL_TRACES_SAMPLER``, when an operator sets it, still decides.
        sampler=None if os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_ON,
        resource=Resource.create(
            {
                "service.name": f"duban-{service}",
                "service.namespace": "duban",
                "duban.jurisdiction": jurisdiction,
            }
        ),
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if trace_dir is not None:
        from .tracefile import FileSpanExporter, trace_file

        exporter = FileSpanExporter(trace_file(trace_dir, service, jurisdiction, worker))
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in processors or ():
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


@cache
def tracer() -> trace.Tracer:
    """duban's tracer, got once (``get_tracer`` builds a new one at each call, ~20 µs): one got
    before the provider is installed is a proxy that uses the provider once there is one."""
    return trace.get_tracer(TRACER_NAME)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context to NATS headers (and return them)."""
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context a message carries (an empty context when it carries none).

    Read once per distinct value of the propagator's fields (``traceparent``, ``tracestate``,
    ``baggage`` with the default propagators): the projections of a service each read the same
    commit's headers, and a context is immutable, so they share one."""
    propagator = propagate.get_global_textmap()
    headers = headers or {}
    return _extracted(propagator, tuple((name, headers.get(name)) for name in _fields(propagator)))


@cache
def _fields(propagator: TextMapPropagator) -> tuple[str, ...]:
    """The headers ``propagator`` reads (its ``fields``, a set it builds at each call)."""
    return tuple(sorted(propagator.fields))


@lru_cache(maxsize=1024)
def _extracted(propagator: TextMapPropagator, fields: tuple[tuple[str, str | None], ...]) -> otel_context.Context:
    return propagator.extract({name: value for name, value in fields if value is not None})


@contextmanager
def continue_journey(journey: Mapping[str, str], name: str, attributes: Mapping[str, str]) -> Iterator[trace.Span]:
    """A span for a command on an aggregate, in the trace of the aggregate's journey.

    A matter's journey (submitted, escalated, taken in at the next level, routed, its case
    assigned, replied, closed, reported back) is one trace: the first event of each aggregate
    stores the trace context it was appended in (``Aggregate.journey``), and every later command
    on it runs in a span whose parent is that context, linked to the span that asked for it (an
    HTTP request, a delivery) so the request's own trace still leads here. A new aggregate, or
    one whose journey is the current trace already, gets an ordinary child span.
    """
    current = trace.get_current_span().get_span_context()
    parent = extract_context(journey) if journey else None
    origin = trace.get_current_span(parent).get_span_context() if parent is not None else None
    if origin is None or not origin.is_valid or origin.trace_id == current.trace_id:
        with tracer().start_as_current_span(name, attributes=dict(attributes)) as span:
            yield span
        return
    links = [trace.Link(current, {"duban.link": "requested by"})] if current.is_valid else []
    with tracer().start_as_current_span(name, context=parent, links=links, attributes=dict(attributes)) as span:
        yield span


def current_trace_context() -> dict[str, str]:
    """The current context as a W3C carrier, for storing in an envelope."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
