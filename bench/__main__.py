"""``python -m bench [--quick] [--events N] [--aggregates N]``: every measurement, one server.

Order: raw publish of commit-like messages, raw publish and consume of plain messages (for
reference), fill of the event stream through ``EventStore.append`` (its first appends timed as
``append_per_s``), cold loads, then ``--rounds`` rounds of (the raw consumer over the event
stream, the projection). The last stdout line is the JSON report; progress goes to stderr. The
server and its temporary directory are removed at the end, also after an error or Ctrl-C.

Why rounds: on a shared (virtual) machine a single timing of the same work varies by 10-30 %
from one minute to the next, and the raw consumer and the projection are timed at different moments;
``project_vs_raw`` then moved by as much as the effect it is meant to show. Alternating the two
and keeping each one's best round compares both under the machine's best conditions (as
``timeit`` keeps the minimum); every round's figure is in the report.
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

from contracts import subjects
from services.runtime.tools.nats_server import EmbeddedNats

from . import traced, web
from .common import CONTEXT, JURISDICTION, Sizes, elapsed, progress, ratio, report_of
from .project import project
from .raw import raw_consume, raw_consume_plain, raw_publish, raw_publish_plain
from .store import fill, load, new_store, sample_commit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ten times smaller counts, for a smoke test")
    parser.add_argument("--events", type=int, help="events in the event stream (default 100000, quick 10000)")
    parser.add_argument("--aggregates", type=int, help="aggregates they belong to (default 10000, quick 1000)")
    parser.add_argument("--rounds", type=int, help="rounds of (raw consume, projection), best kept (default 3)")
    parser.add_argument(
        "--core-only",
        action="store_true",
        help="skip the service scenarios (ballots over HTTP, tracing's cost, the 工作台's pages)",
    )
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
        report |= await raw_publish(nc, sizes, *await sample_commit(nc))
        report |= await raw_publish_plain(nc, sizes)
        report |= await raw_consume_plain(nc, sizes)
        filled, versions = await fill(nc, sizes)
        report |= filled
        report |= await load(nc, sizes, versions)
        raw_rounds: list[float] = []
        project_rounds: list[dict] = []
        for round_ in range(sizes.consume_rounds):
            raw = await raw_consume(
                nc, sizes, new_store(nc).stream, subjects.event_wildcard(CONTEXT, JURISDICTION), round_
            )
            raw_rounds.append(raw["raw_consume_per_s"])
            project_rounds.append(await project(nc, sizes, workdir, round_))
        best = max(project_rounds, key=lambda r: r["project_per_s"])
        report |= best | {
            "raw_consume_per_s": max(raw_rounds),
            "raw_consume_rounds_per_s": raw_rounds,
            "project_rounds_per_s": [r["project_per_s"] for r in project_rounds],
            "project_vs_raw_by_round": [
                ratio(r["project_per_s"], raw) for r, raw in zip(project_rounds, raw_rounds, strict=True)
            ],
        }
    finally:
        await nc.close()
    return report


def notes(sizes: Sizes, report: dict) -> str:
    """What each figure counted, in words, for whoever reads the JSON without this file."""
    return " ".join(
        [
            "Ratios compare like with like: append_vs_raw = append_per_s / raw_publish_per_s,",
            "project_vs_raw = project_per_s / raw_consume_per_s.",
            f"raw_publish_per_s: js.publish with ack, asyncio.gather windows of {sizes.publish_window}, of messages",
            f"like the event store's commits ({report['commit_bytes']}-byte body and the headers",
            f"{', '.join(report['commit_headers'])} of a real commit, unique Nats-Msg-Id, the subject's true",
            "last sequence as expected version) on a stream configured like the event stream.",
            "raw_consume_per_s: nats-py over the event stream itself with the projector's consumer configuration",
            f"(AckPolicy.ALL, fetch {sizes.consume_batch}, one ack per batch), nothing decoded.",
            f"raw_consume_per_s and project_per_s are each the best of {sizes.consume_rounds} alternating rounds",
            "(raw, projection, raw, ...; every round in raw_consume_rounds_per_s, project_rounds_per_s and",
            "project_vs_raw_by_round), because one timing on this machine varies by 10-30 %.",
            "For reference, the figures the ratios used before: raw_publish_plain_per_s",
            f"({sizes.raw_message_bytes}-byte payloads, no headers, same windows; raw_publish_async_plain_per_s:",
            "js.publish_async, sliding window",
            f"of {sizes.publish_window}) and raw_consume_plain_per_s (those messages, explicit acks, ack each).",
            f"append_per_s: the first {sizes.timed_appends} EventStore.append calls of the stream fill",
            f"({sizes.append_concurrency} concurrent workers, 1 event per commit, expected version checked,",
            "snapshot sent without waiting for its ack); fill_append_per_s: the whole fill.",
            "load_per_s: cold loads through a fresh EventStore of distinct random aggregates, state and version",
            "checked. project_per_s: Projector (the sample CounterProjection, a document projection:",
            "one SELECT and one executemany upsert",
            "per batch) into SQLite from prepare() until caught up (catch_up returns when the server reports",
            "nothing pending behind a batch).",
            f"One nats-server and this process share the machine ({os.cpu_count()} CPUs).",
            "ballots_per_s / ballot_p99_ms: bench/ballots.py (500 evaluators' sheets of 10 subjects over HTTP,",
            "ballot_concurrency in flight, every ballot counted exactly once in the results or the run fails).",
            "traced_vs_untraced: bench/traced.py (matters submitted, registered, routed and opened as cases,",
            "with an SDK tracer writing span files against none, fresh processes, best rounds;",
            "traced_vs_untraced_cpu: the process's CPU a matter, medians; traced_spans_per_matter).",
            "web_page_p95_ms: bench/web.py (the 督办清单, a hundred cases a page, and a matter's page, as",
            "committee staff signed in at the 工作台 see them, web_matters matters and cases at the level,",
            "duban serve processes); web_first_load_kb: the sign-in page and every file it loads.",
            "Scale figures (bench/escalation.py, bench/submit.py, bench/rebuild.py, each with its method in its",
            "docstring and `python -m bench.<name>` to run it alone): escalation_* from the township's accepted",
            "escalate call to the matter readable at 台州's intake API; submit_* at 泽国镇 with open matters in",
            "the read model; rebuild_1m_s_* of tracking's read models; rss_mb_max: the largest VmHWM of the",
            "service processes of the ballot burst and the rebuild.",
        ]
    )


#: The scale figures of issue 21, each its own module (``python -m bench.<name>`` runs one alone).
SCALE_MODULES = (
    ("escalation", "escalation_p50_ms: 200 matters 泽国镇 → 温岭市 → 台州市, one server and leaf nodes; catchup_10k_s"),
    ("submit", "submit_ms_at_100k: submissions at 泽国镇 with 100,000 open matters; duplicate recall"),
    ("rebuild", "rebuild_1m_s: tracking's read models from 1,000,000 events, SQLite and PostgreSQL"),
)


def method(module) -> str:
    """A scale module's method in words: its ``METHOD``, else its docstring up to the line that
    says how to run it alone."""
    if hasattr(module, "METHOD"):
        return module.METHOD
    text = (module.__doc__ or "").split("\nRun alone:")[0]
    return " ".join(text.split())


def scale_figures(*, quick: bool) -> dict:
    """The scale figures, each module's ``measure(quick=…)`` in a process of its own, and
    ``rss_mb_max``: the largest resident set of any service process the ballot burst and the
    rebuild ran (their ``*_rss_mb``). A module not there yet is named in ``missing`` rather than
    failing the run."""
    import importlib

    report: dict = {}
    missing = []
    for name, what in SCALE_MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            missing.append(name)
            continue
        progress(what)
        code = f"import json, bench.{name} as m; print(json.dumps(m.measure(quick={quick!r}), ensure_ascii=False))"
        report |= report_of(["-c", code])
        report.setdefault(f"{name}_notes", method(module))
    rss = [value for key, value in report.items() if key.endswith("rss_mb") and isinstance(value, int | float)]
    report["rss_mb_max"] = max(rss) if rss else None
    if missing:
        report["missing"] = missing
    return report


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # so that the finally below stops the server


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sizes = Sizes.build(quick=args.quick, events=args.events, aggregates=args.aggregates, consume_rounds=args.rounds)
    workdir = Path(tempfile.mkdtemp(prefix="duban-bench-"))
    server = EmbeddedNats(workdir / "nats")
    try:
        server.start()
        report = asyncio.run(run(server, sizes, workdir))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.core_only:
        # The services' scenarios, each on servers of its own (after the core's server is gone).
        progress("ballots: a hall's burst over HTTP against `duban serve evaluation`")
        report |= report_of(["-m", "bench.ballots"])
        progress("traced_vs_untraced: intake and tracking end to end, tracing off and on, alternating")
        report |= traced.measure(matters=traced.MATTERS // (5 if args.quick else 1), rounds=sizes.consume_rounds)
        progress("web_page_p95_ms: the 工作台 with 10,000 matters and cases at a county")
        report |= web.measure(matters=web.MATTERS // (10 if args.quick else 1))
        report |= scale_figures(quick=args.quick)
    report |= {
        "append_vs_raw": ratio(report["append_per_s"], report["raw_publish_per_s"]),
        "project_vs_raw": ratio(report["project_per_s"], report["raw_consume_per_s"]),
        "append_vs_raw_plain": ratio(report["append_per_s"], report["raw_publish_plain_per_s"]),
        "project_vs_raw_plain": ratio(report["project_per_s"], report["raw_consume_plain_per_s"]),
        "quick": args.quick,
        "run_seconds": round(elapsed(), 1),
        "python": platform.python_version(),
        "nats_py": version("nats-py"),
        "notes": notes(sizes, report),
    }
    progress("done")
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
