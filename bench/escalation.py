"""``escalation_p50_ms`` / ``escalation_p99_ms`` and ``catchup_10k_s``: how fast a matter climbs the
levels, and how fast a county's stored escalations reach 台州 once its line is back.

**Escalation** (``escalation_*``): ``MATTERS`` matters raised at 泽国镇 (331081100) and escalated
泽国镇 → 温岭市 (331081) → 台州市 (331000), one after another, each timed from the moment 泽国镇's
``POST /matters/{id}/escalate`` has answered 200 to the moment ``GET /matters/{id}`` at 台州's intake
answers 200 for the matter taken in there. In between, 温岭市's staff escalate it again as soon as
``GET /matters/{id}`` at 温岭市 answers 200 (the bench acts as the staff, at once), so the figure
holds two trips through the bus and one staff command:

* ``escalation_hop1_*``: 泽国镇's answer → readable at 温岭市 (泽国镇's relay, its OUTBOX, 温岭市's
  INBOX sourcing it, 温岭市's inbox worker taking it in);
* ``escalation_county_call_*``: 温岭市's escalate call, request to answer;
* ``escalation_hop2_*``: 温岭市's answer → readable at 台州市 (the same, one level up);
* ``escalation_stages``: each hop's stages from the servers' timestamps of what the matter became
  (read after it arrived): ``relay`` (the sender's event stored → its hand-over in the sender's
  OUTBOX), ``source`` (→ in the receiver's INBOX; on leaf nodes through the hub's mirror of the
  county's OUTBOX), ``take_in`` (→ the receiver's ``MatterReceived`` stored), ``read`` (→ ``GET``
  answering 200, the bench's clock).

The bench learns when to look from a NATS subscription (as the level's administrator) to the
receiving level's intake event subjects, then asks the intake API, again every 2 ms while it says
404; without news it looks every 50 ms. The matters go one at a time (a latency, not a
throughput), after ``WARMUP`` untimed ones, with a random pause of up to 100 ms between two (so
that a timer in the path cannot keep step with the bench). Intake's HTTP answers are read through
httpx on keep-alive connections (a millisecond or two of client time included).

Where it runs:

* one server (``escalation_p50_ms``, ``escalation_p99_ms``): the embedded default as ``duban up``
  runs it (``up.Runner``: one nats-server with the users and permissions of ``duban up``, each
  level's intake a ``duban serve`` process with its own SQLite), intake alone (``duban up
  --services intake``);
* leaf nodes (``escalation_leaf_p50_ms``, ``escalation_leaf_p99_ms``): deploy/'s NATS configuration
  files as local processes (``tests/support/deploy.py``: the three-node hub, domain taizhou,
  streams R3, and the county leaf nodes, only ports and directories rewritten, TLS and the deploy
  users as they are), the three levels' intake as ``duban serve`` processes with what compose sets
  for them (domains, replicas, their own NATS users). 泽国镇 and 温岭市 share 温岭市's leaf node.

**Catch-up** (``catchup_10k_s``): a fresh deployment as above, 温岭市's leaf link to the hub
running through a TCP relay (``LinkProxy``); the relay is cut, ``CATCHUP`` matters are submitted
and escalated at 温岭市 (its intake's handlers in this process, as the service's own NATS user),
the county's relay (its intake process) puts every hand-over in its OUTBOX, the line stays cut
for at least ``--cut-s`` seconds, then it is restored: ``catchup_10k_s`` is the time from the
restore to the moment 台州市's intake stream holds every one of them taken in (a
``MatterReceived`` per matter). Then checked: every expected matter is at 台州 exactly once (one
commit on its subject) and 台州's INBOX holds each hand-over once. ``catchup_rate_per_s``: matters
per second over that time; ``catchup_first_s``: until the first; ``catchup_mirror_s`` /
``catchup_inbox_s``: until the hub's mirror of the OUTBOX, then its INBOX, held them all;
``catchup_write_s`` / ``catchup_relay_s``: writing them at 温岭市, then until its OUTBOX held them;
``catchup_handler_ms``: 台州's intake's mean time per message (workers) or batch (projectors).

The figures are latencies on a shared two-core machine: other processes show in the p99s, the
hub's three nodes, the leaf, the services and this process all compete for the cores.

Run alone: ``python -m bench.escalation [--quick] [--only one,leaf,catchup] [--matters N]
[--catchup N] [--cut-s S]`` prints one JSON line (``--quick``: 50 matters, 1,000 to catch up after
a cut of 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats

TAIZHOU, WENLING, ZEGUO = "331000", "331081", "331081100"
LEVELS = (TAIZHOU, WENLING, ZEGUO)
MATTERS = 200
WARMUP = 5
CATCHUP = 10_000
#: How long the county's line stays cut at least (the hub's mirror backs off while it is).
CUT_S = 60.0
SEED = 21


def progress(message: str) -> None:
    from .common import progress as say

    say(f"escalation: {message}")


def _ms(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000, 1)


def _figures(prefix: str, values: list[float]) -> dict:
    return {
        f"{prefix}_p50_ms": _ms(values, 0.5),
        f"{prefix}_p99_ms": _ms(values, 0.99),
        f"{prefix}_max_ms": _ms(values, 1.0),
    }


# -- one level's intake, over HTTP -------------------------------------------------------------
@dataclass
class Level:
    code: str
    url: str
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        from services.runtime.http.auth import dev_token

        staff = dev_token(self.code, "committee")
        self.station = {"Authorization": f"Bearer {dev_token(self.code, 'liaison_station')}"}
        self.http = httpx.AsyncClient(
            base_url=self.url, timeout=30.0, trust_env=False, headers={"Authorization": f"Bearer {staff}"}
        )

    async def submit(self, n: int) -> str:
        matter = {
            "kind": "problem",
            "title": f"泽国镇第{n}号企业用电容量不足的问题",
            "content": f"第{n}号：园区企业用电容量不足，需县市统筹解决。",
            "lead": {"id": f"deputy-{self.code}", "name": "代表"},
            "channel": "liaison_station",
            "raised_in": self.code,
        }
        answer = await self.http.post("/matters", json={"matter": matter}, headers=self.station)
        if answer.status_code != 201:
            raise RuntimeError(f"submit at {self.code}: {answer.status_code} {answer.text}")
        return answer.json()["id"]

    async def escalate(self, matter_id: str) -> None:
        answer = await self.http.post(f"/matters/{matter_id}/escalate", json={"reason": "超出本级事权"})
        if answer.status_code != 200:
            raise RuntimeError(f"escalate at {self.code}: {answer.status_code} {answer.text}")

    async def readable(self, matter_id: str) -> bool:
        answer = await self.http.get(f"/matters/{matter_id}")
        if answer.status_code not in (200, 404):
            raise RuntimeError(f"read at {self.code}: {answer.status_code} {answer.text}")
        return answer.status_code == 200

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"intake of {self.code} at {self.url} not ready in {timeout}s")

    async def close(self) -> None:
        await self.http.aclose()


class Arrivals:
    """News of a level's intake events (a core subscription to its event subjects): when an
    awaited matter's first event is stored, its waiter looks at once."""

    def __init__(self) -> None:
        self.seen: dict[str, asyncio.Event] = {}

    async def watch(self, nc: nats.NATS, code: str) -> None:
        async def arrived(msg) -> None:
            self.expect(msg.subject.rsplit(".", 1)[-1]).set()

        await nc.subscribe(f"duban.evt.intake.{code}.*", cb=arrived)
        await nc.flush()

    def expect(self, matter_id: str) -> asyncio.Event:
        return self.seen.setdefault(matter_id, asyncio.Event())


