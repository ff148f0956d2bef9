"""What a span list costs, measured inside one process: for the team deciding ARCHITECTURE.md's.

``bench.traced`` compares fresh processes with tracing on and off, and on a shared machine its
rounds move the ratio by ±0.05: a change of a tenth of a millisecond a matter (five spans fewer,
say) does not show there. Here bench.traced's scenario runs in *one* process, its services
started once, in blocks of ``--block`` matters, each block in one of the ``--modes`` below, the
modes interleaved in rotating order ``--repeats`` times; each block's CPU a matter counts every
thread, its spans flushed to the span file before the clock stops. Blocks of one repeat are
paired (the read models grow as the run goes, the machine's load moves), so the report gives,
for each mode, the mean over the repeats of off's CPU over the mode's in the same repeat.

Modes (all but ``on`` are emulated by patching this process's OpenTelemetry SDK and event
store, to weigh a design before building it):

- ``on``: as ``duban up`` runs a service (SDK provider, every span written to a span file);
- ``off``: the SDK's ``start_span`` answers the invalid span: nothing recorded, no trace context
  carried (the provider's entry points still run, so ``on``'s ratio here is a little below
  bench.traced's, which compares with no provider at all);
- ``merged``: an append inside a command's span records no span of its own, its attributes set
  on the command's span (11.5 spans a matter become 6.5);
- ``noexport``: spans recorded, not handed to the span file's processor;
- ``bare``: spans recorded without their attributes and links.

``python -m bench.spans [--block 200] [--repeats 10] [--modes off,on,merged]`` prints one JSON
line. Not part of ``make bench``: a question's tool, about two minutes a run here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .traced import HERE, matters_through, one_level

MODES = ("off", "on", "merged", "noexport", "bare")


def _emulate(current: list[str]) -> None:
    """Patch the SDK and the event store so that ``current[0]`` decides each span's fate."""
    from opentelemetry import trace
    from opentelemetry.sdk import trace as sdk
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from services.runtime.es import eventstore
    from services.runtime.observe.telemetry import tracer

    start_span, on_end = sdk.Tracer.start_span, BatchSpanProcessor.on_end

    def start(self, name, context=None, kind=trace.SpanKind.INTERNAL, attributes=None, links=None, **more):
        if current[0] == "off":
            return trace.INVALID_SPAN
        if current[0] == "bare":
            attributes, links = None, None
        return start_span(self, name, context, kind, attributes, links, **more)

    def end(self, span) -> None:
        if current[0] != "noexport":
            on_end(self, span)

    class AppendTracer:
        @contextmanager
        def start_as_current_span(self, name, *, kind, attributes) -> Iterator[trace.Span]:
            command = trace.get_current_span()
            if current[0] == "merged" and command.is_recording():
                command.set_attributes(attributes)
                yield command
                return
            with tracer().start_as_current_span(name, kind=kind, attributes=attributes) as span:
                yield span

    sdk.Tracer.start_span = start
    BatchSpanProcessor.on_end = end
    eventstore.tracer = AppendTracer


async def measure(block: int, repeats: int, modes: list[str], workdir: Path) -> dict:
    from services.runtime.observe.telemetry import setup_tracing

    current = ["on"]
    _emulate(current)
    provider = setup_tracing("bench", HERE, trace_dir=workdir / "traces")
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    async with one_level(workdir) as (intake, tracking):
        await matters_through(intake, tracking, range(block))  # warm-up, not counted
        provider.force_flush()
        first = block
        for repeat in range(repeats):
            turn = repeat % len(modes)
            for mode in modes[turn:] + modes[:turn]:
                current[0] = mode
                started = time.process_time()
                await matters_through(intake, tracking, range(first, first + block))
                provider.force_flush()
                cpu[mode].append(1000 * (time.process_time() - started) / block)
                first += block
            print(
                f"spans repeat {repeat + 1}: " + ", ".join(f"{m} {cpu[m][-1]:.2f} ms" for m in modes),
                file=sys.stderr,
                flush=True,
            )
    report: dict = {"block": block, "repeats": repeats, "cpu_ms_per_matter": cpu}
    report["cpu_ms_per_matter_median"] = {mode: round(statistics.median(v), 3) for mode, v in cpu.items()}
    if "off" in cpu:
        report["vs_off_paired_mean"] = {
            mode: round(statistics.mean(off / own for off, own in zip(cpu["off"], v, strict=True)), 3)
            for mode, v in cpu.items()
        }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spans", description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=200, help="matters a block")
    parser.add_argument("--repeats", type=int, default=10, help="blocks of each mode")
    parser.add_argument("--modes", default="off,on,merged", help=f"comma-separated, of {', '.join(MODES)}")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="duban-bench-spans-") as tmp:
        report = asyncio.run(measure(args.block, args.repeats, modes, Path(tmp)))
    for mode, values in report["cpu_ms_per_matter"].items():
        report["cpu_ms_per_matter"][mode] = [round(v, 2) for v in values]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
