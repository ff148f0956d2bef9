"""``traced_vs_untraced``: what tracing costs end to end.

The scenario is the life of matters at one level through two services: intake takes each in,
registers and routes it (three commands, each a command span and an append span); intake's read
models and relay and tracking's listener consume them (consumer and batch spans); tracking opens
a case for each routed matter (a command and an append). Timed from the first submission until
tracking has opened every case and every consumer is idle.

With tracing on, the process has an SDK tracer provider writing every finished span to a file
through a ``BatchSpanProcessor``, as ``duban up`` runs each service; with tracing off, there is
no provider (OpenTelemetry's no-op tracer). A process can install its tracer provider once, so
each run is its own process (``python -m bench.traced --mode on|off``); ``measure`` alternates
them and keeps each mode's best round, as the rest of bench/ does.

The scenario is bound by the CPU of its one process (its rate times its CPU a matter is about
one core), so tracing's cost is its CPU: on the benchmark's machine, 6–8 ms a matter untraced
and 1–1.5 ms more traced. About 0.7 ms of that was timed inside the running scenario: 11.5 spans
a matter, each 27–33 µs in the SDK's ``start_span`` (twice the same call alone: the process's
caches), 6 µs in ``end`` and 14 µs to write in the export thread, and 0.1 ms a matter of
propagation (``extract_context``, ``current_trace_context``); cProfile puts most of the rest in
OpenTelemetry's context handling around those calls (``use_span``, ``get_current_span``, links).
With the SDK's sampler set to ``always_off`` (no span recorded or written, the trace context
still made, carried in headers and envelopes and read back) the scenario costs 0.4 ms a matter
more than untraced, of the ~0.95 (medians of four interleaved rounds of 1,000): nats-py parsing
the ``traceparent`` line at every delivery, the first extract of each message, the SDK's
``start_span`` even for a span it drops. Fewer spans a matter is what would lower it. Its rate
still varies by a fifth from round to round on a shared machine, which the best round does not
remove. Two more figures:
``traced_vs_untraced_cpu``, the process's CPU a matter (every thread, the queued spans written
before the clock stops) untraced over traced, the median of each mode's rounds (it varies as
much: the process's polling while it waits counts too); and ``traced_spans_per_matter``, the
spans written a matter, which does not vary.

Run alone: ``python -m bench.traced [--matters N] [--rounds N]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.intake.app import IntakeService
    from services.tracking.app import TrackingService

#: Matters per round: enough for a few seconds of work per round on the benchmark's machine.
MATTERS = 300
CONCURRENCY = 20


HERE = "331081"


@asynccontextmanager
async def one_level(workdir: Path) -> AsyncIterator[tuple[IntakeService, TrackingService]]:
    """温岭市's intake and tracking in this process, on an embedded nats-server of their own."""
    from services.intake.app import IntakeService
    from services.runtime.settings import Settings
    from services.runtime.tools.nats_server import EmbeddedNats
    from services.tracking.app import TrackingService

    server = EmbeddedNats(workdir / "nats").start()
    # SQLite in workdir, as duban up runs a level (a DATABASE_URL set for the tests is not used)
    settings = Settings(jurisdiction=HERE, nats_url=server.url, data_dir=workdir / "data", database_url=None)
    intake, tracking = IntakeService(settings), TrackingService(settings)
    try:
        await tracking.start(sweep=False)
        await intake.start()
        yield intake, tracking
    finally:
        await intake.stop()
        await tracking.stop()
        server.stop()


