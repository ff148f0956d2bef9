"""Databases of the read side: SQLAlchemy 2 async, SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import asyncio
import operator
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, TypeDecorator, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

#: Tables the runtime keeps in every service database.
runtime_metadata = MetaData()

checkpoints = Table(
    "projection_checkpoints",
    runtime_metadata,
    Column("projection", String(128), primary_key=True),
    Column("stream", String(128), nullable=False),
    Column("position", BigInteger, nullable=False, doc="stream sequence of the last event applied"),
    Column("version", Integer, nullable=False, doc="the projection's code version that built it"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _to_json(value) -> str:
    return pydantic_core.to_json(value).decode()


#: SQLite connections a process keeps open, each on its own aiosqlite thread (SQLAlchemy's default
#: is 5 kept and 10 more closed as they are given back). A connection opened for one request and
#: closed after it parses the schema, prepares its statements and fills its page cache again: at
#: 100,000 open matters a duplicate check on a new connection took 4.3 ms of SQLite's CPU against
#: 2.8 on a kept one, and a burst of 200 submissions at once ran mostly on the 10 that were closed.
SQLITE_POOL_SIZE = 15


def make_engine(url: str, **kwargs) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so readers never block the projector,
    and keeps up to ``SQLITE_POOL_SIZE`` connections open.

    JSON columns are written and read by pydantic-core (``to_json``/``from_json``) rather than
    the json module: three to five times faster for the read models' small values (a history
    row's payload, a case's lists), which a projector or a rebuild writes for every event. The
    text is compact UTF-8 (``{"name":"王代表"}``, not ``{"name": "\\u738b…"}``): the same JSON.
    """
    kwargs = {"json_serializer": _to_json, "json_deserializer": pydantic_core.from_json, **kwargs}
    if url.startswith("sqlite"):
        connect_args = {"timeout": 30, **kwargs.pop("connect_args", {})}
        if make_url(url).database not in (None, "", ":memory:"):  # a memory one has a pool of its own kind
            kwargs = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 0, **kwargs}
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a crash of the process; after an OS crash the last
            # transactions may be lost, together with their checkpoint, and are replayed.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


_writers: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[None]:
    """One writing transaction at a time on a SQLite database of this process (its projectors
    share the file): SQLite lets one writer in and makes the others retry in its busy handler,
    which sleeps 1, 2, 5, 10 … up to 100 ms between tries, so three projectors of a service
    writing at once waited tens of milliseconds for one another; an asyncio lock hands over at
    once. Nothing to do on other databases."""
    if engine.dialect.name != "sqlite":
        yield
        return
    lock = _writers.get(engine)
    if lock is None:
        lock = _writers[engine] = asyncio.Lock()
    async with lock:
        yield


class UtcDateTime(TypeDecorator):
    """A timezone-aware instant, stored in UTC and read back aware on every database.

    SQLite keeps no offset: an aware value would be written as its wall-clock time and read back
    naive. Converting to UTC on the way in and marking UTC on the way out keeps comparisons and
    results right on SQLite and PostgreSQL alike.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime cannot be stored as an instant: {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled once for a dialect of positional parameters (SQLite's ``?``): its
    SQL, the names of the values a caller gives (``wanted``), and ``arguments``, which turns
    those values (a mapping by name) into the tuple the driver takes: in the statement's order,
    each through its type's bind processor and with the values the statement carries itself, as
    SQLAlchemy's own execute would send them."""

    sql: str
    wanted: frozenset[str]
    arguments: Callable[[Mapping[str, Any]], tuple]


def driver_statement(statement, dialect, *, column_keys: Sequence[str] | None = None) -> DriverStatement | None:
    """``statement`` compiled once for ``dialect`` (``column_keys``: an insert's columns), for
    the driver's own execute or executemany (``on_driver``): SQLAlchemy's builds a parameter
    dictionary per row and makes several trips to aiosqlite's thread. None where a statement's
    parameters are named (PostgreSQL's drivers) or their names escaped: SQLAlchemy executes it
    itself there."""
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    if not compiled.positional or compiled.escaped_bind_names or not compiled.positiontup:
        return None
    names = tuple(compiled.positiontup)
    binds = compiled.binds
    wanted = {name: None for name in names if binds[name].required}
    carried = {name: value for name, value in compiled.construct_params(wanted).items() if name not in wanted}
    pick = operator.itemgetter(*names) if len(names) > 1 else (lambda values: (values[names[0]],))
    take = (lambda values: pick({**carried, **values})) if carried else pick
    processors = [binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
    processed = [(at, process) for at, process in enumerate(processors) if process is not None]
    if not processed:
        return DriverStatement(compiled.string, frozenset(wanted), take)

    # Every value taken at once (``itemgetter``), then only the ones with a processor put
    # through it: a generator over every value costs about 0.35 µs each (a history row of
    # twelve columns, two with processors: 9.2 µs a row on SQLite, 5 this way).
    def arguments(values: Mapping[str, Any]) -> tuple:
        row = list(take(values))
        for at, process in processed:
            row[at] = process(row[at])
        return tuple(row)

    return DriverStatement(compiled.string, frozenset(wanted), arguments)


async def on_driver(conn: AsyncConnection, sql: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
    """``call(driver)`` with the ``aiosqlite.Connection`` under ``conn`` (SQLAlchemy's
    ``driver_connection``: the same SQLite connection, so the same transaction), its errors
    raised as SQLAlchemy raises them (the projector tells a database that is down,
    ``OperationalError``, from an event its handler cannot apply by these).

    One call into aiosqlite's thread: SQLAlchemy's cursor adapter makes three or four for a
    statement (cursor, execute, fetch, close), each a trip to the thread and back to the event
    loop (a projector's transaction of one new matter made some 30 such trips)."""
    driver = (await conn.get_raw_connection()).driver_connection
    try:
        return await call(driver)
    except sqlite3.Error as err:
        raise DBAPIError.instance(sql, None, err, sqlite3.Error) from err


@asynccontextmanager
async def connected(conn: AsyncEngine | AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """A connection from an engine (opened and closed here), or the connection given."""
    if isinstance(conn, AsyncEngine):
        async with conn.connect() as connection:
            yield connection
    else:
        yield conn
