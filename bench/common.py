"""What every measurement shares: sizes, progress lines and rates."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.settings import Settings

#: The jurisdiction and context of the benchmark's event stream (a valid county code).
JURISDICTION = "331081"
CONTEXT = "bench"

_started = time.monotonic()


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does; ``quick()`` divides the counts by ten."""

    raw_messages: int = 20_000
    raw_message_bytes: int = 500
    publish_window: int = 500
    #: Fetch size of the raw consumers: the projector's batch (``DUBAN_PROJECTOR_BATCH``), like for like.
    consume_batch: int = field(default_factory=lambda: Settings().projector_batch)
    events: int = 100_000
    aggregates: int = 10_000
    timed_appends: int = 20_000
    append_concurrency: int = 200
    loads: int = 5_000
    load_concurrency: int = 50
    #: Rounds of (raw consume, projection), alternating; each figure is its best round.
    consume_rounds: int = 3

    @property
    def events_per_aggregate(self) -> int:
        return self.events // self.aggregates

    def validate(self) -> None:
        if self.aggregates < 1 or self.events < self.aggregates or self.events % self.aggregates:
            raise SystemExit(f"--events ({self.events}) must be a multiple of --aggregates ({self.aggregates}) > 0")

    @classmethod
    def build(
        cls, *, quick: bool, events: int | None, aggregates: int | None, consume_rounds: int | None = None
    ) -> Sizes:
        base = cls()
        scale = 10 if quick else 1
        aggregates = aggregates or base.aggregates // scale
        events = events or aggregates * base.events_per_aggregate
        sizes = cls(
            raw_messages=base.raw_messages // scale,
            events=events,
            aggregates=aggregates,
            timed_appends=min(base.timed_appends // scale, events),
            loads=min(base.loads // scale, aggregates),
            consume_rounds=consume_rounds or base.consume_rounds,
        )
        sizes.validate()
        return sizes


def progress(message: str) -> None:
    """One progress line on stderr, stamped with the time since the benchmark started."""
    print(f"[bench {time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return time.monotonic() - _started


def rate(count: int, seconds: float) -> float:
    """Items per second, rounded for the report."""
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else 0.0


def report_of(arguments: Sequence[str]) -> dict:
    """The JSON report a benchmark run as ``python ARGUMENTS`` in a process of its own prints as
    its last stdout line (its progress goes to stderr as it comes): a module's clients must not
    share a heap with the benchmarks before it, whose collections would pause them mid-measurement."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, *arguments], cwd=root, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
