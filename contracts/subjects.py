"""The subject scheme: one subject per aggregate, integration subjects between levels.

- events:   ``duban.evt.<context>.<jurisdiction>.<aggregate_id>``  (stream ``<CONTEXT>_<jurisdiction>``)
- outbox:   ``duban.x.<to>.<from>.<kind>``  (stream ``OUTBOX_<from>``)
- inbox:    ``duban.x.<self>.>``  (stream ``INBOX_<self>``)
- commands: ``duban.cmd.<context>.<jurisdiction>.<command>``  (request/reply, not stored)
- dead letters: ``duban.dlq.<jurisdiction>.<context>.<consumer>``  (stream ``DEADLETTER_<jurisdiction>``)
"""

from __future__ import annotations

import re

CONTEXTS = ("intake", "tracking", "evaluation", "notify", "directory")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid subject token")
    return value


def event_stream(context: str, jurisdiction: str) -> str:
    return f"{_token(context, 'context').upper()}_{_token(jurisdiction, 'jurisdiction')}"


def event_subject(context: str, jurisdiction: str, aggregate_id: str) -> str:
    return (
        f"duban.evt.{_token(context, 'context')}.{_token(jurisdiction, 'jurisdiction')}."
        f"{_token(aggregate_id, 'aggregate id')}"
    )


def event_wildcard(context: str, jurisdiction: str) -> str:
    return f"duban.evt.{_token(context, 'context')}.{_token(jurisdiction, 'jurisdiction')}.*"


#: The low-cardinality name of an event subject, for span names and metrics.
EVENT_SUBJECT_TEMPLATE = "duban.evt.{context}.{jurisdiction}.{aggregate_id}"


def event_subject_template(context: str) -> str:
    """``duban.evt.<context>.{jurisdiction}.{aggregate_id}``: one name for all of a context's subjects."""
    return f"duban.evt.{_token(context, 'context')}.{{jurisdiction}}.{{aggregate_id}}"


def outbox_stream(jurisdiction: str) -> str:
    return f"OUTBOX_{_token(jurisdiction, 'jurisdiction')}"


def inbox_stream(jurisdiction: str) -> str:
    return f"INBOX_{_token(jurisdiction, 'jurisdiction')}"


def integration_subject(to: str, sender: str, kind: str) -> str:
    return f"duban.x.{_token(to, 'receiver')}.{_token(sender, 'sender')}.{_token(kind, 'kind')}"


def outbox_wildcard(sender: str) -> str:
    return f"duban.x.*.{_token(sender, 'sender')}.*"


def inbox_wildcard(receiver: str) -> str:
    return f"duban.x.{_token(receiver, 'receiver')}.>"


def command_subject(context: str, jurisdiction: str, name: str) -> str:
    tokens = (_token(context, "context"), _token(jurisdiction, "jurisdiction"), _token(name, "command"))
    return "duban.cmd." + ".".join(tokens)


def deadletter_stream(jurisdiction: str) -> str:
    return f"DEADLETTER_{_token(jurisdiction, 'jurisdiction')}"


def deadletter_subject(jurisdiction: str, context: str, consumer: str) -> str:
    tokens = (_token(jurisdiction, "jurisdiction"), _token(context, "context"), _token(consumer, "consumer"))
    return "duban.dlq." + ".".join(tokens)


def deadletter_wildcard(jurisdiction: str) -> str:
    return f"duban.dlq.{_token(jurisdiction, 'jurisdiction')}.>"


def snapshot_bucket(context: str, jurisdiction: str) -> str:
    """The snapshot bucket of one context at one level: only that context's service may write it
    (its NATS user's permissions), so no other service's user can put a snapshot it would load."""
    return f"SNAPSHOTS_{_token(context, 'context').upper()}_{_token(jurisdiction, 'jurisdiction')}"


def mend_stream(jurisdiction: str) -> str:
    """Operators' mends of a level's event streams (``duban events void``): append-only."""
    return f"MENDS_{_token(jurisdiction, 'jurisdiction')}"


def mend_wildcard(jurisdiction: str) -> str:
    return f"duban.mend.{_token(jurisdiction, 'jurisdiction')}.>"


def mend_subject(jurisdiction: str, context: str, aggregate_id: str, sequence: int) -> str:
    """The mend of one stored commit (its stream sequence) of one aggregate."""
    tokens = (_token(jurisdiction, "jurisdiction"), _token(context, "context"), _token(aggregate_id, "aggregate id"))
    return "duban.mend." + ".".join(tokens) + f".{int(sequence)}"


def level_streams(jurisdiction: str) -> list[str]:
    """Every stream that holds what happened at one level: its events per context, OUTBOX,
    INBOX, dead letters and mends (what ``duban provision`` makes beside the snapshot buckets,
    what the hub mirrors and ``duban backup`` writes)."""
    return [
        *(event_stream(context, jurisdiction) for context in CONTEXTS),
        outbox_stream(jurisdiction),
        inbox_stream(jurisdiction),
        deadletter_stream(jurisdiction),
        mend_stream(jurisdiction),
    ]
