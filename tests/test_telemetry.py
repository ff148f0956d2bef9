"""Trace context crosses NATS: a projector's span joins the trace of the append it applies, or
links to the appends of its batch."""

from __future__ import annotations

import io
import json
import logging

import nats
from opentelemetry.trace import SpanKind

from contracts import subjects
from contracts.envelope import new_id
from services.runtime.es.eventstore import EventStore
from services.runtime.observe.logs import setup_logging
from services.runtime.observe.telemetry import tracer
from tests.support.sample import Counter, counter_projector

JURISDICTION = "331081"


async def test_the_consumer_span_is_a_child_of_the_append_span(nc, nats_url, unique, spans, engine):
    spans.clear()
    store = EventStore(nc, context=unique, jurisdiction=JURISDICTION)
    await store.ensure_streams()
    counter = Counter(id=new_id())
    with tracer().start_as_current_span("command sample.Open") as command:
        await store.append(counter, counter.open("traced"))

    other = await nats.connect(nats_url)  # the consumer is another connection, as in another process
    try:
        projector = counter_projector(other, engine, context=unique, jurisdiction=JURISDICTION)
        await projector.prepare()
        await projector.catch_up()
        await projector.close()
    finally:
        await other.close()

    finished = spans.get_finished_spans()
    producer = next(
        s for s in finished if s.kind is SpanKind.PRODUCER and s.attributes["duban.aggregate.id"] == counter.id
    )
    consumer = next(
        s for s in finished if s.kind is SpanKind.CONSUMER and s.attributes["duban.aggregate.id"] == counter.id
    )
    assert producer.context.trace_id == command.get_span_context().trace_id
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == producer.context.span_id
    # low-cardinality names: the subject template, not the aggregate's subject
    assert producer.name == f"publish duban.evt.{unique}.{{jurisdiction}}.{{aggregate_id}}"
    assert consumer.name == f"process duban.evt.{unique}.{{jurisdiction}}.{{aggregate_id}}"
    assert producer.attributes["messaging.system"] == "nats"
    assert consumer.attributes["messaging.destination.name"] == subjects.event_subject(unique, JURISDICTION, counter.id)


async def test_a_batch_of_events_is_one_consumer_span_linked_to_each_append(nc, nats_url, unique, spans, engine):
    """The messaging conventions' batch: one span for a projection batch (a trace of its own),
    linked to each append it applied, 128 links a span at most (the SDK's limit): 300 events in
    one batch are three spans, not 300."""
    spans.clear()
    store = EventStore(nc, context=unique, jurisdiction=JURISDICTION)
    await store.ensure_streams()
    appends = set()
    for _ in range(300):
        counter = Counter(id=new_id())
        with tracer().start_as_current_span("command sample.Open") as command:
            await store.append(counter, counter.open("traced"))
        appends.add(command.get_span_context().trace_id)

    other = await nats.connect(nats_url)
    try:
        projector = counter_projector(other, engine, context=unique, jurisdiction=JURISDICTION)
        await projector.prepare()
        assert await projector.step(timeout=5) == 300  # one batch
        await projector.close()
    finally:
        await other.close()

    consumers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert sorted(s.attributes["messaging.batch.message_count"] for s in consumers) == [44, 128, 128]
    assert all(
        s.parent is None and s.name == f"process duban.evt.{unique}.{{jurisdiction}}.{{aggregate_id}}"
        for s in consumers
    )
    linked = [link.context for s in consumers for link in s.links]
    producers = {s.context.span_id for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER}
    assert len(linked) == 300 and {c.span_id for c in linked} == producers
    assert {c.trace_id for c in linked} == appends


def test_log_lines_are_json_with_the_trace_id(spans):
    out = io.StringIO()
    setup_logging(stream=out)
    with tracer().start_as_current_span("logged") as span:
        logging.getLogger("duban.test").info("matter registered", extra={"matter_id": "m1"})
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["msg"] == "matter registered" and line["matter_id"] == "m1"
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
