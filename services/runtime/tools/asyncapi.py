"""The runtime's own channels, declared on a FastStream broker for the AsyncAPI document only.

The event store, the outbox and the dead-letter stream publish with nats-py directly, so no
FastStream publisher exists for them at run time. This broker declares them (never connected)
so that the generated AsyncAPI document shows every subject duban writes to, next to the
subscribers and publishers of the services (see ``services.runtime.tools.schema_export``).
"""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker

from contracts.envelope import EVENT_TYPES_HEADER, PREVIOUS_SEQUENCE_HEADER, Envelope
from contracts.subjects import CONTEXTS, event_subject_template

#: Subject templates of the channels that are not per context.
OUTBOX_SUBJECT_TEMPLATE = "duban.x.{to}.{from}.{kind}"
DEADLETTER_SUBJECT_TEMPLATE = "duban.dlq.{jurisdiction}.{context}.{consumer}"

_STRING = {"type": "string"}

#: The headers of a stored commit (set by ``services.runtime.es.eventstore``).
COMMIT_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {**_STRING, "description": "event_id of the first event: JetStream de-duplicates retries"},
        "Nats-Expected-Last-Subject-Sequence": {
            **_STRING,
            "description": "stream sequence of the aggregate's last commit (optimistic concurrency)",
        },
        EVENT_TYPES_HEADER: {**_STRING, "description": "event types of the commit, comma-separated, in order"},
        PREVIOUS_SEQUENCE_HEADER: {
            **_STRING,
            "description": "stream sequence of the aggregate's previous commit, 0 for the first",
        },
        "traceparent": {**_STRING, "description": "W3C trace context of the command that produced the events"},
        "tracestate": {**_STRING, "description": "W3C trace state, when there is one"},
    },
    "required": ["Nats-Msg-Id", EVENT_TYPES_HEADER, PREVIOUS_SEQUENCE_HEADER],
}

#: The headers of a dead letter: the original ones (its ``Nats-*`` headers renamed
#: ``Duban-Original-Nats-*``, which JetStream would refuse or act on) plus these.
DEADLETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {**_STRING, "description": "dlq:<stream>:<sequence>:<consumer>, so a message is stored once"},
        "Duban-Original-Subject": {**_STRING, "description": "subject the message was delivered on"},
        "Duban-Original-Stream": {**_STRING, "description": "stream the message came from"},
        "Duban-Original-Seq": {**_STRING, "description": "its sequence in that stream"},
        "Duban-Consumer": {**_STRING, "description": "durable consumer that failed to handle it"},
        "Duban-Attempts": {**_STRING, "description": "number of deliveries before it was dead-lettered"},
        "Duban-Error": {**_STRING, "description": "the last error, one line, ASCII (JSON string escapes)"},
        "traceparent": {**_STRING, "description": "W3C trace context, copied from the original"},
        "Duban-Original-Nats-Msg-Id": {**_STRING, "description": "the original's Nats-Msg-Id, if it had one"},
        "Duban-Original-Nats-Stream-Source": {
            **_STRING,
            "description": "the original's Nats-Stream-Source, when it came into an INBOX by sourcing",
        },
    },
    "required": ["Nats-Msg-Id", "Duban-Original-Subject", "Duban-Consumer", "Duban-Error"],
}


def event_channel_title(context: str) -> str:
    return f"{context} events"


OUTBOX_TITLE = "integration events"
DEADLETTER_TITLE = "dead letters"

#: The correlation id of a commit is in its envelopes (these messages carry no correlation header).
_CORRELATION_ID = {"location": "$message.payload#/0/correlation_id", "description": "the command's correlation id"}

#: AsyncAPI message fields by publisher title, which FastStream's generator cannot express (it has no
#: field for headers and assumes a ``correlation_id`` header): the exporter sets them on
#: ``components.messages["<title>:Message"]``.
MESSAGE_FIELDS: dict[str, dict[str, Any]] = {
    **{
        event_channel_title(context): {"headers": COMMIT_HEADERS, "correlationId": _CORRELATION_ID}
        for context in CONTEXTS
    },
    OUTBOX_TITLE: {"headers": COMMIT_HEADERS, "correlationId": _CORRELATION_ID},
    DEADLETTER_TITLE: {"headers": DEADLETTER_HEADERS, "correlationId": _CORRELATION_ID},
}


def asyncapi_broker() -> NatsBroker:
    """A broker (not connected) declaring the event, outbox and dead-letter subjects."""
    broker = NatsBroker()
    for context in CONTEXTS:
        broker.publisher(
            event_subject_template(context),
            title=event_channel_title(context),
            description=(
                f"The {context} context's event store (stream {context.upper()}_<jurisdiction>), one subject "
                "per aggregate. One message per command: a JSON array of envelopes, stored atomically, "
                "whose payloads are the events in contracts/schemas/events."
            ),
            schema=list[Envelope],
        )
    broker.publisher(
        OUTBOX_SUBJECT_TEMPLATE,
        title=OUTBOX_TITLE,
        description=(
            "Integration events between levels: the sender appends to its OUTBOX_<from> stream, the "
            "receiver's INBOX_<to> stream sources them (across JetStream domains in production). "
            "One message per command: a JSON array of envelopes."
        ),
        schema=list[Envelope],
    )
    broker.publisher(
        DEADLETTER_SUBJECT_TEMPLATE,
        title=DEADLETTER_TITLE,
        description=(
            "Messages that failed their handler max_deliver times (stream DEADLETTER_<jurisdiction>): "
            "the original body (a JSON array of envelopes) and headers, plus where it came from and why."
        ),
        schema=list[Envelope],
    )
    return broker
