"""Blue/green rebuilds: read models built again beside the ones a service answers from, then
swapped in, in one transaction, once they have caught up with their streams.

``duban rebuild SERVICE`` (``tools/rebuild.py``) runs this over every projection the service
wires. While it runs, the service goes on answering from its read models and its projectors go on
keeping them current: nothing the service reads is dropped or emptied before the new read model
is there, whole, in its place.

**Beside the live tables.** Each table of a projection (and each of its indexes) is built under
another name, ``<table>__rebuild``, in the same database. The projections' code is not changed
for this: the rebuild's own engine renders those names wherever SQLAlchemy renders the live ones
(its dialect's identifier preparer maps them), so every statement a projection makes, through
its own table objects or module-level ones, Core or ORM, reaches the shadow tables. Statements
written as text would not: projections do not write any. SQLite keeps an index's name when its
table is renamed, so the shadow's indexes take the name the live ones do not have (the names
alternate from one rebuild to the next); PostgreSQL renames them back at the swap.

**One pass per stream, every projection at once.** The projections that read one stream (with
the same subject filter) are fed from one consumer of the rebuild's own (no acknowledgements:
the position is what the rebuild applied, and a rebuild that stops is started again from
sequence 1), fetched in large batches; each commit is decoded once, each event upcast once
(``projector.shared_events``), and a batch is applied to all of them in one transaction.

**Documents stay in memory.** A document projection's rows (``documents.py``) are kept in a
bounded cache (least recently used first out) and written when they leave it or at the end,
instead of being read and written back at every batch as the live projector must (its checkpoint
vouches for the rows in the same transaction; the rebuild's tables vouch for nothing until the
swap). A case touched by ten events is written once or twice, not ten times. The cache is
2,000 rows and SQLite's page cache 16 MB: a rebuild of tracking's million events (bench/, its
cases taking their steps in waves of 2,000) held 381 MB with 20,000 rows and 64 MB, 212 MB with
5,000 rows, 197 MB with 2,000, in about the same time (110-133 s on SQLite, run to run). A
county handles a few thousand cases a year, so 2,000 cases in flight at once is already many;
where more take their steps in turn, each event past the cache costs a read and a write of its
row, as in the live projector. Their tables'
secondary indexes, which nothing reads during a rebuild, are made after the last row is in.
Other projections apply their batches as the live projector applies them. On PostgreSQL the
rebuild's transactions do not wait for their WAL flush (``synchronous_commit = off``): a crash
loses only what a new rebuild makes again.

**The swap.** When every stream has been read to its end, the cached documents are written and
the missing indexes made; then one transaction of the live database drops each live table,
renames its shadow into its place and stores each projection's checkpoint at the position the
rebuild reached (PostgreSQL first takes the live tables' locks, in one order, so a projector's
batch in flight finishes before it and a reader waits only for the swap itself). A live projector
still running in the service then finds its checkpoint moved (``projector.CheckpointMoved``): its
batch in flight is rolled back and it goes on from the new position, so events that came after
the rebuild's last are applied to the new read model once, and none twice.

**Split between processes.** ``split`` shares a service's projections out among processes
(``duban rebuild --jobs``): a history in a part of its own, the rest in the others. Each part is
built by its own ``Rebuild`` (``build_part``: rows written, no deferred indexes, no swap) with a
consumer of its own; on SQLite, which lets one process write a file at a time, into a file of
its own beside the service's, whose shadow tables the process that swaps copies into its own
(``adopt``, with ``ATTACH``) before it makes the deferred indexes; on PostgreSQL straight into the
shadow tables of the same database. The swap stores each projection's checkpoint at the position
its own part reached (the parts read the same stream, not to the same sequence necessarily).

An event a handler cannot apply (the live projector dead-lettered it) is skipped and reported,
as the live read model skipped it; a database error ends the rebuild, leaving the live read
models as they were (run it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Table, event, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.schema import CreateIndex, CreateTable

from contracts.envelope import EVENT_TYPES_HEADER, Envelope, decode_commit, decode_commits

from ..bus.batches import Batches
from .db import checkpoints, make_engine, runtime_metadata
from .documents import DocumentProjection, _write, read_documents
from .history import HistoryProjection
from .projector import (
    TRANSIENT_DB_ERRORS,
    Projection,
    _stream_sequence,
    event_of,
    gc_paused,
    shared_events,
    transient_db_error,
    upsert,
)

log = logging.getLogger("duban.rebuild")

#: What a shadow table's (and a shadow index's) name ends with.
SUFFIX = "__rebuild"
#: Seconds a batch asked for may take to come before the rebuild fails (the server gone).
ANSWER_TIMEOUT_S = 30.0
#: PostgreSQL cuts longer identifiers: a shadow name must stay within it.
_PG_MAX_NAME = 63


@dataclass(frozen=True)
class Target:
    """A projection and where its projector reads: a stream and its subject filters."""

    projection: Projection
    stream: str
    filter_subjects: tuple[str, ...]


@dataclass
class Progress:
    """Where the rebuild of one stream stands; ``line()`` is what an operator reads."""

    stream: str
    position: int = 0
    last: int = 0
    events: int = 0
    messages: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        seconds = max(self.seconds, 1e-9)
        share = self.position / self.last if self.last else 1.0
        rate = self.events / seconds
        left = (self.last - self.position) * seconds / self.position if self.position else 0.0
        return (
            f"{self.stream} {self.position:,} of {self.last:,} ({share:.0%}), {self.events:,} events"
            f" in {seconds:.0f} s, {rate:,.0f} events/s, about {left:.0f} s left"
        )


class RebuildFailed(RuntimeError):
    """The rebuild could not finish; the live read models are as they were."""


def _wanted_types(projections: Sequence[Projection]) -> Callable[[Msg], bool]:
    """Whether any of ``projections`` wants a commit, by its ``Duban-Event-Types`` header."""
    decided: dict[str, bool] = {}

    def wanted(msg: Msg) -> bool:
        types = (msg.headers or {}).get(EVENT_TYPES_HEADER)
        if types is None:
            return True
        answer = decided.get(types)
        if answer is None:
            answer = decided[types] = any(p.wants(t) for p in projections for t in types.split(","))
        return answer

    return wanted


class ReadingClient(NATS):
    """A nats-py client that reads message headers at a third of the cost: for the rebuild's own
    connection, which receives every commit of a stream.

    nats-py 2.16 checks every character of every header name for whitespace with a generator
    (``any(c.isspace() for c in key)``): about 10 µs of a commit's four headers here, against
    3 for the same result from ``str`` methods, and 2 with each name checked once. Only
    ``_parse_header_lines``, the way nats-py itself names that step, is replaced; a nats-py
    without it keeps its own parsing."""

    #: Header names as they came → as kept ("" for one nats-py would drop): a stream's commits
    #: carry the same few names, so each is checked once.
    _names: dict[str, str] = {}

    @classmethod
    def _parse_header_lines(cls, raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        names = cls._names
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = names.get(name)
            if key is None:
                key = name.strip()
                if not (key.isascii() and key.isprintable() and " " not in key and "\t" not in key):
                    key = ""
                if len(names) < 1024:
                    names[name] = key
            if key:
                out[key] = value.strip()
        return out


class _Documents:
    """A document projection's rows during a rebuild: changed in memory, written when they leave
    the cache (``size`` rows at most, least recently used first) and at ``flush``."""

    def __init__(self, projection: DocumentProjection, size: int, skipped: Callable[..., None]) -> None:
        self.projection = projection
        self.table = projection.table
        self.size = size
        self.cache: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self.dirty: set[Any] = set()
        self.stored: set[Any] = set()  # keys with a row in the shadow table
        self.skipped = skipped

    async def apply(self, conn: AsyncConnection, envelopes: list[Envelope]) -> None:
        projection = self.projection
        handlers = projection._handlers
        wanted = [(projection.key_of(e), e) for e in envelopes if e.event_type in handlers]
        if not wanted:
            return
        cache = self.cache
        missing = [key for key in dict.fromkeys(key for key, _ in wanted) if key not in cache and key in self.stored]
        if missing:
            cache.update(await read_documents(conn, self.table, missing))
        dirty = self.dirty
        for key, envelope in wanted:
            doc = cache.get(key)
            # A copy: a handler that fails leaves the row as it was (its event is skipped).
            work = dict(doc) if doc is not None else projection.new_document(key)
            try:
                handlers[envelope.event_type](projection, work, event_of(envelope), envelope)
            except Exception as err:
                self.skipped(projection, envelope, err)
                continue
            cache[key] = work
            cache.move_to_end(key)
            dirty.add(key)
        if len(cache) > self.size:
            leaving = []
            while len(cache) > self.size:
                key, doc = cache.popitem(last=False)
                if key in dirty:
                    dirty.discard(key)
                    leaving.append((key, doc))
            await self._store(conn, leaving)

    async def flush(self, conn: AsyncConnection) -> None:
        """Write every row changed since it was last written."""
        changed = [(key, self.cache[key]) for key in self.dirty]
        self.dirty.clear()
        for start in range(0, len(changed), 5_000):
            await self._store(conn, changed[start : start + 5_000])

    async def _store(self, conn: AsyncConnection, rows: list[tuple[Any, dict[str, Any]]]) -> None:
        if rows:
            await _write(conn, self.table, [doc for _, doc in rows])
            self.stored.update(key for key, _ in rows)


def split(targets: Sequence[Target], parts: int) -> list[list[Target]]:
    """``targets`` in at most ``parts`` parts, each to be built by a process of its own: a history
    read model (a row an event, the largest table and most of the work) in a part of its own,
    the others shared out in turn among the parts left (all of them when there are no histories
    or more histories than parts). The process that swaps builds the first part (a history: its
    rows are not copied); each part keeps the targets' order."""
    parts = max(1, min(parts, len(targets)))
    histories = [t for t in targets if isinstance(t.projection, HistoryProjection)]
    if not 0 < len(histories) < parts:
        histories = []
    chosen: dict[str, int] = {t.projection.name: index for index, t in enumerate(histories)}
    rest = [t for t in targets if t.projection.name not in chosen]
    spare = range(len(histories), parts) if rest else range(0)
    for index, target in enumerate(rest):
        chosen[target.projection.name] = spare[index % len(spare)]
    used = sorted(set(chosen.values()))
    return [[t for t in targets if chosen[t.projection.name] == part] for part in used]


