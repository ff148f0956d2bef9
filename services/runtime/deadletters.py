"""The dead-letter stream: where a message goes after failing its handler ``max_deliver`` times.

A dead letter keeps the original body and headers, and adds the original subject, stream and
sequence, the consumer, the number of attempts and the error text, so that an operator can see
why it failed and put it back on its way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from contracts import subjects

from .eventstore import ensure_stream

log = logging.getLogger("duban.deadletters")

ORIGINAL_SUBJECT = "Duban-Original-Subject"
ORIGINAL_STREAM = "Duban-Original-Stream"
ORIGINAL_SEQUENCE = "Duban-Original-Seq"
CONSUMER = "Duban-Consumer"
ATTEMPTS = "Duban-Attempts"
ERROR = "Duban-Error"
_NOT_COPIED = {
    "Nats-Msg-Id",
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Sequence",
}


def stream_config(jurisdiction: str, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=subjects.deadletter_stream(jurisdiction),
        subjects=[subjects.deadletter_wildcard(jurisdiction)],
        storage=StorageType.FILE,
        num_replicas=replicas,
        allow_direct=True,
        description=f"duban dead letters of {jurisdiction}",
    )


async def ensure_deadletter_stream(js: JetStreamContext, jurisdiction: str, replicas: int = 1) -> None:
    await ensure_stream(js, stream_config(jurisdiction, replicas))


async def dead_letter(
    js: JetStreamContext,
    *,
    jurisdiction: str,
    context: str,
    consumer: str,
    subject: str,
    stream: str,
    sequence: int,
    data: bytes,
    headers: Mapping[str, str] | None,
    attempts: int,
    error: BaseException | str,
) -> int:
    """Store a failed message in the dead-letter stream; once only, however often it is called."""
    copied = {k: v for k, v in (headers or {}).items() if k not in _NOT_COPIED}
    error_text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    copied.update(
        {
            "Nats-Msg-Id": f"dlq:{stream}:{sequence}:{consumer}",
            ORIGINAL_SUBJECT: subject,
            ORIGINAL_STREAM: stream,
            ORIGINAL_SEQUENCE: str(sequence),
            CONSUMER: consumer,
            ATTEMPTS: str(attempts),
            # header values are one line; the full text stays readable in the log
            ERROR: " ".join(error_text.split())[:2000],
        }
    )
    ack = await js.publish(subjects.deadletter_subject(jurisdiction, context, consumer), data, headers=copied)
    log.error(
        "message dead-lettered",
        extra={"subject": subject, "stream": stream, "seq": sequence, "consumer": consumer, "error": error_text},
    )
    return ack.seq
