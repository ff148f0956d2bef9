"""Evaluation's read side: the sessions with their results, and the turnout of each evaluator.

* ``SessionProjection`` → ``evaluation_sessions``: one row per session (subjects, electorate,
  window, status, published results);
* ``TurnoutProjection`` → ``evaluation_turnout``: one row per session and evaluator: which
  subjects they scored, on paper or not, and, in an open (记名) session only, their choices. In
  a secret session the row is built from ``TurnoutRecorded`` alone and has no choices: the sheets
  of a secret session carry no evaluator and are not projected here at all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Column, Index, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.envelope import Envelope
from contracts.evaluation import (
    KIND_NAMES,
    BallotsCast,
    ResultsPublished,
    SessionClosed,
    SessionDrafted,
    SessionOpened,
    TurnoutRecorded,
)
from services.runtime.read.db import UtcDateTime, connected
from services.runtime.read.documents import DocumentProjection
from services.runtime.read.projector import handles

from .domain import STATUS_NAMES

sessions_metadata = MetaData()
turnout_metadata = MetaData()
metadatas = (sessions_metadata, turnout_metadata)

sessions = Table(
    "evaluation_sessions",
    sessions_metadata,
    Column("id", String(64), primary_key=True),
    Column("jurisdiction", String(9)),
    Column("kind", String(16)),
    Column("title", String(200)),
    Column("subjects", JSON),
    Column("electorate", JSON),
    Column("electorate_size", Integer),
    Column("opens_at", UtcDateTime),
    Column("closes_at", UtcDateTime),
    Column("secret", Boolean),
    Column("quorum", JSON),
    Column("status", String(16)),
    Column("results", JSON),
    Column("voters", Integer),
    Column("published_at", UtcDateTime),
    Column("updated_at", UtcDateTime),
)

turnout = Table(
    "evaluation_turnout",
    turnout_metadata,
    Column("key", String(140), primary_key=True, doc="<session id>:<evaluator id>"),
    Column("session_id", String(64)),
    Column("evaluator_id", String(128)),
    Column("subject_ids", JSON),
    Column("choices", JSON, doc="{subject: option}: open sessions only, never secret ones"),
    Column("on_paper", Boolean, default=False),
    Column("voted_at", UtcDateTime),
    Index("ix_evaluation_turnout_session", "session_id"),
)


class SessionProjection(DocumentProjection):
    name = "evaluation_sessions"
    metadata = sessions_metadata
    table = sessions

    @handles(SessionDrafted)
    def drafted(self, doc, event: SessionDrafted, envelope: Envelope) -> None:
        doc.update(
            jurisdiction=envelope.jurisdiction,
            kind=event.kind.value,
            title=event.title,
            subjects=[s.model_dump(mode="json") for s in event.subjects],
            electorate=event.electorate,
            electorate_size=len(event.electorate),
            opens_at=event.opens_at,
            closes_at=event.closes_at,
            secret=event.secret,
            quorum=event.quorum,
            status="drafted",
            updated_at=envelope.occurred_at,
        )

    @handles(SessionOpened)
    def opened(self, doc, event: SessionOpened, envelope: Envelope) -> None:
        doc.update(status="opened", updated_at=envelope.occurred_at)

    @handles(SessionClosed)
    def closed(self, doc, event: SessionClosed, envelope: Envelope) -> None:
        doc.update(status="closed", updated_at=envelope.occurred_at)

    @handles(ResultsPublished)
    def published(self, doc, event: ResultsPublished, envelope: Envelope) -> None:
        doc.update(
            status="published",
            results=[r.model_dump(mode="json") for r in event.results],
            voters=event.voters,
            published_at=envelope.occurred_at,
            updated_at=envelope.occurred_at,
        )


class TurnoutProjection(DocumentProjection):
    name = "evaluation_turnout"
    metadata = turnout_metadata
    table = turnout

    def key_of(self, envelope: Envelope) -> Any:
        return f"{envelope.payload['session_id']}:{envelope.payload['evaluator_id']}"

    async def apply_batch(self, session, envelopes: list[Envelope]) -> None:
        # a secret session's sheets name no evaluator: nothing of them reaches this table
        await super().apply_batch(
            session,
            [e for e in envelopes if e.event_type != BallotsCast.event_type or e.payload.get("evaluator_id")],
        )

    def _voted(self, doc, session_id: str, evaluator_id: str, subjects: list[str], on_paper: bool, at) -> None:
        doc.update(
            session_id=session_id,
            evaluator_id=evaluator_id,
            subject_ids=[*(doc["subject_ids"] or []), *subjects],
            on_paper=bool(doc["on_paper"]) or on_paper,
            voted_at=doc["voted_at"] or at,
        )

    @handles(BallotsCast)
    def cast(self, doc, event: BallotsCast, envelope: Envelope) -> None:
        assert event.evaluator_id is not None
        subjects = [c.subject_id for c in event.choices]
        self._voted(doc, event.session_id, event.evaluator_id, subjects, event.on_paper, envelope.occurred_at)
        doc["choices"] = {**(doc["choices"] or {}), **{c.subject_id: c.option for c in event.choices}}

    @handles(TurnoutRecorded)
    def recorded(self, doc, event: TurnoutRecorded, envelope: Envelope) -> None:
        self._voted(doc, event.session_id, event.evaluator_id, event.subject_ids, event.on_paper, envelope.occurred_at)


def _session_row(row: dict[str, Any]) -> dict[str, Any]:
    row["kind_name"] = KIND_NAMES.get(row["kind"], row["kind"])
    row["status_name"] = STATUS_NAMES.get(row["status"], row["status"])
    return row


async def list_sessions(
    conn: AsyncEngine | AsyncConnection, *, jurisdiction: str, evaluator: str | None = None
) -> list[dict[str, Any]]:
    """Sessions of the level, newest first; ``evaluator``: only those whose electorate has them."""
    query = select(sessions).where(sessions.c.jurisdiction == jurisdiction).order_by(sessions.c.opens_at.desc())
    async with connected(conn) as db:
        rows = [_session_row(dict(r._mapping)) for r in await db.execute(query)]
    if evaluator is not None:
        rows = [r for r in rows if evaluator in (r["electorate"] or [])]
    return rows


async def get_session(conn: AsyncEngine | AsyncConnection, session_id: str) -> dict[str, Any] | None:
    async with connected(conn) as db:
        row = (await db.execute(select(sessions).where(sessions.c.id == session_id))).first()
    return _session_row(dict(row._mapping)) if row is not None else None


async def session_turnout(conn: AsyncEngine | AsyncConnection, session_id: str, electorate: list[str]) -> dict:
    """Who has voted and who has not (never what they chose: choices are left out here)."""
    query = select(turnout.c.evaluator_id, turnout.c.subject_ids, turnout.c.on_paper, turnout.c.voted_at).where(
        turnout.c.session_id == session_id
    )
    async with connected(conn) as db:
        voted = {r.evaluator_id: dict(r._mapping) for r in await db.execute(query)}
    return {
        "electorate": len(electorate),
        "voted": len(voted),
        "turnout": round(len(voted) / len(electorate), 4) if electorate else None,
        "evaluators": [
            {
                "evaluator_id": e,
                "voted": e in voted,
                "subjects": len(voted[e]["subject_ids"] or []) if e in voted else 0,
                "on_paper": bool(voted[e]["on_paper"]) if e in voted else False,
            }
            for e in electorate
        ],
    }
