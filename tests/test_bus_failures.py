"""When handing a message on fails too: a consumer never settles what it could not hand on.

Each test runs on a nats-server of its own (it deletes and re-creates the level's dead-letter
stream, which other tests share on the session's server).

- A message that came into an INBOX by stream sourcing carries ``Nats-Stream-Source``, which
  JetStream refuses on a new message (10227): its dead letter keeps that header under duban's
  own name, and is stored.
- A dead letter that cannot be stored (the dead-letter stream unreachable) leaves the message
  unsettled: it comes again, past the attempts a dead letter would have needed, and once the
  cause is gone it is dead-lettered, or handled if the handler was mended; never lost.
- A projection never moves past a poison event whose dead letter could not be stored.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest
from nats.js.api import StreamConfig, StreamSource
from nats.js.errors import APIError

from contracts import subjects
from contracts.envelope import new_id
from services.runtime.bus.consumer import DurableWorker
from services.runtime.bus.deadletters import ensure_deadletter_stream, list_dead_letters
from services.runtime.es.eventstore import EventStore
from services.runtime.observe.metrics import sample
from services.runtime.read.projector import read_position
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.sample import Counter, Incremented, Poisoned, counter_projector, counter_rows
from tests.support.waiting import eventually

HERE = "331081"
SOURCE_HEADER = "Nats-Stream-Source"


@pytest.fixture
async def own_nc(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    client = await nats.connect(server.url)
    yield client
    await client.close()
    server.stop()


class QuickWorker(DurableWorker):
    """A durable worker whose failed messages come again after 50 ms (the test's patience)."""

    def backoff(self, delivered: int) -> float:
        return 0.05


def worker_on(nc, stream: str, handle, **settings) -> QuickWorker:
    return QuickWorker(
        nc,
        stream=stream,
        durable="inbox_worker",
        handle=handle,
        jurisdiction=HERE,
        context="intake",
        span_name="receive",
        settings=Settings(jurisdiction=HERE, **settings),
    )


async def sourced_inbox(js) -> str:
    """An OUTBOX-like stream and an INBOX that sources it, as levels.py builds them; returns
    the INBOX's name once the first published message has arrived in it."""
    await js.add_stream(StreamConfig(name="OUT", subjects=["duban.x.>"], allow_direct=True))
    await js.add_stream(StreamConfig(name="IN", subjects=[], sources=[StreamSource(name="OUT")], allow_direct=True))
    await js.publish("duban.x.331081.331081100.handed_over", b'{"matter": 1}', headers={"Nats-Msg-Id": "m-1"})

    async def arrived() -> bool:
        return (await js.stream_info("IN")).state.messages > 0

    await eventually(arrived, 10)
    return "IN"


async def test_a_sourced_message_that_keeps_failing_is_dead_lettered_with_its_source_kept(own_nc):
    js = own_nc.jetstream()
    inbox = await sourced_inbox(js)
    stored = await js.get_msg(inbox, seq=1, direct=True)
    assert SOURCE_HEADER in stored.headers  # what sourcing adds
    await ensure_deadletter_stream(js, HERE)
    with pytest.raises(APIError) as refused:  # why copying the headers as they are lost matters
        await js.publish(subjects.deadletter_subject(HERE, "intake", "raw"), stored.data, headers=stored.headers)
    assert refused.value.err_code == 10227

    async def handle(msg) -> None:
        raise ValueError("県 is not a level we know")  # the handler's own fault: not an outage

    worker = worker_on(own_nc, inbox, handle, max_deliver=3)
    await worker.prepare()
    async with asyncio.timeout(20):
        while not await list_dead_letters(js, HERE):
            await worker.step(timeout=0.2)
    [letter] = await list_dead_letters(js, HERE)
    assert letter.attempts == 3 and "県 is not a level we know" in letter.error
    assert letter.data == b'{"matter": 1}' and letter.original_stream == inbox
    assert letter.headers["Duban-Original-Nats-Stream-Source"] == stored.headers[SOURCE_HEADER]
    assert letter.headers["Duban-Original-Nats-Msg-Id"] == "m-1"
    assert SOURCE_HEADER not in letter.headers  # (a direct get adds Nats-Stream, -Subject, -Sequence, -Time-Stamp)
    assert await worker.idle()  # settled once its dead letter was stored
    await worker.close()


@pytest.mark.parametrize("cause_gone", ["dead-letter stream back", "handler mended"])
async def test_a_message_whose_dead_letter_cannot_be_stored_stays_pending_and_is_never_lost(own_nc, cause_gone):
    js = own_nc.jetstream()
    inbox = await sourced_inbox(js)
    broken = {"now": True}
    handled: list[bytes] = []

    async def handle(msg) -> None:
        if broken["now"]:
            raise ValueError("the handler cannot read this message")
        handled.append(msg.data)

    worker = worker_on(own_nc, inbox, handle, max_deliver=2)
    await worker.prepare()  # creates the dead-letter stream...
    await js.delete_stream(subjects.deadletter_stream(HERE))  # ...which is now unreachable
    unsettled_before = sample("duban_messages_handled_total", {"consumer": "inbox_worker", "outcome": "unsettled"}) or 0

    deliveries = 0
    async with asyncio.timeout(20):
        while deliveries < 6:  # three times the attempts after which it would have been dead-lettered
            deliveries += await worker.step(timeout=0.3)
    info = await js.consumer_info(inbox, worker.durable)
    assert info.num_ack_pending + info.num_pending == 1  # not settled: still the consumer's to deliver
    assert info.ack_floor.stream_seq == 0
    unsettled = sample("duban_messages_handled_total", {"consumer": "inbox_worker", "outcome": "unsettled"})
    assert unsettled - unsettled_before >= 4  # logged and counted each time

    if cause_gone == "dead-letter stream back":
        await ensure_deadletter_stream(js, HERE)
    else:
        broken["now"] = False
    async with asyncio.timeout(20):
        while not await worker.idle():
            await worker.step(timeout=0.3)
    if cause_gone == "dead-letter stream back":
        [letter] = await list_dead_letters(js, HERE)
        assert letter.data == b'{"matter": 1}' and letter.attempts >= 2
        assert handled == []
    else:
        assert handled == [b'{"matter": 1}']
        with contextlib.suppress(Exception):
            assert await list_dead_letters(js, HERE) == []
    await worker.close()


async def test_a_projection_waits_on_a_poison_event_until_its_dead_letter_is_stored(own_nc, tmp_path):
    from services.runtime.read.db import make_engine

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'projection.sqlite3'}")
    store = EventStore(own_nc, context="sample", jurisdiction=HERE)
    await store.ensure_streams()
    poisoned = Counter(id=new_id())
    await store.append(poisoned, poisoned.open("poison"))
    await store.append(poisoned, [Poisoned(reason="坏数据")])
    after = Counter(id=new_id())
    await store.append(after, after.open("after"))
    await store.append(after, [Incremented(by=1)])

    projector = counter_projector(own_nc, engine, context="sample", jurisdiction=HERE, max_deliver=2)
    await projector.prepare()
    await own_nc.jetstream().delete_stream(subjects.deadletter_stream(HERE))
    running = asyncio.create_task(projector.run())
    try:
        await asyncio.sleep(3)
        assert await read_position(engine, "counters") == 1  # the Opened before it, nothing past it
        await ensure_deadletter_stream(own_nc.jetstream(), HERE)

        async def past_it() -> bool:
            return await read_position(engine, "counters") == 4

        await eventually(past_it, 20)
    finally:
        projector.stop()
        await running
        await projector.close()
    rows = await counter_rows(engine)
    assert rows[poisoned.id] == (1, 0) and rows[after.id] == (2, 1)
    [letter] = await list_dead_letters(own_nc.jetstream(), HERE)
    assert letter.original_sequence == 2
    await engine.dispose()
