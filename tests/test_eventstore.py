"""The event store's contract, run against both stores: the JetStream one on a real nats-server
and the in-memory one (versions, concurrency, de-duplication, loading); then what only the
JetStream store has (snapshots, streams that refuse deletes).

Whatever passes here for the in-memory store holds on the server, which is what lets domain and
handler tests run on it without one.
"""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.errors import APIError, BadRequestError

from contracts.envelope import new_id
from services.runtime.es import eventstore
from services.runtime.es.commands import create_once, execute
from services.runtime.es.eventstore import (
    ENSURE_ATTEMPTS,
    ConcurrencyError,
    EventStore,
    ensure_stream,
    event_stream_config,
)
from services.runtime.es.memory import InMemoryEventStore
from services.runtime.settings import Settings
from tests.support.sample import Counter, Incremented, Opened
from tests.support.stores import stored_messages


@pytest.fixture(params=["jetstream", "memory"])
async def store(request, unique):
    if request.param == "memory":
        yield InMemoryEventStore(context=unique, jurisdiction="331081")
        return
    nc = await nats.connect(request.getfixturevalue("nats_url"))  # the server only for this half
    store = EventStore(nc, context=unique, jurisdiction="331081")
    await store.ensure_streams()
    yield store
    await nc.close()


@pytest.fixture
async def jetstream_store(nc, unique):
    store = EventStore(nc, context=unique, jurisdiction="331081")
    await store.ensure_streams()
    return store


async def test_an_aggregate_loads_back_exactly_what_was_appended(store):
    counter = await store.load(Counter, new_id())
    assert not counter.exists
    await store.append(counter, counter.open("泽国镇企业诉求"))
    for by in (1, 2, 3):
        await store.append(counter, counter.increment(by))
    loaded = await store.load(Counter, counter.id)
    assert (loaded.title, loaded.total, loaded.increments, loaded.sequence) == ("泽国镇企业诉求", 6, 3, 4)
    assert loaded.version == counter.version == await store.last_sequence(counter.id)
    history = await store.history(counter.id)
    assert [e.event_type for e in history] == ["sample.Opened"] + ["sample.Incremented"] * 3
    assert [e.sequence for e in history] == [1, 2, 3, 4]
    assert [e.payload.get("by") for e in history[1:]] == [1, 2, 3]


async def test_the_version_is_the_stream_sequence_not_a_count(store):
    a, b = Counter(id=new_id()), Counter(id=new_id())
    await store.append(a, a.open("a"))
    await store.append(b, b.open("b"))
    await store.append(a, a.increment())
    assert (a.version, b.version) == (3, 2)
    assert (a.sequence, b.sequence) == (2, 1)


async def test_two_concurrent_appends_at_the_same_version_one_wins(store):
    counter = Counter(id=new_id())
    await store.append(counter, counter.open("race"))
    first, second = await store.load(Counter, counter.id), await store.load(Counter, counter.id)
    results = await asyncio.gather(
        store.append(first, [Incremented(by=1)], expected_version=counter.version),
        store.append(second, [Incremented(by=10)], expected_version=counter.version),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ConcurrencyError)
    assert errors[0].expected == counter.version
    loaded = await store.load(Counter, counter.id)
    assert loaded.increments == 1 and loaded.total in (1, 10)


async def test_many_concurrent_writers_lose_nothing_through_the_retrying_helper(store):
    counter = Counter(id=new_id())
    await store.append(counter, counter.open("many"))
    await asyncio.gather(
        *(execute(store, Counter, counter.id, lambda c: c.increment(1), retries=50) for _ in range(20))
    )
    loaded = await store.load(Counter, counter.id)
    assert loaded.total == 20 and loaded.sequence == 21


async def test_an_event_appended_twice_with_the_same_id_is_stored_once(store):
    counter = Counter(id=new_id())
    await store.append(counter, counter.open("dup"))
    event_id = new_id()
    before = Counter.model_validate(counter.model_dump())
    first = await store.append(counter, [Incremented(by=5)], event_ids=[event_id])
    # the same append again, as after a lost acknowledgement: same id, same expected version
    retry = await store.append(before, [Incremented(by=5)], event_ids=[event_id])
    assert retry.version == first.version and retry.duplicate
    assert await stored_messages(store) == 2
    loaded = await store.load(Counter, counter.id)
    assert loaded.total == 5 and loaded.sequence == 2


async def test_a_retry_after_another_writer_moved_on_is_still_recognised(store):
    counter = Counter(id=new_id())
    await store.append(counter, counter.open("lost ack"))
    stale = Counter.model_validate(counter.model_dump())
    event_id = new_id()
    await store.append(counter, [Incremented(by=1)], event_ids=[event_id])
    await store.append(counter, [Incremented(by=2)])  # someone else, after ours
    retry = await store.append(stale, [Incremented(by=1)], event_ids=[event_id])
    assert retry.duplicate
    assert (await store.load(Counter, counter.id)).total == 3


