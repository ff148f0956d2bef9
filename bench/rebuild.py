"""``rebuild_1m_s_sqlite`` / ``rebuild_1m_s_postgresql``: tracking's read models rebuilt from
1,000,000 events by ``duban rebuild tracking``, while ``duban serve tracking`` answers from the
old ones.

Method. One nats-server of its own (the embedded launcher's configuration without
``sync_interval: always``, which only makes writes wait for the disk: the fill is set-up, the
rebuild only reads) holds 温岭市's tracking stream, filled with ``--events`` real tracking events
(``rebuild_events.py``: cases lived through tracking's handlers, copied with new ids, about 1.3
events a commit, 74,000 cases for a million). Then, on SQLite (the service's file in its data
directory) and on PostgreSQL 15 (``DATABASE_URL``, else a throwaway ``initdb`` cluster as the tests
start one), each in turn:

1. ``duban rebuild tracking`` builds the read models into the empty database (``rebuild_first_s_*``);
2. ``duban serve tracking`` starts on them (its projectors find them caught up);
3. ``duban rebuild tracking`` runs again, timed: ``rebuild_1m_s_*`` is its wall time as a process,
   from start to exit (Python's start, the service's wiring, every stream read, the indexes, the
   swap). Meanwhile the service is asked for its 督办清单 (``GET /cases``) and one case's page
   (``GET /cases/{id}``) every half second: ``rebuild_reads_*`` counts the answers, which must all
   be 200 with the cases listed (the old read model, then the new one), ``rebuild_read_p99_ms_*``
   their slowest percentile.

Also: ``rebuild_events_per_s_*`` (events over the command's own seconds), ``rebuild_swap_s_*``
(from the end of the streams to the swap committed: rows kept in memory written, indexes made,
the tables swapped), ``rebuild_rss_mb`` (the largest resident set, VmHWM, of a rebuild command or
of the second process it starts, ``--jobs``), ``rebuild_service_rss_mb`` (the served tracking's,
after both rebuilds), ``rebuild_fill_s``.

On a machine shared with other work the seconds move by tens of percent from one run to the
next: run it again (``--store DIR`` keeps the filled stream for the next run).

Run alone: ``python -m bench.rebuild [--events N] [--quick] [--store DIR] [--database sqlite]``
prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .served import BENCH_SECRET, environment, peak_rss_mb

EVENTS = 1_000_000
QUICK_EVENTS = 50_000
HERE = "331081"
DATABASES = ("sqlite", "postgresql")
#: How often the service is asked for its pages during the timed rebuild.
READ_EVERY_S = 0.5


def progress(line: str) -> None:
    print(f"[rebuild bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _nats(store_dir: Path):
    from services.runtime.tools.nats_server import EmbeddedNats

    class FillingNats(EmbeddedNats):
        """The embedded configuration, writes not waiting for the disk (see the docstring)."""

        def write_config(self) -> Path:
            path = super().write_config()
            path.write_text(path.read_text().replace("  sync_interval: always\n", ""))
            return path

    return FillingNats(store_dir)


async def _fill(url: str, events: int, store_dir: Path) -> dict:
    """The tracking stream filled with ``events`` events, or as a previous run left it."""
    import nats

    from . import rebuild_events

    marker = store_dir / "filled.json"
    if marker.exists():
        filled = json.loads(marker.read_text())
        if filled.get("events_asked") == events:
            progress(f"reusing the stream in {store_dir}: {filled['events']:,} events")
            return filled | {"fill_seconds": None}
        raise SystemExit(f"{store_dir} holds a stream of {filled.get('events_asked')} events, not {events}")
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    try:
        started = time.monotonic()
        filled = await rebuild_events.publish(nc, events, say=progress)
        seconds = time.monotonic() - started
    finally:
        await nc.close()
    filled |= {"events_asked": events}
    marker.write_text(json.dumps(filled))
    progress(f"filled: {filled['events']:,} events in {filled['commits']:,} commits, {seconds:.0f} s")
    return filled | {"fill_seconds": round(seconds, 1)}


def _environment(nats_url: str, data_dir: Path, database_url: str | None) -> dict[str, str]:
    more = {"DUBAN_JURISDICTION": HERE, "DUBAN_TRACE_FILES": "false"}
    if database_url:
        more["DUBAN_DATABASE_URL"] = database_url
    return environment(nats_url, data_dir, more=more)


async def _rebuild(env: dict[str, str], what: str) -> dict:
    """``duban rebuild tracking --json`` as a process: its wall seconds, report and peak RSS."""
    command = [sys.executable, "-m", "services.runtime.tools.cli", "rebuild", "tracking", "--json"]
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    rss: list[float] = []

    async def watch() -> None:
        while process.returncode is None:
            if (value := peak_rss_mb(process.pid)) is not None:
                rss.append(value)
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    lines = []
    assert process.stdout is not None
    async for raw in process.stdout:
        line = raw.decode().rstrip()
        lines.append(line)
        if not line.startswith("{"):
            progress(f"{what}: {line}")
    errors = (await process.stderr.read()).decode() if process.stderr else ""
    await process.wait()
    seconds = time.monotonic() - started
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    if process.returncode != 0:
        raise RuntimeError(f"duban rebuild failed ({process.returncode}): {errors[-3000:]}")
    report = json.loads(lines[-1])
    return {"seconds": seconds, "report": report, "rss_mb": max(rss) if rss else None}


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "services.runtime.tools.cli", "serve", "tracking", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"duban serve tracking did not become ready; see {log}")
        time.sleep(0.2)


async def _read_meanwhile(base: str, stop: asyncio.Event) -> dict:
    """The 督办清单 and a case's page, asked for every ``READ_EVERY_S`` until ``stop``."""
    from services.runtime.http.auth import dev_token

    headers = {"Authorization": f"Bearer {dev_token(HERE, 'committee', BENCH_SECRET)}"}
    answered = failed = empty = 0
    timings: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        case_id = None
        while not stop.is_set():
            for path in ("/cases?limit=20", f"/cases/{case_id}" if case_id else None):
                if path is None:
                    continue
                started = time.perf_counter()
                try:
                    answer = await http.get(path)
                except httpx.HTTPError:
                    failed += 1
                    continue
                timings.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    failed += 1
                elif path.startswith("/cases?"):
                    items = answer.json()["items"]
                    empty += not items
                    answered += 1
                    case_id = case_id or (items[0]["id"] if items else None)
                else:
                    empty += not answer.json()["history"]
                    answered += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READ_EVERY_S)
    p99 = statistics.quantiles(timings, n=100)[-1] if len(timings) >= 2 else (timings[0] if timings else None)
    return {"answered": answered, "failed": failed, "empty": empty, "p99_ms": round(p99, 1) if p99 else None}


