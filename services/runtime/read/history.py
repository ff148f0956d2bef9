"""History projections: one row per event of an aggregate, with who did it and what it means.

"Every change has an actor and a time, and the history of a matter can be read back in full"
(DOMAIN.md): each service keeps such a table for its main aggregate. A subclass names its
``table`` (built by :func:`history_table`) and marks one method per event type with
``@handles``; each returns the event's short Chinese summary. Append-only: a batch's rows go
in with one executemany insert (the projector applies each event once, so no upsert is needed),
given to the driver as positional tuples (``documents.insert_rows``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import Envelope

from .db import UtcDateTime
from .documents import insert_rows
from .projector import Projection, event_of

#: Free text (a reason, a reply) is cut to this many characters in a history summary.
SUMMARY_TEXT_CHARS = 60


def short(text: str | None, limit: int = SUMMARY_TEXT_CHARS) -> str:
    """Free text for a one-line history summary: whitespace folded, cut with … past ``limit``."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def history_table(name: str, metadata: MetaData, key: str) -> Table:
    """The table of a history: ``key`` names the aggregate's id column (``matter_id``, ``case_id``)."""
    return Table(
        name,
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column(key, String(64), nullable=False, index=True),
        Column("jurisdiction", String(9), nullable=False),
        Column("sequence", Integer, nullable=False),
        Column("event_type", String(128), nullable=False),
        Column("occurred_at", UtcDateTime, nullable=False),
        Column("actor_id", String(128), nullable=False),
        Column("actor_role", String(32), nullable=False),
        Column("actor_name", String(128)),
        Column("summary_zh", Text, nullable=False),
        Column("payload", JSON, nullable=False),
    )


class HistoryProjection(Projection):
    """A row per event of the aggregate, in the order it happened (see the module docstring)."""

    table: ClassVar[Table]
    key: ClassVar[str]

    async def apply(self, session: AsyncSession, envelope: Envelope) -> None:
        await self.apply_batch(session, [envelope])

    async def apply_batch(self, session: AsyncSession, envelopes: list[Envelope]) -> None:
        rows = [row for row in map(self.row_for, envelopes) if row is not None]
        if rows:
            await insert_rows(await session.connection(), self.table, rows)

    def row_for(self, envelope: Envelope) -> dict[str, Any] | None:
        """The history row of one event (None for events the history does not show)."""
        describe = self._handlers.get(envelope.event_type)
        if describe is None:
            return None
        event = event_of(envelope)
        return {
            "event_id": envelope.event_id,
            self.key: envelope.aggregate_id,
            "jurisdiction": envelope.jurisdiction,
            "sequence": envelope.sequence,
            "event_type": envelope.event_type,
            "occurred_at": envelope.occurred_at,
            "actor_id": envelope.actor.principal_id,
            "actor_role": envelope.actor.role,
            "actor_name": envelope.actor.name,
            "summary_zh": describe(self, event, envelope),
            "payload": event.model_dump(mode="json"),
        }
