"""The dead-letter stream: where a message goes after failing its handler ``max_deliver`` times.

A dead letter keeps the original body and headers, and adds the original subject, stream and
sequence, the consumer, the number of attempts and the error text, so that an operator can see
why it failed and put it back on its way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from contracts import subjects
from services.runtime.es.eventstore import ensure_stream

log = logging.getLogger("duban.deadletters")

ORIGINAL_SUBJECT = "Duban-Original-Subject"
ORIGINAL_STREAM = "Duban-Original-Stream"
ORIGINAL_SEQUENCE = "Duban-Original-Seq"
CONSUMER = "Duban-Consumer"
ATTEMPTS = "Duban-Attempts"
ERROR = "Duban-Error"
#: JetStream's error codes for deleting a message that is not there: 10057 inside the stream's
#: range, 10043 ("sequence N not found") below its first sequence (the oldest was deleted already).
NOT_THERE = frozenset({10057, 10043})
#: What a dead letter keeps of the original's ``Nats-*`` headers, under a name of duban's own.
#: None of them is copied as it is: JetStream gives them meaning on a new message and refuses
#: some outright (a message that came into the INBOX by sourcing carries ``Nats-Stream-Source``,
#: and publishing it again is refused with 10227 "message stream source header is not allowed";
#: ``Nats-Expected-*`` would check the dead-letter stream's sequences, ``Nats-Msg-Id`` would
#: de-duplicate against the original, ``Nats-TTL``/``Nats-Rollup`` would expire or purge).
ORIGINAL_PREFIX = "Duban-Original-"


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
    """Store a failed message in the dead-letter stream; once only, however often it is called.
    Raises when JetStream did not store it: the caller must then keep the original unsettled."""
    copied = dead_letter_headers(headers)
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
            ERROR: ascii_header(" ".join(error_text.split())[:2000]),
        }
    )
    ack = await js.publish(subjects.deadletter_subject(jurisdiction, context, consumer), data, headers=copied)
    log.error(
        "message dead-lettered",
        extra={"subject": subject, "stream": stream, "seq": sequence, "consumer": consumer, "error": error_text},
    )
    return ack.seq


def dead_letter_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The original's headers as a new message may carry them: duban's own and the trace context
    as they are, every ``Nats-*`` header renamed ``Duban-Original-Nats-*`` (kept for operators)."""
    copied = {}
    for name, value in (headers or {}).items():
        if name.lower().startswith("nats-"):
            copied[ORIGINAL_PREFIX + name] = value
        else:
            copied[name] = value
    return copied


def ascii_header(text: str) -> str:
    """``text`` as an ASCII header value (JSON string escapes): errors are often Chinese, and
    nats-py reads a non-ASCII header value back as an ``email.header.Header``, not as text."""
    return json.dumps(text)[1:-1]


def text_of_header(value: object) -> str:
    """The text :func:`ascii_header` wrote (a value written otherwise is returned as it is)."""
    value = str(value)
    try:
        return json.loads(f'"{value}"')
    except ValueError:
        return value


# -- what operators do with them (``duban dead-letters``) ----------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter, as an operator sees it."""

    sequence: int
    subject: str  # duban.dlq.<jurisdiction>.<context>.<consumer>
    context: str
    consumer: str
    original_subject: str
    original_stream: str
    original_sequence: int
    attempts: int
    error: str
    dead_lettered_at: str | None
    headers: dict[str, str]
    data: bytes

    def summary(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "context": self.context,
            "consumer": self.consumer,
            "original_subject": self.original_subject,
            "original_stream": self.original_stream,
            "original_sequence": self.original_sequence,
            "attempts": self.attempts,
            "error": self.error,
            "dead_lettered_at": self.dead_lettered_at,
        }


def _letter(msg) -> DeadLetter:
    headers = dict(msg.headers or {})
    _, _, _, context, consumer = msg.subject.split(".", 4)
    return DeadLetter(
        sequence=msg.seq,
        subject=msg.subject,
        context=context,
        consumer=consumer,
        original_subject=headers.get(ORIGINAL_SUBJECT, ""),
        original_stream=headers.get(ORIGINAL_STREAM, ""),
        original_sequence=int(headers.get(ORIGINAL_SEQUENCE, "0")),
        attempts=int(headers.get(ATTEMPTS, "0")),
        error=text_of_header(headers.get(ERROR, "")),
        dead_lettered_at=str(msg.time) if getattr(msg, "time", None) else headers.get("Nats-Time-Stamp"),
        headers=headers,
        data=msg.data or b"",
    )


async def list_dead_letters(
    js: JetStreamContext, jurisdiction: str, *, context: str | None = None, consumer: str | None = None
) -> list[DeadLetter]:
    """Every dead letter of the level still stored, oldest first, optionally of one context or consumer."""
    stream = subjects.deadletter_stream(jurisdiction)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    letters = []
    seq = info.state.first_seq
    wanted = f"duban.dlq.{jurisdiction}.{context or '*'}.{consumer or '*'}"
    while info.state.messages and seq <= info.state.last_seq:
        try:
            msg = await js.get_msg(stream, seq=seq, next=True, subject=wanted, direct=True)
        except NotFoundError:
            break
        letters.append(_letter(msg))
        seq = msg.seq + 1
    return letters


async def get_dead_letter(js: JetStreamContext, jurisdiction: str, sequence: int) -> DeadLetter | None:
    try:
        msg = await js.get_msg(subjects.deadletter_stream(jurisdiction), seq=sequence, direct=True)
    except NotFoundError:
        return None
    return _letter(msg)


async def discard_dead_letter(js: JetStreamContext, jurisdiction: str, sequence: int) -> bool:
    """Remove a dead letter (after replay, or when an operator decides it is not to be handled)."""
    try:
        return await js.delete_msg(subjects.deadletter_stream(jurisdiction), sequence)
    except NotFoundError:
        return False
    except APIError as err:
        if err.err_code in NOT_THERE:
            return False
        raise
