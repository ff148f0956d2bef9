"""Every consumer's fetch (``bus/batches.py``): JetStream pull requests answered into a plain
subscription, read as nats-py's ``fetch`` reads them."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from services.runtime.bus.batches import Batches, ConsumerMissing
from services.runtime.bus.consumer import DurableWorker
from services.runtime.settings import Settings
from tests.support.waiting import eventually


async def consumer(nc, unique: str) -> tuple[str, str]:
    js = nc.jetstream()
    stream = unique.upper()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{unique}.>"]))
    await js.add_consumer(stream, ConsumerConfig(durable_name="proj", ack_policy=AckPolicy.ALL, max_ack_pending=100))
    return stream, "proj"


@pytest.fixture
async def batches(nc, unique):
    """Batches of a durable consumer of a stream of its own, started (10 messages at most)."""
    stream, durable = await consumer(nc, unique)
    batches = Batches(nc, stream, durable)
    await batches.start(10)
    yield batches
    await batches.stop()


async def publish(nc, unique: str, numbers: range) -> None:
    js = nc.jetstream()
    for n in numbers:
        await js.publish(f"{unique}.a", str(n).encode())


async def test_batches_come_whole_in_stream_order_then_nothing_within_the_timeout(nc, unique, batches):
    await publish(nc, unique, range(25))
    seen = []
    for size in (10, 10, 5):
        msgs = await batches.fetch(10, 0.5)
        assert len(msgs) == size
        seen += [int(m.data) for m in msgs]
        await msgs[-1].ack()
    assert seen == list(range(25))
    started = time.monotonic()
    assert await batches.fetch(10, 0.3) == []
    assert 0.2 < time.monotonic() - started < 1.3


async def test_a_waiting_fetch_gets_what_is_published_meanwhile(nc, unique, batches):
    loop = asyncio.get_running_loop()
    waiting = asyncio.create_task(batches.fetch(10, 5.0))
    await asyncio.sleep(0.1)
    published = loop.time()
    await publish(nc, unique, range(3))
    msgs = await waiting
    # back with what came, not held until the batch is full or the request expires (5 s):
    # a live projector applies an event as soon as it is stored
    assert msgs and loop.time() - published < 2.5
    msgs += await batches.fetch(10, 5.0) if len(msgs) < 3 else []
    assert [int(m.data) for m in msgs] == [0, 1, 2]


async def test_a_batch_asked_for_ahead_is_the_next_one_fetched(nc, unique, batches):
    await publish(nc, unique, range(15))
    first = await batches.fetch(10, 0.5)
    await batches.ask(10)
    second = await batches.fetch(10, 0.5)
    assert [int(m.data) for m in first + second] == list(range(15))


async def test_a_request_nobody_answers_is_given_up_or_refused_in_time(nc, unique):
    """A pull request nothing answers (here: a subscriber that swallows it, standing in for a
    server gone): ``answer`` gives it up after its timeout with what came (nothing); asked
    ``in_time`` (``duban rebuild``, which must not go on as if the stream had ended) it raises."""
    batches = Batches(nc, unique.upper(), "proj")
    swallowed = await nc.subscribe(batches.subject)
    await batches.start(10)
    try:
        await batches.ask(10)
        started = time.monotonic()
        assert await batches.answer(0.3) == []
        assert 0.3 <= time.monotonic() - started < 2
        await batches.ask(10)
        with pytest.raises(TimeoutError):
            await batches.answer(0.3, in_time=True)
    finally:
        await batches.stop()
        await swallowed.unsubscribe()


async def test_a_lingering_fetch_is_answered_at_once_and_a_wake_ends_it_with_nothing(nc, unique, batches):
    """An idle consumer's request lingers (``pull_wait_s``, 5 s in a service): a message that comes
    meanwhile is fetched as soon as it is stored, not when the request expires; ``wake`` (a
    consumer stopping, a reconnection) ends a waiting fetch at once, and what the server sends
    for it later comes with the next fetch."""
    waiting = asyncio.create_task(batches.fetch(10, 30.0))
    await asyncio.sleep(0.3)
    published = time.monotonic()
    await publish(nc, unique, range(1))
    assert [m.data for m in await asyncio.wait_for(waiting, 5)] == [b"0"]
    assert time.monotonic() - published < 1.0

    waiting = asyncio.create_task(batches.fetch(10, 30.0))
    await asyncio.sleep(0.3)
    woken = time.monotonic()
    batches.wake()
    assert await asyncio.wait_for(waiting, 5) == []
    assert time.monotonic() - woken < 0.5
    await publish(nc, unique, range(1, 3))  # answers the request the wake gave up, on the server still
    msgs = await batches.fetch(10, 5.0)
    msgs += await batches.fetch(10, 1.0) if len(msgs) < 2 else []
    assert [m.data for m in msgs] == [b"1", b"2"]


async def test_a_fetch_from_a_consumer_removed_meanwhile_fails_so_that_it_is_made_again(nc, unique, batches):
    """An operator removed the consumer under a running worker: the server has nobody to answer
    the pull request (503), so ``fetch`` raises ``ConsumerMissing`` (the service logs it and
    prepares the worker again, which makes the consumer) rather than finding nothing for ever."""
    await nc.jetstream().delete_consumer(unique.upper(), "proj")
    with pytest.raises(ConsumerMissing):
        await batches.fetch(10, 1.0)


async def test_an_idle_worker_handles_a_message_at_once_and_stops_at_once(nc, unique):
    """A durable worker whose requests linger 30 s handles a message as soon as it is stored and,
    idle, stops as soon as it is told (its waiting fetch woken), not when the request expires."""
    stream, _ = await consumer(nc, unique)
    handled: list[tuple[bytes, float]] = []

    async def handle(msg) -> None:
        handled.append((msg.data, time.monotonic()))

    worker = DurableWorker(
        nc,
        stream=stream,
        durable="worker",
        handle=handle,
        jurisdiction="331081",
        context="intake",
        span_name="receive",
        settings=Settings(jurisdiction="331081", pull_wait_s=30.0),
    )
    await worker.prepare()
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)
        published = time.monotonic()
        await publish(nc, unique, range(1))
        await eventually(lambda: asyncio.sleep(0, handled), 5, "the message handled")
        assert handled[0][0] == b"0" and handled[0][1] - published < 1.0
        await asyncio.sleep(0.5)
        told = time.monotonic()
        worker.stop()
        await asyncio.wait_for(running, 5)
        assert time.monotonic() - told < 0.5
    finally:
        running.cancel()
        await worker.close()
