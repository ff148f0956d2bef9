"""Document projections: one row per key, changed in memory, written once per batch.

Most read models are "one row per matter / case / session" with columns that events update.
Running one awaited SQL statement per event costs far more than the event's work (about
0.35 ms per statement through aiosqlite, measured by bench/); a document projection instead
reads every row a batch touches with one ``SELECT … IN``, lets plain (synchronous) handlers
change them as dicts, and writes the changed rows back with one executemany upsert. Both
statements are built once per table (and dialect) and run as Core statements on the session's
connection: rebuilding them and going through the ORM cost about 3 µs per event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import Envelope
from contracts.events import upcast

from .projector import Projection, upsert

__all__ = ["DocumentProjection", "upsert"]

_IN_CHUNK = 500


@functools.cache
def _select_by_keys(table: Table):
    """``SELECT * FROM table WHERE key IN :keys`` (an expanding parameter), built once per table."""
    key_column = next(iter(table.primary_key.columns))
    return select(table).where(key_column.in_(bindparam("keys", expanding=True)))


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
        wanted = [(self.key_of(e), e) for e in envelopes if self.wants(e.event_type)]
        if not wanted:
            return
        key_name = next(iter(self.table.primary_key.columns)).name
        # Core statements on the session's connection (same transaction): the documents are
        # plain dicts, so the ORM has nothing to add but overhead.
        conn = await session.connection()
        by_keys = _select_by_keys(self.table)
        docs: dict[Any, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(key for key, _ in wanted)), _IN_CHUNK):
            for row in (await conn.execute(by_keys, {"keys": chunk})).mappings():
                docs[row[key_name]] = dict(row)
        changed: dict[Any, dict[str, Any]] = {}
        handlers: dict[str, Callable] = self._handlers
        for key, envelope in wanted:
            doc = docs.get(key)
            if doc is None:
                doc = docs[key] = self.new_document(key)
            event = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
            handlers[envelope.event_type](self, doc, event, envelope)
            changed[key] = doc
        await conn.execute(upsert(self.table, conn.dialect.name), list(changed.values()))


def _default(column) -> Any:
    default = column.default
    if default is not None and default.is_scalar:
        return default.arg
    return None
