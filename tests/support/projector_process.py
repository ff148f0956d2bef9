"""Runs the sample counter projection as its own process, for crash tests.

python -m tests.support.projector_process NATS_URL DATABASE_URL CONTEXT JURISDICTION
"""

from __future__ import annotations

import asyncio
import sys

import nats

from contracts import subjects
from services.runtime.db import make_engine
from services.runtime.logs import setup_logging
from services.runtime.projector import Projector
from services.runtime.settings import Settings
from tests.support.sample import CounterProjection


async def main(nats_url: str, database_url: str, context: str, jurisdiction: str) -> None:
    setup_logging()
    nc = await nats.connect(nats_url, name=f"projector-{context}")
    projector = Projector(
        nc,
        CounterProjection(),
        make_engine(database_url),
        stream=subjects.event_stream(context, jurisdiction),
        filter_subjects=[subjects.event_wildcard(context, jurisdiction)],
        jurisdiction=jurisdiction,
        context=context,
        settings=Settings(jurisdiction=jurisdiction, projector_batch=100),
    )
    await projector.prepare()
    print("ready", flush=True)
    await projector.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
