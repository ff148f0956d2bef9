"""Databases of the read side: SQLAlchemy 2 async, SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


def make_engine(url: str, **kwargs) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so readers never block the projector."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

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