async def test_creating_with_a_drawn_id_loads_nothing_and_an_id_taken_all_the_same_stays_as_it_was(store, monkeypatch):
    loads = []
    real_load = store.load

    async def counted_load(cls, aggregate_id):
        loads.append(aggregate_id)
        return await real_load(cls, aggregate_id)

    monkeypatch.setattr(store, "load", counted_load)
    drawn = new_id()
    counter, created = await create_once(store, Counter, drawn, lambda c: c.open("first"), drawn=True)
    assert created and counter.title == "first" and loads == []
    # the same id drawn again (as unlikely as that is): the expected version refuses the append,
    # the aggregate is loaded, found to exist, and nothing is appended
    again, created = await create_once(store, Counter, drawn, lambda c: c.open("second"), drawn=True)
    assert not created and again.title == "first" and loads == [drawn]
    assert await stored_messages(store) == 1


async def test_the_events_of_one_command_are_one_atomic_message(store):
    counter = Counter(id=new_id())
    commit = await store.append(counter, [Opened(title="x"), Incremented(by=1), Incremented(by=2)])
    assert await stored_messages(store) == 1
    assert [e.sequence for e in commit.envelopes] == [1, 2, 3]
    assert (await store.load(Counter, counter.id)).total == 3


# -- the JetStream store only ------------------------------------------------------------------
async def test_loading_without_snapshots_walks_back_the_commits(jetstream_store):
    store = jetstream_store
    counter = Counter(id=new_id())
    await store.append(counter, counter.open("no snapshot"))
    for _ in range(5):
        await store.append(counter, counter.increment(2))
    kv = await store._snapshots()
    await kv.delete(store.snapshot_key(Counter, counter.id))
    loaded = await store.load(Counter, counter.id)
    assert (loaded.total, loaded.version, loaded.sequence) == (10, counter.version, 6)


async def test_a_stale_snapshot_is_completed_from_the_stream(jetstream_store):
    store = jetstream_store
    counter = Counter(id=new_id())
    await store.append(counter, counter.open("stale"))
    stale = Counter.model_validate(counter.model_dump())
    await store.append(counter, counter.increment(4))
    await store.append(counter, counter.increment(4))
    await store.save_snapshot(stale)
    loaded = await store.load(Counter, counter.id)
    assert (loaded.total, loaded.version) == (8, counter.version)


async def test_streams_deny_delete_and_purge_and_ensure_is_idempotent(jetstream_store):
    store = jetstream_store
    await store.ensure_streams()
    counter = Counter(id=new_id())
    await store.append(counter, counter.open("kept"))
    with pytest.raises(APIError):
        await store.js.delete_msg(store.stream, 1)
    with pytest.raises(APIError):
        await store.js.purge_stream(store.stream)
    info = await store.js.stream_info(store.stream)
    assert info.config.deny_delete and info.config.deny_purge
    assert info.config.duplicate_window == store.settings.duplicate_window_s


async def test_a_stream_whose_creation_was_answered_too_late_is_found_made_and_left_as_it_is(nc, unique):
    """A busy server (its disk, other processes starting) answers a stream's creation after the
    client's timeout though it made the stream: ``ensure_stream`` looks again and is done; a
    server that never answers still fails it, after ``ENSURE_ATTEMPTS`` tries."""
    js = nc.jetstream()
    config = event_stream_config(unique, "331081", Settings(jurisdiction="331081"))
    made = js.add_stream
    calls = 0

    async def answered_too_late(config):
        nonlocal calls
        calls += 1
        await made(config)
        raise nats.errors.TimeoutError

    js.add_stream = answered_too_late
    await ensure_stream(js, config)
    assert calls == 1
    info = await nc.jetstream().stream_info(config.name)
    assert info.config.subjects == config.subjects and info.config.deny_delete

    async def never_answered(name):
        nonlocal calls
        calls += 1
        raise nats.errors.TimeoutError

    js.stream_info = never_answered
    calls = 0
    with pytest.raises(nats.errors.TimeoutError):
        await ensure_stream(js, config)
    assert calls == ENSURE_ATTEMPTS


async def test_a_cluster_that_never_finds_peers_is_waited_for_once_whatever_timeouts_come_between(
    nc, unique, monkeypatch
):
    """A forming cluster refuses the replicas ("no suitable peers for placement", 10005) and is
    asked again for ``PLACEMENT_PATIENCE_S``; a request answered too late in between does not
    start that patience again: the refusal is the caller's after the patience, once."""
    monkeypatch.setattr(eventstore, "PLACEMENT_PATIENCE_S", 2.5)
    js = nc.jetstream()
    config = event_stream_config(unique, "331081", Settings(jurisdiction="331081"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    timed_out = False

    async def refused(config):
        nonlocal timed_out
        if not timed_out and loop.time() - started > 2.0:
            timed_out = True
            raise nats.errors.TimeoutError
        raise BadRequestError(err_code=eventstore.NO_PEERS_FOR_PLACEMENT, description="no suitable peers for placement")

    js.add_stream = refused
    with pytest.raises(BadRequestError):
        await ensure_stream(js, config)
    assert timed_out
    # once: about 2.5 s (and the last second's wait); counted again after the timeout: above 5 s
    assert loop.time() - started < 4.5
