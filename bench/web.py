"""``web_page_p95_ms`` and ``web_first_load_kb``: the 工作台 at a county with a year's work.

10,000 matters are taken in, registered and routed at 温岭市 and their 10,000 cases assigned
(through intake's and tracking's own handlers in this process, the services' reactors and
projectors doing the rest); then intake, tracking, the directory and the web pages run as
``duban serve`` processes on that data, as ``duban up`` runs them, and committee staff signed in
through the pages open the 督办清单 (``/cases``: the first 500 cases, overdue first) and a
matter's page (``/matters/{id}``: its record, timeline and possible duplicates), ``REQUESTS``
times each, one at a time. ``web_page_p95_ms`` is the 95th percentile of each;
``web_first_load_kb`` is what the sign-in page and every file it loads weigh.

Run alone: ``python -m bench.web [--matters N] [--requests N]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .served import environment, serve, stop_services, wait_healthy

MATTERS = 10_000
REQUESTS = 200
CONCURRENCY = 20
HERE = "331081"
SERVICES = ("intake", "tracking", "directory", "web")


def progress(line: str) -> None:
    print(f"[web bench] {line}", file=sys.stderr, flush=True)


async def load(matters: int, workdir: Path, nats_url: str) -> list[str]:
    """``matters`` matters routed at 温岭市 and their cases assigned; their ids."""
    from contracts.intake import Channel, MatterData, MatterKind, RegisterMatter, RouteMatter, SubmitMatter, Submitter
    from contracts.tracking import AssignCase, Unit
    from services.intake.app import IntakeService
    from services.runtime.http.auth import Principal, Role
    from services.runtime.settings import Settings
    from services.tracking.app import TrackingService

    # the served services' database: the SQLite files of the data directory (not a DATABASE_URL)
    settings = Settings(jurisdiction=HERE, nats_url=nats_url, data_dir=workdir / "data", database_url=None)
    intake, tracking = IntakeService(settings), TrackingService(settings)
    await tracking.start(sweep=False)
    await intake.start()
    try:
        staff = Principal(sub="committee-331081", name="陈工委", roles=[Role.committee], jurisdiction=HERE)
        gate = asyncio.Semaphore(CONCURRENCY)
        units = [Unit(id=f"unit-{n}", name=f"温岭市第{n}承办单位") for n in range(40)]
        topics = ["道路", "供水", "学校", "菜场", "停车", "路灯", "河道", "医保", "养老", "公交"]

        async def one(i: int) -> str:
            async with gate:
                deputy = Principal(
                    sub=f"deputy-{i % 300}", name=f"代表{i % 300}", roles=[Role.deputy], jurisdiction=HERE
                )
                data = MatterData(
                    kind=MatterKind.suggestion if i % 3 else MatterKind.problem,
                    title=f"关于改善第{i}片区{topics[i % 10]}问题的建议",
                    content=f"第{i}片区群众反映{topics[i % 10]}问题突出，建议有关部门尽快研究解决。",
                    lead=Submitter(id=deputy.id, name=deputy.name),
                    channel=Channel.session,
                    raised_in=HERE,
                )
                matter = await intake.handlers.submit(SubmitMatter(matter=data), deputy, f"bench-{i}")
                await intake.handlers.register(RegisterMatter(matter_id=matter.id), staff)
                await intake.handlers.route(RouteMatter(matter_id=matter.id, committee="城建环资工委"), staff)
                return matter.id

        started = time.monotonic()
        ids = await asyncio.gather(*(one(i) for i in range(matters)))
        progress(f"{matters} matters routed in {time.monotonic() - started:.0f}s; waiting for the cases")
        await intake.wait_idle(timeout=1800)
        await tracking.wait_idle(timeout=1800)

        async def assign(i: int, case_id: str) -> None:
            async with gate:
                key = i % 7 == 0  # a key item, supervised by a leader
                command = AssignCase(
                    case_id=case_id,
                    lead_unit=units[i % 40],
                    committee="城建环资工委",
                    key=key,
                    leader="周主任" if key else None,
                )
                await tracking.handlers.assign(command, staff)

        await asyncio.gather(*(assign(i, case_id) for i, case_id in enumerate(ids)))
        await tracking.wait_idle(timeout=1800)
        await intake.wait_idle(timeout=1800)
        progress(f"{matters} cases assigned, read models caught up, {time.monotonic() - started:.0f}s in all")
        return list(ids)
    finally:
        await intake.stop()
        await tracking.stop()


def serve_all(workdir: Path, nats_url: str, ports: dict[str, int]) -> list[subprocess.Popen]:
    urls = {f"DUBAN_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()}
    jwks = {"DUBAN_JWKS_URL": f"http://127.0.0.1:{ports['directory']}/.well-known/jwks.json"}
    env = environment(nats_url, workdir / "data", more=urls | jwks)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    processes = []
    for service, port in ports.items():
        processes.append(serve(service, HERE, port, env, logs / f"{service}.log"))

    async def healthy() -> None:
        urls = (f"http://127.0.0.1:{port}" for port in ports.values())
        await asyncio.gather(*(wait_healthy(url, process) for url, process in zip(urls, processes, strict=True)))

    asyncio.run(healthy())
    return processes


def first_load_kb(web: str) -> float:
    """The sign-in page and every stylesheet and script it loads, in KB as sent (uncompressed)."""
    page = httpx.get(f"{web}/login")
    total = len(page.content)
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text):
        total += len(httpx.get(f"{web}{asset}").content)
    return round(total / 1024, 1)


def p95(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=20)[-1], 1)


def measure_pages(web: str, ids: list[str], requests: int) -> dict:
    with httpx.Client(base_url=web, timeout=60, follow_redirects=False) as browser:
        login = browser.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        signed = browser.post("/login", data={"csrf": csrf, "person_id": f"committee-{HERE}"})
        assert signed.status_code == 303 and signed.headers["location"] == "/", signed.text[:300]
        timings: dict[str, list[float]] = {"supervision": [], "matter": []}
        for n in range(requests):
            for name, path in (("supervision", "/cases"), ("matter", f"/matters/{ids[(n * 7919) % len(ids)]}")):
                started = time.perf_counter()
                answer = browser.get(path)
                timings[name].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        listed = browser.get("/cases").text.count('href="/cases/')
    return {
        "web_page_p95_ms": {name: p95(samples) for name, samples in timings.items()},
        "web_page_median_ms": {name: round(statistics.median(samples), 1) for name, samples in timings.items()},
        "web_supervision_rows": listed,
    }


def measure(matters: int = MATTERS, requests: int = REQUESTS) -> dict:
    from services.runtime.tools.nats_server import EmbeddedNats
    from services.runtime.tools.ports import free_port

    workdir = Path(tempfile.mkdtemp(prefix="duban-web-bench-"))
    server = EmbeddedNats(workdir / "nats").start()
    processes: list[subprocess.Popen] = []
    try:
        ids = asyncio.run(load(matters, workdir, server.url))
        ports = {service: free_port() for service in SERVICES}  # each probed, none the NATS server's
        processes = serve_all(workdir, server.url, ports)
        web = f"http://127.0.0.1:{ports['web']}"
        progress("signed in as committee staff; timing the pages")
        return {
            **measure_pages(web, ids, requests),
            "web_first_load_kb": first_load_kb(web),
            "web_matters": matters,
            "web_cases": matters,
        }
    finally:
        stop_services(processes, timeout=30)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.splitlines()[0])
    parser.add_argument("--matters", type=int, default=MATTERS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.matters, args.requests), ensure_ascii=False))


if __name__ == "__main__":
    main()
