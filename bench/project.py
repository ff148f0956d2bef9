"""The projector: the benchmark stream projected into SQLite."""

from __future__ import annotations

import time
from pathlib import Path

from nats.aio.client import Client as NATS
from sqlalchemy import func, select

from contracts import subjects
from services.runtime.read.db import make_engine
from services.runtime.read.projector import Projector, read_position
from services.runtime.settings import Settings
from tests.support.sample import CounterProjection, counters

from .common import CONTEXT, JURISDICTION, Sizes, progress, rate


async def project(nc: NATS, sizes: Sizes, workdir: Path, round_: int = 0) -> dict:
    """``project_per_s``: a Projector running the sample ``CounterProjection`` over the whole
    event stream into a fresh SQLite file (``make_engine``: WAL, synchronous=NORMAL), batches of
    ``Settings.projector_batch``. It is a document projection (one row per aggregate counting its
    events, rows read and written once per batch), the shape of most read models. Timed from
    ``prepare()`` (tables, position, a fresh consumer) until ``catch_up()`` returns, which it
    does when the server reports nothing pending behind a batch. Then every row and the
    checkpoint are checked."""
    settings = Settings(jurisdiction=JURISDICTION)
    engine = make_engine(f"sqlite+aiosqlite:///{workdir / f'projection-{round_}.sqlite3'}")
    stream = subjects.event_stream(CONTEXT, JURISDICTION)
    projector = Projector(
        nc,
        CounterProjection(),
        engine,
        stream=stream,
        filter_subjects=[subjects.event_wildcard(CONTEXT, JURISDICTION)],
        jurisdiction=JURISDICTION,
        context=CONTEXT,
        settings=settings,
    )
    try:
        start = time.perf_counter()
        await projector.prepare()
        await projector.catch_up(timeout=3_600)
        seconds = time.perf_counter() - start

        async with engine.connect() as conn:
            rows, wrong, total = (
                await conn.execute(
                    select(
                        func.count(),
                        func.sum(counters.c.events != sizes.events_per_aggregate),
                        func.sum(counters.c.total),
                    )
                )
            ).one()
        assert rows == sizes.aggregates and not wrong, (rows, wrong)
        assert total == sizes.aggregates * (sizes.events_per_aggregate - 1), total
        info = await nc.jetstream().stream_info(stream)
        assert await read_position(engine, CounterProjection.name) == info.state.last_seq
    finally:
        await engine.dispose()
    progress(
        f"project (round {round_ + 1}): {sizes.events} events (batch {settings.projector_batch}) in {seconds:.2f}s"
        f" = {rate(sizes.events, seconds):,.0f}/s"
    )
    return {
        "project_per_s": rate(sizes.events, seconds),
        "project_seconds": round(seconds, 2),
        "projector_batch": settings.projector_batch,
    }
