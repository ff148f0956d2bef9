"""Runs the sample counter projection as its own process, for crash tests.

python -m tests.support.projector_process NATS_URL DATABASE_URL CONTEXT JURISDICTION
"""

from __future__ import annotations

import asyncio
import sys

import nats

from services.runtime.observe.logs import setup_logging
from services.runtime.read.db import make_engine
from tests.support.sample import counter_projector


async def main(nats_url: str, database_url: str, context: str, jurisdiction: str) -> None:
    setup_logging()
    nc = await nats.connect(nats_url, name=f"projector-{context}")
    projector = counter_projector(
        nc, make_engine(database_url), context=context, jurisdiction=jurisdiction, projector_batch=100
    )
    await projector.prepare()
    print("ready", flush=True)
    await projector.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