async def matters_through(intake: IntakeService, tracking: TrackingService, numbers: range) -> None:
    """Matters ``numbers`` submitted, registered and routed (CONCURRENCY at a time), until
    tracking has opened every case and every consumer is idle."""
    from contracts.intake import Channel, MatterData, MatterKind, RegisterMatter, RouteMatter, SubmitMatter, Submitter
    from services.runtime.http.auth import Principal, Role

    staff = Principal(sub="committee-1", name="工委", roles=[Role.committee], jurisdiction=HERE)
    deputy = Principal(sub="deputy-1", name="王代表", roles=[Role.deputy], jurisdiction=HERE)
    handlers = intake.handlers
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            data = MatterData(
                kind=MatterKind.suggestion,
                title=f"关于第{i}号道路改造的建议",
                content="路面破损，建议尽快修复。",
                lead=Submitter(id="deputy-1", name="王代表"),
                channel=Channel.session,
                raised_in=HERE,
            )
            matter = await handlers.submit(SubmitMatter(matter=data), deputy)
            await handlers.register(RegisterMatter(matter_id=matter.id), staff)
            await handlers.route(RouteMatter(matter_id=matter.id, committee="城建环资工委"), staff)

    await asyncio.gather(*(one(i) for i in numbers))
    await intake.wait_idle(timeout=600)
    await tracking.wait_idle(timeout=600)


async def scenario(mode: str, matters: int, workdir: Path) -> tuple[float, float]:
    """Matters per second through intake and tracking, in this process, tracing ``mode``; and
    the process's CPU seconds for them (every thread, the spans' export included)."""
    from opentelemetry import trace

    from services.runtime.observe.telemetry import setup_tracing

    if mode == "on":
        setup_tracing("bench", HERE, trace_dir=workdir / "traces")
    async with one_level(workdir) as (intake, tracking):
        start, cpu = time.perf_counter(), time.process_time()
        await matters_through(intake, tracking, range(matters))
        seconds = time.perf_counter() - start
        if mode == "on":
            trace.get_tracer_provider().force_flush()  # the spans still queued, written (and counted)
        return matters / seconds, time.process_time() - cpu


def _one_round(mode: str, matters: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="duban-bench-traced-") as tmp:
        out = subprocess.run(
            [sys.executable, "-m", "bench.traced", "--mode", mode, "--matters", str(matters), "--workdir", tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(matters: int = MATTERS, rounds: int = 3) -> dict:
    """Alternating rounds of tracing off and on, each in a fresh process; best round of each."""
    off: list[float] = []
    on: list[float] = []
    cpu_off: list[float] = []
    cpu_on: list[float] = []
    spans: list[float] = []
    for round_ in range(rounds):
        for mode, rates, cpus in (("off", off, cpu_off), ("on", on, cpu_on)):
            report = _one_round(mode, matters)
            rates.append(report["matters_per_s"])
            cpus.append(report["cpu_ms_per_matter"])
            if mode == "on":
                spans.append(report["spans_per_matter"])
        print(
            f"traced round {round_ + 1}: off {off[-1]:.0f}/s {cpu_off[-1]:.1f} ms CPU a matter, "
            f"on {on[-1]:.0f}/s {cpu_on[-1]:.1f} ms",
            file=sys.stderr,
            flush=True,
        )
    return {
        "scenario_untraced_cpu_ms_per_matter": [round(v, 2) for v in cpu_off],
        "scenario_traced_cpu_ms_per_matter": [round(v, 2) for v in cpu_on],
        "traced_spans_per_matter": max(spans),
        "traced_vs_untraced_cpu": round(statistics.median(cpu_off) / statistics.median(cpu_on), 3),
        "scenario_untraced_per_s": round(max(off), 1),
        "scenario_traced_per_s": round(max(on), 1),
        "scenario_untraced_rounds_per_s": [round(v, 1) for v in off],
        "scenario_traced_rounds_per_s": [round(v, 1) for v in on],
        "traced_vs_untraced": round(max(on) / max(off), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.traced", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("on", "off"), help="one round in this process (used by measure)")
    parser.add_argument("--matters", type=int, default=MATTERS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.mode:
        rate, cpu = asyncio.run(scenario(args.mode, args.matters, args.workdir))
        spans = sum(1 for path in args.workdir.glob("traces/*.jsonl*") for _ in path.open(encoding="utf-8"))
        report = {
            "mode": args.mode,
            "matters_per_s": round(rate, 2),
            "cpu_ms_per_matter": round(1000 * cpu / args.matters, 3),
            "spans_per_matter": round(spans / args.matters, 2),
        }
        print(json.dumps(report))
        return
    print(json.dumps(measure(args.matters, args.rounds)))


if __name__ == "__main__":
    main()
