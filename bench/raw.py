"""The raw ceilings: nats-py JetStream publish and pull-consume with nothing of duban on top."""

from __future__ import annotations

import asyncio
import os
import time

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from .common import Sizes, progress, rate

RAW_STREAM = "BENCH_RAW"
RAW_ASYNC_STREAM = "BENCH_RAW_ASYNC"
#: Messages go to this many subjects (like aggregates), none of them with headers.
RAW_SUBJECTS = 1_000


async def _raw_stream(nc: NATS, name: str) -> None:
    # The settings of an event stream that matter for writing: file storage, one replica.
    await nc.jetstream().add_stream(
        StreamConfig(
            name=name,
            subjects=[f"{name.lower()}.>"],
            storage=StorageType.FILE,
            num_replicas=1,
            allow_direct=True,
        )
    )


async def raw_publish(nc: NATS, sizes: Sizes) -> dict:
    """``raw_publish_per_s``: ``js.publish`` (a request waiting for the stream's ack) of
    ``raw_messages`` messages of ``raw_message_bytes`` random bytes, pipelined with
    ``asyncio.gather`` in windows of ``publish_window`` publishes; every ack is checked.

    Also ``raw_publish_async_per_s``: the same messages through ``js.publish_async`` with up to
    ``publish_window`` acks outstanding (a sliding window), on a second stream, for reference.
    """
    js = nc.jetstream(timeout=30)
    await _raw_stream(nc, RAW_STREAM)
    await _raw_stream(nc, RAW_ASYNC_STREAM)
    payloads = [os.urandom(sizes.raw_message_bytes) for _ in range(64)]
    prefix = RAW_STREAM.lower()

    start = time.perf_counter()
    for first in range(0, sizes.raw_messages, sizes.publish_window):
        last = min(first + sizes.publish_window, sizes.raw_messages)
        acks = await asyncio.gather(
            *(js.publish(f"{prefix}.s{i % RAW_SUBJECTS}", payloads[i % 64]) for i in range(first, last))
        )
        assert acks[-1].seq == last, (acks[-1], last)
    windowed = time.perf_counter() - start
    progress(
        f"raw publish (gather windows of {sizes.publish_window}): {sizes.raw_messages} msgs in {windowed:.2f}s"
        f" = {rate(sizes.raw_messages, windowed):,.0f}/s"
    )

    js_async = nc.jetstream(timeout=30, publish_async_max_pending=sizes.publish_window)
    prefix = RAW_ASYNC_STREAM.lower()
    start = time.perf_counter()
    futures = [
        await js_async.publish_async(f"{prefix}.s{i % RAW_SUBJECTS}", payloads[i % 64])
        for i in range(sizes.raw_messages)
    ]
    acks = await asyncio.gather(*futures)
    sliding = time.perf_counter() - start
    assert max(a.seq for a in acks) == sizes.raw_messages
    progress(
        f"raw publish_async (<= {sizes.publish_window} pending): {sizes.raw_messages} msgs in {sliding:.2f}s"
        f" = {rate(sizes.raw_messages, sliding):,.0f}/s"
    )
    return {
        "raw_publish_per_s": rate(sizes.raw_messages, windowed),
        "raw_publish_async_per_s": rate(sizes.raw_messages, sliding),
        "raw_messages": sizes.raw_messages,
        "raw_message_bytes": sizes.raw_message_bytes,
    }


async def _consume_all(nc: NATS, stream: str, durable: str, count: int, batch: int) -> float:
    """Seconds to create a durable pull consumer on ``stream`` and fetch and ack ``count``
    messages through it, ``batch`` at a time, checking they come in stream order."""
    js = nc.jetstream(timeout=30)
    start = time.perf_counter()
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=120,
            max_deliver=-1,
            max_ack_pending=batch * 2,
            deliver_policy=DeliverPolicy.ALL,
        ),
    )
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    received = 0
    while received < count:
        msgs = await sub.fetch(batch, timeout=5)
        for msg in msgs:
            received += 1
            assert msg.metadata.sequence.stream == received
            await msg.ack()
    await nc.flush()
    seconds = time.perf_counter() - start
    info = await sub.consumer_info()
    assert info.num_pending == 0 and received == count, (info, received)
    await sub.unsubscribe()
    return seconds


async def raw_consume(nc: NATS, sizes: Sizes) -> dict:
    """``raw_consume_per_s``: a durable pull consumer configured as the projector's (explicit
    acks, ``max_ack_pending`` twice the batch) fetching ``consume_batch`` at a time and acking
    each message, over the messages ``raw_publish`` stored; timed from creating the consumer to
    the last ack flushed to the server."""
    seconds = await _consume_all(nc, RAW_STREAM, "bench_raw", sizes.raw_messages, sizes.consume_batch)
    progress(
        f"raw consume (fetch {sizes.consume_batch}, ack each): {sizes.raw_messages} msgs in {seconds:.2f}s"
        f" = {rate(sizes.raw_messages, seconds):,.0f}/s"
    )
    return {"raw_consume_per_s": rate(sizes.raw_messages, seconds)}


async def raw_consume_events(nc: NATS, sizes: Sizes, stream: str) -> dict:
    """``raw_consume_events_per_s``: the same raw consumer over the event stream the projector
    reads (messages of about 800 bytes with six headers, which nats-py parses on receipt), without
    decoding anything: the part of the projector's cost that is nats-py's."""
    seconds = await _consume_all(nc, stream, "bench_raw_events", sizes.events, sizes.consume_batch)
    progress(
        f"raw consume of the event stream: {sizes.events} msgs in {seconds:.2f}s = {rate(sizes.events, seconds):,.0f}/s"
    )
    return {"raw_consume_events_per_s": rate(sizes.events, seconds)}
