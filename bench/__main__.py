"""``python -m bench [--quick] [--events N] [--aggregates N]``: every measurement, one server.

Order: raw publish, raw consume, fill of the event stream through ``EventStore.append`` (its
first appends timed as ``append_per_s``), cold loads, a raw consumer over the event stream (for
reference), projection. The last stdout line is the JSON report; progress goes to stderr. The
server and its temporary directory are removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import tempfile
from importlib.metadata import version
from pathlib import Path

import nats

from services.runtime.nats_server import EmbeddedNats

from .common import Sizes, elapsed, progress, ratio
from .project import project
from .raw import raw_consume, raw_consume_events, raw_publish
from .store import fill, load, new_store


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ten times smaller counts, for a smoke test")
    parser.add_argument("--events", type=int, help="events in the event stream (default 100000, quick 10000)")
    parser.add_argument("--aggregates", type=int, help="aggregates they belong to (default 10000, quick 1000)")
    return parser.parse_args(argv)


async def run(server: EmbeddedNats, sizes: Sizes, workdir: Path) -> dict:
    """Every measurement in turn on one connection to ``server``; returns the report."""
    nc = await nats.connect(server.url, name="duban-bench", pending_size=64 * 1024 * 1024)
    try:
        server_version = nc.connected_server_version
        report: dict = {
            "nats_server_version": f"{server_version.major}.{server_version.minor}.{server_version.patch}",
            "sync_interval": "always",
        }
        progress(f"nats-server {report['nats_server_version']} at {server.url}, store {server.store_dir}")
        report |= await raw_publish(nc, sizes)
        report |= await raw_consume(nc, sizes)
        filled, versions = await fill(nc, sizes)
        report |= filled
        report |= await load(nc, sizes, versions)
        report |= await raw_consume_events(nc, sizes, new_store(nc).stream)
        report |= await project(nc, sizes, workdir)
    finally:
        await nc.close()
    return report


def notes(sizes: Sizes) -> str:
    """What each figure counted, in words, for whoever reads the JSON without this file."""
    return " ".join(
        [
            f"raw_publish_per_s: js.publish with ack, asyncio.gather windows of {sizes.publish_window},",
            f"{sizes.raw_message_bytes}-byte payloads, no headers (raw_publish_async_per_s: js.publish_async,",
            f"sliding window of {sizes.publish_window}).",
            f"raw_consume_per_s: durable pull consumer, fetch {sizes.consume_batch}, ack each.",
            f"append_per_s: the first {sizes.timed_appends} EventStore.append calls of the stream fill",
            f"({sizes.append_concurrency} concurrent workers, 1 event per commit, expected version checked,",
            "snapshot put awaited); fill_append_per_s: the whole fill.",
            "load_per_s: cold loads through a fresh EventStore of distinct random aggregates, state and version",
            "checked. raw_consume_events_per_s: the raw consumer over the event stream (headers, no decoding).",
            "project_per_s: Projector (bench upsert projection, one prebuilt statement executed per event) into",
            "SQLite from prepare() to caught up, including catch_up's final empty 0.2 s fetch.",
            f"One nats-server and this process share the machine ({os.cpu_count()} CPUs).",
        ]
    )


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # so that the finally below stops the server


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sizes = Sizes.build(quick=args.quick, events=args.events, aggregates=args.aggregates)
    workdir = Path(tempfile.mkdtemp(prefix="duban-bench-"))
    server = EmbeddedNats(workdir / "nats")
    try:
        server.start()
        report = asyncio.run(run(server, sizes, workdir))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report |= {
        "append_vs_raw": ratio(report["append_per_s"], report["raw_publish_per_s"]),
        "project_vs_raw": ratio(report["project_per_s"], report["raw_consume_per_s"]),
        "project_vs_raw_events": ratio(report["project_per_s"], report["raw_consume_events_per_s"]),
        "quick": args.quick,
        "run_seconds": round(elapsed(), 1),
        "python": platform.python_version(),
        "nats_py": version("nats-py"),
        "notes": notes(sizes),
    }
    progress("done")
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