@dataclass
class _Group:
    """The projections that read one stream through one filter, and the rebuild's consumer."""

    stream: str
    filter_subjects: tuple[str, ...]
    projections: list[Projection]
    documents: list[_Documents] = field(default_factory=list)
    others: list[Projection] = field(default_factory=list)
    progress: Progress | None = None
    subscription: Any = None
    consumer: str = ""
    wanted: Callable[[Msg], bool] = lambda msg: True
    #: The last sequence of the batch being applied; where the group stops (``hand_off``).
    applying: int = 0
    until: int | None = None


def _fast_documents(projection: Projection) -> bool:
    """A document projection that applies its batches as ``DocumentProjection`` does: the rebuild
    may keep its rows in memory."""
    return isinstance(projection, DocumentProjection) and type(projection).apply_batch is DocumentProjection.apply_batch


class Rebuild:
    """Build ``targets`` again into the database at ``url`` beside the live read models, then swap
    them in: ``await run()`` (or ``build()`` then ``swap()``), then ``close()``."""

    def __init__(
        self,
        nc: NATS,
        url: str,
        targets: Sequence[Target],
        *,
        batch: int = 2_000,
        cached_documents: int = 2_000,
        say: Callable[[str], None] | None = None,
        every_s: float = 2.0,
        prefetch: bool = True,
        sqlite_cache_mb: int = 16,
        commit_every: int = 20_000,
        elsewhere: Collection[str] = (),
        start: int = 1,
        create_shadows: bool = True,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=30)
        self.url = url
        self.targets = list(targets)
        self.batch = batch
        self.cached_documents = cached_documents
        self.say = say or (lambda line: log.info(line))
        self.every_s = every_s
        self.prefetch = prefetch
        self.sqlite_cache_mb = sqlite_cache_mb
        self.commit_every = commit_every
        self._conn: AsyncConnection | None = None
        self._uncommitted = 0
        self.live = make_engine(url)
        self.shadow: AsyncEngine | None = None
        self.names: dict[str, str] = {}
        self.skipped = 0
        self.swap_seconds: float | None = None
        #: Projections another process builds (``split``); ``adopt`` gives their positions.
        self.elsewhere = set(elsewhere)
        self.adopted: dict[str, tuple[str, int]] = {}
        #: Where the streams are read from (``hand_off``: the rest of a history, built by another
        #: process, whose shadow table may already be there, in the same database).
        self.start = start
        self.create_shadows = create_shadows
        self.groups: list[_Group] = []
        for target in self.targets:
            if target.projection.name in self.elsewhere:
                continue
            group = next(
                (
                    g
                    for g in self.groups
                    if g.stream == target.stream and g.filter_subjects == tuple(target.filter_subjects)
                ),
                None,
            )
            if group is None:
                group = _Group(target.stream, tuple(target.filter_subjects), [])
                self.groups.append(group)
            group.projections.append(target.projection)
        names = [t.projection.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"a projection named twice: {names}")

    @property
    def projections(self) -> list[Projection]:
        return [t.projection for t in self.targets]

    # -- the shadow tables -------------------------------------------------------------------
    def _tables(self, *, own: bool = False, of: Collection[str] | None = None) -> list[Table]:
        """Every projection's tables (``own``: only those of the projections built here; ``of``:
        only those of the projections named)."""
        tables: dict[str, Table] = {}
        for projection in self.projections:
            if (own and projection.name in self.elsewhere) or (of is not None and projection.name not in of):
                continue
            for table in projection.metadata.sorted_tables:
                tables.setdefault(table.name, table)
        return list(tables.values())

    async def _shadow_names(self) -> dict[str, str]:
        """Live name → shadow name, for tables and indexes (see the module docstring)."""

        def existing(sync_conn) -> set[str]:
            found: set[str] = set()
            inspector = inspect(sync_conn)
            for name in inspector.get_table_names():
                if name.endswith(SUFFIX):
                    continue  # a shadow left by a rebuild that stopped: dropped before use
                found.update(ix["name"] for ix in inspector.get_indexes(name) if ix.get("name"))
            return found

        async with self.live.connect() as conn:
            dialect = conn.dialect.name
            indexes = await conn.run_sync(existing)
        names: dict[str, str] = {}
        for table in self._tables():
            names[table.name] = table.name + SUFFIX
            for index in table.indexes:
                if index.name is None:
                    continue
                if dialect == "postgresql" or index.name in indexes:
                    names[index.name] = index.name + SUFFIX
        columns = {c.name for table in self._tables() for c in table.columns}
        if clash := columns & set(names):
            raise ValueError(f"a column is named like a table or index, which the rebuild renames: {sorted(clash)}")
        if dialect == "postgresql" and (long := [n for n in names.values() if len(n) > _PG_MAX_NAME]):
            raise ValueError(f"shadow names longer than PostgreSQL's {_PG_MAX_NAME} characters: {long}")
        return names

    def _shadow_engine(self) -> AsyncEngine:
        """An engine on the same database whose SQL names the shadow tables and indexes."""
        engine = make_engine(self.url)
        dialect = engine.dialect
        names = self.names
        base = type(dialect.identifier_preparer)

        class ShadowNames(base):  # type: ignore[misc, valid-type]
            def quote(self, ident: str) -> str:
                return super().quote(names.get(ident, ident))

        dialect.identifier_preparer = ShadowNames(dialect)
        if dialect.name == "sqlite" and self.sqlite_cache_mb:

            @event.listens_for(engine.sync_engine, "connect")
            def _cache(dbapi_connection, _record) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA cache_size = -{self.sqlite_cache_mb * 1024}")
                cursor.close()

        return engine

    def _deferred(self, table: Table) -> bool:
        """Whether the table's secondary indexes wait until its rows are in: only where the
        rebuild reads the table by primary key alone (documents) or not at all (histories)."""
        for projection in self.projections:
            if table in projection.metadata.tables.values():
                return _fast_documents(projection) or isinstance(projection, HistoryProjection)
        return False

    async def _create_shadows(self, tables: list[Table] | None = None) -> None:
        assert self.shadow is not None
        tables = self._tables(own=True) if tables is None else tables
        async with self.shadow.begin() as conn:
            for table in reversed(tables):
                await conn.execute(text(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.quote(table.name)}"))
            for table in tables:
                await conn.execute(CreateTable(table))
                if not self._deferred(table):
                    for index in table.indexes:
                        await conn.execute(CreateIndex(index))

    async def _create_deferred_indexes(self) -> None:
        assert self.shadow is not None
        async with self.shadow.begin() as conn:
            for table in self._tables():
                if self._deferred(table):
                    for index in table.indexes:
                        await conn.execute(CreateIndex(index))

    # -- reading the streams -----------------------------------------------------------------
    async def _subscribe(self, group: _Group) -> None:
        group.consumer = f"rebuild_{uuid.uuid4().hex[:12]}"
        config = ConsumerConfig(
            name=group.consumer,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL if self.start <= 1 else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if self.start <= 1 else self.start,
            inactive_threshold=300.0,
            mem_storage=True,
            description="duban rebuild (removed by the server when idle)",
        )
        if len(group.filter_subjects) == 1:
            config.filter_subject = group.filter_subjects[0]
        elif group.filter_subjects:
            config.filter_subjects = list(group.filter_subjects)
        await self.js.add_consumer(group.stream, config)
        group.subscription = Batches(self.nc, group.stream, group.consumer)
        await group.subscription.start(self.batch)
        info = await self.js.stream_info(group.stream)
        group.progress = Progress(group.stream, position=self.start - 1, last=info.state.last_seq)

    async def _pending(self, group: _Group) -> int:
        return (await self.js.consumer_info(group.stream, group.consumer)).num_pending

    async def _read_to_end(self, group: _Group) -> None:
        """Apply everything the stream holds now (until a batch comes with nothing pending behind
        it); the next batch is asked for before one is applied."""
        progress = group.progress
        pull = group.subscription
        assert progress is not None and pull is not None
        if group.until is not None and progress.position >= group.until:
            return  # handed off: another process builds the rest
        if await self._pending(group) == 0:
            return
        await pull.ask(self.batch)
        # No automatic garbage collection while the stream is read, not only while a batch is
        # applied (as the live projector pauses it): the collector otherwise walks the batch
        # being decoded and, every few batches, the whole heap of cached rows, finding almost
        # nothing to free (about a fifth of the rebuild's CPU over 150,000 events: 3.6 s of
        # 17.5, gc.callbacks). The heap stays as large without it (cycles are rare here); what
        # little there is goes at the first collection after the stream's end.
        with gc_paused():
            await self._read_batches(group, progress, pull)

    async def _read_batches(self, group: _Group, progress: Progress, pull: Batches) -> None:
        """Batch after batch (``Batches``: what a pull request answers, collected in a callback
        rather than by nats-py's ``fetch``, which waits for each message with a task, a timer and
        a uuid of its own); with ``prefetch`` the next is asked for before one is applied, so the
        server sends while the rebuild works."""
        said = time.monotonic()
        while True:
            try:
                msgs = await pull.answer(ANSWER_TIMEOUT_S, in_time=True)
            except TimeoutError:
                raise RebuildFailed(
                    f"no answer from the stream's consumer in {ANSWER_TIMEOUT_S:.0f} s ({pull.subject})"
                ) from None
            if not msgs:
                if await self._pending(group) == 0:
                    break
                await pull.ask(self.batch)
                continue
            if group.until is not None and _stream_sequence(msgs[-1]) >= group.until:
                kept = [m for m in msgs if _stream_sequence(m) <= group.until]
                if kept:
                    await self._apply(group, kept)
                progress.position = group.until  # what comes after is another process's
                self.say(f"{progress.line()}; the rest is built by another process")
                break
            behind = msgs[-1].metadata.num_pending
            if behind and self.prefetch:
                await pull.ask(self.batch)
            group.applying = _stream_sequence(msgs[-1])
            await self._apply(group, msgs)
            position = _stream_sequence(msgs[-1])
            if _stream_sequence(msgs[0]) <= progress.position:
                raise RebuildFailed(f"{group.stream}: sequence {_stream_sequence(msgs[0])} came again")
            progress.position = position
            progress.last = max(progress.last, position + behind)
            if time.monotonic() - said >= self.every_s:
                said = time.monotonic()
                self.say(progress.line())
            if not behind:
                break
            if not self.prefetch:
                await pull.ask(self.batch)

    def _decode(self, msgs: list[Msg], wanted: Callable[[Msg], bool]) -> list[Envelope]:
        bodies = [m for m in msgs if wanted(m)]
        try:
            return decode_commits([m.data for m in bodies])
        except ValueError:
            envelopes = []
            for msg in bodies:
                try:
                    envelopes += decode_commit(msg.data)
                except ValueError as err:
                    self.skipped += 1
                    log.error(
                        "commit not readable, skipped",
                        extra={"stream": msg.metadata.stream, "seq": _stream_sequence(msg), "error": repr(err)},
                    )
            return envelopes

    async def _apply(self, group: _Group, msgs: list[Msg]) -> None:
        assert self.shadow is not None and group.progress is not None
        envelopes = self._decode(msgs, group.wanted)
        group.progress.messages += len(msgs)
        group.progress.events += len(envelopes)
        if not envelopes:
            return
        conn = await self._transaction()
        with gc_paused(), shared_events():
            if group.others:
                session = AsyncSession(bind=conn)
                for projection in group.others:
                    await self._apply_other(session, projection, envelopes)
                await session.flush()
            for documents in group.documents:
                await documents.apply(conn, envelopes)
        self._uncommitted += len(envelopes)
        if self._uncommitted >= self.commit_every:
            await self._commit()

    async def _transaction(self) -> AsyncConnection:
        """The shadow database's open transaction, begun if there is none. Several batches go
        in one: each commit writes every page its inserts touched (random ones, for an index of
        event ids), so fewer, larger commits write each such page once for many rows."""
        assert self.shadow is not None
        if self._conn is None:
            conn = await self.shadow.connect()
            await conn.begin()
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            self._conn = conn
        return self._conn

    async def _commit(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.commit()
            finally:
                await conn.close()
        self._uncommitted = 0

    async def _apply_other(self, session: AsyncSession, projection: Projection, envelopes: list[Envelope]) -> None:
        mine = [e for e in envelopes if projection.wants(e.event_type)]
        if not mine:
            return
        try:
            async with session.begin_nested():
                await projection.apply_batch(session, mine)
            return
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception:
            pass
        for envelope in mine:  # one at a time, to skip only what fails
            try:
                async with session.begin_nested():
                    await projection.apply(session, envelope)
            except TRANSIENT_DB_ERRORS:
                raise
            except Exception as err:
                self._skip(projection, envelope, err)

    def _skip(self, projection: Projection, envelope: Envelope, error: BaseException) -> None:
        self.skipped += 1
        log.error(
            "event not applied in the rebuild, skipped",
            extra={
                "projection": projection.name,
                "event_id": envelope.event_id,
                "event_type": envelope.event_type,
                "error": repr(error),
            },
        )

    # -- the steps ---------------------------------------------------------------------------
    async def build(self) -> None:
        """Make the shadow tables and fill them from every stream, to its end."""
        self.names = await self._shadow_names()
        self.shadow = self._shadow_engine()
        async with self.live.begin() as conn:
            await conn.run_sync(runtime_metadata.create_all)
        if self.create_shadows:
            await self._create_shadows()
        for group in self.groups:
            group.wanted = _wanted_types(group.projections)
            for projection in group.projections:
                if _fast_documents(projection):
                    group.documents.append(_Documents(projection, self.cached_documents, self._skip))  # type: ignore[arg-type]
                else:
                    group.others.append(projection)
            await self._subscribe(group)
            assert group.progress is not None
            self.say(f"{group.stream}: {', '.join(p.name for p in group.projections)} from sequence 1")
            await self._read_to_end(group)
            await self._commit()
            self.say(group.progress.line())

    async def build_part(self) -> dict[str, tuple[str, int]]:
        """``build()`` for one part of a split rebuild (``split``), in a process of its own: every
        row written, no index made after the rows, no swap; returns the position each of its
        projections reached, which the process that swaps ``adopt``s."""
        await self.build()
        await self._flush_documents()
        return self.positions()

    def positions(self) -> dict[str, tuple[str, int]]:
        """Projection → (stream, the position its read model is at)."""
        reached = {}
        for group in self.groups:
            assert group.progress is not None
            for projection in group.projections:
                reached[projection.name] = (group.stream, group.progress.position)
        return reached | self.adopted  # a history handed off is where the other process left it

    def hand_off(self, name: str) -> int | None:
        """Stop building ``name`` halfway through what is left of its stream, for another process
        (one done with its own part) to build the rest from there: the sequence this process stops
        at (the rows up to it are this process's, the others the other's, and the read model's
        position is where the other process stops), or None when it cannot be split: not a
        history (its rows would depend on events the other process does not read), not read alone,
        not being read now, or less than two batches left."""
        group = next((g for g in self.groups if [p.name for p in g.projections] == [name]), None)
        if group is None or not isinstance(group.projections[0], HistoryProjection) or group.progress is None:
            return None
        if group.until is not None:
            return None
        start = max(group.progress.position, group.applying)
        left = group.progress.last - start
        if left < 2 * self.batch:
            return None
        group.until = start + left // 2
        return group.until

    async def adopt(self, positions: dict[str, tuple[str, int]], part_file: Path | None = None) -> None:
        """Take in the projections another process built (``elsewhere``): their positions and,
        where it built them into a database of its own (``part_file``: SQLite lets one process
        write a file at a time), their rows, copied into this database's shadow tables."""
        assert self.shadow is not None
        if missing := sorted(self.elsewhere - set(positions)):
            raise RebuildFailed(f"the other process did not build {', '.join(missing)}")
        self.adopted.update({name: tuple(at) for name, at in positions.items()})  # type: ignore[misc]
        if part_file is None:
            return
        own = {table.name for table in self._tables(own=True)}
        tables = self._tables(of=set(positions))
        await self._create_shadows([table for table in tables if table.name not in own])
        async with self.shadow.connect() as conn:
            quote = conn.dialect.identifier_preparer.quote  # the shadow names, as in the part's file
            await conn.exec_driver_sql("ATTACH DATABASE ? AS part", (str(part_file),))
            try:
                for table in tables:
                    columns = ", ".join(quote(column.name) for column in table.columns)
                    name = quote(table.name)
                    await conn.exec_driver_sql(f"INSERT INTO main.{name} ({columns}) SELECT {columns} FROM part.{name}")
                await conn.commit()
            finally:
                await conn.exec_driver_sql("DETACH DATABASE part")

    async def _flush_documents(self) -> None:
        """Write every row still only in memory, and commit."""
        conn = await self._transaction()
        for group in self.groups:
            for documents in group.documents:
                await documents.flush(conn)
        await self._commit()

    async def swap(self, *, read_first: bool = True) -> None:
        """Read what came meanwhile, write the cached rows and the indexes, and swap.
        (``read_first=False``: swap at the position ``build()`` reached, as when events come
        between the rebuild's last read and its swap.)"""
        assert self.shadow is not None
        started = time.monotonic()
        for group in self.groups if read_first else ():
            await self._read_to_end(group)
        await self._flush_documents()
        await self._create_deferred_indexes()
        for group in self.groups if read_first else ():  # what came while the indexes were made
            await self._read_to_end(group)
        await self._flush_documents()
        for attempt in range(5):
            try:
                await self._swap_tables()
                break
            except Exception as err:  # a deadlock with a projector's batch: try again
                if not transient_db_error(err) or attempt == 4:
                    raise
                log.warning("swap not done, retrying", extra={"error": repr(err)})
                await asyncio.sleep(0.2 * (attempt + 1))
        self.swap_seconds = time.monotonic() - started
        swapped: dict[tuple[str, int], list[str]] = {}
        for name, at in self.positions().items():
            swapped.setdefault(at, []).append(name)
        order = [p.name for p in self.projections]
        for (stream, position), names in swapped.items():
            names.sort(key=order.index)
            self.say(f"{stream}: swapped in {', '.join(names)} at sequence {position:,}")

    async def _swap_tables(self) -> None:
        tables = self._tables()
        async with self.live.begin() as conn:
            dialect = conn.dialect.name
            quote = conn.dialect.identifier_preparer.quote
            if dialect == "postgresql":
                present = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
                held = sorted(t.name for t in tables if t.name in present)
                if held:
                    await conn.execute(text(f"LOCK TABLE {', '.join(map(quote, held))} IN ACCESS EXCLUSIVE MODE"))
            # A write first: SQLite's transaction begins with it, so the DDL below is inside it.
            now = datetime.now(UTC)
            reached = self.positions()
            for projection in self.projections:
                stream, position = reached[projection.name]
                await conn.execute(
                    upsert(checkpoints, dialect),
                    {
                        "projection": projection.name,
                        "stream": stream,
                        "position": position,
                        "version": projection.version,
                        "updated_at": now,
                    },
                )
            for table in reversed(tables):
                await conn.execute(text(f"DROP TABLE IF EXISTS {quote(table.name)}"))
            for table in tables:
                await conn.execute(text(f"ALTER TABLE {quote(table.name + SUFFIX)} RENAME TO {quote(table.name)}"))
            if dialect == "postgresql":
                for table in tables:
                    rows = await conn.execute(
                        text("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t"),
                        {"t": table.name},
                    )
                    for (name,) in rows.all():
                        if SUFFIX in name:
                            await conn.execute(
                                text(f"ALTER INDEX {quote(name)} RENAME TO {quote(name.replace(SUFFIX, '', 1))}")
                            )

    async def run(
        self, beside: Awaitable[list[tuple[dict[str, tuple[str, int]], Path | None]]] | None = None
    ) -> dict[str, Any]:
        """``build()`` then ``swap()``; returns what was done (and ``close()``s). ``beside``: the
        other parts of a split rebuild, built meanwhile by other processes: what each reached and
        the file it wrote into (None: this database), ``adopt``ed before the swap; the first of
        them or of this build to fail cancels the others and fails the rebuild."""
        started = time.monotonic()
        try:
            if beside is None:
                await self.build()
            else:
                _, parts = await _all_or_none([self.build(), beside])
                for positions, file in parts:
                    await self.adopt(positions, file)
            await self.swap()
        except TRANSIENT_DB_ERRORS as err:
            raise RebuildFailed(f"the database failed ({err!r}); the read models are as they were") from err
        finally:
            await self.close()
        return self.report(time.monotonic() - started)

    def report(self, seconds: float) -> dict[str, Any]:
        streams = {}
        for group in self.groups:
            assert group.progress is not None
            streams[group.stream] = {
                "projections": [p.name for p in group.projections],
                "position": group.progress.position,
                "messages": group.progress.messages,
                "events": group.progress.events,
            }
        return {
            "seconds": round(seconds, 2),
            "swap_seconds": round(self.swap_seconds or 0.0, 2),
            "events": sum(s["events"] for s in streams.values()),
            "skipped": self.skipped,
            "streams": streams,
        }

    async def close(self) -> None:
        """Let go of the consumers (the server removes them), roll back what was not committed,
        dispose."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.rollback()
            with contextlib.suppress(Exception):
                await conn.close()
        for group in self.groups:
            if group.subscription is not None:
                subscription, group.subscription = group.subscription, None
                try:
                    await subscription.stop()
                    await self.js.delete_consumer(group.stream, group.consumer)
                except Exception as err:  # the server removes it once idle anyway
                    log.warning("rebuild consumer not removed", extra={"consumer": group.consumer, "error": repr(err)})
        if self.shadow is not None:
            await self.shadow.dispose()
            self.shadow = None
        await self.live.dispose()


async def _all_or_none(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """The results of ``awaitables`` run at once; the first to fail cancels the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        return [task.result() for task in tasks]  # raises the first failure
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_checkpoint(engine: AsyncEngine, projection: str) -> tuple[int, int] | None:
    """(position, version) stored for ``projection``, if any."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(checkpoints.c.position, checkpoints.c.version).where(checkpoints.c.projection == projection)
            )
        ).first()
    return None if row is None else (row.position, row.version)
