"""``duban up``: the whole system on one machine, on the embedded default.

Starts the embedded nats-server (JetStream in ``.duban/nats``, ``sync_interval: always``),
creates the streams of every level it runs, writes ``.duban/run.json`` and waits for Ctrl-C.
The services' own processes join here as they land (see the open issues).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import nats

from contracts import subjects
from contracts.jurisdictions import default_registry

from .deadletters import ensure_deadletter_stream
from .eventstore import EventStore
from .nats_server import EmbeddedNats

log = logging.getLogger("duban.up")

#: The levels ``duban up`` runs by default: 台州市, 温岭市 and one Wenling township (泽国镇).
DEFAULT_LEVELS = ("331000", "331081", "331081100")


async def _prepare_streams(url: str, levels: tuple[str, ...]) -> None:
    nc = await nats.connect(url)
    try:
        for code in levels:
            for context in subjects.CONTEXTS:
                await EventStore(nc, context=context, jurisdiction=code).ensure_streams()
            await ensure_deadletter_stream(nc.jetstream(), code)
    finally:
        await nc.close()


def run(data_dir: Path, port: int, levels: tuple[str, ...] = DEFAULT_LEVELS) -> int:
    registry = default_registry()
    for code in levels:
        registry.get(code)  # unknown codes fail here, with the code in the message
    server = EmbeddedNats(data_dir / "nats", port=port).start()
    try:
        asyncio.run(_prepare_streams(server.url, levels))
        run_file = data_dir / "run.json"
        run_file.write_text(
            json.dumps(
                {
                    "nats_url": server.url,
                    "nats_monitor": f"http://127.0.0.1:{server.monitor_port}",
                    "levels": {code: registry.get(code).name for code in levels},
                    "services": {},
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        print(f"duban: NATS (JetStream, sync_interval always) at {server.url}, data in {data_dir}")
        for code in levels:
            print(f"  {code} {registry.get(code).name}: streams ready")
        print(f"  run file: {run_file}   stop with Ctrl-C")
        stop = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()

        asyncio.run(wait())
    finally:
        server.stop()
        print("duban: stopped")
    return 0
