"""``duban rebuild SERVICE``: a service's read models built again from its streams, blue/green.

    duban rebuild SERVICE [--jurisdiction CODE] [--settings FILE] [--projection NAME …] [--jobs N] [--json]

The projections are the service's own: it is wired as ``duban serve`` wires it, but as a helper
process (``http_worker`` 1), which connects and declares its projectors without running any, so
the rebuild covers exactly what the service projects, from the streams it reads, into the
database it answers from (``DATABASE_URL`` or its SQLite file), with the NATS user it connects as.
``read/rebuild.py`` then builds them beside the live tables and swaps them in: run it while the
service runs, which answers from its current read models until the swap and goes on from the new
ones after it. A line every two seconds says where each stream stands (sequence, share, events a
second, time left); the last says what was swapped in. Exit code 0 when swapped, 1 when the
rebuild failed (the read models are then as they were: run it again).

With ``--jobs`` 2 (the default where there are two cores) the read models are split
(``read.rebuild.split``): this process builds the history, a second one (``PartProcess``, spawned:
its own imports, connection and consumer) builds the others at once, each reading the stream for
its own, and when the second is done with them it builds the rest of the history from halfway
through what this one has left (``Rebuild.hand_off``); this one swaps them all in. Each reads
and decodes the stream, so the two use more CPU than one did (both cores against one and a
twentieth), for less time: bench/'s tracking stream of 1,000,001 events, ``rebuild_1m_s`` on
SQLite 116.8 and 127.8 s against 135.1 s in one process (the machine's hours between), on
PostgreSQL 100.0 s against 154.6 s (the first builds, into empty databases: 103.3 against 122.0 s,
117.4 and 130.3 against 127.1 s on SQLite); the second process was done with its own after about 80 s and took the
last ~170,000 events of the history.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
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
    jobs: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Rebuild ``service``'s projections (all, or those named) at ``settings``' level; returns
    the report of each database (``read.rebuild.Rebuild.run``). ``jobs``: processes building at
    once (``read.rebuild.split``; default two where there are two cores). ``options`` go to
    ``Rebuild``."""
    jobs = jobs or min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    async with _wired(service, settings) as (running, reading):
        by_database = _targets(service, running, projections)
        if not by_database:
            raise LookupError(f"{service} has no read models to rebuild")
        reports = {}
        for url, targets in by_database.items():
            where = projector_database(url)
            say(f"{len(targets)} read models in {where}: {', '.join(t.projection.name for t in targets)}")
            reports[where] = await _rebuild_database(service, settings, reading, url, targets, jobs, say, options)
        return reports