async def _one_database(database: str, nats_url: str, workdir: Path, postgres_base: str | None) -> dict:
    from services.runtime.tools.ports import free_port

    data_dir = workdir / f"data-{database}"
    database_url = None
    if database == "postgresql":
        from tests.support.postgres import create_database

        database_url = await asyncio.to_thread(create_database, postgres_base, "duban_rebuild_bench")
    env = _environment(nats_url, data_dir, database_url)
    progress(f"{database}: rebuilding into the empty database")
    first = await _rebuild(env, f"{database} first")
    port = free_port()
    service = await asyncio.to_thread(_serve, env, port, workdir / f"serve-{database}.log")
    try:
        progress(f"{database}: duban serve tracking answers on port {port}; timed rebuild")
        stop = asyncio.Event()
        reader = asyncio.create_task(_read_meanwhile(f"http://127.0.0.1:{port}", stop))
        try:
            timed = await _rebuild(env, database)
        finally:
            stop.set()
            reads = await reader
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(timeout=10) as http:  # still serving, on the new read models
            after = (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code
        service_rss = peak_rss_mb(service.pid)
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(service.wait, 30)
        except subprocess.TimeoutExpired:
            service.kill()
    (report,) = timed["report"]["databases"].values()
    events = report["events"]
    progress(
        f"{database}: {events:,} events rebuilt in {timed['seconds']:.1f} s (command's own {report['seconds']:.1f} s,"
        f" swap {report['swap_seconds']:.1f} s); service reads {reads}"
    )
    assert reads["failed"] == 0 and reads["empty"] == 0 and after == 200, (reads, after)
    return {
        f"rebuild_1m_s_{database}": round(timed["seconds"], 1),
        f"rebuild_first_s_{database}": round(first["seconds"], 1),
        f"rebuild_events_per_s_{database}": round(events / report["seconds"]),
        f"rebuild_swap_s_{database}": report["swap_seconds"],
        f"rebuild_reads_{database}": reads["answered"],
        f"rebuild_read_p99_ms_{database}": reads["p99_ms"],
        "_rss": [first["rss_mb"], timed["rss_mb"]],
        "_service_rss": service_rss,
        "rebuild_events": events,
    }


async def _measure(events: int, databases: tuple[str, ...], store: Path | None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="duban-rebuild-bench-"))
    store_dir = store or workdir / "nats"
    server = _nats(store_dir)
    postgres = None
    try:
        server.start()
        filled = await _fill(server.url, events, store_dir)
        postgres_base = None
        if "postgresql" in databases:
            from tests.support.postgres import start_postgres

            postgres, postgres_base, how = await asyncio.to_thread(start_postgres)
            if postgres_base is None:
                raise SystemExit(f"no PostgreSQL for the rebuild benchmark: {how}")
            progress(f"PostgreSQL: {how}")
        report: dict = {"rebuild_fill_s": filled["fill_seconds"], "rebuild_commits": filled["commits"]}
        rss: list[float] = []
        service_rss: list[float] = []
        for database in databases:
            figures = await _one_database(database, server.url, workdir, postgres_base)
            rss += [value for value in figures.pop("_rss") if value is not None]
            if (value := figures.pop("_service_rss")) is not None:
                service_rss.append(value)
            report |= figures
        report |= {
            "rebuild_rss_mb": max(rss) if rss else None,
            "rebuild_service_rss_mb": max(service_rss) if service_rss else None,
            "rebuild_cpus": os.cpu_count(),
        }
        return report
    finally:
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def measure(*, quick: bool = False, events: int | None = None, databases=DATABASES, store: Path | None = None) -> dict:
    """The figures above, for ``bench/__main__.py``: a million events (``quick``: 50,000)."""
    count = events or (QUICK_EVENTS if quick else EVENTS)
    return asyncio.run(_measure(count, tuple(databases), store))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help=f"events in the stream (default {EVENTS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events")
    parser.add_argument("--database", action="append", choices=DATABASES, help="only this one (repeatable)")
    parser.add_argument("--store", type=Path, help="keep the filled stream here and reuse it next time")
    args = parser.parse_args(argv)
    report = measure(quick=args.quick, events=args.events, databases=args.database or DATABASES, store=args.store)
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
