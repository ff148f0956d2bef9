"""The projector: read models built from a stream, each event taking effect exactly once.

A projection's position (the stream sequence of the last event it applied) is stored in the
projection's own database, in the same transaction as the batch of changes it covers
(eventsourcing's tracking records). Acks go to JetStream only after the commit; an event whose
sequence is at or below the position is acknowledged and skipped. So after a crash at any
point, nothing is lost and nothing is applied twice.

The consumer is durable, pulled in batches, and is re-created at every start from the stored
position: the database, not the consumer's ack floor, says where the projection stands, and a
fresh consumer delivers strictly in stream order (a consumer left with un-acked messages would
hand out newer ones first). We drive nats-py directly rather than a FastStream subscriber for
this reason: FastStream declares consumers from static configuration and runs a batch's
handlers concurrently unless told otherwise, while the projector must position its consumer
from the database and apply strictly in order. One projector process per projection.

A message whose handler fails is retried in place (the batch is re-applied one message at a
time, each in its own transaction); after ``max_deliver`` attempts it goes to the dead-letter
stream with its error and the projection moves past it, so later events keep flowing. A failing
database is not a poison message: that is retried until the database is back. Nor does the
projection ever move past an event it neither applied nor stored as a dead letter: if the
dead-letter publish fails (the server away, or refusing it), the event is held and tried again,
applying it and then dead-lettering it, until one of the two succeeds.

Acknowledgement is ``AckPolicy.ALL``: one ack after each commit covers its batch.

Per event the projector does as little as it can, because it is CPU-bound in its own process
(bench/: ``project_vs_raw``). It fetches, as every consumer does, through ``Batches``
(``bus/batches.py``): the pull requests nats-py's ``fetch`` sends, answered into a plain
subscription, without the task, timer and uuid nats-py's ``fetch`` spends on every message
(about half of the projector's CPU before, bench/).
Which event types a projection wants is decided once per ``Duban-Event-Types`` value, and
commits it does not want are not decoded; the stream sequence
that decides whether a message is fresh is read from its reply subject (nats-py's full
``metadata`` costs about 4 µs a message); the wanted commits of a batch are validated in one
call (``decode_commits``); the checkpoint statement is built once per dialect. On SQLite a
batch also costs round trips to aiosqlite's thread (SQLAlchemy's adapter makes a cursor,
executes, fetches and closes per statement; then the commit and the pool's reset; a document
projection reads and writes with one each: ``documents.py``), each a thread switch of 40-80 µs
on the benchmark's machine: a larger ``projector_batch`` spreads them, and the other per-batch
costs, over more events (bench/ at 1000 instead of 500: about 0.07 more ``project_vs_raw``).

Fetching the next batch while the current one is applied was measured and dropped: the event
loop then parses messages while aiosqlite's thread waits for the GIL to hand back each result,
and the projector got 15-25 % slower (measured again with ``Batches``: about 12 % slower). (The
sqlite3 module releases the GIL around every step, that is every row, and takes it back after:
with the event loop busy parsing, each row can wait for the interpreter's switch interval.)

A read model may be replaced under a running projector: ``duban rebuild`` builds a projection's
tables again beside the ones the service answers from and swaps them in (``rebuild.py``), with
the checkpoint of what it applied. So the checkpoint is written only if it still holds the
position (and version) this projector last stored (``… ON CONFLICT DO UPDATE … WHERE position =
:expected``, the same one statement as before): when it does not, the batch is rolled back, and the projector
reads the new position and positions its consumer right after it (``CheckpointMoved``). Whichever
of the two committed first, each event takes effect once in the read model that is kept. A
projector never drops a read model that newer code built (a higher ``version``): it waits for
its own process to be replaced by that code.

While it applies a batch the projector pauses automatic cyclic garbage collection
(``gc_paused``): the batch's objects all live until the commit, so collections during it only
walk them again and again; bench/ measured 1.0-1.4 s of collections per 100,000 events without
the pause (about a tenth of the projector's time), 0.1-0.2 s with it (while fetching, as in the
raw consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import MetaData, Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from contracts import subjects
from contracts.envelope import EVENT_TYPES_HEADER, Envelope, decode_commits
from contracts.events import Event, upcast
from services.runtime.bus.pull import PullConsumer, Reconnected
from services.runtime.es.unavailable import DATABASE_ERRORS, database_unavailable
from services.runtime.observe.metrics import HANDLER_SECONDS, MESSAGES_HANDLED
from services.runtime.observe.telemetry import extract_context, tracer
from services.runtime.settings import Settings

from .db import DriverStatement, checkpoints, driver_statement, on_driver, runtime_metadata, writing

log = logging.getLogger("duban.projector")

#: A database that fails like this is down, not given a bad event: wait for it, never dead-letter.
TRANSIENT_DB_ERRORS = (*DATABASE_ERRORS, OSError)


def transient_db_error(err: BaseException) -> bool:
    """Whether ``err`` is the database away or refusing for a moment (``database_unavailable``:
    a deadlock too), or the connection to it failing: the same transaction, tried again, can
    succeed."""
    return isinstance(err, OSError) or database_unavailable(err)


Handler = Callable[[Any, AsyncSession, Event, Envelope], Awaitable[None]]


@functools.cache
def upsert(table: Table, dialect: str):
    """``INSERT … ON CONFLICT (primary key) DO UPDATE`` of every column, built once per table and
    dialect; execute it with one row of parameters or many (executemany)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )


@functools.cache
def _checkpoint_upsert(dialect: str):
    """The checkpoint written only over the position the projector expects (``:expected``) and
    its own version: no row is changed when another writer (a rebuild's swap) replaced it."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(checkpoints)
    return stmt.on_conflict_do_update(
        index_elements=[checkpoints.c.projection],
        set_={c.name: stmt.excluded[c.name] for c in checkpoints.columns if c.name != "projection"},
        where=(checkpoints.c.position == bindparam("expected")) & (checkpoints.c.version == stmt.excluded.version),
    )


@functools.lru_cache(maxsize=4)
def _checkpoint_plan(dialect) -> DriverStatement | None:
    """On aiosqlite: ``_checkpoint_upsert`` compiled once for the driver (``db.driver_statement``);
    None elsewhere."""
    return driver_statement(_checkpoint_upsert(dialect.name), dialect) if dialect.driver == "aiosqlite" else None


#: Links a projection batch's span carries at most: the SDK's default limit
#: (``OTEL_SPAN_LINK_COUNT_LIMIT``), beyond which it would drop them silently.
LINKS_PER_SPAN = 128


def _chunks(items: list[Msg], size: int) -> Iterator[list[Msg]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CheckpointMoved(Exception):
    """The stored position is not the one this projector last wrote: its read model was replaced
    (``duban rebuild``'s swap) or another process projects it too. The batch is rolled back."""


class NewerReadModel(RuntimeError):
    """The read model was built by a newer version of the projection than this code's."""


#: Events already upcast in the batch being applied, by envelope (see ``event_of``).
_shared_events: contextvars.ContextVar[dict[int, tuple[Envelope, Event]] | None] = contextvars.ContextVar(
    "duban_shared_events", default=None
)


def event_of(envelope: Envelope) -> Event:
    """The typed event of ``envelope`` (upcast to the current schema). Inside ``shared_events()``
    each envelope is upcast once however many projections apply it (a rebuild applies one batch
    to all the projections of a stream)."""
    memo = _shared_events.get()
    if memo is None:
        return upcast(envelope.event_type, envelope.schema_version, envelope.payload)
    entry = memo.get(id(envelope))
    if entry is None or entry[0] is not envelope:
        entry = memo[id(envelope)] = (envelope, upcast(envelope.event_type, envelope.schema_version, envelope.payload))
    return entry[1]


@contextmanager
def shared_events() -> Iterator[None]:
    """Upcast each envelope once inside this block (``event_of``); hold the envelopes until it ends."""
    token = _shared_events.set({})
    try:
        yield
    finally:
        _shared_events.reset(token)


_gc_pauses = 0
_gc_resume = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection inside: while the projector applies a batch.

    A batch makes about twenty objects the collector tracks per event (nats-py's message and
    its headers, the envelope and event models with their dicts, the rows read and written), and
    they all stay alive until the commit. CPython 3.11 runs a young collection every 700 net
    allocations of such objects, so it walks the batch over and over without finding anything
    to free, promotes it, and every few batches runs a full collection of the whole heap: about
    a tenth of the projector's time in bench/ (``gc.callbacks``: 1.0-1.4 s of collections for
    100,000 events, 12 of them full). Inside this block nothing is collected automatically; the
    batch's objects are freed by reference counting when it ends, and any cycle made meanwhile
    is collected by the first collection after it (``gc.collect()`` works as always). Nested
    and interleaved uses (several projectors in one event loop) share one pause, which lasts
    until none of them is applying a batch (fetching, most of a projector's time, is outside
    it); a process that turned the collector off keeps it off. Not thread-safe: the event
    loop's thread only.
    """
    global _gc_pauses, _gc_resume
    if _gc_pauses == 0:
        _gc_resume = gc.isenabled()
        gc.disable()
    _gc_pauses += 1
    try:
        yield
    finally:
        _gc_pauses -= 1
        if _gc_pauses == 0 and _gc_resume:
            gc.enable()


def handles(event_type: type[Event]) -> Callable[[Handler], Handler]:
    """Mark a projection method as the one that applies ``event_type`` to the read model."""

    def mark(fn: Handler) -> Handler:
        fn.__handles__ = event_type  # type: ignore[attr-defined]
        return fn

    return mark


class Projection:
    """A read model: its tables, the streams it reads, and one ``@handles`` method per event.

    Event types the projection has no method for are skipped without being decoded. Bump
    ``version`` when the tables or the handling change: the projection is then rebuilt.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    metadata: ClassVar[MetaData]
    _handlers: ClassVar[dict[str, Handler]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Handler] = {}
        for klass in reversed(cls.__mro__):
            for member in vars(klass).values():
                target = getattr(member, "__handles__", None)
                if target is not None:
                    found[target.event_type] = member
        cls._handlers = found

    def wants(self, event_type: str) -> bool:
        return event_type in self._handlers

    async def apply(self, session: AsyncSession, envelope: Envelope) -> None:
        handler = self._handlers.get(envelope.event_type)
        if handler is not None:
            await handler(self, session, event_of(envelope), envelope)

    async def apply_batch(self, session: AsyncSession, envelopes: list[Envelope]) -> None:
        """Apply a batch in order inside the projector's transaction.

        One event at a time by default; a projection that can do better (read the rows a batch
        touches at once, write them back at once) overrides this: see ``DocumentProjection``.
        """
        for envelope in envelopes:
            await self.apply(session, envelope)


