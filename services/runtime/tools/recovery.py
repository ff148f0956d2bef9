"""``duban backup`` and ``duban restore``: a level's streams kept offline, and put back.

    duban backup --level CODE [--level CODE …] --out FILE [--nats ADMIN_URL]
    duban restore --level CODE [--level CODE …] --from FILE [--nats ADMIN_URL]
    duban restore --level CODE [--level CODE …] --from-mirror --mirror-domain DOMAIN [--nats ADMIN_URL]
    duban restore --level CODE [--level CODE …] --from-mirror --mirror-nats HUB_ADMIN_URL [--nats ADMIN_URL]

``--nats`` is the administrator of the level's own server (default: ``duban up``'s, then
``DUBAN_NATS_URL``); a restore goes onto a fresh server (or one a restore was cut short on, which it
finishes). The level's domains and replicas come from the same settings its provisioning reads
(``DUBAN_JETSTREAM_DOMAIN``, ``DUBAN_LEVEL_DOMAINS``, ``DUBAN_STREAM_REPLICAS``; TLS with
``DUBAN_NATS_CA_FILE``). After a restore, start the level's services at once: they react to the
restored events again, and what they would send twice is recognised for the streams' de-duplication
window (10 minutes) after the restore (``bus/restore.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from services.runtime.settings import Settings


def _say(line: str) -> None:
    print(f"duban: {line}", flush=True)


async def _connect(url: str, what: str):
    import nats

    from .ops import _tls, _without_password

    try:
        return await nats.connect(url, max_reconnect_attempts=3, connect_timeout=5, **_tls())
    except Exception as err:
        raise SystemExit(f"duban: cannot connect to {what} NATS at {_without_password(url)}: {err}") from None


async def _backup(args: argparse.Namespace) -> int:
    from services.runtime.bus.backupfile import BackupRefused, write_backup

    from .ops import _nats_url, _without_password

    url = _nats_url(args)
    levels = args.level or [Settings().jurisdiction]
    nc = await _connect(url, "the level's")
    started = time.monotonic()
    try:
        manifest = await write_backup(nc.jetstream(), levels, args.out, server=_without_password(url), say=_say)
    except BackupRefused as err:
        print(f"duban backup: {err}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    count = sum(entry["messages"] for entry in manifest["streams"])
    _say(f"backup of {', '.join(levels)}: {count} messages in {args.out} ({time.monotonic() - started:.1f}s)")
    return 0


async def _restore(args: argparse.Namespace) -> int:
    from services.runtime.bus.accounts import level_stream_configs, provision
    from services.runtime.bus.backupfile import BackupFile, BackupRefused
    from services.runtime.bus.levels import LevelTopology
    from services.runtime.bus.mirrors import mirror_name
    from services.runtime.bus.restore import RestoreError, read_stream, restore_level

    from .ops import _nats_url

    settings = Settings()
    topology = LevelTopology()
    levels = args.level or [settings.jurisdiction]
    configs = [config for code in levels for config in level_stream_configs(code, settings, topology=topology)]
    backup = None
    if args.source:
        try:
            backup = BackupFile(args.source)
            missing = [c.name for c in configs if not backup.has(c.name)]
            if missing:
                raise BackupRefused(f"{args.source} holds no {', '.join(missing)} (its levels: {backup.levels})")
            _say(f"checking {args.source} ({len(backup.streams)} streams) against its manifest")
            backup.verify()
        except BackupRefused as err:
            print(f"duban restore: {err}", file=sys.stderr)
            return 1
    elif not (args.mirror_nats or args.mirror_domain):
        print("duban restore: --from-mirror needs --mirror-domain DOMAIN or --mirror-nats URL", file=sys.stderr)
        return 2
    nc = await _connect(_nats_url(args), "the level's")
    mirror = None
    try:
        # where the hub's mirrors are read: its own port, or through this server's leaf link
        if args.mirror_nats:
            mirror = await _connect(args.mirror_nats, "the hub's")
            hub = mirror.jetstream()
        elif args.mirror_domain:
            hub = nc.jetstream(domain=args.mirror_domain)
        if backup is not None:
            messages_of = backup.messages
            if args.mirror_nats or args.mirror_domain:  # the hub's copies must not be newer than the backup
                ahead = await mirrors_ahead(hub, {c.name: backup.streams[c.name]["last_seq"] for c in configs})
                if ahead:
                    listed = ", ".join(f"{name} ({have} > {had})" for name, have, had in ahead)
                    print(
                        f"duban restore: the hub's mirrors hold more than {args.source}: {listed}. Restore from "
                        "the mirror (--from-mirror): it is newer, and messages the level stores again at sequences "
                        "the mirror already holds would never reach it",
                        file=sys.stderr,
                    )
                    return 1
        else:

            async def messages_of(stream: str):
                info = await hub.stream_info(mirror_name(stream))
                lag = info.mirror.lag if info.mirror else None
                _say(
                    f"{mirror_name(stream)}: {info.state.messages} messages to sequence {info.state.last_seq} "
                    f"(lag {lag})"
                )
                return info.state.last_seq, read_stream(hub, mirror_name(stream), upto=info.state.last_seq)

        started = time.monotonic()
        results = await restore_level(nc.jetstream(), configs, messages_of, say=_say)
        await provision(nc, levels, settings=settings, topology=topology, say=_say)
    except (RestoreError, BackupRefused) as err:
        print(f"duban restore: {err}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
        if mirror is not None:
            await mirror.close()
        if backup is not None:
            backup.close()
    count = sum(r.messages for r in results)
    seconds = time.monotonic() - started
    summary = {"levels": levels, "messages": count, "seconds": round(seconds, 2), "streams": len(results)}
    if args.json:
        print(json.dumps(summary))
    _say(
        f"restored {', '.join(levels)}: {count} messages in {len(results)} streams in {seconds:.1f}s. "
        "Start the level's services now: they rebuild their read models and snapshots and go on."
    )
    return 0


async def mirrors_ahead(hub, last_seqs: dict[str, int]) -> list[tuple[str, int, int]]:
    """The streams whose mirror at the hub holds more than ``last_seqs`` says (name, mirror's, ours)."""
    from nats.js.errors import NotFoundError

    from services.runtime.bus.mirrors import mirror_name

    ahead = []
    for stream, last in last_seqs.items():
        try:
            info = await hub.stream_info(mirror_name(stream))
        except NotFoundError:
            continue
        if info.state.last_seq > last:
            ahead.append((stream, info.state.last_seq, last))
    return ahead


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--level", action="append", help="a level's code (default: DUBAN_JURISDICTION); repeatable")
    common.add_argument(
        "--nats", help="the level server's administrator URL (default: run.json's, then DUBAN_NATS_URL)"
    )
    common.add_argument("--data-dir", type=Path, default=None, help="the data dir of duban up (default: .duban)")
    common.add_argument("--json", action="store_true", help="print a JSON summary too")

    backup = subparsers.add_parser(
        "backup", parents=[common], help="write every stream of a level to a file (manifest and checksums)"
    )
    backup.add_argument("--out", type=Path, required=True, help="the backup file to write (a tar)")
    backup.set_defaults(func=lambda args: asyncio.run(_backup(args)))

    restore = subparsers.add_parser(
        "restore",
        parents=[common],
        help="put a level's streams back on a fresh server, from a backup or the hub's mirror",
    )
    source = restore.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", type=Path, help="a file `duban backup` wrote")
    source.add_argument("--from-mirror", action="store_true", help="the hub's mirrors of the level's streams")
    restore.add_argument(
        "--mirror-domain",
        help="the JetStream domain keeping the mirrors (the hub's, e.g. taizhou), reached through the level's "
        "own server and its leaf link: to restore from (--from-mirror), or that a backup must not be older than",
    )
    restore.add_argument(
        "--mirror-nats",
        help="the hub's administrator URL: the mirror to restore from (--from-mirror), or, with --from, "
        "the mirrors a backup must not be older than",
    )
    restore.set_defaults(func=lambda args: asyncio.run(_restore(args)))
