"""``submit_ms_at_100k``: what a matter's submission costs at a level holding 100,000 open matters.

Each submission answers with the possible duplicates (``services/intake/similarity.py``), which
used to score every open matter of the level. Measured here through the real intake over HTTP:

* a real intake service of 泽国镇 (331081100): ``duban serve intake`` as its own process, on an
  embedded nats-server, its read models in SQLite (``DUBAN_DATA_DIR``), answering HTTP in
  ``--http-workers`` processes: two by default, one per core of this two-core machine, as
  deploy/ runs a level's intake (``deploy/generate.py: HTTP_WORKERS``; ``duban up``, which runs
  every service of three levels on one machine, gives each one);
* its read model filled **directly**, not through the stream: ``--matters`` real-looking matters
  (``tests/support/matter_corpus.py``: 企业用电、园区道路、停车位、冷链物流… with deliberate
  near-duplicates, a fifth of them registered) applied by intake's own ``MatterListProjection``
  into the service's database file while it runs, as its projector would apply them (the matter
  list and its title index); writing 100,000 matters through the event store would take longer
  than everything measured here and measure something else;
* ``submit_seq_p50_ms`` / ``submit_seq_p99_ms``: ``SEQUENTIAL`` submissions one after another
  on one keep-alive connection (a liaison station entering a list), each timed from sending the
  request to its answer, duplicates included; the matters are new ones of the same corpus, so
  most have near-duplicates among those filled in;
* ``submit_burst_p50_ms`` / ``submit_burst_p99_ms``: ``BURST`` submissions sent at once, each on
  its own connection opened beforehand, each timed from the moment all are sent to its answer;
* ``submit_open_matters``: open matters (待审查 or 已立案) in the read model when timing starts;
* ``submit_service_rss_mb``: the service's largest resident set (``VmHWM``) by the end;
* ``submit_*_one_process``: the same rounds on the filled read model once more, the service
  restarted answering HTTP in one process (what ``duban up`` runs; left out with
  ``--http-workers 1``);
* ``submit_*_empty``: the same rounds on the same service just before its read model is filled
  (no open matters but the few submitted by the round itself), timed minutes apart at most: what
  a submission costs anyway on this machine at this moment, the check's part being the difference;
* ``duplicate_recall_top10``: on a corpus of ``RECALL_MATTERS`` matters (a read model of its own
  in a temporary SQLite file), the share of what the exact scoring of every open matter
  (``similarity.exact_duplicates``, the check as it was) lists in its top 10 that the indexed
  check lists in its own top 10, over ``RECALL_QUERIES`` new matters;
  ``duplicate_recall_top10_at_scale`` does the same on the filled read model for a few queries
  (the exact scoring takes seconds each there). At 100,000 matters of this corpus the same title
  comes back dozens of times with different contents, so which ten of the equals are the top 10
  is decided by the contents, which the index does not hold: the share is lower there, while
  what is listed scores as high (``duplicate_top10_score_ratio_at_scale``: the mean score of the
  index's top 10 over that of the exact top 10).

The figures are latencies on a shared machine: other processes on its cores show in the p99.
The HTTP client is a few lines over asyncio streams (``bench/served.py``'s ``KeepAlive``), so
that the client's own work is not counted as the service's.

Run alone: ``python -m bench.submit [--matters N] [--quick] [--http-workers N]`` prints one JSON
line (``--quick``: 10,000 matters, fewer submissions and recall queries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from .served import BENCH_SECRET, KeepAlive, environment, peak_rss_mb, serve, stop_services, wait_healthy

HERE = "331081100"  # 泽国镇
MATTERS = 100_000
SEQUENTIAL = 200
BURST = 200
#: As deploy/ runs a level's intake (deploy/generate.py: HTTP_WORKERS): one process per core.
HTTP_WORKERS = 2
RECALL_MATTERS = 3_000
RECALL_QUERIES = 300
SCALE_QUERIES = 20
#: The corpus's seed: the matters filled in, then the ones submitted (new, of the same corpus).
SEED = 21

#: The method in a sentence, for bench/__main__.py's notes.
METHOD = (
    "submit_*: bench/submit.py (duban serve intake of 泽国镇 331081100 over HTTP, SQLite, two HTTP processes "
    "as deploy/ runs intake (*_one_process: restarted with one, as duban up runs it); "
    "its read model filled directly with --matters real-looking matters by MatterListProjection, not through "
    "the stream; 200 submissions one after another, then 200 at once, each answered with its possible "
    "duplicates; *_empty: the same rounds on the same service before the fill); duplicate_recall_top10: "
    "share of the exact scoring's top 10 in the index's, 3,000 matters, 300 new ones checked"
)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000, 1)


async def _wait_for_read_model(engine, timeout: float = 120.0) -> None:
    """Until the service's projector has made intake's matter list (and its title index)."""
    from sqlalchemy import inspect

    from services.intake.projections import title_grams

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            if await conn.run_sync(lambda sync: inspect(sync).has_table(title_grams.name)):
                return
        await asyncio.sleep(0.2)
    raise TimeoutError("intake's read model was not created")


async def _open_matters(engine) -> int:
    from sqlalchemy import func, select

    from services.intake.projections import matters
    from services.intake.similarity import OPEN_STATUSES

    query = select(func.count()).where(matters.c.jurisdiction == HERE, matters.c.status.in_(OPEN_STATUSES))
    async with engine.connect() as conn:
        return (await conn.execute(query)).scalar_one()


def _submission(title: str, content: str) -> bytes:
    matter = {
        "kind": "suggestion",
        "title": title,
        "content": content,
        "lead": {"id": "deputy-1", "name": "王代表"},
        "channel": "liaison_station",
        "raised_in": HERE,
    }
    return json.dumps({"matter": matter}, ensure_ascii=False).encode()


async def recall(
    engine, texts: list[tuple[str, str]], queries: list[tuple[str, str]]
) -> tuple[float, int, dict[str, float]]:
    """The indexed check's top 10 against the exact scoring's, over ``queries``, on the read
    model of ``engine`` (filled with ``texts`` if they are given): (recall, matters listed by the
    exact scoring, {milliseconds per check of each, ``score_ratio``: the indexed top 10's summed
    scores over the exact top 10's})."""
    from services.intake import similarity
    from tests.support.matter_corpus import fill_read_model

    if texts:
        await fill_read_model(engine, HERE, texts)
    found = expected = 0
    scores = {"indexed": 0.0, "exact": 0.0}
    seconds = {"indexed": 0.0, "exact": 0.0}
    for title, content in queries:
        started = time.perf_counter()
        exact = await similarity.exact_duplicates(engine, jurisdiction=HERE, title=title, content=content)
        seconds["exact"] += time.perf_counter() - started
        started = time.perf_counter()
        indexed = await similarity.possible_duplicates(engine, jurisdiction=HERE, title=title, content=content)
        seconds["indexed"] += time.perf_counter() - started
        found += len({m["id"] for m in exact} & {m["id"] for m in indexed})
        expected += len(exact)
        scores["exact"] += sum(m["score"] for m in exact)
        scores["indexed"] += sum(m["score"] for m in indexed)
    per_check = {name: round(s * 1000 / max(1, len(queries)), 1) for name, s in seconds.items()}
    per_check["score_ratio"] = round(scores["indexed"] / scores["exact"], 4) if scores["exact"] else 1.0
    return (found / expected if expected else 1.0), expected, per_check


async def corpus_recall(matters: int = RECALL_MATTERS, queries: int = RECALL_QUERIES) -> dict:
    """``duplicate_recall_top10`` on a read model of its own (a temporary SQLite file)."""
    from services.runtime.read.db import make_engine
    from tests.support.matter_corpus import matters as corpus

    texts = list(corpus(matters + queries, seed=SEED))
    with tempfile.TemporaryDirectory(prefix="duban-bench-recall-") as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'intake.sqlite3'}")
        try:
            share, listed, per_check = await recall(engine, texts[:matters], texts[matters:])
        finally:
            await engine.dispose()
    return {
        "duplicate_recall_top10": round(share, 4),
        "duplicate_recall_matters": matters,
        "duplicate_recall_queries": queries,
        "duplicate_recall_listed": listed,
        "duplicate_check_ms_indexed": per_check["indexed"],
        "duplicate_check_ms_exact": per_check["exact"],
        "duplicate_top10_score_ratio": per_check["score_ratio"],
    }


async def submissions(
    workdir: Path,
    *,
    matters: int = MATTERS,
    sequential: int = SEQUENTIAL,
    burst: int = BURST,
    http_workers: int = HTTP_WORKERS,
    scale_queries: int = SCALE_QUERIES,
) -> dict:
    """The service started, its read model filled, then the sequential and burst submissions."""
    from services.runtime.http.auth import issue_token
    from services.runtime.read.db import make_engine
    from services.runtime.tools.nats_server import EmbeddedNats
    from services.runtime.tools.ports import free_port
    from tests.support.matter_corpus import fill_read_model
    from tests.support.matter_corpus import matters as corpus

    per_round = 5 + sequential + burst
    rounds = 3 if http_workers > 1 else 2  # at the empty level, filled, filled with one process
    texts = list(corpus(matters + rounds * per_round + scale_queries, seed=SEED))
    filled, submitted = texts[:matters], texts[matters:]
    server = EmbeddedNats(workdir / "nats").start()
    port = free_port()
    env = environment(server.url, workdir / "data", http_workers)
    process = serve("intake", HERE, port, env, workdir / "intake.log")
    engine = make_engine(f"sqlite+aiosqlite:///{workdir / 'data' / HERE / 'intake.sqlite3'}")
    station = "Bearer " + issue_token("station-1", ["liaison_station"], HERE, name="联络站", secret=BENCH_SECRET)
    listed: list[int] = []

    async def submit(connection: KeepAlive, body: bytes) -> float:
        sent = time.perf_counter()
        status, answer = await connection.post("/matters", body, station)
        seconds = time.perf_counter() - sent
        if status != 201:
            raise RuntimeError(f"submission refused: {status} {answer.decode()[:300]}")
        listed.append(len(json.loads(answer)["possible_duplicates"]))
        return seconds

    async def timed(texts: list[tuple[str, str]]) -> tuple[list[float], list[float]]:
        """Five untimed submissions (the service's first requests), ``sequential`` one after
        another on one connection, then ``burst`` at once, each on a connection of its own."""
        bodies = [_submission(title, content) for title, content in texts]
        own = await KeepAlive.open(port)
        try:
            for body in bodies[:5]:
                await submit(own, body)
            one_by_one = [await submit(own, body) for body in bodies[5 : 5 + sequential]]
        finally:
            await own.close()
        connections = [await KeepAlive.open(port) for _ in range(burst)]
        try:
            at_once = await asyncio.gather(
                *(submit(c, b) for c, b in zip(connections, bodies[5 + sequential :], strict=True))
            )
        finally:
            for connection in connections:
                await connection.close()
        return one_by_one, list(at_once)

    try:
        await wait_healthy(f"http://127.0.0.1:{port}", process)
        await _wait_for_read_model(engine)
        # The same service with no open matters first: what a submission costs here anyway.
        empty_sequential, empty_burst = await timed(submitted[:per_round])
        started = time.perf_counter()
        await fill_read_model(engine, HERE, filled)
        fill_s = time.perf_counter() - started
        print(f"submit: read model filled with {matters} matters in {fill_s:.0f} s", file=sys.stderr, flush=True)
        open_matters = await _open_matters(engine)
        listed.clear()
        sequential_s, burst_s = await timed(submitted[per_round : 2 * per_round])
        rss_mb = peak_rss_mb(process.pid)
        with_duplicates = round(sum(1 for n in listed if n) / len(listed), 3)
        one_process: dict[str, float] = {}
        if http_workers > 1:
            stop_services([process])
            process = serve("intake", HERE, port, {**env, "DUBAN_HTTP_WORKERS": "1"}, workdir / "intake-one.log")
            await wait_healthy(f"http://127.0.0.1:{port}", process)
            one_sequential, one_burst = await timed(submitted[2 * per_round : 3 * per_round])
            one_process = {
                "submit_seq_p50_ms_one_process": _percentile(one_sequential, 0.50),
                "submit_seq_p99_ms_one_process": _percentile(one_sequential, 0.99),
                "submit_burst_p50_ms_one_process": _percentile(one_burst, 0.50),
                "submit_burst_p99_ms_one_process": _percentile(one_burst, 0.99),
            }
        report = {
            "submit_seq_p50_ms": _percentile(sequential_s, 0.50),
            "submit_seq_p99_ms": _percentile(sequential_s, 0.99),
            "submit_burst_p50_ms": _percentile(burst_s, 0.50),
            "submit_burst_p99_ms": _percentile(burst_s, 0.99),
            "submit_open_matters": open_matters,
            "submit_seq_p50_ms_empty": _percentile(empty_sequential, 0.50),
            "submit_seq_p99_ms_empty": _percentile(empty_sequential, 0.99),
            "submit_burst_p50_ms_empty": _percentile(empty_burst, 0.50),
            "submit_burst_p99_ms_empty": _percentile(empty_burst, 0.99),
            "submit_sequential": len(sequential_s),
            "submit_burst": len(burst_s),
            "submit_http_workers": http_workers,
            "submit_with_duplicates_share": with_duplicates,
            "submit_fill_s": round(fill_s, 1),
            "submit_service_rss_mb": rss_mb,
            **one_process,
        }
        if scale_queries:
            share, _, per_check = await recall(engine, [], submitted[rounds * per_round :])
            report |= {
                "duplicate_recall_top10_at_scale": round(share, 4),
                "duplicate_recall_at_scale_queries": scale_queries,
                "duplicate_check_ms_indexed_at_scale": per_check["indexed"],
                "duplicate_check_ms_exact_at_scale": per_check["exact"],
                "duplicate_top10_score_ratio_at_scale": per_check["score_ratio"],
            }
        return report
    finally:
        await engine.dispose()
        stop_services([process])
        server.stop()


def measure(
    matters: int = MATTERS,
    *,
    quick: bool = False,
    http_workers: int = HTTP_WORKERS,
    workdir: Path | None = None,
) -> dict:
    """Every figure of this module; ``quick`` divides the matters by ten and does less of the rest."""
    if quick:
        matters = min(matters, MATTERS // 10)
    sequential, burst = (SEQUENTIAL // 2, BURST // 2) if quick else (SEQUENTIAL, BURST)
    with tempfile.TemporaryDirectory(prefix="duban-bench-submit-", dir=workdir) as tmp:
        report = asyncio.run(
            submissions(
                Path(tmp),
                matters=matters,
                sequential=sequential,
                burst=burst,
                http_workers=http_workers,
                scale_queries=SCALE_QUERIES // (4 if quick else 1),
            )
        )
    report |= asyncio.run(corpus_recall(queries=RECALL_QUERIES // (3 if quick else 1)))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.submit", description=__doc__.splitlines()[0])
    parser.add_argument("--matters", type=int, default=MATTERS, help="open matters filled into the read model")
    parser.add_argument("--quick", action="store_true", help="10,000 matters, half the submissions")
    parser.add_argument("--http-workers", type=int, default=HTTP_WORKERS)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.matters, quick=args.quick, http_workers=args.http_workers)))


if __name__ == "__main__":
    main()
