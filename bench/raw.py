"""The raw ceilings: nats-py JetStream publish and pull-consume with nothing of duban on top.

Apples to apples: ``raw_publish`` publishes messages like the event store's commits (a real
commit's body and header names, with a fresh ``Nats-Msg-Id`` and the subject's true last
sequence as ``Nats-Expected-Last-Subject-Sequence`` and ``Duban-Prev-Seq``, so that the server
de-duplicates and checks exactly as for an append) on a stream configured like an event stream;
``raw_consume`` reads the event stream itself, through a consumer configured like the
projector's. The older figures on plain 500-byte messages without headers are kept, for
reference, as ``raw_publish_plain``/``raw_consume_plain``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from contracts.envelope import PREVIOUS_SEQUENCE_HEADER, new_id
from services.runtime.es.eventstore import EventStore

from .common import JURISDICTION, Sizes, progress, rate

RAW_STREAM = "BENCH_RAW"
PLAIN_STREAM = "BENCH_RAW_PLAIN"
PLAIN_ASYNC_STREAM = "BENCH_RAW_PLAIN_ASYNC"
#: Messages go to this many subjects (like aggregates).
RAW_SUBJECTS = 1_000
#: Headers whose value is the subject's last sequence (the aggregate's version) in a commit.
_VERSION_HEADERS = ("Nats-Expected-Last-Subject-Sequence", PREVIOUS_SEQUENCE_HEADER)


async def _plain_stream(nc: NATS, name: str) -> None:
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


async def raw_publish(nc: NATS, sizes: Sizes, store: EventStore, body: bytes, headers: dict[str, str]) -> dict:
    """``raw_publish_per_s``: ``js.publish`` (a request waiting for the stream's ack) of
    ``raw_messages`` commit-like messages (``body`` and ``headers`` as ``sample_commit`` caught
    them), pipelined with ``asyncio.gather`` in windows of ``publish_window``, on a stream with
    the event stream's configuration (``store.stream_config()``: file storage, de-duplication
    window, deny delete/purge), to ``RAW_SUBJECTS`` subjects as long as event subjects.

    Each message gets a fresh ``Nats-Msg-Id`` (made before the clock starts) and its subject's
    last sequence as expected version, so every publish is checked and stored, none is a
    duplicate; every ack is checked.
    """
    assert sizes.publish_window <= RAW_SUBJECTS, "one message per subject and window: versions come from acks"
    js = nc.jetstream(timeout=30)
    prefix = RAW_STREAM.lower()
    config = dataclasses.replace(
        store.stream_config(), name=RAW_STREAM, subjects=[f"{prefix}.>"], description="duban bench raw commits"
    )
    await js.add_stream(config)
    subjects = [f"{prefix}.evt.{JURISDICTION}.{new_id()}" for _ in range(RAW_SUBJECTS)]
    msg_ids = [new_id() for _ in range(sizes.raw_messages)]
    last = dict.fromkeys(range(RAW_SUBJECTS), 0)

    def message_headers(i: int) -> dict[str, str]:
        version = str(last[i % RAW_SUBJECTS])
        return {
            name: msg_ids[i] if name == "Nats-Msg-Id" else version if name in _VERSION_HEADERS else value
            for name, value in headers.items()
        }

    start = time.perf_counter()
    for first in range(0, sizes.raw_messages, sizes.publish_window):
        window = range(first, min(first + sizes.publish_window, sizes.raw_messages))
        acks = await asyncio.gather(
            *(js.publish(subjects[i % RAW_SUBJECTS], body, headers=message_headers(i)) for i in window)
        )
        for i, ack in zip(window, acks, strict=True):
            assert not ack.duplicate, ack
            last[i % RAW_SUBJECTS] = ack.seq
    seconds = time.perf_counter() - start
    info = await js.stream_info(RAW_STREAM)
    assert info.state.messages == sizes.raw_messages, info.state
    progress(
        f"raw publish of commits ({len(body)} bytes, {len(headers)} headers; gather windows of"
        f" {sizes.publish_window}): {sizes.raw_messages} msgs in {seconds:.2f}s"
        f" = {rate(sizes.raw_messages, seconds):,.0f}/s"
    )
    return {
        "raw_publish_per_s": rate(sizes.raw_messages, seconds),
        "raw_messages": sizes.raw_messages,
        "commit_bytes": len(body),
        "commit_headers": sorted(headers),
    }


async def raw_publish_plain(nc: NATS, sizes: Sizes) -> dict:
    """``raw_publish_plain_per_s``: ``js.publish`` of ``raw_messages`` messages of
    ``raw_message_bytes`` random bytes without headers, pipelined with ``asyncio.gather`` in
    windows of ``publish_window`` publishes; every ack is checked. (Until the apples-to-apples
    change this was ``raw_publish_per_s``.)

    Also ``raw_publish_async_plain_per_s``: the same messages through ``js.publish_async`` with
    up to ``publish_window`` acks outstanding (a sliding window), on a second stream.
    """
    js = nc.jetstream(timeout=30)
    await _plain_stream(nc, PLAIN_STREAM)
    await _plain_stream(nc, PLAIN_ASYNC_STREAM)
    payloads = [os.urandom(sizes.raw_message_bytes) for _ in range(64)]
    prefix = PLAIN_STREAM.lower()

    start = time.perf_counter()
    for first in range(0, sizes.raw_messages, sizes.publish_window):
        last = min(first + sizes.publish_window, sizes.raw_messages)
        acks = await asyncio.gather(
            *(js.publish(f"{prefix}.s{i % RAW_SUBJECTS}", payloads[i % 64]) for i in range(first, last))
        )
        assert acks[-1].seq == last, (acks[-1], last)
    windowed = time.perf_counter() - start
    progress(
        f"raw publish plain (gather windows of {sizes.publish_window}): {sizes.raw_messages} msgs in {windowed:.2f}s"
        f" = {rate(sizes.raw_messages, windowed):,.0f}/s"
    )

    js_async = nc.jetstream(timeout=30, publish_async_max_pending=sizes.publish_window)
    prefix = PLAIN_ASYNC_STREAM.lower()
    start = time.perf_counter()
    futures = [
        await js_async.publish_async(f"{prefix}.s{i % RAW_SUBJECTS}", payloads[i % 64])
        for i in range(sizes.raw_messages)
    ]
    acks = await asyncio.gather(*futures)
    sliding = time.perf_counter() - start
    assert max(a.seq for a in acks) == sizes.raw_messages
    progress(
        f"raw publish_async plain (<= {sizes.publish_window} pending): {sizes.raw_messages} msgs in {sliding:.2f}s"
        f" = {rate(sizes.raw_messages, sliding):,.0f}/s"
    )
    return {
        "raw_publish_plain_per_s": rate(sizes.raw_messages, windowed),
        "raw_publish_async_plain_per_s": rate(sizes.raw_messages, sliding),
        "raw_message_bytes": sizes.raw_message_bytes,
    }


async def _consume_all(
    nc: NATS,
    stream: str,
    durable: str,
    count: int,
    batch: int,
    *,
    ack_all: bool,
    filter_subject: str | None = None,
) -> float:
    """Seconds to create a durable pull consumer on ``stream`` and fetch ``count`` messages
    through it, ``batch`` at a time, checking they come in stream order, until the last ack is
    flushed to the server. ``ack_all``: ``AckPolicy.ALL`` and one ack per batch (the
    projector's way); else explicit acks, one per message."""
    js = nc.jetstream(timeout=30)
    start = time.perf_counter()
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.ALL if ack_all else AckPolicy.EXPLICIT,
            ack_wait=120,
            max_deliver=-1,
            max_ack_pending=batch * 2,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=filter_subject,
        ),
    )
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    received = 0
    while received < count:
        msgs = await sub.fetch(batch, timeout=5)
        for msg in msgs:
            received += 1
            assert msg.metadata.sequence.stream == received
            if not ack_all:
                await msg.ack()
        if ack_all:
            await msgs[-1].ack()
    await nc.flush()
    seconds = time.perf_counter() - start
    info = await sub.consumer_info()
    assert info.num_pending == 0 and received == count, (info, received)
    await sub.unsubscribe()
    return seconds


