"""Crash tests with real processes: nothing acknowledged is lost, nothing is applied twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from contracts.envelope import new_id
from services.runtime.es.eventstore import EventStore, StoreUnavailable
from services.runtime.read.db import make_engine
from services.runtime.read.projector import read_position
from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.sample import Counter, counter_projector, counter_rows

pytestmark = pytest.mark.slow
JURISDICTION = "331081"
ROOT = Path(__file__).resolve().parent.parent


def start_projector(nats_url: str, database_url: str, context: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.projector_process", nats_url, database_url, context, JURISDICTION],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def append_events(store: EventStore, total: int, aggregates: int) -> dict[str, int]:
    """``total`` events over ``aggregates`` counters, 20 writers at once; returns events per counter."""
    ids = [new_id() for _ in range(aggregates)]
    counts = dict.fromkeys(ids, 0)
    queue = [random.choice(ids) for _ in range(total)]
    states = {i: Counter(id=i) for i in ids}
    locks = {i: asyncio.Lock() for i in ids}

    async def writer(mine: list[str]) -> None:
        for aggregate_id in mine:
            async with locks[aggregate_id]:
                counter = states[aggregate_id]
                await store.append(counter, counter.increment(1) if counter.exists else counter.open("c"))
                counts[aggregate_id] += 1

    await asyncio.gather(*(writer(queue[i::20]) for i in range(20)))
    return counts


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_projector_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    nc, nats_url, unique, database_url, engine, tmp_path
):
    store = EventStore(nc, context=unique, jurisdiction=JURISDICTION)
    await store.ensure_streams()
    process = start_projector(nats_url, database_url, unique)
    try:
        assert process.stdout.readline().strip() == b"ready"
        writing = asyncio.create_task(append_events(store, 10_000, 300))

        async def past_3000() -> bool:
            try:
                return await read_position(engine, "counters") > 3000
            except Exception:  # tables not created yet
                return False

        await wait_for(past_3000, 120, "the projector to pass 3,000 events")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_at = await read_position(engine, "counters")
        assert not writing.done(), "the kill should land in the middle of the stream"

        process = start_projector(nats_url, database_url, unique)
        assert process.stdout.readline().strip() == b"ready"
        expected = await writing
        last = (await store.js.stream_info(store.stream)).state.last_seq
        assert last == 10_000

        async def caught_up() -> bool:
            return await read_position(engine, "counters") == last

        await wait_for(caught_up, 120, "the restarted projector to catch up")
    finally:
        process.kill()
        process.wait()

    rows = await counter_rows(engine)
    assert killed_at < last
    assert {k: events for k, (events, _) in rows.items()} == {k: v for k, v in expected.items() if v}
    assert all(events - 1 == total for events, total in rows.values())  # 1 Opened + n Incremented(1)

    fresh = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'rebuild.sqlite3'}")
    rebuild = counter_projector(nc, fresh, context=unique, jurisdiction=JURISDICTION)
    rebuild.durable += "_rebuild"
    await rebuild.rebuild()
    await rebuild.close()
    assert await counter_rows(fresh) == rows
    await fresh.dispose()


async def test_a_broker_killed_during_appends_keeps_every_acknowledged_event(tmp_path, unique):
    server = EmbeddedNats(tmp_path / "nats").start()
    acknowledged: list[tuple[str, int]] = []
    failed = 0
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        store = EventStore(nc, context=unique, jurisdiction=JURISDICTION, retry_for=0.5, publish_timeout=1.0)
        await store.ensure_streams()
        counters = [Counter(id=new_id()) for _ in range(50)]

        async def writer(counter: Counter) -> None:
            nonlocal failed
            while True:
                try:
                    events = counter.increment(1) if counter.exists else counter.open("c")
                    commit = await store.append(counter, events)
                    acknowledged.append((counter.id, commit.version))
                except (StoreUnavailable, OSError, nats.errors.Error):
                    failed += 1
                    return
                except Exception:
                    failed += 1
                    return

        writers = [asyncio.create_task(writer(c)) for c in counters]
        await wait_for(lambda: _true_after(len(acknowledged) >= 1000), 60, "1,000 acknowledged appends")
        server.kill()  # SIGKILL, mid-stream
        await asyncio.wait_for(asyncio.gather(*writers, return_exceptions=True), 30)
        count = len(acknowledged)
        assert count >= 1000

        server = EmbeddedNats(tmp_path / "nats", port=server.port, monitor_port=server.monitor_port).start()
        await wait_for(lambda: _true_after(nc.is_connected), 30, "the client to reconnect")
        fresh = EventStore(nc, context=unique, jurisdiction=JURISDICTION)
        lost = []
        by_counter: dict[str, int] = {}
        for aggregate_id, version in acknowledged:
            by_counter[aggregate_id] = max(version, by_counter.get(aggregate_id, 0))
        for aggregate_id, version in by_counter.items():
            if await fresh.last_sequence(aggregate_id) < version:
                lost.append(aggregate_id)
        info = await nc.jetstream().stream_info(store.stream)
        assert not lost, f"acknowledged appends lost for {len(lost)} aggregates"
        assert info.state.messages >= count
        for counter_id in list(by_counter)[:10]:
            history = await fresh.history(counter_id)
            assert len(history) >= sum(1 for a, _ in acknowledged if a == counter_id)
    finally:
        await nc.close()
        server.stop()


async def _true_after(value: bool) -> bool:
    return value
