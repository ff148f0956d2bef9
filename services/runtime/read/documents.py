"""Document projections: one row per key, changed in memory, written once per batch.

Most read models are "one row per matter / case / session" with columns that events update.
Running one awaited SQL statement per event costs far more than the event's work (about
0.35 ms per statement through aiosqlite, measured by bench/); a document projection instead
reads every row a batch touches with one ``SELECT``, lets plain (synchronous) handlers
change them as dicts, and writes the changed rows back with one executemany upsert.

At thousands of events a second the per-row overhead around those two statements matters as
much as the database's own work, so (measured by bench/, per row of the benchmark's
three-column table):

- both statements are built once per table and dialect and run as Core statements on the
  session's connection (rebuilding them and going through the ORM: about 3 µs);
- rows come back as tuples zipped into dicts, not through ``RowMapping`` (about 2 µs);
- on SQLite the keys travel as one JSON array (``FROM json_each(?) JOIN table``) rather
  than as hundreds of placeholders rendered and bound for every batch (about 1.3 µs);
- the upsert goes to the driver's ``executemany`` as the statement SQLAlchemy compiled plus
  positional tuples made by each column type's bind processor, which is what SQLAlchemy's own
  executemany sends, minus its per-row parameter dictionaries (about 3 µs);
- on aiosqlite both statements go to the driver connection under the session's connection
  (SQLAlchemy's ``driver_connection``: the same SQLite connection and transaction), one call
  into aiosqlite's thread each, and the rows read come back as plain tuples put through each
  column type's result processor: SQLAlchemy's cursor adapter makes four calls into that
  thread per statement and a ``Row`` per row (together about 4 µs a row read, of the 7-9 µs
  that reading cost before).

Where a shortcut does not apply (another key type, a named paramstyle, another driver) the
plain SQLAlchemy statement runs instead; the rows written and read are the same either way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts.envelope import Envelope

from .db import DriverStatement, driver_statement, on_driver
from .projector import Projection, event_of, upsert

__all__ = ["DocumentProjection", "execute_many", "insert_rows", "read_documents", "upsert"]

_IN_CHUNK = 500


@functools.cache
def _select_by_keys(table: Table):
    """``SELECT * FROM table WHERE key IN :keys`` (an expanding parameter), built once per table."""
    key_column = next(iter(table.primary_key.columns))
    return select(table).where(key_column.in_(bindparam("keys", expanding=True)))


@functools.cache
def _select_by_json_keys(table: Table):
    """The same on SQLite with the keys as one JSON array parameter, joined to the table
    (``FROM json_each(:keys) JOIN table ON key = value``): no statement with hundreds of
    placeholders to render and bind for every batch (about 1.3 µs per key less), and one index
    search per key (``key IN (SELECT value FROM json_each(…))`` first builds a temporary b-tree
    of the keys: about 0.7 µs per key more). The keys must be distinct, as
    ``read_documents`` is given them."""
    key_column = next(iter(table.primary_key.columns))
    keys = func.json_each(bindparam("keys")).table_valued("value")
    return select(table).select_from(keys).join(table, key_column == keys.c.value)


@functools.lru_cache(maxsize=64)
def _json_key_type(table: Table, dialect: Dialect) -> type | None:
    """``str`` or ``int`` when ``_select_by_json_keys`` reads ``table`` on ``dialect`` exactly
    as the expanding ``IN`` does: SQLite with JSON functions (3.38 and later) and a key column
    whose values are stored as they are (no bind processor). None otherwise."""
    if dialect.name != "sqlite" or (dialect.server_version_info or ()) < (3, 38):
        return None
    key_type = next(iter(table.primary_key.columns)).type
    if key_type.dialect_impl(dialect).bind_processor(dialect) is not None:
        return None
    try:
        python_type = key_type.python_type
    except NotImplementedError:
        return None
    return python_type if python_type in (str, int) else None


@functools.lru_cache(maxsize=64)
def _driver_select(table: Table, dialect: Dialect) -> tuple[str, Callable[[Sequence[Any]], tuple[Any, dict]]] | None:
    """On aiosqlite, where ``_select_by_json_keys`` applies: that statement compiled once, and a
    function turning a row as the driver returns it into (key, document), through each column
    type's result processor as SQLAlchemy's own execute does. None elsewhere."""
    if dialect.driver != "aiosqlite" or _json_key_type(table, dialect) is None:
        return None
    stmt = _select_by_json_keys(table)
    compiled = stmt.compile(dialect=dialect)
    if not compiled.positional:
        return None
    names = tuple(c.name for c in stmt.selected_columns)
    at = names.index(next(iter(table.primary_key.columns)).name)
    processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in stmt.selected_columns]
    if not any(processors):
        # A row has exactly the selected columns; zip's strict check costs about 0.7 µs a row.
        return compiled.string, lambda row: (row[at], dict(zip(names, row, strict=False)))
    pairs = list(zip(names, processors, strict=True))

    def document(row: Sequence[Any]) -> tuple[Any, dict]:
        doc = {
            name: value if process is None else process(value)
            for (name, process), value in zip(pairs, row, strict=False)
        }
        return doc[names[at]], doc

    return compiled.string, document


async def read_documents(conn: AsyncConnection, table: Table, keys: list[Any]) -> dict[Any, dict[str, Any]]:
    """The stored rows of ``keys`` (distinct), as dicts by key (on aiosqlite, with keys of
    ``str`` or ``int``, one call into its thread)."""
    json_type = _json_key_type(table, conn.dialect)
    json_keys = json_type is not None and all(type(key) is json_type for key in keys)
    plan = _driver_select(table, conn.dialect) if json_keys else None
    if plan is not None:
        # All the keys in one statement and one call into aiosqlite's thread; SQLAlchemy's
        # cursor adapter makes four (cursor, execute, fetchall, close) and a Row per row.
        sql, document = plan
        rows = await on_driver(conn, sql, lambda driver: driver.execute_fetchall(sql, (json.dumps(keys),)))
        return dict(map(document, rows))
    key_name = next(iter(table.primary_key.columns)).name
    docs: dict[Any, dict[str, Any]] = {}
    for chunk in _chunks(keys, _IN_CHUNK):
        if json_keys:
            result = await conn.execute(_select_by_json_keys(table), {"keys": json.dumps(chunk)})
        else:
            result = await conn.execute(_select_by_keys(table), {"keys": chunk})
        names = tuple(result.keys())
        at = names.index(key_name)
        for row in result.all():
            docs[row[at]] = dict(zip(names, row, strict=True))
    return docs


@functools.lru_cache(maxsize=128)
def _driver_plan(table: Table, dialect: Dialect, kind: str) -> DriverStatement | None:
    """The upsert (``kind`` "upsert") or plain insert ("insert") of every column of ``table``,
    compiled once for ``dialect`` (``db.driver_statement``), for the driver's own executemany
    of rows as the projections hold them (by column name). None where that does not apply: then
    SQLAlchemy executes the statement itself."""
    if any(c.key != c.name for c in table.columns):
        return None
    statement = upsert(table, dialect.name) if kind == "upsert" else insert(table)
    plan = driver_statement(statement, dialect, column_keys=[c.key for c in table.columns])
    if plan is None or not plan.wanted <= set(table.columns.keys()):
        return None
    return plan


async def _execute_many(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], kind: str) -> None:
    """Upsert or insert ``rows`` (every column of ``table``) with one executemany. SQLAlchemy's own
    executemany builds a parameter dictionary per row (about 3.5 µs of 7 per row of three
    columns): the driver gets the statement SQLAlchemy compiled and the values its bind
    processors made, in positional tuples."""
    plan = _driver_plan(table, conn.dialect, kind)
    if plan is None:
        await conn.execute(upsert(table, conn.dialect.name) if kind == "upsert" else insert(table), rows)
        return
    await execute_many(conn, plan.sql, [plan.arguments(row) for row in rows])


async def execute_many(conn: AsyncConnection, sql: str, values: list[tuple]) -> None:
    """``sql`` (as SQLAlchemy compiled it, positional) once for each tuple of ``values``, with
    the driver's own executemany; on aiosqlite in one call into its thread, where SQLAlchemy's
    cursor adapter makes three (cursor, executemany, close)."""
    if conn.dialect.driver == "aiosqlite":
        await on_driver(conn, sql, lambda driver: driver.executemany(sql, values))
    else:
        await conn.exec_driver_sql(sql, values)


async def _write(conn: AsyncConnection, table: Table, docs: list[dict[str, Any]]) -> None:
    """Upsert ``docs`` with one executemany (``_execute_many``)."""
    await _execute_many(conn, table, docs, "upsert")


async def insert_rows(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, each with every column of ``table``, with one executemany: what a history
    projection appends per batch, at the cost per row of ``_write``'s."""
    if rows:
        await _execute_many(conn, table, rows, "insert")


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
        # Core statements on the session's connection (same transaction): the documents are
        # plain dicts, so the ORM has nothing to add but overhead.
        await self.apply_documents(await session.connection(), envelopes)

    async def apply_documents(
        self,
        conn: AsyncConnection,
        envelopes: list[Envelope],
        read: Callable[[dict[Any, dict[str, Any]]], None] | None = None,
    ) -> dict[Any, dict[str, Any]]:
        """Apply ``envelopes`` to their rows and write them: the rows changed, by key. ``read``
        is given the rows that existed, as they were read, before any handler changes them (a
        subclass that keeps something derived from the rows, as intake's title index, compares
        before and after without reading them again)."""
        wanted = [(self.key_of(e), e) for e in envelopes if self.wants(e.event_type)]
        if not wanted:
            return {}
        docs = await read_documents(conn, self.table, list(dict.fromkeys(key for key, _ in wanted)))
        if read is not None:
            read(docs)
        changed: dict[Any, dict[str, Any]] = {}
        handlers: dict[str, Callable] = self._handlers
        for key, envelope in wanted:
            doc = docs.get(key)
            if doc is None:
                doc = docs[key] = self.new_document(key)
            handlers[envelope.event_type](self, doc, event_of(envelope), envelope)
            changed[key] = doc
        await _write(conn, self.table, list(changed.values()))
        return changed


def _default(column) -> Any:
    default = column.default
    if default is not None and default.is_scalar:
        return default.arg
    return None
