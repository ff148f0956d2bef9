"""The projector on SQLite and PostgreSQL: batches, checkpoints, rebuilds and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import nats
import pytest

from contracts import subjects
from contracts.envelope import decode_commit, new_id
from services.runtime.bus.deadletters import ATTEMPTS, ERROR, ORIGINAL_SEQUENCE, ORIGINAL_SUBJECT, text_of_header
from services.runtime.es.eventstore import EventStore
from services.runtime.read.db import make_engine
from services.runtime.read.projector import Projector, read_position
from services.runtime.service import ServiceBase
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.sample import Counter, CounterProjection, Incremented, Poisoned, counter_projector, counter_rows

JURISDICTION = "331081"


@pytest.fixture
async def store(nc, unique):
    store = EventStore(nc, context=unique, jurisdiction=JURISDICTION)
    await store.ensure_streams()
    return store


def projector_for(nc, store, engine, **settings) -> Projector:
    return counter_projector(
        nc, engine, context=store.context, jurisdiction=JURISDICTION, projector_batch=50, **settings
    )


async def write_counters(store, n_aggregates: int, n_events: int) -> dict[str, int]:
    ids = [new_id() for _ in range(n_aggregates)]
    expected = dict.fromkeys(ids, 0)
    aggregates = {i: Counter(id=i) for i in ids}
    for _ in range(n_events):
        aggregate_id = random.choice(ids)
        counter = aggregates[aggregate_id]
        events = counter.open("c") if not counter.exists else counter.increment(1)
        await store.append(counter, events)
        expected[aggregate_id] += 1
    return {k: v for k, v in expected.items() if v}


async def test_each_event_takes_effect_once_and_the_position_is_stored(nc, store, engine):
    expected = await write_counters(store, 20, 300)
    projector = projector_for(nc, store, engine)
    await projector.prepare()
    await projector.catch_up()
    rows = await counter_rows(engine)
    assert {k: v[0] for k, v in rows.items()} == expected
    assert await read_position(engine, "counters") == 300


async def test_a_restarted_projector_resumes_from_its_checkpoint(nc, store, engine):
    first = await write_counters(store, 10, 100)
    projector = projector_for(nc, store, engine)
    await projector.prepare()
    await projector.catch_up()
    second = await write_counters(store, 10, 50)
    restarted = projector_for(nc, store, engine)  # a new process would do exactly this
    await restarted.prepare()
    assert restarted.position == 100
    await restarted.catch_up()
    rows = await counter_rows(engine)
    assert sum(v[0] for v in rows.values()) == sum(first.values()) + sum(second.values()) == 150


async def test_redelivered_events_below_the_checkpoint_are_skipped(nc, store, engine):
    await write_counters(store, 5, 40)
    projector = projector_for(nc, store, engine)
    await projector.prepare()
    await projector.catch_up()
    before = await counter_rows(engine)
    # as if acks had been lost: the consumer hands the same events out again
    projector.position = 0
    await projector._reset_consumer()
    projector.position = await read_position(engine, "counters")
    await projector.catch_up()
    assert await counter_rows(engine) == before


@contextlib.asynccontextmanager
async def restartable_server(tmp_path, engine, unique):
    """A nats-server of the test's own (to be stopped or killed and started again on its store),
    a client that reconnects to it, 30 events and a prepared projector of them."""
    server = EmbeddedNats(tmp_path / "nats")
    await asyncio.to_thread(server.start, 20)
    client = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        store = EventStore(client, context=unique, jurisdiction=JURISDICTION)
        await store.ensure_streams()
        await write_counters(store, 5, 30)
        projector = projector_for(client, store, engine)
        await projector.prepare()
        yield server, client, store, projector
    finally:
        await client.close()
        await asyncio.to_thread(server.stop)


async def test_after_a_reconnect_what_the_server_delivered_into_the_broken_link_is_applied_all_the_same(
    tmp_path, engine, unique
):
    """The server had delivered events to the projector just before the link broke, and they
    never came (here: taken by another client on the projector's consumer, never acknowledged,
    and the server restarted). The consumer holds them until its ack wait and hands out newer
    events first: the projector makes its consumer again from its checkpoint after a reconnect,
    so it applies them in order, and none is passed over."""
    async with restartable_server(tmp_path, engine, unique) as (server, client, store, projector):
        await projector.catch_up()
        await write_counters(store, 5, 20)
        thief = await nats.connect(server.url)
        lost = await thief.jetstream().pull_subscribe_bind(durable=projector.durable, stream=projector.stream)
        assert len(await lost.fetch(20, timeout=5)) == 20  # delivered, never acknowledged
        await thief.close()
        await asyncio.to_thread(server.stop)  # its consumers' state kept on disk
        await asyncio.to_thread(server.start, 20)
        await wait_until(lambda: client.is_connected and client.stats["reconnects"] == 1)
        await write_counters(store, 5, 10)
        await asyncio.wait_for(projector.catch_up(), 60)
        assert await read_position(engine, "counters") == 60
        rows = await counter_rows(engine)
        assert sum(events for events, _ in rows.values()) == 60


async def test_a_served_projector_goes_on_after_the_server_is_killed_with_a_warning_and_no_error(
    tmp_path, engine, unique, caplog
):
    """As a service runs it (``ServiceBase._keep_running``): the nats-server killed (SIGKILL) and
    started again on its store while the projector runs; the projector makes its consumer again
    from its checkpoint once the restarted server's JetStream answers, logging warnings only (an
    interruption, not a failure: no error, no traceback), and applies everything written before
    and after."""
    async with restartable_server(tmp_path, engine, unique) as (server, client, store, projector):
        served = asyncio.create_task(ServiceBase(Settings(jurisdiction=JURISDICTION))._keep_running(projector))
        try:
            await wait_until(lambda: projector.position == 30)
            caplog.clear()
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start, 20)
            await wait_until(lambda: client.is_connected and client.stats["reconnects"] == 1)
            await write_counters(store, 5, 10)
            await wait_until(lambda: projector.position == 40, timeout=60)
        finally:
            projector.stop()
            served.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await served
    rows = await counter_rows(engine)
    assert sum(events for events, _ in rows.values()) == 40
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("duban")]
    assert ("WARNING", "reconnected to NATS, worker prepared again") in logged
    # (nats-py's own client logs its failed reconnect attempts; a service passes its callbacks)
    assert not [r for r in caplog.records if r.name.startswith("duban") and r.levelno >= logging.ERROR], logged


async def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.05)


async def test_the_projectors_of_one_sqlite_database_never_wait_on_its_lock(nc, store, tmp_path, caplog):
    """Two projections of one service share its SQLite file; SQLite lets one writer in and makes
    the other retry in its busy handler (sleeping up to 100 ms a try). The projectors of a process
    take turns instead: with no busy timeout at all, neither is ever refused ("database is
    locked"), and both apply everything."""
    from sqlalchemy import Column, MetaData, Table

    from tests.support.sample import CounterProjection, counters

    other_metadata = MetaData()

    class OtherCounters(CounterProjection):
        name = "other_counters"
        metadata = other_metadata
        table = Table(
            "other_counters",
            other_metadata,
            *(Column(c.name, c.type, primary_key=c.primary_key) for c in counters.columns),
        )

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}", connect_args={"timeout": 0})
    try:
        await write_counters(store, 10, 400)
        first, second = (
            Projector(
                nc,
                projection,
                engine,
                stream=subjects.event_stream(store.context, JURISDICTION),
                filter_subjects=[subjects.event_wildcard(store.context, JURISDICTION)],
                jurisdiction=JURISDICTION,
                context=store.context,
                settings=Settings(jurisdiction=JURISDICTION, projector_batch=5),
            )
            for projection in (CounterProjection(), OtherCounters())
        )
        for projector in (first, second):
            await projector.prepare()
        with caplog.at_level("ERROR", logger="duban.projector"):
            await asyncio.gather(first.catch_up(), second.catch_up())
        assert "database unavailable" not in caplog.text
        assert await read_position(engine, "counters") == await read_position(engine, "other_counters") == 400
    finally:
        await engine.dispose()


