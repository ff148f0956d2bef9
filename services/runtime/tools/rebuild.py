"""``duban rebuild SERVICE``: a service's read models built again from its streams, blue/green.

    duban rebuild SERVICE [--jurisdiction CODE] [--settings FILE] [--projection NAME …] [--json]

The projections are the service's own: it is wired as ``duban serve`` wires it, but as a helper
process (``http_worker`` 1), which connects and declares its projectors without running any, so
the rebuild covers exactly what the service projects, from the streams it reads, into the
database it answers from (``DATABASE_URL`` or its SQLite file), with the NATS user it connects as.
``read/rebuild.py`` then builds them beside the live tables and swaps them in: run it while the
service runs, which answers from its current read models until the swap and goes on from the new
ones after it. A line every two seconds says where each stream stands (sequence, share, events a
second, time left); the last says what was swapped in. Exit code 0 when swapped, 1 when the
rebuild failed (the read models are then as they were: run it again).

Also the way to a new projection version without an empty read model: deploy the code, run
``duban rebuild`` with it while the service still runs the old code (which answers from the old
tables meanwhile), then restart the service: its projectors find the read models at their version
and go on. (Started first instead, the service would rebuild the projection itself, from an empty
table.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.runtime.settings import Settings

log = logging.getLogger("duban.rebuild")


def service_class(name: str):
    """The ``ServiceBase`` subclass ``services.<name>.app`` defines."""
    from services.runtime.service import ServiceBase

    module = importlib.import_module(f"services.{name}.app")
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, ServiceBase) and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LookupError(f"services.{name}.app defines {len(found)} services, not one")
    return found[0]


async def rebuild_service(
    service: str,
    settings: Settings,
    *,
    projections: Sequence[str] = (),
    say: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """Rebuild ``service``'s projections (all, or those named) at ``settings``' level; returns
    the report of each database (``read.rebuild.Rebuild.run``). ``options`` go to ``Rebuild``."""
    from services.runtime.bus.levels import connection_options
    from services.runtime.read.projector import Projector
    from services.runtime.read.rebuild import ReadingClient, Rebuild, Target

    helper = Settings(**{**settings.model_dump(exclude_unset=True), "http_worker": 1})
    running = service_class(service)(helper)
    await running.start()
    try:
        projectors = [w for w in running.workers if isinstance(w, Projector)]
        known = [p.projection.name for p in projectors]
        if unknown := sorted(set(projections) - set(known)):
            raise LookupError(f"{service} has no projection {', '.join(unknown)} (it has {', '.join(known)})")
        chosen = [p for p in projectors if not projections or p.projection.name in projections]
        if not chosen:
            raise LookupError(f"{service} has no read models to rebuild")
        by_database: dict[str, list[Target]] = {}
        for projector in chosen:
            url = projector.engine.url.render_as_string(hide_password=False)
            target = Target(projector.projection, projector.stream, tuple(projector.filter_subjects))
            by_database.setdefault(url, []).append(target)
        # A connection of the rebuild's own, as the service connects (user, TLS, inbox prefix),
        # whose client reads headers faster (``ReadingClient``).
        reading = ReadingClient()
        await reading.connect(helper.nats_url, **connection_options(helper, running.context))
        try:
            reports = {}
            for url, targets in by_database.items():
                where = projector_database(url)
                say(f"{len(targets)} read models in {where}: {', '.join(t.projection.name for t in targets)}")
                reports[where] = await Rebuild(reading, url, targets, say=say, **options).run()
        finally:
            await reading.close()
        return reports
    finally:
        await running.stop()


def projector_database(url: str) -> str:
    """A database URL without its password, for people to read."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _settings(args: argparse.Namespace) -> Settings:
    import os

    from .cli import settings_file_values

    if args.settings:
        for name, value in settings_file_values(args.settings).items():
            os.environ.setdefault(name, value)  # the environment wins over the file, as for serve
    return Settings(**({"jurisdiction": args.jurisdiction} if args.jurisdiction else {}))


def _rebuild(args: argparse.Namespace) -> int:
    from services.runtime.observe.logs import setup_logging
    from services.runtime.read.rebuild import RebuildFailed

    setup_logging()
    settings = _settings(args)
    prefix = f"duban rebuild {args.service} {settings.jurisdiction}: "

    def say(line: str) -> None:
        print(prefix + line, flush=True)

    started = time.monotonic()
    try:
        reports = asyncio.run(
            rebuild_service(
                args.service,
                settings,
                projections=args.projection or (),
                say=say,
                batch=args.batch,
                cached_documents=args.cached_documents,
            )
        )
    except (LookupError, ModuleNotFoundError) as err:
        print(prefix + str(err), file=sys.stderr)
        return 2
    except RebuildFailed as err:
        print(prefix + f"failed: {err}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    events = sum(r["events"] for r in reports.values())
    skipped = sum(r["skipped"] for r in reports.values())
    say(
        f"done in {seconds:.1f} s: {events:,} events"
        + (f", {skipped} skipped (see the log)" if skipped else "")
        + ", read models swapped in"
    )
    if args.json:
        print(json.dumps({"seconds": round(seconds, 2), "databases": reports}, ensure_ascii=False))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from .cli import SERVICES

    rebuild = subparsers.add_parser(
        "rebuild",
        help="build a service's read models again from its streams, then swap them in (blue/green)",
        description="Build the read models of one service of one level again from its streams, beside the ones it "
        "answers from (run it while the service runs), and swap them in once they have caught up. A progress line "
        "every two seconds. Settings as for `duban serve`.",
    )
    rebuild.add_argument("service", choices=SERVICES)
    rebuild.add_argument("--jurisdiction", help="the level's code (default: DUBAN_JURISDICTION)")
    rebuild.add_argument("--settings", type=Path, metavar="FILE", help="a settings file, as for `duban serve`")
    rebuild.add_argument(
        "--projection", action="append", metavar="NAME", help="only this read model (repeatable; default: all)"
    )
    rebuild.add_argument("--batch", type=int, default=2_000, help="messages fetched at a time (default 2000)")
    rebuild.add_argument(
        "--cached-documents",
        type=int,
        default=2_000,
        metavar="N",
        help="rows of each document read model kept in memory while rebuilding (default 2000)",
    )
    rebuild.add_argument("--json", action="store_true", help="print a JSON report at the end")
    rebuild.set_defaults(func=_rebuild)