async def readable_at(level: Level, arrivals: Arrivals, matter_id: str, timeout: float = 120.0) -> float:
    """The moment ``matter_id`` is readable at ``level`` (``time.perf_counter()``)."""
    news = arrivals.expect(matter_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(news.wait(), 0.05)
        if await level.readable(matter_id):
            arrivals.seen.pop(matter_id, None)
            return time.perf_counter()
        if news.is_set():
            await asyncio.sleep(0.002)
    raise TimeoutError(f"{matter_id} not readable at {level.code} in {timeout}s")


class Stages:
    """Where a matter's time went on its way up: the server's timestamps of each message it became
    (read after the matter arrived, as the administrator of each server), against the bench's
    clock for the answers and reads. Same machine, same clock."""

    def __init__(self, js: dict[str, object]) -> None:
        self.js = js  # code → the administrator's JetStream of the server holding that level's streams
        self.rows: list[dict[str, float]] = []

    async def _at(self, code: str, stream: str, subject: str, nth: int = 1) -> float:
        js = self.js[code]
        seq = 1
        for _ in range(nth):
            msg = await js.get_msg(stream, seq=seq, next=True, subject=subject)
            seq = msg.seq + 1
        return msg.time.timestamp()

    async def _last(self, code: str, stream: str, subject: str) -> float:
        return (await self.js[code].get_msg(stream, subject=subject)).time.timestamp()

    async def record(self, ids: tuple[str, str, str], clock: dict[str, float]) -> None:
        from contracts import subjects

        zid, wid, tid = ids
        up1 = subjects.integration_subject(WENLING, ZEGUO, "matter-handed-over")
        up2 = subjects.integration_subject(TAIZHOU, WENLING, "matter-handed-over")
        times = {
            "z_stored": await self._at(ZEGUO, "INTAKE_" + ZEGUO, subjects.event_subject("intake", ZEGUO, zid), 2),
            "z_outbox": await self._last(ZEGUO, subjects.outbox_stream(ZEGUO), up1),
            "w_inbox": await self._last(WENLING, subjects.inbox_stream(WENLING), up1),
            "w_received": await self._at(WENLING, "INTAKE_" + WENLING, subjects.event_subject("intake", WENLING, wid)),
            "w_stored": await self._at(WENLING, "INTAKE_" + WENLING, subjects.event_subject("intake", WENLING, wid), 2),
            "w_outbox": await self._last(WENLING, subjects.outbox_stream(WENLING), up2),
            "t_inbox": await self._last(TAIZHOU, subjects.inbox_stream(TAIZHOU), up2),
            "t_received": await self._at(TAIZHOU, "INTAKE_" + TAIZHOU, subjects.event_subject("intake", TAIZHOU, tid)),
        }
        self.rows.append(times | clock)

    #: (name, from, to): the stages of the two hops. A mirror keeps its origin's timestamps, so on
    #: leaf nodes ``source2`` holds the hub's mirror of 温岭市's OUTBOX and its INBOX sourcing it.
    STAGES = (
        ("relay1", "z_stored", "z_outbox"),
        ("source1", "z_outbox", "w_inbox"),
        ("take_in1", "w_inbox", "w_received"),
        ("read1", "w_received", "w_readable"),
        ("relay2", "w_stored", "w_outbox"),
        ("source2", "w_outbox", "t_inbox"),
        ("take_in2", "t_inbox", "t_received"),
        ("read2", "t_received", "t_readable"),
    )

    def figures(self) -> dict:
        found: dict = {}
        for name, start, end in self.STAGES:
            values = [row[end] - row[start] for row in self.rows]
            found[name] = {"p50_ms": _ms(values, 0.5), "p99_ms": _ms(values, 0.99)}
        return {"stages": found}


async def escalate_chain(
    levels: dict[str, Level], arrivals: dict[str, Arrivals], matters: int, stages: Stages | None = None
) -> dict:
    """``WARMUP`` + ``matters`` matters up the three levels, one at a time; the timed ones' figures."""
    from services.intake.handlers import derived_id

    zeguo, wenling, taizhou = levels[ZEGUO], levels[WENLING], levels[TAIZHOU]
    total = WARMUP + matters
    ids = []
    for n in range(total):
        ids.append(await zeguo.submit(n))
    rng = random.Random(SEED)
    whole, hop1, county, hop2, township_call = [], [], [], [], []
    for n, matter_id in enumerate(ids):
        await asyncio.sleep(rng.random() * 0.1)
        asked = time.perf_counter()
        await zeguo.escalate(matter_id)
        t0 = time.perf_counter()
        at_wenling = derived_id(ZEGUO, matter_id, WENLING)
        t1 = await readable_at(wenling, arrivals[WENLING], at_wenling)
        await wenling.escalate(at_wenling)
        t2 = time.perf_counter()
        at_taizhou = derived_id(WENLING, at_wenling, TAIZHOU)
        t3 = await readable_at(taizhou, arrivals[TAIZHOU], at_taizhou)
        if n < WARMUP:
            continue
        if stages is not None:
            wall = time.time() - time.perf_counter()  # the bench's clock → the servers'
            clock = {"w_readable": t1 + wall, "t_readable": t3 + wall}
            await stages.record((matter_id, at_wenling, at_taizhou), clock)
        whole.append(t3 - t0)
        hop1.append(t1 - t0)
        county.append(t2 - t1)
        hop2.append(t3 - t2)
        township_call.append(t0 - asked)
        if (n - WARMUP + 1) % 50 == 0:
            progress(f"{n - WARMUP + 1} of {matters}: p50 {_ms(whole, 0.5)} ms, max {_ms(whole, 1.0)} ms so far")
    return {
        **_figures("", whole),
        **_figures("hop1", hop1),
        **_figures("county_call", county),
        **_figures("hop2", hop2),
        **_figures("township_call", township_call),
        "matters": len(whole),
        **(stages.figures() if stages is not None else {}),
    }


def _named(prefix: str, figures: dict) -> dict:
    return {(f"{prefix}{key}" if key.startswith("_") else f"{prefix}_{key}"): value for key, value in figures.items()}


# -- one server: duban up -----------------------------------------------------------------------
async def _chain_on(urls: dict[str, str], admin_urls: dict[str, str], matters: int, *, tls=None) -> dict:
    """The chain on running intakes (``urls``), watched and read as the administrator of each
    level's server (``admin_urls``)."""
    levels = {code: Level(code, url) for code, url in urls.items()}
    connections: dict[str, nats.NATS] = {}
    try:
        for level in levels.values():
            await level.wait_ready()
        for code in LEVELS:
            if admin_urls[code] not in connections:
                connections[admin_urls[code]] = await nats.connect(admin_urls[code], tls=tls, name="bench-escalation")
        admin = {code: connections[admin_urls[code]] for code in LEVELS}
        arrivals = {}
        for code in (WENLING, TAIZHOU):
            arrivals[code] = Arrivals()
            await arrivals[code].watch(admin[code], code)
        stages = Stages({code: admin[code].jetstream() for code in LEVELS})
        return await escalate_chain(levels, arrivals, matters, stages)
    finally:
        for nc in connections.values():
            with contextlib.suppress(Exception):
                await nc.close()
        for level in levels.values():
            await level.close()


def one_server(workdir: Path, matters: int) -> dict:
    """The chain on ``duban up``'s embedded default (intake of the three levels)."""
    from services.runtime.bus.accounts import ADMIN
    from services.runtime.tools.nats_server import EmbeddedNats
    from services.runtime.tools.up import PORT_OFFSETS, Runner
    from tests.support.processes import free_port_block

    server = EmbeddedNats(workdir / "nats")
    base = free_port_block(len(LEVELS))  # up.Runner numbers each level's port from it
    assert PORT_OFFSETS["intake"] == 0
    runner = Runner(workdir, server, LEVELS, ["intake"], base)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    try:
        runner.start()
        urls = {child.code: child.url for child in runner.children}
        admin = runner.credentials.url(server.url, ADMIN)
        progress(f"one server: nats-server {server.url}, intake {urls}")
        return _named("escalation", asyncio.run(_chain_on(urls, dict.fromkeys(LEVELS, admin), matters)))
    finally:
        runner.stop()


# -- deploy/'s hub and leaf nodes ---------------------------------------------------------------
class Deployed:
    """deploy/'s NATS topology as local processes and the intake of some levels on it as ``duban
    serve`` processes with what compose sets for them."""

    def __init__(self, workdir: Path, codes: tuple[str, ...], proxied: tuple[str, ...] = ()) -> None:
        self.workdir, self.codes, self.proxied = workdir, codes, proxied
        self.deployment = None
        self.children: list = []

    def env(self, code: str) -> dict[str, str]:
        deployment = self.deployment
        env = {
            **os.environ,
            **deployment.level_env(code),
            "DUBAN_NATS_URL": deployment.service_url("intake", code),
            "DUBAN_NATS_CA_FILE": str(deployment.ca_file),
            "DUBAN_DATA_DIR": str(self.workdir / "data"),
            "DUBAN_STREAM_REPLICAS": str(deployment.topology.replicas if code == TAIZHOU else 1),
            "DUBAN_DEV_SIGNIN": "true",  # the bench signs in with development tokens
        }
        for name in ("DUBAN_DATABASE_URL", "DATABASE_URL"):
            env.pop(name, None)
        if code != TAIZHOU:
            env.pop("DUBAN_MIRRORED_LEVELS", None)
        return env

    async def start(self) -> dict[str, str]:
        from services.runtime.tools.ports import free_port
        from services.runtime.tools.up import ServiceProcess
        from tests.support.deploy import boot

        self.deployment = await boot(self.workdir, proxied=self.proxied)
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for code in self.codes:
            child = ServiceProcess("intake", code, free_port(), self.env(code), logs)
            child.start()
            self.children.append(child)
        return {child.code: child.url for child in self.children}

    def admin(self, code: str) -> str:
        return self.deployment.url(code, "admin")

    def log_tails(self, lines: int = 15) -> str:
        """The end of each service's log (said when the bench fails)."""
        tails = []
        for child in self.children:
            with contextlib.suppress(OSError):
                text = child.log_path.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {child.log_path}\n" + "\n".join(text))
        return "\n".join(tails)

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + 20
        for child in self.children:
            with contextlib.suppress(Exception):
                child.wait_stopped(deadline)
        if self.deployment is not None:
            self.deployment.stop()


async def leaf_nodes(workdir: Path, matters: int) -> dict:
    deployed = Deployed(workdir, LEVELS)
    try:
        urls = await deployed.start()
        progress(f"leaf nodes: hub {deployed.deployment.url(TAIZHOU)}, intake {urls}")
        admins = {code: deployed.admin(code) for code in LEVELS}
        figures = await _chain_on(urls, admins, matters, tls=deployed.deployment.tls())
        return _named("escalation_leaf", figures)
    except BaseException:
        print(deployed.log_tails(), file=sys.stderr)
        raise
    finally:
        deployed.stop()


# -- catching up after a cut line ---------------------------------------------------------------
async def _write_escalations(deployment, count: int, concurrency: int = 32) -> list[str]:
    """``count`` matters submitted and escalated at 温岭市 through its intake's handlers, as the
    service's own NATS user; their ids."""
    from contracts.intake import Channel, EscalateMatter, MatterData, MatterKind, SubmitMatter, Submitter
    from contracts.jurisdictions import default_registry
    from services.intake.handlers import IntakeHandlers
    from services.runtime.bus.levels import connect
    from services.runtime.es.eventstore import EventStore
    from services.runtime.settings import Settings
    from tests.support.deploy import staff, station

    settings = Settings(
        jurisdiction=WENLING, nats_url=deployment.service_url("intake", WENLING), nats_ca_file=deployment.ca_file
    )
    nc = await connect(settings, "intake")
    store = EventStore(nc, context="intake", jurisdiction=WENLING, settings=settings)
    handlers = IntakeHandlers(store, default_registry())
    ids: list[str] = []
    queue = iter(range(count))

    async def writer() -> None:
        for n in queue:
            data = MatterData(
                kind=MatterKind.problem,
                title=f"温岭市第{n}号企业诉求",
                content=f"第{n}号：需市级统筹解决。",
                lead=Submitter(id=f"deputy-{WENLING}", name="代表"),
                channel=Channel.liaison_station,
                raised_in=WENLING,
            )
            matter = await handlers.submit(SubmitMatter(matter=data), station(WENLING))
            await handlers.escalate(EscalateMatter(matter_id=matter.id, reason="超出县级事权"), staff(WENLING))
            ids.append(matter.id)
            if len(ids) % 1000 == 0:
                progress(f"catch-up: {len(ids)} of {count} escalated at 温岭市 while the line is cut")

    try:
        await asyncio.gather(*(writer() for _ in range(concurrency)))
    finally:
        await nc.close()
    return ids


async def _outbox_holds(js, count: int, timeout: float) -> float:
    """Wait until 温岭市's OUTBOX holds ``count`` hand-overs to 台州; seconds waited."""
    from contracts import subjects

    handed_over = subjects.integration_subject(TAIZHOU, WENLING, "matter-handed-over")
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        info = await js.stream_info(subjects.outbox_stream(WENLING), subjects_filter=handed_over)
        if sum((info.state.subjects or {}).values()) >= count:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"温岭市's OUTBOX did not hold {count} hand-overs in {timeout}s")


