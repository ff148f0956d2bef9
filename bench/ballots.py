"""``ballots_per_s`` and ``ballot_p99_ms``: a congress hall's burst of ballots over HTTP.

A real evaluation service (``duban serve evaluation``, tracing and span files on as ``duban up``
runs it, answering HTTP in ``HTTP_WORKERS`` processes: ``DUBAN_HTTP_WORKERS``, one per core, as
a level sets it for a session's evaluations, see ``services/runtime/http/workers.py``) on an
embedded nats-server with ``sync_interval: always``; a session of 10 subjects and 500 evaluators;
every evaluator sends one ballot sheet scoring all 10 subjects from one of ``CONCURRENCY``
terminals (the hall's ballot terminals, each its own keep-alive HTTP connection, sending its next
sheet when the last is answered); timed from the first sheet to the last answer. Then the session
is closed and the published results must count every ballot exactly once (500 valid ballots per
subject), or the run fails.

``ballots_per_s`` counts ballots (sheets × subjects); ``ballot_p99_ms`` is the 99th percentile of
a sheet's answer time as its terminal sees it; ``ballot_service_cpu_ms`` is the CPU time the
service's processes spent per sheet during the burst (Linux only).

Run alone: ``python -m bench.ballots [--evaluators N] [--subjects N] [--concurrency N]
[--http-workers N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from .served import BENCH_SECRET, KeepAlive, cpu_seconds, environment, peak_rss_mb, serve, stop_services, wait_healthy

EVALUATORS = 500
SUBJECTS = 10
CONCURRENCY = 50
HTTP_WORKERS = 2
#: The staff client lets its idle connection go well before the server would (75 s).
KEEPALIVE_S = 2.0
HERE = "331081"


async def ballots(
    workdir: Path,
    *,
    evaluators: int = EVALUATORS,
    subjects: int = SUBJECTS,
    concurrency: int = CONCURRENCY,
    http_workers: int = HTTP_WORKERS,
) -> dict:
    from services.runtime.http.auth import issue_token
    from services.runtime.tools.nats_server import EmbeddedNats
    from services.runtime.tools.ports import free_port

    server = EmbeddedNats(workdir / "nats").start()
    port = free_port()
    env = environment(server.url, workdir / "data", http_workers)
    process = serve("evaluation", HERE, port, env, workdir / "evaluation.log")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, process, timeout=60.0)
        staff = {"Authorization": "Bearer " + issue_token("committee-1", ["committee"], HERE, secret=BENCH_SECRET)}
        electorate = [f"deputy-{i:04d}" for i in range(evaluators)]
        now = datetime.now(UTC)
        session = {
            "kind": "satisfaction",
            "title": "民生实事项目满意度测评（压力测试）",
            "subjects": [{"kind": "project", "id": f"p{i}", "title": f"民生实事项目{i}"} for i in range(subjects)],
            "electorate": electorate,
            "opens_at": (now - timedelta(minutes=1)).isoformat(),
            "closes_at": (now + timedelta(hours=1)).isoformat(),
        }
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_S)  # staff: idle while the hall votes
        async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits, trust_env=False) as http:
            created = await http.post("/sessions", json=session, headers=staff)
            created.raise_for_status()
            session_id = created.json()["id"]
            (await http.post(f"/sessions/{session_id}/open", headers=staff)).raise_for_status()
            tokens = {e: "Bearer " + issue_token(e, ["evaluator"], HERE, secret=BENCH_SECRET) for e in electorate}
            options = ("satisfied", "basically_satisfied", "dissatisfied")
            sheets = {
                e: json.dumps(
                    {"choices": [{"subject_id": f"p{s}", "option": options[(i + s) % 3]} for s in range(subjects)]}
                )
                for i, e in enumerate(electorate)
            }
            waiting = list(reversed(electorate))
            latencies: list[float] = []

            async def terminal(own: KeepAlive) -> None:
                while waiting:
                    evaluator = waiting.pop()
                    started = time.perf_counter()
                    status, body = await own.post(
                        f"/sessions/{session_id}/ballots", sheets[evaluator].encode(), tokens[evaluator]
                    )
                    latencies.append(time.perf_counter() - started)
                    if status != 200:
                        raise RuntimeError(f"sheet of {evaluator} refused: {status} {body.decode()}")

            # The terminals are on and connected before the hall votes.
            terminals = [await KeepAlive.open(port) for _ in range(concurrency)]
            try:
                print(
                    f"ballots: {evaluators} sheets x {subjects} subjects, {concurrency} terminals, "
                    f"{http_workers} HTTP worker(s)",
                    file=sys.stderr,
                )
                cpu_before = cpu_seconds(process.pid)
                started = time.perf_counter()
                await asyncio.gather(*(terminal(own) for own in terminals))
                seconds = time.perf_counter() - started
                cpu_after = cpu_seconds(process.pid)
            finally:
                for own in terminals:
                    await own.close()

            closed = await http.post(f"/sessions/{session_id}/close", headers=staff)
            closed.raise_for_status()
            detail = (await http.get(f"/sessions/{session_id}", headers=staff)).json()
            valid = [r["valid"] for r in detail["results"] or []]
            if valid != [evaluators] * subjects:
                raise RuntimeError(f"results do not count every ballot exactly once: {valid}")
            rss_mb = peak_rss_mb(process.pid)
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return {
            "ballots_per_s": round(evaluators * subjects / seconds, 1),
            "ballot_sheets_per_s": round(evaluators / seconds, 1),
            "ballot_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "ballot_p99_ms": round(p99 * 1000, 1),
            "ballot_concurrency": concurrency,
            "ballot_http_workers": http_workers,
            "ballot_service_rss_mb": rss_mb,
            "ballot_service_cpu_ms": (
                round((cpu_after - cpu_before) * 1000 / evaluators, 2) if cpu_before is not None else None
            ),
        }
    finally:
        stop_services([process])
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ballots", description=__doc__.splitlines()[0])
    parser.add_argument("--evaluators", type=int, default=EVALUATORS)
    parser.add_argument("--subjects", type=int, default=SUBJECTS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--http-workers", type=int, default=HTTP_WORKERS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="duban-bench-ballots-") as tmp:
        report = asyncio.run(
            ballots(
                Path(tmp),
                evaluators=args.evaluators,
                subjects=args.subjects,
                concurrency=args.concurrency,
                http_workers=args.http_workers,
            )
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