async def test_rebuild_gives_the_same_read_model(nc, store, engine):
    await write_counters(store, 15, 200)
    projector = projector_for(nc, store, engine)
    await projector.prepare()
    await projector.catch_up()
    before = await counter_rows(engine)
    await projector.rebuild()
    assert await counter_rows(engine) == before


async def test_a_changed_projection_version_rebuilds_it(nc, store, engine):
    await write_counters(store, 5, 30)
    projector = projector_for(nc, store, engine)
    await projector.prepare()
    await projector.catch_up()
    before = await counter_rows(engine)

    class CounterProjectionV2(CounterProjection):
        version = 2

    upgraded = projector_for(nc, store, engine)
    upgraded.projection = CounterProjectionV2()
    await upgraded.prepare()
    assert upgraded.position == 0
    await upgraded.catch_up()
    assert await counter_rows(engine) == before


async def test_a_poison_message_is_dead_lettered_and_later_events_flow(nc, store, engine):
    poisoned = Counter(id=new_id())
    await store.append(poisoned, poisoned.open("poison"))
    await store.append(poisoned, [Poisoned(reason="坏数据")])
    after = Counter(id=new_id())
    await store.append(after, after.open("after"))
    for _ in range(5):
        await store.append(after, [Incremented(by=1)])

    projector = projector_for(nc, store, engine, max_deliver=3)
    await projector.prepare()
    await asyncio.wait_for(projector.catch_up(), 30)

    rows = await counter_rows(engine)
    assert rows[poisoned.id] == (1, 0)  # its Opened was applied, the poison was not
    assert rows[after.id] == (6, 5)  # everything after it was projected
    assert await read_position(engine, "counters") == 8

    js = nc.jetstream()
    dlq = await js.get_msg(
        subjects.deadletter_stream(JURISDICTION),
        subject=subjects.deadletter_subject(JURISDICTION, store.context, "proj_counters"),
        direct=True,
    )
    headers = dlq.headers
    assert headers[ORIGINAL_SUBJECT] == subjects.event_subject(store.context, JURISDICTION, poisoned.id)
    assert headers[ORIGINAL_SEQUENCE] == "2"
    assert headers[ATTEMPTS] == "3"
    assert "cannot project 坏数据" in text_of_header(headers[ERROR])  # stored ASCII-escaped
    assert decode_commit(dlq.data)[0].event_type == "sample.Poisoned"


def test_cyclic_gc_is_paused_while_batches_are_applied_and_comes_back_after():
    import gc

    from services.runtime.read.projector import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # a second projector in the same loop shares the pause
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a process that turned it off keeps it off
    finally:
        gc.enable()