async def _handler_means(url: str) -> dict[str, float]:
    """The mean time of one message (a durable worker) or one batch (a projector) of each of an
    intake's consumers, from its ``/metrics`` (``duban_handler_seconds``)."""
    import re

    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as http:
        text = (await http.get("/metrics")).text
    sums = dict(re.findall(r'duban_handler_seconds_sum\{consumer="([^"]+)"\} (\S+)', text))
    counts = dict(re.findall(r'duban_handler_seconds_count\{consumer="([^"]+)"\} (\S+)', text))
    return {
        name: round(float(sums[name]) / float(counts[name]) * 1000, 1)
        for name in sums
        if float(counts.get(name, 0)) > 0
    }


async def catch_up(workdir: Path, count: int, cut_s: float) -> dict:
    from contracts import subjects
    from services.intake.handlers import derived_id
    from tests.support.deploy import cut, restore

    deployed = Deployed(workdir, (TAIZHOU, WENLING), proxied=(WENLING,))
    report: dict = {"catchup_matters": count}
    try:
        urls = await deployed.start()
        deployment = deployed.deployment
        for code, url in urls.items():
            level = Level(code, url)
            await level.wait_ready()
            await level.close()
        hub = await nats.connect(deployed.admin(TAIZHOU), tls=deployment.tls(), name="bench-catchup-hub")
        leaf = await nats.connect(deployed.admin(WENLING), tls=deployment.tls(), name="bench-catchup-leaf")
        try:
            await cut(deployment.proxies[WENLING])
            cut_at = time.monotonic()
            progress(f"catch-up: 温岭市's leaf link cut; writing {count} escalations at 温岭市")
            started = time.monotonic()
            ids = await _write_escalations(deployment, count)
            report["catchup_write_s"] = round(time.monotonic() - started, 1)
            report["catchup_relay_s"] = round(await _outbox_holds(leaf.jetstream(), count, 1800), 1)
            if (left := cut_s - (time.monotonic() - cut_at)) > 0:
                progress(f"catch-up: all in 温岭市's OUTBOX; the line stays cut {left:.0f}s more")
                await asyncio.sleep(left)
            report["catchup_cut_s"] = round(time.monotonic() - cut_at, 1)
            expected = {subjects.event_subject("intake", TAIZHOU, derived_id(WENLING, i, TAIZHOU)) for i in ids}
            stream = subjects.event_stream("intake", TAIZHOU)
            hub_js = hub.jetstream()
            progress("catch-up: restoring the line")
            await restore(deployment.proxies[WENLING])
            restored = time.monotonic()
            first = None
            # where the hand-overs are on their way: the hub's mirror of the OUTBOX, its INBOX, taken in
            mirror, inbox = "MIRROR_" + subjects.outbox_stream(WENLING), subjects.inbox_stream(TAIZHOU)
            full: dict[str, float] = {}
            said = restored
            while True:
                arrived = (await hub_js.stream_info(stream)).state.messages  # a MatterReceived each
                now = time.monotonic()
                if arrived and first is None:
                    first = now - restored
                for name in (mirror, inbox):
                    if name not in full and (await hub_js.stream_info(name)).state.messages >= count:
                        full[name] = now - restored
                if now - said >= 10:
                    said = now
                    progress(f"catch-up: {now - restored:.0f}s after the restore, {arrived} of {count} at 台州")
                if arrived >= count:
                    break
                if now - restored > 1800:
                    raise TimeoutError(f"{arrived} of {count} at 台州 after 1800s")
                await asyncio.sleep(0.1)
            took = time.monotonic() - restored
            report["catchup_mirror_s"] = round(full.get(mirror, took), 1)
            report["catchup_inbox_s"] = round(full.get(inbox, took), 1)
            report |= {
                "catchup_s": round(took, 1),
                "catchup_10k_s": round(took, 1) if count == CATCHUP else None,
                "catchup_first_s": round(first or took, 1),
                "catchup_rate_per_s": round(count / took, 1),
            }
            # none lost, none doubled: each expected matter once at 台州, each hand-over once in its INBOX
            held = (await hub_js.stream_info(stream, subjects_filter=">")).state.subjects or {}
            assert set(held) == expected, f"{len(expected - set(held))} missing, {len(set(held) - expected)} unexpected"
            assert all(n == 1 for n in held.values()), "a matter taken in twice at 台州"
            handed = subjects.integration_subject(TAIZHOU, WENLING, "matter-handed-over")
            inbox = await hub_js.stream_info(subjects.inbox_stream(TAIZHOU), subjects_filter=handed)
            assert inbox.state.subjects == {handed: count}, inbox.state.subjects
            report["catchup_checked"] = "every matter at 台州 once, every hand-over once in INBOX_331000"
            report["catchup_handler_ms"] = await _handler_means(urls[TAIZHOU])
        finally:
            await hub.close()
            await leaf.close()
    finally:
        deployed.stop()
    return report


