"""``duban rebuild``: read models built again beside the ones the service answers from, and
swapped in when they have caught up (blue/green), on SQLite and on PostgreSQL. The live read
model answers all along; a projector still running goes on from the swapped-in position, so
every event takes effect once in the read model that is kept."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys

import pytest
from sqlalchemy import func, inspect, select, update

from contracts import subjects
from contracts.envelope import new_id
from services.runtime.es.eventstore import EventStore
from services.runtime.read.db import checkpoints, make_engine
from services.runtime.read.projector import NewerReadModel, Projector, read_position
from services.runtime.read.rebuild import SUFFIX, Rebuild, RebuildFailed, Target, split
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.runtime.tools.rebuild import rebuild_service
from services.tracking.app import TrackingService
from services.tracking.projections import cases, history
from tests.support.sample import Counter, CounterProjection, counter_projector, counter_rows, counters
from tests.support.tracking import closed_case

JURISDICTION = "331081"


@pytest.fixture
async def store(nc, unique):
    store = EventStore(nc, context=unique, jurisdiction=JURISDICTION)
    await store.ensure_streams()
    return store


def live_projector(nc, store, engine, projection=None):
    projector = counter_projector(nc, engine, context=store.context, jurisdiction=JURISDICTION, projector_batch=40)
    if projection is not None:
        projector.projection = projection
    return projector


def rebuild_of(nc, store, url, projection=None, **options) -> Rebuild:
    target = Target(
        projection or CounterProjection(),
        store.stream,
        (subjects.event_wildcard(store.context, JURISDICTION),),
    )
    return Rebuild(nc, url, [target], **({"batch": 60, "every_s": 0.0} | options))


class Counts:
    """Events appended per counter, to compare a read model with."""

    def __init__(self, store) -> None:
        self.store = store
        self.counters = [Counter(id=new_id()) for _ in range(12)]
        self.events: dict[str, int] = {}

    async def append(self, n: int) -> None:
        for _ in range(n):
            counter = random.choice(self.counters)
            await self.store.append(counter, counter.open("c") if not counter.exists else counter.increment(2))
            self.events[counter.id] = self.events.get(counter.id, 0) + 1

    def rows(self) -> dict[str, tuple[int, int]]:
        return {key: (n, 2 * (n - 1)) for key, n in self.events.items()}


async def tables(engine) -> list[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: inspect(sync).get_table_names())


async def test_the_live_read_model_answers_until_the_rebuilt_one_is_swapped_in(nc, store, engine, database_url):
    counts = Counts(store)
    await counts.append(200)
    live = live_projector(nc, store, engine)
    await live.prepare()
    await live.catch_up()
    assert await counter_rows(engine) == counts.rows()

    lines: list[str] = []
    rebuild = rebuild_of(nc, store, database_url, say=lines.append)
    await rebuild.build()
    # built beside: the service's table is untouched, the shadow holds the same rows
    assert await counter_rows(engine) == counts.rows()
    assert "counters" + SUFFIX in await tables(engine)
    assert await read_position(engine, "counters") == 200

    # events during the rebuild: the live projector keeps the old read model current
    await counts.append(60)
    await live.catch_up()
    assert await counter_rows(engine) == counts.rows()

    await rebuild.swap()
    await rebuild.close()
    assert await counter_rows(engine) == counts.rows()  # the rebuilt one, with what came meanwhile
    assert await read_position(engine, "counters") == 260
    assert not [name for name in await tables(engine) if name.endswith(SUFFIX)]

    progress = [line for line in lines if " of " in line]
    assert progress and all(
        re.fullmatch(
            rf"{store.stream} [\d,]+ of [\d,]+ \(\d+%\), [\d,]+ events in \d+ s, [\d,]+ events/s, about \d+ s left",
            line,
        )
        for line in progress
    ), progress
    assert progress[-1].startswith(f"{store.stream} 260 of 260 (100%)")
    assert lines[-1] == f"{store.stream}: swapped in counters at sequence 260"

    # the projector that ran all along goes on, into the new read model
    await counts.append(40)
    await live.catch_up()
    assert await counter_rows(engine) == counts.rows()
    await live.close()


async def test_a_projector_behind_the_swapped_in_read_model_goes_on_from_its_position(nc, store, engine, database_url):
    counts = Counts(store)
    await counts.append(100)
    live = live_projector(nc, store, engine)
    await live.prepare()
    await live.catch_up()
    await counts.append(80)  # the live projector has not seen these when the swap comes
    report = await rebuild_of(nc, store, database_url).run()
    assert report["streams"][store.stream]["position"] == 180 and report["events"] == 180
    assert await counter_rows(engine) == counts.rows()

    await counts.append(30)
    await live.catch_up()  # its first batch finds the checkpoint moved: rolled back, repositioned
    assert live.position == 210
    assert await counter_rows(engine) == counts.rows()  # nothing applied twice
    await live.close()


async def test_a_projector_ahead_of_the_swapped_in_read_model_applies_what_it_lacks(nc, store, engine, database_url):
    counts = Counts(store)
    await counts.append(100)
    live = live_projector(nc, store, engine)
    await live.prepare()
    await live.catch_up()
    rebuild = rebuild_of(nc, store, database_url)
    await rebuild.build()
    await counts.append(50)
    await live.catch_up()  # live at 150, the rebuilt read model at 100
    await rebuild.swap(read_first=False)
    await rebuild.close()
    assert await read_position(engine, "counters") == 100

    await counts.append(10)
    await live.catch_up()
    assert await counter_rows(engine) == counts.rows()  # 101..150 applied again to the new one, once
    assert await read_position(engine, "counters") == 160
    await live.close()


async def test_older_code_leaves_alone_a_read_model_that_newer_code_rebuilt(nc, store, engine, database_url):
    counts = Counts(store)
    await counts.append(50)
    live = live_projector(nc, store, engine)
    await live.prepare()
    await live.catch_up()

    class CounterProjectionV2(CounterProjection):
        version = 2

    await rebuild_of(nc, store, database_url, CounterProjectionV2()).run()
    rebuilt = counts.rows()
    await counts.append(5)
    with pytest.raises(RuntimeError, match="replaced by version 2"):
        await live.catch_up()  # the running old projector stops at its next batch
    restarted = live_projector(nc, store, engine)
    with pytest.raises(NewerReadModel):
        await restarted.prepare()  # and, restarted, does not drop what the new code built
    assert await counter_rows(engine) == rebuilt
    await live.close()

    upgraded = live_projector(nc, store, engine, CounterProjectionV2())
    await upgraded.prepare()
    assert upgraded.position == 50
    await upgraded.catch_up()
    assert await counter_rows(engine) == counts.rows()
    await upgraded.close()


async def test_a_swap_aborted_by_a_deadlock_with_a_projectors_batch_is_tried_again(nc, store, postgres_url, caplog):
    """PostgreSQL ends a deadlock by aborting one side. Here the swap: it has locked the live
    table and waits for the checkpoint row a projector's batch holds, while that batch waits to
    read the locked table; the swap, waiting longest, is the one aborted (asyncpg's error is a
    plain ``DBAPIError``, SQLSTATE 40P01). It is tried again and done once the batch has gone."""
    engine = make_engine(postgres_url)
    try:
        counts = Counts(store)
        await counts.append(30)
        live = live_projector(nc, store, engine)
        await live.prepare()
        await live.catch_up()
        await live.close()
        rebuild = rebuild_of(nc, store, postgres_url)
        await rebuild.build()
        async with engine.connect() as batch:
            await batch.begin()
            # a projector's batch as it applies: its checkpoint row written first, then the read model
            await batch.execute(
                update(checkpoints).where(checkpoints.c.projection == "counters").values(updated_at=func.now())
            )
            swapping = asyncio.create_task(rebuild.swap())
            await asyncio.sleep(0.5)  # the swap holds the table and waits for the row
            assert not swapping.done()
            await batch.execute(select(func.count()).select_from(counters))  # the deadlock: the swap is aborted
            await asyncio.sleep(0.5)
            assert not swapping.done()  # tried again, waiting for the row still
            await batch.commit()
        await asyncio.wait_for(swapping, 30)
        await rebuild.close()
        assert any(r.getMessage() == "swap not done, retrying" and "deadlock" in r.error for r in caplog.records)
        assert await counter_rows(engine) == counts.rows()
        assert await read_position(engine, "counters") == 30
    finally:
        await engine.dispose()


# -- a service's read models, as `duban rebuild tracking` rebuilds them -------------------------


@pytest.fixture
async def tracking(tmp_path, database_url):
    server = EmbeddedNats(tmp_path / "nats").start()
    settings = Settings(
        jurisdiction=JURISDICTION, nats_url=server.url, data_dir=tmp_path / "data", database_url=database_url
    )
    service = TrackingService(settings)
    await service.start(sweep=False)
    try:
        yield service, settings, server
    finally:
        await service.stop()
        server.stop()


async def case_counts(engine) -> tuple[int, int]:
    async with engine.connect() as conn:
        return (
            await conn.scalar(select(func.count()).select_from(cases)),
            await conn.scalar(select(func.count()).select_from(history)),
        )


@pytest.mark.parametrize("jobs", [1, 2])
async def test_duban_rebuild_tracking_swaps_in_its_read_models_while_the_service_answers(tracking, jobs):
    """With two jobs the case history is built in this process and the other read models by a
    second one at once (on SQLite into a file of its own, copied in before the swap)."""
    service, settings, _ = tracking
    for _ in range(3):
        await closed_case(service)
    await service.wait_idle()
    before = await case_counts(service.engine)
    assert before[0] == 3 and before[1] > 3

    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def read_meanwhile() -> None:  # what the service's pages read, all through the rebuild
        while not done.is_set():
            seen.append(await case_counts(service.engine))
            await asyncio.sleep(0.005)

    reader = asyncio.create_task(read_meanwhile())
    lines: list[str] = []
    try:
        reports = await rebuild_service("tracking", settings, say=lines.append, jobs=jobs, batch=5, every_s=0.0)
    finally:
        done.set()
        await reader
    assert seen and all(counts == before for counts in seen)  # never empty, never partial
    (report,) = reports.values()
    assert report["skipped"] == 0 and report["events"] == before[1]
    assert report.get("processes", 1) == jobs
    others = [line for line in lines if "built at once by another process" in line]
    assert len(others) == jobs - 1, lines
    assert not list((settings.data_dir).rglob("*.rebuild-part*"))  # the second process's file, gone
    rebuilt = {name for stream in report["streams"].values() for name in stream["projections"]}
    assert {"tracking_cases", "tracking_case_history", "tracking_plans", "tracking_deputy_groups"} <= rebuilt
    assert "tracking_plan_matters" in rebuilt  # from intake's stream, also the service's
    assert any("swapped in tracking_cases, tracking_case_history" in line for line in lines), lines
    assert await case_counts(service.engine) == before

    # the service's projectors go on into the new read models: a new case, each event once
    await closed_case(service)
    await service.wait_idle()
    after = await case_counts(service.engine)
    assert after == (4, before[1] + before[1] // 3)
    stream_last = (await service.nc.jetstream().stream_info(service.store.stream)).state.last_seq
    assert await read_position(service.engine, "tracking_cases") == stream_last


async def test_a_rebuild_whose_second_process_is_killed_fails_and_leaves_the_read_models_as_they_were(tracking):
    """``kill -9`` of the process building the case list while it reads the stream: the rebuild
    fails saying so, the service's read models are the old ones, whole, its file is gone, and the
    next rebuild swaps in the same read models."""
    service, settings, _ = tracking
    for _ in range(3):
        await closed_case(service)
    await service.wait_idle()
    before = await case_counts(service.engine)
    names = ("tracking_cases", "tracking_case_history")
    positions = {name: await read_position(service.engine, name) for name in names}
    lines: list[str] = []
    killed: list[int] = []

    def say(line: str) -> None:
        lines.append(line)
        if found := re.search(r"^part 2 of 2 \(pid (\d+)\): tracking_cases, .* built at once by another process", line):
            killed.append(int(found.group(1)))
        elif killed and line.startswith("part 2 of 2: ") and "from sequence 1" in line:  # it has begun reading
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(RebuildFailed, match=r"tracking_cases.*ended before it was done \(exit code -9\)"):
        await rebuild_service("tracking", settings, say=say, jobs=2, batch=1, every_s=0.0)
    assert killed, lines
    assert await case_counts(service.engine) == before
    assert {name: await read_position(service.engine, name) for name in positions} == positions
    assert not list(settings.data_dir.rglob("*.rebuild-part*"))

    reports = await rebuild_service("tracking", settings, say=lambda _: None, jobs=2)
    (report,) = reports.values()
    assert report["processes"] == 2 and report["events"] == before[1]
    assert await case_counts(service.engine) == before


async def test_a_history_handed_off_halfway_has_each_event_once_from_one_part_or_the_other(tracking, tmp_path):
    """The rest of a history handed to another process (``hand_off``: as a part done with its own
    read models is given it): this process stops at the sequence it names, the other builds from
    there (on SQLite into its own file, copied in), and the swapped-in history has every event
    once, at the stream's end."""
    service, _, _ = tracking
    for _ in range(6):
        await closed_case(service)
    await service.wait_idle()
    before = await case_counts(service.engine)
    url = service.engine.url.render_as_string(hide_password=False)
    name = "tracking_case_history"
    (projector,) = [w for w in service.workers if isinstance(w, Projector) and w.projection.name == name]
    target = Target(projector.projection, projector.stream, tuple(projector.filter_subjects))
    handed: list[int | None] = []

    def say(line: str) -> None:  # after its first batch
        if not handed and re.search(r"TRACKING_331081 [\d,]+ of", line):
            handed.append(first.hand_off(name))

    first = Rebuild(service.nc, url, [target], batch=5, every_s=0.0, say=say)
    try:
        await first.build()
        (until,) = handed
        assert until is not None and 5 < until < before[1]
        assert first.positions()[name][1] == until
        own_file = service.engine.dialect.name == "sqlite"
        part_file = tmp_path / "part.sqlite3"
        part_url = f"sqlite+aiosqlite:///{part_file}" if own_file else url
        second = Rebuild(service.nc, part_url, [target], batch=5, every_s=0.0, start=until + 1, create_shadows=own_file)
        try:
            reached = await second.build_part()
        finally:
            await second.close()
        await first.adopt(reached, part_file if own_file else None)
        await first.swap()
    finally:
        await first.close()
    assert await case_counts(service.engine) == before  # each event once (its id is the key)
    stream_last = (await service.nc.jetstream().stream_info(service.store.stream)).state.last_seq
    assert await read_position(service.engine, name) == stream_last


