"""The PostgreSQL ladder in tests/support/postgres.py really yields a usable server."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.postgres import create_database, start_postgres

pytestmark = pytest.mark.postgres


async def _exercise(url: str) -> list[tuple[int, str]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1
            await conn.execute(text("create table probe (id int primary key, name text not null)"))
            await conn.execute(text("insert into probe values (1, '督办'), (2, 'duban')"))
            rows = await conn.execute(text("select id, name from probe order by id"))
            return [tuple(r) for r in rows]
    finally:
        await engine.dispose()


def test_ladder_gives_a_working_database() -> None:
    handle, base_url, reason = start_postgres()
    if handle is None or base_url is None:
        pytest.skip(reason)
    try:
        url = create_database(base_url, "duban_support_probe")
        assert url.startswith("postgresql+asyncpg://")
        assert asyncio.run(_exercise(url)) == [(1, "督办"), (2, "duban")]
    finally:
        handle.stop()