# -- the report -----------------------------------------------------------------------------------
def measure(
    *,
    quick: bool = False,
    matters: int | None = None,
    catchup: int | None = None,
    cut_s: float | None = None,
    only: tuple[str, ...] = ("one", "leaf", "catchup"),
) -> dict:
    """The escalation figures (see the module's docstring), each part on servers of its own."""
    matters = matters or (MATTERS // 4 if quick else MATTERS)
    catchup = catchup or (CATCHUP // 10 if quick else CATCHUP)
    cut_s = (CUT_S / 3 if quick else CUT_S) if cut_s is None else cut_s
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="duban-bench-escalation-") as scratch:
        work = Path(scratch)
        if "one" in only:
            progress(f"{matters} matters 泽国镇 → 温岭市 → 台州市 on one server (duban up)")
            report |= one_server(work / "one", matters)
        if "leaf" in only:
            progress(f"{matters} matters 泽国镇 → 温岭市 → 台州市 across deploy/'s hub and leaf nodes")
            report |= asyncio.run(leaf_nodes(work / "leaf", matters))
        if "catchup" in only:
            progress(f"{catchup} escalations stored at 温岭市 while its line is cut, then the line restored")
            report |= asyncio.run(catch_up(work / "catchup", catchup, cut_s))
    report["escalation_notes"] = (
        "bench/escalation.py: escalation_*: matters one at a time 泽国镇 → 温岭市 → 台州市, from 泽国镇's "
        "answered escalate call to GET /matters/{id} answering 200 at 台州 (温岭市's staff escalate it as "
        "soon as it reads there; hop1/county_call/hop2 split it); on duban up's one server and across "
        "deploy/'s hub (3 nodes, R3) and leaf nodes; catchup_*: escalations stored at 温岭市 while its "
        "leaf link was cut, seconds from the restore until every one is at 台州 (checked once each). "
        "A shared two-core machine: p99s carry other processes' work."
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.escalation", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 matters, 1,000 to catch up after a 20 s cut")
    parser.add_argument("--matters", type=int, help=f"matters escalated, timed (default {MATTERS})")
    parser.add_argument("--catchup", type=int, help=f"escalations stored while the line is cut (default {CATCHUP})")
    parser.add_argument("--cut-s", type=float, help=f"the line stays cut at least this long (default {CUT_S:.0f})")
    parser.add_argument("--only", default="one,leaf,catchup", help="comma-separated parts: one, leaf, catchup")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # nats-py's TLS closes say "eof_received"
    report = measure(
        quick=args.quick,
        matters=args.matters,
        catchup=args.catchup,
        cut_s=args.cut_s,
        only=tuple(part.strip() for part in args.only.split(",") if part.strip()),
    )
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