async def raw_consume_plain(nc: NATS, sizes: Sizes) -> dict:
    """``raw_consume_plain_per_s``: a durable pull consumer with explicit acks
    (``max_ack_pending`` twice the batch) fetching ``consume_batch`` at a time and acking each
    message, over the plain messages ``raw_publish_plain`` stored; timed from creating the
    consumer to the last ack flushed to the server. (Until the apples-to-apples change this was
    ``raw_consume_per_s``.)"""
    seconds = await _consume_all(
        nc, PLAIN_STREAM, "bench_raw_plain", sizes.raw_messages, sizes.consume_batch, ack_all=False
    )
    progress(
        f"raw consume plain (fetch {sizes.consume_batch}, ack each): {sizes.raw_messages} msgs in {seconds:.2f}s"
        f" = {rate(sizes.raw_messages, seconds):,.0f}/s"
    )
    return {"raw_consume_plain_per_s": rate(sizes.raw_messages, seconds)}


async def raw_consume(nc: NATS, sizes: Sizes, stream: str, filter_subject: str, round_: int = 0) -> dict:
    """``raw_consume_per_s``: raw nats-py over the event stream the projector reads (every
    commit with its headers, which nats-py parses on receipt), with the projector's consumer
    configuration (``AckPolicy.ALL``, ack wait 120 s, ``max_ack_pending`` twice the batch, the
    same filter subject), fetching ``consume_batch`` at a time with nats-py's
    ``PullSubscription.fetch``, checking the order and acking the last message of each batch;
    nothing is decoded. The ceiling of a projector fetching with nats-py's ``fetch``; the
    Projector sends the same pull requests itself (``services/runtime/bus/batches.py``),
    without the task, timer and uuid ``fetch`` spends per message, and goes past it."""
    seconds = await _consume_all(
        nc,
        stream,
        f"bench_raw_events_{round_}",
        sizes.events,
        sizes.consume_batch,
        ack_all=True,
        filter_subject=filter_subject,
    )
    progress(
        f"raw consume of the event stream (round {round_ + 1}; fetch {sizes.consume_batch}, ack all):"
        f" {sizes.events} msgs in {seconds:.2f}s = {rate(sizes.events, seconds):,.0f}/s"
    )
    return {"raw_consume_per_s": rate(sizes.events, seconds)}