class Projector(PullConsumer):
    """Runs one projection over one stream into one database."""

    def __init__(
        self,
        nc: NATS,
        projection: Projection,
        engine: AsyncEngine,
        *,
        stream: str,
        filter_subjects: list[str],
        jurisdiction: str,
        context: str,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(
            nc,
            stream=stream,
            durable=f"proj_{projection.name}",
            filter_subjects=filter_subjects,
            jurisdiction=jurisdiction,
            context=context,
            settings=settings,
        )
        self.projection = projection
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.position = 0
        #: Whether the projection wants a commit, by its ``Duban-Event-Types`` header value.
        self._wanted_types: dict[str, bool] = {}
        self._subject_template = subjects.event_subject_template(context)
        self._span_name = f"process {self._subject_template}"
        #: The connection's reconnect count when the consumer was made (``_fetch_in_order``).
        self._made_at_reconnect = 0

    # -- setup -----------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Create the tables, read the position (rebuilding if the code version changed), and
        position the consumer right after it."""
        async with self.engine.begin() as conn:
            await conn.run_sync(runtime_metadata.create_all)
            row = (
                await conn.execute(select(checkpoints).where(checkpoints.c.projection == self.projection.name))
            ).first()
        if row is not None and row.version > self.projection.version:
            raise NewerReadModel(
                f"read model {self.projection.name} was built by version {row.version} of its projection, this code"
                f" has version {self.projection.version}: it is left as it is (run this service's newer code, or"
                f" `duban rebuild` with this code to build it again)"
            )
        if row is not None and row.version != self.projection.version:
            log.warning(
                "projection version changed, rebuilding",
                extra={"projection": self.projection.name, "stored": row.version, "code": self.projection.version},
            )
            await self._drop()
            row = None
        if row is not None and row.position > (last := (await self.js.stream_info(self.stream)).state.last_seq):
            # The stream was restored from a copy older than what this read model had seen
            # (``duban restore`` from a mirror that lagged): its later events are gone, so the
            # read model is built again from what the stream holds.
            log.warning(
                "read model ahead of its stream (restored from an older copy), rebuilding",
                extra={"projection": self.projection.name, "checkpoint": row.position, "stream_last": last},
            )
            await self._drop()
            row = None
        async with self.engine.begin() as conn:
            await conn.run_sync(self.projection.metadata.create_all)
        self.position = row.position if row is not None else 0
        await self._reset_consumer()

    async def _reset_consumer(self) -> None:
        self._made_at_reconnect = self.nc.stats["reconnects"]
        await self.close()
        try:
            await self.js.delete_consumer(self.stream, self.durable)
        except NotFoundError:
            pass
        await self.bind(
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.ALL,
                ack_wait=120,
                max_deliver=-1,
                max_ack_pending=self.settings.projector_batch * 2,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if self.position else DeliverPolicy.ALL,
                opt_start_seq=self.position + 1 if self.position else None,
                description=f"projection {self.projection.name}",
            )
        )

    async def _drop(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(runtime_metadata.create_all)
            await conn.run_sync(self.projection.metadata.drop_all)
            await conn.execute(delete(checkpoints).where(checkpoints.c.projection == self.projection.name))
        self.position = 0

    async def rebuild(self) -> None:
        """Drop the read model and replay the stream from sequence 1."""
        await self._drop()
        await self.prepare()
        await self.catch_up()

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Project until ``stop()``; call ``prepare()`` first."""
        log.info("projector running", extra={"projection": self.projection.name, "position": self.position})
        await super().run()

    async def step(self, timeout: float | None = None) -> int:
        """Fetch and apply one batch; returns how many messages were applied or skipped."""
        msgs = await self._fetch_in_order(timeout)
        if msgs:
            await self.handle_batch(msgs)
        return len(msgs)

    async def _fetch_in_order(self, timeout: float | None) -> list[Msg]:
        """The next batch, strictly after the position; ``Reconnected`` (nothing applied) when the
        connection was lost since the consumer was made, for the consumer to be made again from
        the checkpoint (``prepare``). What the server delivered just before the link broke may
        never have come: the consumer holds it unacknowledged until its ack wait and hands out
        newer events first, which the position would then pass (and the ack of a later batch
        settle), so it would never be applied."""
        msgs = await self.fetch(self.settings.projector_batch, timeout)
        if self.nc.stats["reconnects"] != self._made_at_reconnect:
            log.warning(
                "reconnected to NATS: the batch fetched across it dropped, the consumer to be made again",
                extra={"projection": self.projection.name, "position": self.position, "dropped": len(msgs)},
            )
            raise Reconnected(self.durable)
        return msgs

    async def catch_up(self, timeout: float = 120.0) -> None:
        """Apply everything the stream holds now (for tests, rebuilds and one-shot runs)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                msgs = await self._fetch_in_order(0.2)
            except Reconnected:
                await self._reset_consumer()
                continue
            if msgs:
                await self.handle_batch(msgs)
                if msgs[-1].metadata.num_pending == 0 and self.position >= _stream_sequence(msgs[-1]):
                    return  # the server says nothing more is waiting behind this batch, now applied
            elif await self.idle():
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"projection {self.projection.name} did not catch up in {timeout}s")

    async def handle_batch(self, msgs: list[Msg]) -> None:
        started = time.perf_counter()
        fresh = [m for m in msgs if _stream_sequence(m) > self.position]
        try:
            if fresh:
                await self._applied_once_the_database_answers(fresh)
        except CheckpointMoved:
            await self._reposition()
            return  # nothing of this batch applied or acknowledged: the new consumer delivers it
        except Exception as err:
            log.warning(
                "batch failed, applying one by one",
                extra={"projection": self.projection.name, "error": repr(err)},
            )
            try:
                for msg in fresh:
                    await self._apply_alone(msg)
            except CheckpointMoved:
                await self._reposition()
                return
        # AckPolicy.ALL: one ack, after the commit, covers the whole batch.
        await msgs[-1].ack()
        HANDLER_SECONDS.labels(self.durable).observe(time.perf_counter() - started)
        MESSAGES_HANDLED.labels(self.durable, "ok").inc(len(fresh))

    async def _applied_once_the_database_answers(self, msgs: list[Msg]) -> None:
        """``msgs`` applied in one transaction, tried again while the database is away or refuses
        for a moment (logged; every 0.5 s doubling to 10 s); any other error is the caller's."""
        delay = 0.5
        while True:
            try:
                return await self._apply_in_one_transaction(msgs)
            except CheckpointMoved:
                raise
            except Exception as err:
                if not transient_db_error(err):
                    raise
                log.error(
                    "database unavailable, retrying",
                    extra={"projection": self.projection.name, "error": repr(err)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _apply_in_one_transaction(self, msgs: list[Msg]) -> None:
        # The pause ends after ``_apply_and_commit`` has returned, so after its envelopes, rows and
        # session are gone: what the batch made is freed by reference counting, never walked.
        with gc_paused():
            await self._apply_and_commit(msgs)

    async def _apply_and_commit(self, msgs: list[Msg]) -> None:
        wanted = [msg for msg in msgs if self._wanted(msg)]
        envelopes = decode_commits([msg.data for msg in wanted])
        async with writing(self.engine):
            with self._process_spans(wanted):
                async with self.sessions() as session, session.begin():
                    if envelopes:
                        await self.projection.apply_batch(session, envelopes)
                    last = _stream_sequence(msgs[-1])
                    await self._save_position(session, last)
        self.position = last

    async def _apply_alone(self, msg: Msg) -> None:
        attempts = 0
        delay = 0.05
        while True:
            try:
                await self._applied_once_the_database_answers([msg])
                return
            except CheckpointMoved:
                raise
            except Exception as err:
                attempts += 1
                if attempts >= self.settings.max_deliver:
                    if await self._dead_letter(msg, attempts, err):
                        return
                    attempts -= 1  # held: the next failure tries the dead letter again
                with contextlib.suppress(Exception):  # the server may be away
                    await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _dead_letter(self, msg: Msg, attempts: int, error: BaseException) -> bool:
        """Set a poison event aside and move past it; False (nothing moved) if the dead letter
        could not be stored."""
        seq = msg.metadata.sequence.stream
        try:
            await self.dead_letter(msg, sequence=seq, attempts=attempts, error=error)
        except Exception as err:
            MESSAGES_HANDLED.labels(self.durable, "unsettled").inc()
            log.error(
                "event not dead-lettered, the projection waits on it",
                extra={
                    "projection": self.projection.name,
                    "seq": seq,
                    "error": repr(error),
                    "dead_letter_error": repr(err),
                },
            )
            return False
        MESSAGES_HANDLED.labels(self.durable, "dead_letter").inc()
        async with self.sessions() as session, session.begin():
            await self._save_position(session, seq)
        self.position = seq
        return True

    def _wanted(self, msg: Msg) -> bool:
        types = (msg.headers or {}).get(EVENT_TYPES_HEADER)
        if types is None:
            return True
        wanted = self._wanted_types.get(types)
        if wanted is None:
            if len(self._wanted_types) > 10_000:  # bounded: only as many as combinations occur
                self._wanted_types.clear()
            wanted = self._wanted_types[types] = any(self.projection.wants(t) for t in types.split(","))
        return wanted

    @contextmanager
    def _process_spans(self, wanted: list[Msg]) -> Iterator[None]:
        """One consumer span per projection batch, covering the transaction that applied it, as
        the messaging conventions have a batch processed: linked to the span that appended each
        of its messages (through the trace context in their headers), at most ``LINKS_PER_SPAN``
        links a span (the SDK's limit; a larger batch has one span per ``LINKS_PER_SPAN`` of its
        messages). A batch of one message has its span a child of that append instead, so a
        matter handled at a walking pace has its read models' work in its own trace as before.
        ``duban trace`` follows the links. Messages the projection skips unread count for
        nothing: they are not delivered to it in any sense an operator follows, so ``wanted``
        is the batch without them (``_wanted``, decided once for the decoding and the spans).

        Spans are the largest cost of tracing (about 50 µs each in a running service here: 27–33
        to start, 6 to end, 14 to write in the export thread; bench/traced.py's note): a
        span per message was half the spans of a matter's journey, and under a burst or a
        catch-up, batches of tens to a thousand events now make one span each instead."""
        if not isinstance(trace.get_tracer_provider(), SdkTracerProvider):
            yield  # tracing is off: not even the headers are parsed
            return
        if len(wanted) == 1:
            msg = wanted[0]
            spans = [
                tracer().start_span(
                    self._span_name,
                    context=extract_context(msg.headers),
                    kind=SpanKind.CONSUMER,
                    attributes={**self.span_attributes(msg), "duban.aggregate.id": msg.subject.rsplit(".", 1)[-1]},
                )
            ]
        else:
            spans = [
                tracer().start_span(
                    self._span_name,
                    context=otel_context.Context(),  # a trace of its own, linked to its messages'
                    kind=SpanKind.CONSUMER,
                    links=[
                        trace.Link(trace.get_current_span(extract_context(msg.headers)).get_span_context())
                        for msg in chunk
                    ],
                    attributes=self.consumer_attributes(
                        {
                            "messaging.destination.template": self._subject_template,
                            "messaging.batch.message_count": len(chunk),
                        }
                    ),
                )
                for chunk in _chunks(wanted, LINKS_PER_SPAN)
            ]
        try:
            yield
        except Exception as err:
            for span in spans:
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    async def _save_position(self, session: AsyncSession, position: int) -> None:
        """Store ``position`` over the one this projector stored last; ``CheckpointMoved`` (the
        caller's transaction then rolls back) when that is no longer there."""
        values = {
            "projection": self.projection.name,
            "stream": self.stream,
            "position": position,
            "version": self.projection.version,
            "updated_at": datetime.now(UTC),
            "expected": self.position,
        }
        conn = await session.connection()  # Core, on the session's transaction: no ORM work to do
        plan = _checkpoint_plan(conn.dialect)
        if plan is not None:  # one call into aiosqlite's thread (db.on_driver)
            arguments = plan.arguments(values)
            changed = (await on_driver(conn, plan.sql, lambda driver: driver.execute(plan.sql, arguments))).rowcount
        else:
            changed = (await conn.execute(_checkpoint_upsert(conn.dialect.name), values)).rowcount
        if changed == 0:
            raise CheckpointMoved(f"projection {self.projection.name}: checkpoint no longer at {self.position}")

    async def _reposition(self) -> None:
        """After ``CheckpointMoved``: go on from the stored position with a consumer positioned
        right after it; a read model of another version is left to ``prepare()`` (the worker
        fails, and the service prepares it again)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(checkpoints).where(checkpoints.c.projection == self.projection.name))
            ).first()
        if row is None or row.version != self.projection.version:
            raise RuntimeError(
                f"read model {self.projection.name} replaced by "
                + ("nothing" if row is None else f"version {row.version}")
                + f" (this code: version {self.projection.version})"
            )
        log.warning(
            "read model replaced (rebuilt and swapped in), continuing from its checkpoint",
            extra={"projection": self.projection.name, "was": self.position, "checkpoint": row.position},
        )
        self.position = row.position
        await self._reset_consumer()


def _stream_sequence(msg: Msg) -> int:
    """A JetStream message's stream sequence, read from its reply subject alone: what
    ``msg.metadata.sequence.stream`` says, without building nats-py's whole ``Metadata`` (a
    datetime and two dataclasses, about 4 µs) for every message of every batch."""
    tokens = msg.reply.split(".") if msg.reply else ()
    if len(tokens) >= 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.…
            return int(tokens[5])
        if len(tokens) >= 11:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.…
            return int(tokens[Msg.Ack.StreamSeq])
    return msg.metadata.sequence.stream  # not a JetStream delivery: nats-py raises its error


async def read_position(engine: AsyncEngine, projection: str) -> int:
    """The stored position of a projection (0 if it never ran)."""
    async with engine.connect() as conn:
        value = await conn.scalar(select(checkpoints.c.position).where(checkpoints.c.projection == projection))
    return value or 0


async def caught_up(
    engine: AsyncEngine, js, projections: dict[str, str], *, timeout: float = 10.0, interval: float = 0.05
) -> bool:
    """Wait, bounded, until each projection (name → its stream) has applied everything its stream
    held when this was called: what a request reads then includes all that was accepted before
    it was asked for (read models lag their events). False if one did not catch up in time."""
    targets = {name: (await js.stream_info(stream)).state.last_seq for name, stream in projections.items()}
    deadline = asyncio.get_running_loop().time() + timeout
    for name, target in targets.items():
        while await read_position(engine, name) < target:
            if asyncio.get_running_loop().time() > deadline:
                log.warning("read model behind its stream", extra={"projection": name, "target": target})
                return False
            await asyncio.sleep(interval)
    return True
