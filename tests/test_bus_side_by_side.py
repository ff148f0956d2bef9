"""A durable worker running a batch side by side (intake's relay and inbox do, ``Reactions.concurrency``):
the messages of one key (one aggregate) keep their order, those of different keys overlap."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from nats.js.api import StreamConfig

from contracts.envelope import Actor, Envelope, encode_commit, utcnow
from services.intake.integration import Inbox, Relay
from services.runtime.bus.consumer import DurableWorker
from services.runtime.bus.reactions import Reactions
from tests.support.waiting import eventually

HERE = "331081"


async def test_side_by_side_the_messages_of_one_key_keep_their_order(nc, unique):
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=unique, subjects=[f"{unique}.>"]))
    for n in range(12):
        for key in "abcd":
            await js.publish(f"{unique}.{key}", str(n).encode())
    seen: dict[str, list[int]] = defaultdict(list)
    running = {"now": 0, "most": 0}
    rng = random.Random(21)

    async def handle(msg) -> None:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(rng.random() * 0.01)  # each takes its own time: order would be lost
        seen[msg.subject].append(int(msg.data))
        running["now"] -= 1

    worker = DurableWorker(
        nc,
        stream=unique,
        durable="side_by_side",
        handle=handle,
        jurisdiction=HERE,
        context="intake",
        span_name="receive",
        concurrency=8,
        key=lambda msg: msg.subject,
    )
    await worker.prepare()
    await worker.drain(timeout=30)
    await worker.close()
    assert {subject.rsplit(".", 1)[-1]: numbers for subject, numbers in seen.items()} == {
        key: list(range(12)) for key in "abcd"
    }
    assert 1 < running["most"] <= 4  # keys side by side, never two of one key at once


def commit(jurisdiction: str, aggregate_id: str) -> bytes:
    envelope = Envelope(
        event_id=f"e-{aggregate_id}",
        event_type="intake.MatterEscalated",
        schema_version=1,
        aggregate_type="matter",
        aggregate_id=aggregate_id,
        sequence=1,
        jurisdiction=jurisdiction,
        occurred_at=utcnow(),
        actor=Actor(principal_id="committee-331081", role="committee"),
        correlation_id="c",
        payload={},
    )
    return encode_commit([envelope])


class Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


def test_reactions_keep_order_per_aggregate_and_sender_and_intake_runs_its_bus_side_by_side():
    key = Reactions().key
    assert key(Msg(commit("331081100", "m1"))) == key(Msg(commit("331081100", "m1")))
    assert key(Msg(commit("331081100", "m1"))) != key(Msg(commit("331081100", "m2")))
    assert key(Msg(commit("331081100", "m1"))) != key(Msg(commit("331000", "m1")))  # another level's m1
    assert Reactions.concurrency == 1  # one at a time unless a class says otherwise
    assert Relay.concurrency > 1 and Inbox.concurrency > 1


async def test_running_the_batches_overlap_and_each_key_keeps_its_order_across_them(nc, unique):
    """``run``: a slow message does not hold back the next batches (the hub's intake taking in a
    county's stored escalations), and one key's messages, spread over many batches, keep their order."""
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=unique, subjects=[f"{unique}.>"]))
    await js.publish(f"{unique}.slow", b"0")
    for n in range(10):
        for key in "abcd":
            await js.publish(f"{unique}.{key}", str(n).encode())
    seen: dict[str, list[int]] = defaultdict(list)
    before_slow_done: list[int] = []
    rng = random.Random(28)
    all_in = asyncio.Event()

    async def handle(msg) -> None:
        key = msg.subject.rsplit(".", 1)[-1]
        if key == "slow":
            await asyncio.sleep(1.0)
            before_slow_done.append(sum(len(v) for v in seen.values()))
        else:
            await asyncio.sleep(rng.random() * 0.01)
        seen[key].append(int(msg.data))
        if sum(len(v) for v in seen.values()) == 41:
            all_in.set()

    worker = DurableWorker(
        nc,
        stream=unique,
        durable="overlapping",
        handle=handle,
        jurisdiction=HERE,
        context="intake",
        span_name="receive",
        batch=4,  # the 41 messages come in 11 batches
        concurrency=8,
        key=lambda msg: msg.subject,
    )
    await worker.prepare()
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(all_in.wait(), 30)
    worker.stop()
    await asyncio.wait_for(running, 5)
    # every message acknowledged (the acks are published as the last ones finish; the server
    # counts them a moment later)
    await eventually(worker.idle, 5, "every message acknowledged")
    await worker.close()
    assert dict(seen) == {"slow": [0], **{key: list(range(10)) for key in "abcd"}}
    assert before_slow_done == [40]  # the batches after the slow one's went on without it
