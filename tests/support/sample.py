"""A small aggregate and projection used to test the runtime itself (not part of the contracts)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, select

from contracts import subjects
from contracts.events import Event, event
from services.runtime.es.aggregate import Aggregate, DomainError, applies
from services.runtime.read.documents import DocumentProjection
from services.runtime.read.projector import Projector, handles
from services.runtime.settings import Settings


@event("sample.Opened")
class Opened(Event):
    title: str


@event("sample.Incremented")
class Incremented(Event):
    by: int = 1


@event("sample.Poisoned")
class Poisoned(Event):
    reason: str = "poison"


class Counter(Aggregate):
    context = "sample"
    aggregate_type = "counter"

    title: str = ""
    total: int = 0
    increments: int = 0

    def open(self, title: str) -> list[Event]:
        if self.exists:
            raise DomainError("already open")
        return [Opened(title=title)]

    def increment(self, by: int = 1) -> list[Event]:
        return [Incremented(by=by)]

    @applies(Opened)
    def _opened(self, event: Opened) -> None:
        self.title = event.title

    @applies(Incremented)
    def _incremented(self, event: Incremented) -> None:
        self.total += event.by
        self.increments += 1

    @applies(Poisoned)
    def _poisoned(self, event: Poisoned) -> None:
        pass


metadata = MetaData()
counters = Table(
    "counters",
    metadata,
    Column("aggregate_id", String(64), primary_key=True),
    Column("events", Integer, nullable=False),
    Column("total", Integer, nullable=False),
)


class CounterProjection(DocumentProjection):
    """Counts the events of each counter: any loss or double application shows in the count."""

    name = "counters"
    metadata = metadata
    table = counters

    @handles(Opened)
    def opened(self, doc, event: Opened, envelope) -> None:
        doc["events"] = (doc["events"] or 0) + 1
        doc["total"] = doc["total"] or 0

    @handles(Incremented)
    def incremented(self, doc, event: Incremented, envelope) -> None:
        doc["events"] = (doc["events"] or 0) + 1
        doc["total"] = (doc["total"] or 0) + event.by

    @handles(Poisoned)
    def poisoned(self, doc, event: Poisoned, envelope) -> None:
        raise ValueError(f"cannot project {event.reason}")


def counter_projector(nc, engine, *, context: str, jurisdiction: str, **settings) -> Projector:
    """A Projector of ``CounterProjection`` over the ``context`` events of ``jurisdiction``."""
    return Projector(
        nc,
        CounterProjection(),
        engine,
        stream=subjects.event_stream(context, jurisdiction),
        filter_subjects=[subjects.event_wildcard(context, jurisdiction)],
        jurisdiction=jurisdiction,
        context=context,
        settings=Settings(jurisdiction=jurisdiction, **settings),
    )


async def counter_rows(engine) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(counters))).all()
    return {r.aggregate_id: (r.events, r.total) for r in rows}
