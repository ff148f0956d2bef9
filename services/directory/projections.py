"""The directory's read side: the people and organisations of this level (the same projection
every service keeps of the directory, ``services/runtime/read/people.py``), the roster imports
done, and the sign-in sessions and pending sign-ins (state of the directory alone, not events:
a session is not a fact of the domain, and is lost with no harm when the database is rebuilt:
people sign in again).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.directory import RosterImported
from contracts.envelope import Envelope
from services.runtime.read.db import UtcDateTime
from services.runtime.read.documents import DocumentProjection
from services.runtime.read.people import OrgProjection, PeopleProjection
from services.runtime.read.projector import handles

imports_metadata = MetaData()
imports = Table(
    "directory_imports",
    imports_metadata,
    Column("id", String(64), primary_key=True),
    Column("file_name", String(200)),
    Column("rows", String(16)),
    Column("summary", Text),
    Column("imported_at", UtcDateTime),
    Column("imported_by", String(128)),
)


class ImportProjection(DocumentProjection):
    name = "directory_imports"
    metadata = imports_metadata
    table = imports

    @handles(RosterImported)
    def imported(self, doc, event: RosterImported, envelope: Envelope) -> None:
        doc.update(
            file_name=event.file_name,
            rows=str(event.rows),
            summary=(
                f"新增 {len(event.enrolled)} 人，修改 {len(event.changed)} 人，未变 {event.unchanged} 人，"
                f"退回 {len(event.rejected)} 行"
            ),
            imported_at=envelope.occurred_at,
            imported_by=envelope.actor.principal_id,
        )


async def list_imports(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(imports).order_by(imports.c.imported_at.desc()))
        return [dict(r._mapping) for r in rows]


#: Sign-in state kept by the directory itself (created at start).
sessions_metadata = MetaData()
signin_sessions = Table(
    "directory_signin_sessions",
    sessions_metadata,
    Column("id", String(64), primary_key=True, doc="SHA-256 of the refresh token"),
    Column("person_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked", Boolean, default=False),
)
pending_signins = Table(
    "directory_pending_signins",
    sessions_metadata,
    Column("state", String(64), primary_key=True),
    Column("code_verifier", String(128), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

signin_codes = Table(
    "directory_signin_codes",
    sessions_metadata,
    Column("id", String(64), primary_key=True, doc="SHA-256 of the one-time code"),
    Column("tokens", Text, nullable=False, doc="the sign-in's answer (JSON), handed over once"),
    Column("created_at", UtcDateTime, nullable=False),
)

PROJECTIONS = (PeopleProjection, OrgProjection, ImportProjection)
