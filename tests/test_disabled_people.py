"""Who of the directory is disabled, as a service's token check reads it (``read/people.py``):
requests that find the list out of date wait for one read of it, not one each."""

from __future__ import annotations

import asyncio

from sqlalchemy import event

from services.runtime.read.db import make_engine
from services.runtime.read.people import DisabledPeople, people, people_metadata


def counted_reads(engine) -> list[str]:
    """The statements on ``engine`` that read the directory's people, as they are executed."""
    reads: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _read(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "directory_people" in statement:
            reads.append(statement)

    return reads


async def test_a_burst_of_requests_reads_the_list_once(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'people.sqlite3'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(people_metadata.create_all)
            await conn.execute(
                people.insert(), [{"id": "deputy-1", "active": True}, {"id": "deputy-2", "active": False}]
            )
        disabled = DisabledPeople(engine, ttl_s=0.5)
        reads = counted_reads(engine)
        answers = await asyncio.gather(*(disabled.contains(f"deputy-{1 + i % 2}") for i in range(200)))
        assert answers == [i % 2 == 1 for i in range(200)]
        assert len(reads) == 1

        async with engine.begin() as conn:  # deputy-1 disabled: known once the list has aged
            await conn.execute(people.update().where(people.c.id == "deputy-1").values(active=False))
        assert not await disabled.contains("deputy-1")
        await asyncio.sleep(0.6)
        assert all(await asyncio.gather(*(disabled.contains("deputy-1") for _ in range(50))))
        assert len(reads) == 2
    finally:
        await engine.dispose()


async def test_without_the_directory_nobody_is_disabled_and_a_given_up_request_cancels_no_read(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        disabled = DisabledPeople(engine)
        reads = counted_reads(engine)
        waiting = asyncio.ensure_future(disabled.contains("deputy-1"))
        others = asyncio.gather(*(disabled.contains("deputy-1") for _ in range(10)))
        await asyncio.sleep(0)
        waiting.cancel()  # one request given up while the read is under way
        assert await others == [False] * 10
        assert len(reads) == 1
    finally:
        await engine.dispose()
