"""The projector: the benchmark stream projected into SQLite."""

from __future__ import annotations

import time
from pathlib import Path

from nats.aio.client import Client as NATS
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from contracts import subjects
from services.runtime.db import make_engine
from services.runtime.documents import DocumentProjection
from services.runtime.projector import Projector, handles, read_position
from services.runtime.settings import Settings
from tests.support.sample import Incremented, Opened

from .common import CONTEXT, JURISDICTION, Sizes, progress, rate

metadata = MetaData()
bench_counters = Table(
    "bench_counters",
    metadata,
    Column("aggregate_id", String(64), primary_key=True),
    Column("events", Integer, nullable=False),
    Column("total", Integer, nullable=False),
)


class BenchProjection(DocumentProjection):
    """One row per aggregate, counting its events: the shape of most of duban's read models
    (a document projection: rows read and written once per batch)."""

    name = "bench_counters"
    metadata = metadata
    table = bench_counters

    @handles(Opened)
    def opened(self, doc, event: Opened, envelope) -> None:
        doc["events"] = (doc["events"] or 0) + 1
        doc["total"] = doc["total"] or 0

    @handles(Incremented)
    def incremented(self, doc, event: Incremented, envelope) -> None:
        doc["events"] = (doc["events"] or 0) + 1
        doc["total"] = (doc["total"] or 0) + event.by


async def project(nc: NATS, sizes: Sizes, workdir: Path, round_: int = 0) -> dict:
    """``project_per_s``: a Projector running ``BenchProjection`` over the whole event stream
    into a fresh SQLite file (``make_engine``: WAL, synchronous=NORMAL), batches of
    ``Settings.projector_batch``; timed from ``prepare()`` (tables, position, a fresh consumer)
    until ``catch_up()`` returns, which it does when the server reports nothing pending behind
    a batch. Then every row and the checkpoint are checked."""
    settings = Settings(jurisdiction=JURISDICTION)
    engine = make_engine(f"sqlite+aiosqlite:///{workdir / f'projection-{round_}.sqlite3'}")
    stream = subjects.event_stream(CONTEXT, JURISDICTION)
    projector = Projector(
        nc,
        BenchProjection(),
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
                        func.sum(bench_counters.c.events != sizes.events_per_aggregate),
                        func.sum(bench_counters.c.total),
                    )
                )
            ).one()
        assert rows == sizes.aggregates and not wrong, (rows, wrong)
        assert total == sizes.aggregates * (sizes.events_per_aggregate - 1), total
        info = await nc.jetstream().stream_info(stream)
        assert await read_position(engine, BenchProjection.name) == info.state.last_seq
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