@contextlib.asynccontextmanager
async def _wired(service: str, settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    """The service wired as ``duban serve`` wires it, as a helper process (its projectors
    declared, none run), and a connection of the rebuild's own, as the service connects (user,
    TLS, inbox prefix), whose client reads headers faster (``ReadingClient``)."""
    from services.runtime.bus.levels import connection_options
    from services.runtime.read.rebuild import ReadingClient

    helper = Settings(**{**settings.model_dump(exclude_unset=True), "http_worker": 1})
    running = service_class(service)(helper)
    await running.start()
    try:
        reading = ReadingClient()
        await reading.connect(helper.nats_url, **connection_options(helper, running.context))
        try:
            yield running, reading
        finally:
            await reading.close()
    finally:
        await running.stop()


def _targets(service: str, running: Any, projections: Sequence[str]) -> dict[str, list[Any]]:
    """Database URL → the projections chosen (all if none named) that it holds, as ``Target``s."""
    from services.runtime.read.projector import Projector
    from services.runtime.read.rebuild import Target

    projectors = [w for w in running.workers if isinstance(w, Projector)]
    known = [p.projection.name for p in projectors]
    if unknown := sorted(set(projections) - set(known)):
        raise LookupError(f"{service} has no projection {', '.join(unknown)} (it has {', '.join(known)})")
    by_database: dict[str, list[Target]] = {}
    for projector in projectors:
        if not projections or projector.projection.name in projections:
            url = projector.engine.url.render_as_string(hide_password=False)
            target = Target(projector.projection, projector.stream, tuple(projector.filter_subjects))
            by_database.setdefault(url, []).append(target)
    return by_database


async def _rebuild_database(
    service: str,
    settings: Settings,
    reading: Any,
    url: str,
    targets: list[Any],
    jobs: int,
    say: Callable[[str], None],
    options: dict[str, Any],
) -> dict[str, Any]:
    """One database's read models: in this process, or split (``split``) between this process
    and others, each reading the streams for its own read models, at once. This one swaps:
    it adopts what the others built (on SQLite, in files of their own, copied in: one process
    writes a file at a time), makes the indexes left for after the rows and swaps every read
    model in, as one rebuild would."""
    from services.runtime.read.rebuild import Rebuild, split

    parts = split(targets, jobs)
    elsewhere = [t.projection.name for part in parts[1:] for t in part]
    rebuild = Rebuild(reading, url, targets, say=say, elsewhere=elsewhere, **options)
    if len(parts) == 1:
        return await rebuild.run()
    histories = [t.projection.name for t in parts[0]]

    def hand_off() -> tuple[str, int] | None:
        """Half of what is left of a history this process builds, for a part done with its own."""
        for name in histories:
            if (until := rebuild.hand_off(name)) is not None:
                return name, until
        return None

    others: list[PartProcess] = []
    built: list[tuple[dict[str, tuple[str, int]], dict[str, Any]]] = []

    async def beside() -> list[tuple[dict[str, tuple[str, int]], Path | None]]:
        for index, part in enumerate(parts[1:], start=1):
            names = [t.projection.name for t in part]
            others.append(PartProcess(service, settings, names, url, (index, len(parts)), options, say))
        built.extend(await asyncio.gather(*(other.result(hand_off) for other in others)))
        return [(positions, other.file) for other, (positions, _) in zip(others, built, strict=True)]

    try:
        report = await rebuild.run(beside())
    finally:
        for other in others:
            other.stop()
    for other, (_, part_report) in zip(others, built, strict=True):
        if other.rest is not None:  # the rest of a history of this process's: its events add up
            _merge(report, other.rest, add=True)
        _merge(report, part_report)
    report["processes"] = len(parts)
    return report


def _merge(report: dict[str, Any], part: dict[str, Any], *, add: bool = False) -> None:
    """A part's report into the report of the process that swapped: a stream read by both
    counts its events once (each read all it wanted), and is at the older of their positions;
    with ``add``, the rest of one of this process's histories (its events follow this one's)."""
    report["skipped"] += part["skipped"]
    for stream, theirs in part["streams"].items():
        ours = report["streams"].setdefault(stream, {**theirs, "projections": []})
        if add:
            ours["position"] = max(ours["position"], theirs["position"])
            ours["messages"] += theirs["messages"]
            ours["events"] += theirs["events"]
            continue
        ours["projections"] += [name for name in theirs["projections"] if name not in ours["projections"]]
        ours["position"] = min(ours["position"], theirs["position"])
        ours["messages"] = max(ours["messages"], theirs["messages"])
        ours["events"] = max(ours["events"], theirs["events"])
    report["events"] = sum(s["events"] for s in report["streams"].values())


class PartProcess:
    """A part of a split rebuild, built by a process of its own (``build_part``), started at once."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        names: list[str],
        url: str,
        part: tuple[int, int],
        options: dict[str, Any],
        say: Callable[[str], None],
    ) -> None:
        from sqlalchemy.engine import make_url

        index, parts = part
        self.names = names
        self.label = f"part {index + 1} of {parts}"  # this process builds the first
        self.say = say
        database = make_url(url)
        #: SQLite: a file of its own beside the service's (removed at the end); else the same database.
        self.file: Path | None = None
        self.url = url
        if database.get_backend_name() == "sqlite" and database.database:
            self.file = Path(f"{database.database}.rebuild-part{index}")
            self.url = database.set(database=str(self.file)).render_as_string(hide_password=False)
            self._remove_files()
        #: The report of the rest of a history this part built after its own (``hand_off``).
        self.rest: dict[str, Any] | None = None
        context = multiprocessing.get_context("spawn")  # no copy of this process's loop and connections
        self._messages, sending = context.Pipe()
        self.process = context.Process(
            target=build_part,
            args=(service, settings, names, self.url, options, sending),
            name=f"duban-rebuild-part{index}",
            daemon=True,
        )
        self.process.start()
        sending.close()
        say(f"{self.label} (pid {self.process.pid}): {', '.join(names)}, built at once by another process")

    async def result(
        self, hand_off: Callable[[], tuple[str, int] | None] = lambda: None
    ) -> tuple[dict[str, tuple[str, int]], dict[str, Any]]:
        """What the part reached (projection → stream and position) and its report; its progress
        lines said meanwhile. Once done with its own, it builds the rest of a history ``hand_off``
        gives it (name, the sequence after which it is the part's), if any."""
        from services.runtime.read.rebuild import RebuildFailed

        built: tuple[dict[str, tuple[str, int]], dict[str, Any]] | None = None
        while True:
            try:
                kind, value = await asyncio.to_thread(self._messages.recv)
            except (EOFError, OSError):
                await asyncio.to_thread(self.process.join, 5)
                raise RebuildFailed(
                    f"the process building {', '.join(self.names)} (pid {self.process.pid}) ended before it was done"
                    f" (exit code {self.process.exitcode}); the read models are as they were"
                ) from None
            if kind == "say":
                self.say(f"{self.label}: {value}")
            elif kind == "failed":
                raise RebuildFailed(f"{', '.join(self.names)}: {value}")
            elif built is None:
                built = value
                rest = hand_off()
                self._messages.send(("take", *rest, self.file is not None) if rest else ("stop",))
                if rest is None:
                    return built
                self.say(f"{self.label}: builds {rest[0]} after sequence {rest[1]:,}")
            else:
                positions, self.rest = value
                return {**built[0], **positions}, built[1]

    def stop(self) -> None:
        """Ended (killed if still running), its database file removed."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self._messages.close()
        self._remove_files()

    def _remove_files(self) -> None:
        if self.file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.file}{suffix}").unlink(missing_ok=True)


def build_part(
    service: str, settings: Settings, names: list[str], url: str, options: dict[str, Any], messages: Any
) -> None:
    """A part process's work (``PartProcess``): its read models built into ``url``'s shadow
    tables, its progress lines and then its positions and report sent back on ``messages``."""
    from services.runtime.observe.logs import setup_logging
    from services.runtime.read.rebuild import Rebuild

    setup_logging()

    def say(line: str) -> None:
        messages.send(("say", line))

    async def work() -> None:
        async with _wired(service, settings) as (running, reading):

            async def one(chosen: list[str], **more: Any) -> tuple[dict[str, tuple[str, int]], dict[str, Any]]:
                started = time.monotonic()
                targets = [t for ts in _targets(service, running, chosen).values() for t in ts]
                rebuild = Rebuild(reading, url, targets, say=say, **options, **more)
                try:
                    positions = await rebuild.build_part()
                finally:
                    await rebuild.close()
                return positions, rebuild.report(time.monotonic() - started)

            messages.send(("built", await one(names)))
            order = await asyncio.to_thread(messages.recv)
            if order[0] == "take":  # the rest of a history, after the sequence given
                _, name, after, create = order
                messages.send(("built", await one([name], start=after + 1, create_shadows=create)))

    try:
        asyncio.run(work())
    except BaseException as err:
        messages.send(("failed", f"{type(err).__name__}: {err}"))
        raise
    finally:
        messages.close()


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
                jobs=args.jobs,
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
    rebuild.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="processes building at once, each reading the streams for its share of the read models "
        "(default: 2 where there are two cores, else 1)",
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
