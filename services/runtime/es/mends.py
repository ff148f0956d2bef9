"""Operators' mends of a level's event streams: the audited way out of a stored commit that
cannot be read (a malformed envelope, an event no class reads).

Events are never edited or deleted (the event streams deny both). An operator who has looked at
an unreadable commit (``/status`` and ``duban status`` list them, with subject and sequence)
*voids* it: ``duban events void`` appends a mend — which commit, why, who, when — to the level's
``MENDS_<code>`` stream (append-only, written by the administrator only). A load that meets the
commit again finds the mend and skips it, so the aggregate loads and works as before that
commit; what the commit was meant to record can then be done again through the usual commands.
The bad commit stays in the stream, and the mend beside it says what was done about it.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from contracts import subjects

from .eventstore import ensure_stream


def mends_config(code: str, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=subjects.mend_stream(code),
        subjects=[subjects.mend_wildcard(code)],
        storage=StorageType.FILE,
        num_replicas=replicas,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        description=f"duban operators' mends of the event streams of {code}",
    )


async def ensure_mends_stream(js: JetStreamContext, code: str, replicas: int = 1) -> None:
    await ensure_stream(js, mends_config(code, replicas))


async def void(
    js: JetStreamContext,
    *,
    code: str,
    context: str,
    aggregate_id: str,
    sequence: int,
    reason: str,
    operator: str | None = None,
) -> dict:
    """Record that the commit ``sequence`` of ``aggregate_id`` is void (once: the same mend again
    is de-duplicated by the stream)."""
    if not reason.strip():
        raise ValueError("a reason is required")
    mend = {
        "action": "void",
        "context": context,
        "aggregate_id": aggregate_id,
        "subject": subjects.event_subject(context, code, aggregate_id),
        "sequence": int(sequence),
        "reason": reason.strip(),
        "operator": operator or getpass.getuser(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    subject = subjects.mend_subject(code, context, aggregate_id, sequence)
    ack = await js.publish(subject, json.dumps(mend, ensure_ascii=False).encode(), headers={"Nats-Msg-Id": subject})
    return mend | {"mend_sequence": ack.seq, "duplicate": bool(ack.duplicate)}