def test_a_history_is_built_by_a_process_of_its_own_and_the_others_are_shared_out():
    from services.tracking.projections import (
        CaseHistoryProjection,
        CaseListProjection,
        DeputyGroupProjection,
        PlanProjection,
    )

    targets = [
        Target(projection, "S", ("s.>",))
        for projection in (CaseListProjection(), CaseHistoryProjection(), PlanProjection(), DeputyGroupProjection())
    ]

    def names(parts):
        return [[t.projection.name for t in part] for part in parts]

    assert names(split(targets, 1)) == [[t.projection.name for t in targets]]
    assert names(split(targets, 2)) == [
        ["tracking_case_history"],
        ["tracking_cases", "tracking_plans", "tracking_deputy_groups"],
    ]
    assert names(split(targets, 3)) == [
        ["tracking_case_history"],
        ["tracking_cases", "tracking_deputy_groups"],
        ["tracking_plans"],
    ]
    assert len(split(targets, 8)) == 4
    no_history = [t for t in targets if t.projection.name != "tracking_case_history"]
    assert names(split(no_history, 2)) == [["tracking_cases", "tracking_deputy_groups"], ["tracking_plans"]]
    assert names(split(targets[1:2], 2)) == [["tracking_case_history"]]


async def test_the_command_prints_its_progress_and_what_it_swapped_in(tracking, tmp_path):
    service, settings, server = tracking
    await closed_case(service)
    await service.wait_idle()
    before = await case_counts(service.engine)
    env = {
        **os.environ,
        "DUBAN_NATS_URL": server.url,
        "DUBAN_DATA_DIR": str(tmp_path / "data"),
        "DUBAN_DATABASE_URL": settings.database_url or "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.runtime.tools.cli",
        "rebuild",
        "tracking",
        "--jurisdiction",
        JURISDICTION,
        "--projection",
        "tracking_cases",
        "--projection",
        "tracking_case_history",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    lines = out.decode().splitlines()
    assert process.returncode == 0, (lines, err.decode()[-2000:])
    prefix = f"duban rebuild tracking {JURISDICTION}: "
    assert all(line.startswith(prefix) for line in lines), lines
    assert any(re.search(r"TRACKING_331081 [\d,]+ of [\d,]+ \(100%\)", line) for line in lines), lines
    assert any("swapped in tracking_cases, tracking_case_history at sequence" in line for line in lines), lines
    assert re.fullmatch(rf"{prefix}done in [\d.]+ s: [\d,]+ events, read models swapped in", lines[-1]), lines
    assert await case_counts(service.engine) == before

    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.runtime.tools.cli",
        "rebuild",
        "tracking",
        "--projection",
        "no_such_thing",
        env=env | {"DUBAN_JURISDICTION": JURISDICTION},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(bad.communicate(), 120)
    assert bad.returncode == 2 and "has no projection no_such_thing" in err.decode()


async def test_shadow_names_never_collide_with_the_live_indexes(nc, store, tmp_path):
    """SQLite keeps an index's name when its table is renamed: two rebuilds in a row alternate
    the names of the tracking case list's indexes rather than collide."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite3'}"
    engine = make_engine(url)
    try:
        from services.tracking.projections import CaseListProjection

        target = Target(CaseListProjection(), store.stream, (subjects.event_wildcard(store.context, JURISDICTION),))
        for _ in range(3):
            await Rebuild(nc, url, [target], every_s=0.0).run()
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: [ix["name"] for ix in inspect(sync).get_indexes("tracking_cases")])
        assert names and len(names) == len({n.removesuffix(SUFFIX) for n in names})
    finally:
        await engine.dispose()
