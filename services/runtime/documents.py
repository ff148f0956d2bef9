"""Document projections: one row per key, changed in memory, written once per batch.

Most read models are "one row per matter / case / session" with columns that events update.
Running one awaited SQL statement per event costs far more than the event's work (about
0.35 ms per statement through aiosqlite, measured by bench/); a document projection instead
reads every row a batch touches with one ``SELECT … IN``, lets plain (synchronous) handlers
change them as dicts, and writes the changed rows back with one executemany upsert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import Envelope
from contracts.events import upcast

from .projector import Projection

_IN_CHUNK = 500


def upsert(table: Table, dialect: str):
    """``INSERT … ON CONFLICT (primary key) DO UPDATE`` of every column, for executemany."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )


def _chunks(values: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class DocumentProjection(Projection):
    """A projection whose handlers change one row (a dict) of ``table`` per event.

    Handlers are plain methods ``(self, doc, event, envelope) -> None`` marked ``@handles``;
    ``doc`` holds the row's current columns, or only its key when the row is new. ``key_of``
    says which row an event changes (the aggregate id by default).
    """

    table: ClassVar[Table]

    def key_of(self, envelope: Envelope) -> Any:
        return envelope.aggregate_id

    def new_document(self, key: Any) -> dict[str, Any]:
        column = next(iter(self.table.primary_key.columns))
        doc = {c.name: _default(c) for c in self.table.columns}
        doc[column.name] = key
        return doc

    async def apply_batch(self, session: AsyncSession, envelopes: list[Envelope]) -> None:
        wanted = [e for e in envelopes if self.wants(e.event_type)]
        if not wanted:
            return
        key_column = next(iter(self.table.primary_key.columns))
        keys = list(dict.fromkeys(self.key_of(e) for e in wanted))
        docs: dict[Any, dict[str, Any]] = {}
        for chunk in _chunks(keys, _IN_CHUNK):
            for row in await session.execute(select(self.table).where(key_column.in_(chunk))):
                docs[row._mapping[key_column.name]] = dict(row._mapping)
        changed: dict[Any, dict[str, Any]] = {}
        for envelope in wanted:
            key = self.key_of(envelope)
            doc = docs.get(key)
            if doc is None:
                doc = docs[key] = self.new_document(key)
            handler: Callable = self._handlers[envelope.event_type]
            handler(self, doc, upcast(envelope.event_type, envelope.schema_version, envelope.payload), envelope)
            changed[key] = doc
        await session.execute(upsert(self.table, session.bind.dialect.name), list(changed.values()))


def _default(column) -> Any:
    default = column.default
    if default is not None and default.is_scalar:
        return default.arg
    return None
