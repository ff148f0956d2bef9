"""The event store: appends (filling the benchmark stream) and cold loads."""

from __future__ import annotations

import asyncio
import random
import time

from nats.aio.client import Client as NATS

from contracts import subjects
from contracts.envelope import new_id
from services.runtime.es.eventstore import EventStore
from tests.support.sample import Counter

from .common import CONTEXT, JURISDICTION, Sizes, progress, rate

#: The context of the scratch stream ``sample_commit`` appends to (not the benchmark's stream).
SAMPLE_CONTEXT = "benchsample"


def new_store(nc: NATS) -> EventStore:
    """A fresh EventStore object: it keeps no state but its snapshot-bucket handle."""
    return EventStore(nc, context=CONTEXT, jurisdiction=JURISDICTION)


async def sample_commit(nc: NATS) -> tuple[EventStore, bytes, dict[str, str]]:
    """A typical commit of the fill, exactly as ``EventStore.append`` publishes it (body and
    headers, caught by a core subscription to the subject): a Counter's second commit, one
    ``Incremented``, appended to a scratch context's stream. Returns that store too."""
    store = EventStore(nc, context=SAMPLE_CONTEXT, jurisdiction=JURISDICTION)
    await store.ensure_streams()
    sub = await nc.subscribe(subjects.event_wildcard(SAMPLE_CONTEXT, JURISDICTION))
    try:
        counter = Counter(id=new_id())
        await store.append(counter, counter.open(f"督办 {counter.id[:8]}"))
        await store.append(counter, counter.increment(1), expected_version=counter.version)
        await sub.next_msg(timeout=5)  # the Opened
        msg = await sub.next_msg(timeout=5)
    finally:
        await sub.unsubscribe()
    return store, msg.data, dict(msg.headers or {})


async def fill(nc: NATS, sizes: Sizes) -> dict:
    """Fill the event stream with ``events`` events over ``aggregates`` Counter aggregates, one
    ``EventStore.append`` per event (an ``Opened`` then ``Incremented`` ones), each with its
    expected version (the concurrency check) and followed by the store's snapshot (sent
    without waiting for an acknowledgement, as ``append`` does).

    ``append_concurrency`` workers run in parallel, each owning every n-th aggregate and
    appending to its aggregates round-robin, so one aggregate's commits are spread over the
    whole stream. ``append_per_s`` is the rate of the first ``timed_appends`` appends (from the
    start to the moment that many have been acknowledged); ``fill_append_per_s`` is the rate of
    the whole fill. Returns the report and the final version of every aggregate.
    """
    store = new_store(nc)
    await store.ensure_streams()
    ids = [new_id() for _ in range(sizes.aggregates)]
    versions: dict[str, int] = {}
    done = 0
    timed_at: float | None = None
    step = max(sizes.events // 10, 1)
    start = time.perf_counter()

    async def worker(mine: list[str]) -> None:
        nonlocal done, timed_at
        counters = [Counter(id=aggregate_id) for aggregate_id in mine]
        for round_ in range(sizes.events_per_aggregate):
            for counter in counters:
                events = counter.open(f"督办 {counter.id[:8]}") if round_ == 0 else counter.increment(1)
                await store.append(counter, events, expected_version=counter.version)
                done += 1
                if done == sizes.timed_appends:
                    timed_at = time.perf_counter()
                if done % step == 0:
                    so_far = time.perf_counter() - start
                    progress(f"fill: {done}/{sizes.events} appends, {rate(done, so_far):,.0f}/s so far")
        for counter in counters:
            versions[counter.id] = counter.version

    workers = min(sizes.append_concurrency, sizes.aggregates)
    await asyncio.gather(*(worker(ids[w::workers]) for w in range(workers)))
    seconds = time.perf_counter() - start
    assert timed_at is not None
    timed = timed_at - start
    info = await store.js.stream_info(store.stream)
    assert info.state.messages == sizes.events, info.state
    progress(
        f"append: first {sizes.timed_appends} in {timed:.2f}s = {rate(sizes.timed_appends, timed):,.0f}/s;"
        f" whole fill {sizes.events} in {seconds:.2f}s = {rate(sizes.events, seconds):,.0f}/s"
    )
    report = {
        "append_per_s": rate(sizes.timed_appends, timed),
        "appends_timed": sizes.timed_appends,
        "append_concurrency": workers,
        "fill_append_per_s": rate(sizes.events, seconds),
        "fill_seconds": round(seconds, 2),
        "events_in_stream": info.state.messages,
        "event_stream_bytes": info.state.bytes,
        "aggregates": sizes.aggregates,
        "events_per_aggregate": sizes.events_per_aggregate,
    }
    return report, versions


async def load(nc: NATS, sizes: Sizes, versions: dict[str, int]) -> dict:
    """``load_per_s``: ``EventStore.load`` of ``loads`` distinct random aggregates through a
    fresh EventStore object, ``load_concurrency`` loads in flight; each loaded state is checked
    (``sequence`` is the events per aggregate, ``version`` the one its last append returned)."""
    store = new_store(nc)
    chosen = random.Random(20_240_601).sample(sorted(versions), sizes.loads)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for aggregate_id in chosen:
        queue.put_nowait(aggregate_id)

    async def worker() -> None:
        while not queue.empty():
            aggregate_id = queue.get_nowait()
            counter = await store.load(Counter, aggregate_id)
            assert counter.sequence == sizes.events_per_aggregate, (aggregate_id, counter.sequence)
            assert counter.version == versions[aggregate_id], (aggregate_id, counter.version)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sizes.load_concurrency)))
    seconds = time.perf_counter() - start
    progress(
        f"load: {sizes.loads} cold loads ({sizes.load_concurrency} in flight) in {seconds:.2f}s"
        f" = {rate(sizes.loads, seconds):,.0f}/s"
    )
    return {
        "load_per_s": rate(sizes.loads, seconds),
        "loads": sizes.loads,
        "load_concurrency": sizes.load_concurrency,
    }
