"""The level's directory (名册) as every service reads it: people and organisations, projected
from the directory's events of this level (``contracts/directory.py``) into the service's own
database. The directory service owns the events; evaluation reads electorates from it, notify
recipients and their channels, tracking units, and every service whether a signed-in person is
still enabled (``http/auth.py``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import JSON, Boolean, Column, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.directory import (
    OrgEnrolled,
    OrgRenamed,
    PersonChanged,
    PersonDisabled,
    PersonEnabled,
    PersonEnrolled,
)
from contracts.envelope import Envelope
from services.runtime.read.db import UtcDateTime
from services.runtime.read.documents import DocumentProjection
from services.runtime.read.projector import handles

people_metadata = MetaData()

people = Table(
    "directory_people",
    people_metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32)),
    Column("name", String(64)),
    Column("gender", String(2)),
    Column("credential_no", String(64)),
    Column("identity", String(128), index=True),
    Column("congress", String(16)),
    Column("body", String(16), doc="Body they act for (人大 / 政协), given or by their kind"),
    Column("orgs", JSON),
    Column("roles", JSON),
    Column("mobile", String(16), index=True),
    Column("email", String(254)),
    Column("active", Boolean, default=True),
    Column("updated_at", UtcDateTime),
)

orgs_metadata = MetaData()
orgs = Table(
    "directory_orgs",
    orgs_metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16)),
    Column("name", String(200)),
)


class PeopleProjection(DocumentProjection):
    """``directory_people``: one row per person of this level's directory (a person's events are
    on their own aggregate, whose id is theirs: the row's key)."""

    name = "directory_people"
    metadata = people_metadata
    table = people
    version = 2  # the body (人大 / 政协) each person acts for

    @handles(PersonEnrolled)
    def enrolled(self, doc, event: PersonEnrolled, envelope: Envelope) -> None:
        self._record(doc, event.person, envelope)

    @handles(PersonChanged)
    def changed(self, doc, event: PersonChanged, envelope: Envelope) -> None:
        self._record(doc, event.person, envelope)

    def _record(self, doc, person, envelope: Envelope) -> None:
        doc.update(
            person.model_dump(mode="json", exclude={"extra_roles"}),
            roles=person.roles(),
            body=person.body_of().value,
            updated_at=envelope.occurred_at,
        )
        if doc.get("active") is None:
            doc["active"] = True

    @handles(PersonDisabled)
    def disabled(self, doc, event: PersonDisabled, envelope: Envelope) -> None:
        doc.update(active=False, updated_at=envelope.occurred_at)

    @handles(PersonEnabled)
    def enabled(self, doc, event: PersonEnabled, envelope: Envelope) -> None:
        doc.update(active=True, updated_at=envelope.occurred_at)


class OrgProjection(DocumentProjection):
    """``directory_orgs``: units, stations, groups, committees and sectors of this level."""

    name = "directory_orgs"
    metadata = orgs_metadata
    table = orgs

    @handles(OrgEnrolled)
    def enrolled(self, doc, event: OrgEnrolled, envelope: Envelope) -> None:
        doc.update(kind=event.org.kind.value, name=event.org.name)

    @handles(OrgRenamed)
    def renamed(self, doc, event: OrgRenamed, envelope: Envelope) -> None:
        doc.update(name=event.name)


# -- reading ------------------------------------------------------------------------------------
def _person(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


async def find_person(engine: AsyncEngine, person_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(people).where(people.c.id == person_id))).first()
    return _person(row) if row is not None else None


async def find_by(engine: AsyncEngine, field: str, value: str) -> list[dict[str, Any]]:
    """The people whose ``field`` (``identity``, ``mobile``, ``email``, ``id``) is ``value``."""
    column = people.c[field]
    async with engine.connect() as conn:
        return [_person(r) for r in await conn.execute(select(people).where(column == value))]


async def list_people(
    engine: AsyncEngine, *, kind: str | None = None, org: str | None = None, text: str | None = None
) -> list[dict[str, Any]]:
    query = select(people).order_by(people.c.name, people.c.id)
    if kind:
        query = query.where(people.c.kind == kind)
    if text:
        query = query.where(people.c.name.contains(text) | people.c.credential_no.contains(text))
    async with engine.connect() as conn:
        found = [_person(r) for r in await conn.execute(query)]
    # membership is a JSON list: filtered here, the same on SQLite and PostgreSQL
    return [p for p in found if org in (p["orgs"] or [])] if org else found


async def members_of(engine: AsyncEngine, org_id: str) -> list[dict[str, Any]]:
    """The enabled people who belong to ``org_id`` (a 代表小组, a station, a unit…)."""
    return [p for p in await list_people(engine, org=org_id) if p["active"]]


async def list_orgs(engine: AsyncEngine, *, kind: str | None = None) -> list[dict[str, Any]]:
    query = select(orgs).order_by(orgs.c.kind, orgs.c.name)
    if kind:
        query = query.where(orgs.c.kind == kind)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


class DisabledPeople:
    """Who of this level's directory is disabled, read at most every ``ttl_s`` (a token of a
    disabled person is refused within that long of the projection knowing it). A service without
    the directory's projection (tables absent) refuses nobody on this ground.

    Requests that find the list out of date together wait for one read of it: each of the 200
    submissions of bench/submit.py's burst used to read it itself, every time the list aged."""

    def __init__(self, engine: AsyncEngine, ttl_s: float = 2.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._read_at = -1e9
        self._disabled: frozenset[str] = frozenset()
        self._reading: asyncio.Future[None] | None = None

    async def contains(self, person_id: str) -> bool:
        if time.monotonic() - self._read_at > self.ttl_s:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
            # shielded: a request given up does not cancel the read the others wait on
            await asyncio.shield(self._reading)
        return person_id in self._disabled

    async def _read(self) -> None:
        try:
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(people.c.id).where(people.c.active.is_(False)))
                self._disabled = frozenset(r.id for r in rows)
        except Exception:
            # no table yet (the projection not created): nobody is known disabled
            self._disabled = frozenset()
        finally:
            self._read_at = time.monotonic()
            self._reading = None


def mask_mobile(mobile: str | None) -> str | None:
    """``138****5678``: what lists show to those who do not need the number."""
    if not mobile or len(mobile) < 7:
        return mobile
    return f"{mobile[:3]}****{mobile[-4:]}"
