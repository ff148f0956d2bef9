"""The event store a test's rules run on: in memory when the test needs nothing else of the bus,
JetStream on the session's nats-server when it also reads the stream (projectors, what the
server stored). Both keep the same contract (``tests/test_eventstore.py``), so a rule that holds
on one holds on the other, and a domain or handler test costs no server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats

from services.runtime.es.eventstore import EventStore
from services.runtime.es.memory import InMemoryEventStore

#: Fixtures that read the stream or the server: a test using one gets the JetStream store.
NEEDS_THE_BUS = frozenset({"nc", "read_models", "projectors", "read_engine_caught_up"})


async def event_store(request, *, context: str, jurisdiction: str, **options) -> AsyncIterator:
    if NEEDS_THE_BUS.isdisjoint(request.fixturenames):
        yield InMemoryEventStore(context=context, jurisdiction=jurisdiction, **options)
        return
    client = await nats.connect(request.getfixturevalue("nats_url"))
    store = EventStore(client, context=context, jurisdiction=jurisdiction, **options)
    await store.ensure_streams()
    yield store
    await client.close()


async def stored_messages(store) -> int:
    """How many messages (commits) the store's stream holds, on either store."""
    if isinstance(store, InMemoryEventStore):
        return store.streams.messages(store.stream)
    return (await store.js.stream_info(store.stream)).state.messages
