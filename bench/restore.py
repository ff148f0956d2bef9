"""``python -m bench.restore [--events N]``: how long ``duban backup`` and ``duban restore`` take.

A level (温岭市, 331081) is provisioned on one embedded nats-server and its intake stream filled
with ``--events`` commits shaped as ``EventStore.append`` stores them (a typical commit's body and
headers, spread over a tenth as many aggregates). Then, each timed:

- ``backup_s``: ``write_backup`` of the level (every stream) into a backup file;
- ``restore_file_s``: the backup checked against its manifest and restored onto a second, fresh
  server (``restore_level``, as ``duban restore --from FILE``);
- ``restore_stream_s``: the level restored onto a third server straight from the first one's
  streams, as ``duban restore --from-mirror`` reads the hub's mirrors.

Each restore ends with the last sequence of the restored intake stream checked against the
original. Progress goes to stderr; the last stdout line is the JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import nats

from contracts import subjects
from contracts.envelope import new_id
from services.runtime.bus.accounts import level_stream_configs, provision
from services.runtime.bus.backupfile import BackupFile, write_backup
from services.runtime.bus.restore import read_stream, restore_level
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats

from .common import progress

LEVEL = "331081"


async def fill(js, events: int) -> None:
    """``events`` commits on the level's intake stream, as appends store them."""
    aggregates = [new_id() for _ in range(max(1, events // 10))]
    body = json.dumps([{"event_type": "intake.MatterNoted", "payload": {"text": "督办" * 120}}]).encode()
    last: dict[str, int] = {}
    window: list[asyncio.Future] = []
    for n in range(events):
        aggregate = aggregates[n % len(aggregates)]
        headers = {
            "Nats-Msg-Id": new_id(),
            "Duban-Prev-Seq": str(last.get(aggregate, 0)),
            "Duban-Event-Types": "intake.MatterNoted",
        }
        window.append(await js.publish_async(subjects.event_subject("intake", LEVEL, aggregate), body, headers=headers))
        last[aggregate] = n + 1
        if len(window) >= 1000:
            await asyncio.gather(*window)
            window.clear()
        if n and n % 20_000 == 0:
            progress(f"filled {n} of {events}")
    await asyncio.gather(*window)


async def run(events: int, workdir: Path) -> dict:
    settings = Settings(jurisdiction=LEVEL)
    configs = level_stream_configs(LEVEL, settings)
    stream = subjects.event_stream("intake", LEVEL)
    report: dict = {"events": events}
    with (
        EmbeddedNats(workdir / "origin") as origin,
        EmbeddedNats(workdir / "from-file") as second,
        EmbeddedNats(workdir / "from-stream") as third,
    ):
        nc = await nats.connect(origin.url, pending_size=64 * 1024 * 1024)
        await provision(nc, [LEVEL], settings=settings)
        started = time.monotonic()
        await fill(nc.jetstream(), events)
        report["fill_s"] = round(time.monotonic() - started, 1)
        last = (await nc.jetstream().stream_info(stream)).state.last_seq

        started = time.monotonic()
        file = workdir / "backup.tar"
        await write_backup(nc.jetstream(), [LEVEL], file, say=progress)
        report["backup_s"] = round(time.monotonic() - started, 1)
        report["backup_mb"] = round(file.stat().st_size / 1e6, 1)

        target = await nats.connect(second.url, pending_size=64 * 1024 * 1024)
        started = time.monotonic()
        backup = BackupFile(file)
        backup.verify()
        await restore_level(target.jetstream(), configs, backup.messages, say=progress)
        report["restore_file_s"] = round(time.monotonic() - started, 1)
        assert (await target.jetstream().stream_info(stream)).state.last_seq == last
        backup.close()

        other = await nats.connect(third.url, pending_size=64 * 1024 * 1024)
        js = nc.jetstream()

        async def messages_of(name: str):
            upto = (await js.stream_info(name)).state.last_seq
            return upto, read_stream(js, name, upto=upto)

        started = time.monotonic()
        await restore_level(other.jetstream(), configs, messages_of, say=progress)
        report["restore_stream_s"] = round(time.monotonic() - started, 1)
        assert (await other.jetstream().stream_info(stream)).state.last_seq == last
        report["restore_events_per_s"] = round(events / report["restore_stream_s"])
        for connection in (nc, target, other):
            await connection.close()
    report["notes"] = " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " ")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.restore", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="duban-bench-restore-") as scratch:
        print(json.dumps(asyncio.run(run(args.events, Path(scratch))), ensure_ascii=False))


if __name__ == "__main__":
    main()
