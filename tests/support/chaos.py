"""The chaos harness of issue 13 ("nothing lost when the bus itself fails"): a real nats-server and
the services of seven levels as real processes, a patient client as staff are, and the faults.

- :class:`Bus`: the nats-server on a temporary store; :meth:`Bus.crash` kills it with SIGKILL and
  starts it again on the same store and ports (``EmbeddedNats.write_config`` keeps the ports it
  chose the first time); and what it holds (an INBOX's last hand-over, the dead letters);
- :class:`Served`: one ``duban serve SERVICE --jurisdiction CODE`` process, as operators run it;
- :class:`System`: the bus and every service of every level, each with its own SQLite under one
  data directory, and whether their read models have caught up;
- :class:`PatientClient`: HTTP as staff use it: 503 and broken connections are retried with
  backoff; a step whose outcome could not be known is re-read before it is repeated, so a retry
  never fails a step that was in fact stored; every acknowledged command goes into the
  :class:`Ledger`;
- :class:`Chaos`: the faults at seeded points of the scenario, in a thread of their own, and how
  long each level took to answer normally again after each restart of the bus.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js.errors import NotFoundError

from contracts import integration, subjects
from contracts.envelope import decode_commit
from services.runtime.bus.deadletters import list_dead_letters
from services.runtime.http.auth import issue_token
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.runtime.tools.ports import free_port
from tests.support.processes import wait_for

ROOT = Path(__file__).resolve().parents[2]
DUBAN = (sys.executable, "-m", "services.runtime.tools.cli")
SERVICES = ("intake", "tracking", "notify")

TAIZHOU, WENLING, LINHAI = "331000", "331081", "331082"
TOWNSHIPS = {WENLING: ("331081100", "331081101"), LINHAI: ("331082001", "331082100")}
COUNTIES = tuple(TOWNSHIPS)
LEVELS = (TAIZHOU, *COUNTIES, *(t for townships in TOWNSHIPS.values() for t in townships))
#: Two of 临海市's townships, as an extra file of the old shape (no kind, no organs): the same codes
#: and names as the built-in data, so it loads as identical repeats.
LINHAI_TOWNSHIPS = {
    "version": "1",
    "note": "Two townships of 临海市 for the chaos test (codes of the test's own).",
    "jurisdictions": [
        {"code": "331082001", "name": "古城街道", "short_name": "古城", "level": "township", "parent": LINHAI},
        {"code": "331082100", "name": "杜桥镇", "short_name": "杜桥", "level": "township", "parent": LINHAI},
    ],
}


def parent_of(code: str) -> str:
    return TAIZHOU if code in COUNTIES else code[:6]


def bearer(sub: str, role: str, code: str, name: str = "") -> dict[str, str]:
    """The header of a development token (HS256, the services' development secret)."""
    token = issue_token(sub, [role], code, name=name, secret=Settings().jwt_secret)
    return {"Authorization": f"Bearer {token}"}


# -- the bus ----------------------------------------------------------------------------------------
class Bus:
    """The nats-server of the whole system, with JetStream on ``store_dir``."""

    def __init__(self, store_dir: Path) -> None:
        self.server = EmbeddedNats(store_dir)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def crash(self, pause_s: float) -> float:
        """SIGKILL, ``pause_s`` down, then the same server on the same store and ports again.
        Returns the instant (``time.monotonic``) it was healthy again."""
        self.server.kill()
        time.sleep(pause_s)
        self.server.start(timeout=30)
        return time.monotonic()

    def stop(self) -> None:
        self.server.stop()

    def ask(self, question: Callable[[Any], Any]) -> Any:
        """``await question(js)`` on a connection of its own (the tests' thread has no loop)."""

        async def asking():
            nc = await nats.connect(self.url, name="duban-chaos-test")
            try:
                return await question(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(asking())

    def inbox_holds_hand_over(self, to: str, sender: str, matter_id: str) -> bool:
        """Whether ``INBOX_<to>`` holds ``sender``'s hand-over of ``matter_id`` (its last one)."""
        subject = subjects.integration_subject(to, sender, integration.KIND_HANDED_OVER)

        async def question(js) -> bool:
            try:
                msg = await js.get_last_msg(subjects.inbox_stream(to), subject, direct=True)
            except NotFoundError:
                return False
            return any(e.aggregate_id == matter_id for e in decode_commit(msg.data))

        return self.ask(question)

    def dead_letters(self, codes: tuple[str, ...]) -> dict[str, list[dict]]:
        """Every dead letter stored at each level (``DLQ_<code>``), by code; empty lists if none."""

        async def question(js) -> dict[str, list[dict]]:
            return {code: [d.summary() for d in await list_dead_letters(js, code)] for code in codes}

        return self.ask(question)


# -- the services -----------------------------------------------------------------------------------
class Served:
    """One service of one level, as a process of its own (``duban serve``)."""

    def __init__(self, service: str, code: str, env: dict[str, str], log_path: Path) -> None:
        self.service, self.code, self.env, self.log_path = service, code, env, log_path
        self.port = free_port()  # never one handed out before in this process
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.service}@{self.code}"

    def launch(self) -> None:
        command = [*DUBAN, "serve", self.service, "--jurisdiction", self.code, "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> None:
        """Until ``/readyz`` says it can work (NATS, JetStream, its database)."""

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, f"{self.name} to answer /readyz")

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def errors(self) -> list[str]:
        """What this process logged as errors: its JSON lines at level error, and the last line
        (the exception) of each traceback printed outside them (uvicorn's "Exception in ASGI
        application")."""
        if not self.log_path.exists():
            return []
        found, in_traceback = [], False
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line:
                found.append(line)
            elif line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace() and not line.startswith(("During", "The above")):
                found.append(line)
                in_traceback = False
        return found


class System:
    """The bus and intake, tracking and notify of every level, on one temporary directory."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.bus = Bus(root / "nats")
        jurisdictions = root / "jurisdictions.json"
        jurisdictions.write_text(json.dumps(LINHAI_TOWNSHIPS, ensure_ascii=False), encoding="utf-8")
        self.jurisdictions_file = jurisdictions
        (root / "logs").mkdir(exist_ok=True)
        self.served: dict[tuple[str, str], Served] = {}
        self.startup_s: float | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DUBAN_", "OTEL_"))}
        env.pop("NATS_URL", None)
        env.pop("DATABASE_URL", None)
        env.update(
            DUBAN_NATS_URL=self.bus.url,
            DUBAN_DATA_DIR=str(self.root / "data"),
            DUBAN_JURISDICTIONS_FILES=str(self.jurisdictions_file),
            DUBAN_DEV_SIGNIN="true",  # the scenario's development tokens
            DUBAN_TRACE_FILES="false",  # nobody reads the span files here
        )
        return env

    def start(self) -> None:
        """The bus, then all 21 processes at once; ``startup_s`` is how long until all were ready."""
        self.bus.start()
        env = self.env()
        began = time.monotonic()
        for code in LEVELS:
            for service in SERVICES:
                served = Served(service, code, env, self.root / "logs" / f"{service}-{code}.log")
                served.launch()
                self.served[(service, code)] = served
        for served in self.served.values():
            served.wait_ready()
        self.startup_s = time.monotonic() - began

    def __getitem__(self, key: tuple[str, str]) -> Served:
        return self.served[key]

    def restart(self, service: str, code: str) -> None:
        """SIGKILL one service process and start it again on the same port, data and bus."""
        served = self.served[(service, code)]
        served.kill()
        served.launch()
        served.wait_ready()

    def status(self, served: Served) -> dict | None:
        try:
            answer = httpx.get(f"{served.url}/status", timeout=5)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    def read_models_caught_up(self, keys: list[tuple[str, str]] | None = None) -> bool:
        """Whether every read model of these services (all by default) has applied every event of
        its stream: its projector has nothing left to be delivered, and its checkpoint (from the
        service's ``/status``) has reached the last event delivered to it (from the server). A
        delivered event whose acknowledgement was lost with a killed nats-server counts as
        applied when the checkpoint covers it (the server hands it out again only after the
        consumer's ack wait, and the projector then skips it)."""
        projectors = []
        for key in keys or list(self.served):
            status = self.status(self.served[key])
            if not status or not status.get("ready"):
                return False
            projectors += [c for c in status.get("consumers") or [] if c.get("checkpoint") is not None]

        async def question(js) -> bool:
            for projector in projectors:
                info = await js.consumer_info(projector["stream"], projector["consumer"])
                if info.num_pending or (info.delivered.stream_seq or 0) > projector["checkpoint"]:
                    return False
            return True

        return self.bus.ask(question)

    def settle(self, keys: list[tuple[str, str]] | None = None, timeout: float = 120) -> None:
        """Wait until :meth:`read_models_caught_up` (what the services do between levels, the
        scenario waits for where it shows: a matter taken in above, a case opened, an outcome)."""
        wait_for(lambda: self.read_models_caught_up(keys), timeout, "every read model to catch up")

    def errors(self) -> dict[str, list[str]]:
        return {s.name: found for s in self.served.values() if (found := s.errors())}

    def stop(self) -> None:
        for served in self.served.values():
            served.resume()
        for served in self.served.values():
            if served.process is not None and served.process.poll() is None:
                served.process.send_signal(signal.SIGTERM)
        for served in self.served.values():
            served.stop()
        self.bus.stop()


# -- the patient client -----------------------------------------------------------------------------
class StepFailed(AssertionError):
    """A step the services refused or failed, with the exact request and answer."""


@dataclass(frozen=True)
class Acknowledged:
    """A command the services acknowledged (2xx), or one found stored when re-read after an
    answer that never came (``found_on_reread``): the event it must have left on its aggregate."""

    what: str
    service: str
    code: str
    aggregate_id: str
    event_type: str | None
    found_on_reread: bool = False


@dataclass
class Ledger:
    entries: list[Acknowledged] = field(default_factory=list)
    listeners: list[Callable[[int], None]] = field(default_factory=list)

    def record(self, entry: Acknowledged) -> None:
        self.entries.append(entry)
        for listener in self.listeners:
            listener(len(self.entries))


#: What a service answers while it cannot do the work now: try again later.
RETRY_STATUS = {502, 503, 504}
PATIENCE_S = 180.0


class PatientClient:
    """The services' HTTP APIs as a patient member of staff uses them (see the module docstring)."""

    def __init__(self, system: System, ledger: Ledger) -> None:
        self.system = system
        self.ledger = ledger
        self.http = httpx.Client(timeout=httpx.Timeout(30.0, connect=3.0))
        self.retries = 0
        self.rereads = 0

    def close(self) -> None:
        self.http.close()

    def _wait(self, attempt: int, answer: httpx.Response | None = None) -> None:
        """Backoff from 0.2 s up to 2 s; a ``Retry-After`` is taken up to that cap (the services
        say 5 s while they are back within about 1 s of the bus)."""
        self.retries += 1
        delay = min(2.0, 0.2 * 1.5**attempt)
        if answer is not None and answer.headers.get("Retry-After", "").isdigit():
            delay = max(delay, min(float(answer.headers["Retry-After"]), 2.0))
        time.sleep(delay)

    def read(self, service: str, code: str, path: str, headers: dict, params: dict | None = None) -> Any:
        """A GET's JSON; ``None`` for 404 (not there yet)."""
        url = f"{self.system[(service, code)].url}{path}"
        deadline = time.monotonic() + PATIENCE_S
        attempt = 0
        while True:
            try:
                answer = self.http.get(url, headers=headers, params=params)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 404:
                return None
            if answer is not None and answer.is_success:
                return answer.json()
            if answer is not None and answer.status_code not in RETRY_STATUS:
                raise StepFailed(f"GET {url} {params or ''} answered {answer.status_code}: {answer.text}")
            if time.monotonic() > deadline:
                raise StepFailed(f"GET {url} gave no answer within {PATIENCE_S}s (last: {_said(answer)})")
            self._wait(attempt, answer)
            attempt += 1

    def command(
        self,
        what: str,
        service: str,
        code: str,
        path: str,
        body: dict | None,
        headers: dict,
        *,
        event_type: str | None,
        aggregate_id: str | None = None,
        done: Callable[[], Any] | None = None,
        key: str | None = None,
    ) -> Any:
        """POST a command until it is acknowledged. After an answer that never came (a broken
        connection, a timeout, a 503: the command may or may not have been stored) ``done()``
        re-reads the state first, and only what is still needed is sent again. ``key`` is sent
        as ``Idempotency-Key``. Returns the answer's JSON (or ``done()``'s when found stored)."""
        url = f"{self.system[(service, code)].url}{path}"
        if key:
            headers = {**headers, "Idempotency-Key": key}
        deadline = time.monotonic() + PATIENCE_S
        unknown, attempt = False, 0
        answer: httpx.Response | None = None
        while True:
            if unknown and done is not None:
                self.rereads += 1
                state = done()
                if state:
                    self._record(what, service, code, aggregate_id, event_type, found=True)
                    return state
            try:
                answer = self.http.post(url, json=body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                answer = None  # never reached the service: nothing was done
            except httpx.TransportError:
                answer, unknown = None, True
            if answer is not None and answer.is_success:
                result = answer.json()
                self._record(what, service, code, aggregate_id or result.get("id"), event_type, found=False)
                return result
            if answer is not None and answer.status_code == 409 and unknown and done is not None and done():
                continue  # the earlier attempt was stored after all: recorded by the re-read above
            if answer is not None and answer.status_code not in RETRY_STATUS:
                raise StepFailed(
                    f"{what}: POST {url} {json.dumps(body, ensure_ascii=False)} answered "
                    f"{answer.status_code}: {answer.text}"
                )
            if answer is not None:
                unknown = True  # a 503 may come after the append reached the store
            if time.monotonic() > deadline:
                raise StepFailed(f"{what}: POST {url} not acknowledged within {PATIENCE_S}s (last: {_said(answer)})")
            self._wait(attempt, answer)
            attempt += 1

    def _record(self, what, service, code, aggregate_id, event_type, *, found: bool) -> None:
        self.ledger.record(Acknowledged(what, service, code, aggregate_id or "", event_type, found_on_reread=found))


def _said(answer: httpx.Response | None) -> str:
    return "no answer" if answer is None else f"{answer.status_code} {answer.text[:300]}"


# -- the faults -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """One fault of the faulty run: after the ``after``-th acknowledged command and ``delay_s``,
    the bus is killed (``target`` None) for ``pause_s``, or the service ``target`` at ``code``."""

    after: int
    delay_s: float
    target: str | None = None
    code: str | None = None
    pause_s: float = 0.0

    def describe(self) -> str:
        if self.target is None:
            return f"SIGKILL nats-server after step {self.after} (+{self.delay_s:.2f}s), down {self.pause_s:.2f}s"
        return f"SIGKILL {self.target}@{self.code} after step {self.after} (+{self.delay_s:.2f}s)"


@dataclass
class Recovery:
    """How long after the bus was healthy again each service first answered normally (None:
    not within the probe's patience)."""

    cause: str
    seconds: dict[tuple[str, str], float | None]

    def by_level(self) -> dict[str, float | None]:
        """Per level, when all its services answered normally again (the slowest of them)."""
        levels: dict[str, list[float | None]] = {}
        for (_, code), seconds in self.seconds.items():
            levels.setdefault(code, []).append(seconds)
        return {code: None if None in values else max(values) for code, values in levels.items()}


#: How long the probe waits for a service's first normal answer after the bus restarted.
PROBE_PATIENCE_S = 60.0


class Chaos(threading.Thread):
    """Runs the faults at their points of the scenario while the driver goes on.

    ``probes()`` gives, per (service, code), the path of a read that needs the bus (an
    aggregate's detail) and the statuses that count as a normal answer; after each restart of the
    bus every service is polled until it answers so.
    """

    def __init__(self, system: System, faults: list[Fault], probes: Callable[[], dict]) -> None:
        super().__init__(name="chaos", daemon=True)
        self.system = system
        self.faults = sorted(faults, key=lambda f: f.after)
        self.probes = probes
        self.lock = threading.Lock()  # one fault at a time, the driver's own included
        self.steps = 0
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.done: list[str] = []
        self.recoveries: list[Recovery] = []
        self.failure: BaseException | None = None

    def step(self, count: int) -> None:
        with self.changed:
            self.steps = count
            self.changed.notify_all()

    def run(self) -> None:
        try:
            for fault in self.faults:
                with self.changed:
                    while self.steps < fault.after and not self.stopping.is_set():
                        self.changed.wait(0.5)
                if self.stopping.is_set():
                    return
                time.sleep(fault.delay_s)
                with self.lock:
                    if fault.target is None:
                        healthy_at = self.system.bus.crash(fault.pause_s)
                        self.recoveries.append(self.measure(fault.describe(), healthy_at))
                    else:
                        self.system.restart(fault.target, fault.code)
                    self.done.append(fault.describe())
        except BaseException as err:  # reported by the test, which waits for this thread
            self.failure = err

    def finish(self, timeout: float = 300) -> None:
        """Wait for the remaining faults (the scenario is over: they run now) and stop."""
        with self.changed:
            self.steps = sys.maxsize
            self.changed.notify_all()
        self.join(timeout)
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        self.stopping.set()
        with self.changed:
            self.changed.notify_all()

    def crash_bus_while_inbox_holds(self, county: str, township: str, escalate: Callable[[], str]) -> None:
        """The fault of the issue: the county's intake stopped (SIGSTOP), the township escalates
        (``escalate()`` returns the matter's id), the county's INBOX holds the hand-over, the bus
        is killed and restarted, and only then the county's intake goes on (SIGCONT)."""
        intake = self.system[("intake", county)]
        with self.lock:
            intake.pause()
            try:
                matter_id = escalate()
                wait_for(
                    lambda: self.system.bus.inbox_holds_hand_over(county, township, matter_id),
                    60,
                    f"INBOX_{county} to hold the hand-over of {matter_id}",
                )
                healthy_at = self.system.bus.crash(0.5)
            finally:
                intake.resume()
            cause = f"SIGKILL nats-server while INBOX_{county} held {township}'s escalation ({intake.name} stopped)"
            self.recoveries.append(self.measure(cause, healthy_at))
            self.done.append(cause)

    def measure(self, cause: str, healthy_at: float) -> Recovery:
        probes = self.probes()

        def first_normal(key: tuple[str, str]) -> float | None:
            path, normal = probes[key]
            url = f"{self.system[key].url}{path}"
            code = key[1]
            headers = bearer(f"committee-{code}", "committee", code)
            deadline = healthy_at + PROBE_PATIENCE_S
            with httpx.Client(timeout=5) as http:
                while time.monotonic() < deadline and not self.stopping.is_set():
                    try:
                        if http.get(url, headers=headers).status_code in normal:
                            return time.monotonic() - healthy_at
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.05)
            return None

        with ThreadPoolExecutor(len(probes)) as pool:
            seconds = dict(zip(probes, pool.map(first_normal, probes), strict=True))
        return Recovery(cause, seconds)
