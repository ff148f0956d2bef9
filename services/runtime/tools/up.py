"""``duban up``: the whole system on one machine, on the embedded default.

Starts the embedded nats-server (JetStream in ``.duban/nats``, ``sync_interval: always``),
creates the streams of every level, and runs every service that exists (``services.<name>.app``
imports and has ``serve``; ``--services`` picks some) for every level as its own process
(``duban serve``), each in a process group of its own so that stopping it stops whatever it
started. A process that dies is restarted and reported (after repeated quick deaths it waits
longer before the next start); so is the nats-server, on the same store and the same ports, so
that the services, which keep running meanwhile, reconnect to the URL they were given.
``.duban/run.json`` lists every service's base URL, the NATS URL, the processes, the nats-server
(``"nats"``: pid, restarts, last restart) and development tokens per role and level;
``"ready": true`` once every ``/healthz`` has answered.

No child outlives ``duban up``. Ctrl-C (SIGINT), SIGTERM or an exception stops the services
(SIGTERM to each group, SIGKILL after a grace period), then NATS, each on its own so that one
failing to stop does not keep the others running. Killed with SIGKILL, ``duban up`` runs no
cleanup: there the kernel signals the children (Linux, :func:`~.children.die_with_parent`).
Waits go through :mod:`.children`, which survive a clock shifted by libfaketime. Data persists
in ``.duban/`` across runs.

``--demo`` loads a demo built from the seeds through the services' HTTP APIs (``demo.py``, its
data in ``data/demo.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import nats

from contracts.jurisdictions import default_registry
from services.runtime.bus.accounts import ADMIN, Credentials, provision, user_name
from services.runtime.bus.levels import SERVICES
from services.runtime.http.auth import Role, dev_token
from services.runtime.settings import Settings

from .children import die_with_parent, pause, wait_exit
from .demo import Demo
from .nats_server import EmbeddedNats

log = logging.getLogger("duban.up")

#: The levels ``duban up`` runs by default: 台州市, 温岭市 and one Wenling township (泽国镇).
DEFAULT_LEVELS = ("331000", "331081", "331081100")
#: Every service there may be, with its port offset from ``--http-port-base`` (+ the level's index).
PORT_OFFSETS = {"intake": 0, "tracking": 100, "evaluation": 200, "notify": 300, "directory": 400, "web": 500}
#: The demo's people, loaded into each level's directory at start (``services/directory/data``).
DIRECTORY_SEED = Path(__file__).resolve().parents[2] / "directory" / "data" / "demo_directory.json"
#: How a service process is started: ``duban serve`` with this Python.
SERVE = (sys.executable, "-m", "services.runtime.tools.cli", "serve")
#: How long a stopping service may take to drain before its process group is killed.
STOP_GRACE_S = 20.0
#: A process that lived less than this was a quick death: the next restart waits longer.
QUICK_DEATH_S = 10.0


def discover_services() -> tuple[list[str], dict[str, str]]:
    """The services present here, and why each absent one is absent."""
    present, absent = [], {}
    for name in PORT_OFFSETS:
        try:
            module = importlib.import_module(f"services.{name}.app")
        except ModuleNotFoundError as err:
            absent[name] = f"not installed ({err.name})"
            continue
        except Exception as err:  # a service that does not import is reported, not run
            absent[name] = f"does not import: {type(err).__name__}: {err}"
            continue
        if callable(getattr(module, "serve", None)):
            present.append(name)
        else:
            absent[name] = f"services.{name}.app has no serve()"
    return present, absent


class Supervised:
    """One child process, restarted when it dies; after repeated quick deaths it waits longer."""

    #: Who it is in the reports ("intake of 331081", "nats-server").
    what = "a child"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.quick_deaths = 0
        self.restart_at: float | None = None
        self.last_restart: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def where(self) -> str:
        """Said after "restarting" when it dies (where it comes back)."""
        return ""

    def launch(self) -> subprocess.Popen:
        raise NotImplementedError

    def start(self) -> None:
        self.process = self.launch()
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self) -> bool:
        """Restart the process if it died; True when it was (re)started now."""
        if self.process is None or self.process.poll() is None:
            return False
        now = time.monotonic()
        if self.restart_at is None:
            lived = now - self.started_at
            self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH_S else 0
            delay = min(30.0, 0.5 * 2 ** max(0, self.quick_deaths - 1)) if self.quick_deaths else 0.0
            self.restart_at = now + delay
            print(
                f"duban: {self.what} exited ({_exit_reason(self.process.returncode)}) after {lived:.0f}s, "
                f"restarting{self.where}{f' in {delay:.1f}s' if delay else ''} (see {self.log_path})",
                flush=True,
            )
            self._kill_group()  # whatever it started goes with it
        if now < self.restart_at:
            return False
        self.restarts += 1
        self.last_restart = datetime.now(UTC).isoformat(timespec="seconds")
        self.start()
        return True

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        if self.process is None:
            return
        try:
            if not wait_exit(self.process, max(0.1, deadline - time.monotonic())):
                print(f"duban: {self.what} did not stop in time, killing it", flush=True)
        finally:
            self._kill_group()  # whatever it started goes with it, also when waiting failed
        wait_exit(self.process, 5)

    def _kill_group(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


class ServiceProcess(Supervised):
    """One service of one level (``duban serve``), in a process group of its own."""

    def __init__(self, service: str, code: str, port: int, env: dict[str, str], logs: Path) -> None:
        super().__init__(logs / f"{service}-{code}.log")
        self.service, self.code, self.port, self.env = service, code, port, env
        self.what = f"{service} of {code}"

    @property
    def name(self) -> str:
        return f"{self.service}-{self.code}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> subprocess.Popen:
        with open(self.log_path, "ab") as log_file:
            return subprocess.Popen(
                [*SERVE, self.service, "--jurisdiction", self.code, "--port", str(self.port)],
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches us only, we stop it
                # SIGKILL, not SIGTERM, when duban up dies without stopping it: nobody is left to
                # kill a service whose drain hangs (its nats-server goes at the same moment, and a
                # service still connecting keeps a SIGTERM until it serves), and a kill loses
                # nothing acknowledged (events are on the stream, checkpoints commit with their
                # batch), while it frees the port for the next duban up at once.
                preexec_fn=die_with_parent(signal.SIGKILL),
            )


class NatsServerProcess(Supervised):
    """duban up's own nats-server: restarted on the same store and the same client and monitor
    ports, so the services reconnect to the URL they were given."""

    what = "nats-server"

    def __init__(self, server: EmbeddedNats) -> None:
        super().__init__(server.log_path)
        self.server = server
        self.back = True  # answering since its last (re)start

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def monitor(self) -> str:
        return f"http://{self.server.host}:{self.server.monitor_port}"

    @property
    def where(self) -> str:
        return f" on {self.url} with its store {self.server.store_dir}"

    def start(self) -> None:
        """The first start waits until JetStream is up; a restart does not hold up the services'
        supervision (:meth:`answering` reports when it is back)."""
        if self.process is None:
            self.server.start()
            self.process, self.started_at = self.server.process, time.monotonic()
        else:
            super().start()
            self.back = False

    def launch(self) -> subprocess.Popen:
        self.server.launch()
        return self.server.process

    def answering(self) -> bool:
        """True once after a restart, when its monitor says JetStream is up again."""
        if self.back or not healthy(self.monitor):
            return False
        self.back = True
        return True

    def stop(self) -> None:
        self.server.stop()  # SIGTERM lets JetStream flush; SIGKILL if it does not exit in time


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def dev_tokens(levels: tuple[str, ...], secret: str) -> dict[str, dict[str, str]]:
    """One development principal per role and level (HS256 with the development secret)."""
    return {code: {role.value: dev_token(code, role.value, secret) for role in Role} for code in levels}


async def _provision(url: str, levels: tuple[str, ...]) -> None:
    """Every stream and bucket of every level, made as the administrator (services may only look)."""
    nc = await nats.connect(url)
    try:
        await provision(nc, levels)
    finally:
        await nc.close()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


class Runner:
    """The supervised processes of one ``duban up`` (its nats-server and the services) and its
    run file."""

    def __init__(
        self,
        data_dir: Path,
        server: EmbeddedNats,
        levels: tuple[str, ...],
        services: list[str],
        base: int,
        *,
        with_tokens: bool = False,
        credentials: Credentials | None = None,
    ):
        self.data_dir, self.server, self.levels, self.services, self.base = data_dir, server, levels, services, base
        #: Write a development token per role and level into run.json (``--dev-tokens``).
        self.with_tokens = with_tokens
        self.registry = default_registry()
        #: The NATS users' passwords (owner-only, in the data directory), and the server configured with them.
        self.credentials = credentials or Credentials.ensure(data_dir / "nats" / "credentials.json", levels)
        server.extra_config = self.credentials.accounts_config(levels)
        self.nats = NatsServerProcess(server)
        self.children: list[ServiceProcess] = []
        self.ready = False
        self.run_file = data_dir / "run.json"

    def write_run_file(self, *, stopped: bool = False) -> None:
        """``run.json``: where everything is while it runs; after a stop, ``"ready": false`` and
        when it stopped (so ``duban status`` does not read a stopped run as a running one)."""
        services: dict[str, dict[str, str]] = {code: {} for code in self.levels}
        for child in self.children:
            services[child.code][child.service] = child.url
        info = {
            "ready": self.ready,
            "nats_url": self.server.url,
            "nats_monitor": self.nats.monitor,
            "nats_credentials": str(self.credentials.path),
            "nats": {
                "pid": self.nats.pid,
                "restarts": self.nats.restarts,
                "url": self.nats.url,
                "monitor": self.nats.monitor,
                "last_restart": self.nats.last_restart,
                "log": str(self.nats.log_path),
            },
            "data_dir": str(self.data_dir),
            "levels": {code: self.registry.get(code).name for code in self.levels},
            "services": services,
            "processes": {
                child.name: {"pid": child.pid, "restarts": child.restarts, "url": child.url} for child in self.children
            },
            "pid": os.getpid(),
            "stopped_at": datetime.now(UTC).isoformat(timespec="seconds") if stopped else None,
        }
        if self.with_tokens:
            info["tokens"] = dev_tokens(self.levels, Settings().jwt_secret)
        temporary = self.run_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(info, ensure_ascii=False, indent=2))
        temporary.replace(self.run_file)

    def start(self) -> None:
        """NATS first (JetStream up, the streams of every level there), then every service."""
        self.nats.start()
        asyncio.run(_provision(self.credentials.url(self.server.url, ADMIN), self.levels))
        env = {
            **os.environ,
            "DUBAN_NATS_URL": self.server.url,  # a service's own user is put in below
            "DUBAN_DATA_DIR": str(self.data_dir),
            # development sign-in: choose a person of the directory, or `duban token PERSON`
            "DUBAN_DEV_SIGNIN": "true",
            "DUBAN_SEED_FILE": str(DIRECTORY_SEED),
        }
        env.pop("DUBAN_DATABASE_URL", None)  # each service of each level has its own SQLite here
        env.pop("DATABASE_URL", None)
        logs = self.data_dir / "logs"
        for service in self.services:
            for index, code in enumerate(self.levels):
                port = self.base + PORT_OFFSETS[service] + index
                level_env = dict(env)
                if "directory" in self.services:
                    directory = self.base + PORT_OFFSETS["directory"] + index
                    level_env["DUBAN_JWKS_URL"] = f"http://127.0.0.1:{directory}/.well-known/jwks.json"
                if service == "directory" and "web" in self.services:  # sign-ins return to the pages
                    level_env["DUBAN_WEB_URL"] = f"http://127.0.0.1:{self.base + PORT_OFFSETS['web'] + index}"
                if service in SERVICES:  # its own NATS user, with its permissions
                    level_env["DUBAN_NATS_URL"] = self.credentials.url(self.server.url, user_name(service, code))
                if service == "web":  # the pages call this level's services
                    for other, offset in PORT_OFFSETS.items():
                        level_env[f"DUBAN_{other.upper()}_URL"] = f"http://127.0.0.1:{self.base + offset + index}"
                self.children.append(ServiceProcess(service, code, port, level_env, logs))
                self.children[-1].start()
        self.write_run_file()

    def supervise_once(self) -> None:
        """One look at every child: restart the dead (NATS too; the services meanwhile reconnect
        by themselves), report NATS back, and note when everything first answers."""
        if any([child.check() for child in [self.nats, *self.children]]):
            self.write_run_file()
        if self.nats.answering():
            print(f"duban: nats-server is back on {self.nats.url} (restart {self.nats.restarts})", flush=True)
        if not self.ready and all(healthy(child.url) for child in self.children):
            self.ready = True
            self.write_run_file()
            self.print_guide()

    def stop(self) -> None:
        """Stop every child, whatever fails on the way: the services (SIGTERM to each group,
        SIGKILL after the grace period), then NATS."""
        try:
            for child in self.children:
                _reporting(f"stopping {child.what}", child.terminate)
            deadline = time.monotonic() + STOP_GRACE_S
            for child in self.children:
                _reporting(f"stopping {child.what}", lambda child=child: child.wait_stopped(deadline))
        finally:
            _reporting("stopping nats-server", self.nats.stop)

    def print_guide(self) -> None:
        print(f"duban: ready — NATS (JetStream) at {self.server.url}, data in {self.data_dir}", flush=True)
        for code in self.levels:
            web = [f"工作台 {c.url}/login" for c in self.children if c.code == code and c.service == "web"]
            urls = "  ".join(
                f"{c.service} {c.url}/docs" for c in self.children if c.code == code and c.service != "web"
            )
            print(f"  {code} {self.registry.get(code).name}: {'  '.join([*web, urls])}")
        # the try-it line signs in as this run's deputy of its last level (the township by default)
        code = self.levels[-1]
        intake = next((c for c in self.children if c.code == code and c.service == "intake"), self.children[0])
        print(
            f"  sign in as anyone of a level's directory (development sign-in): duban token PERSON --level CODE,\n"
            f"  e.g. the deputy deputy-{code}; people: GET <directory>/auth/dev/people\n"
            f"  logs in {self.data_dir / 'logs'}\n"
            f"  try: TOKEN=$(DUBAN_DATA_DIR={self.data_dir} duban token deputy-{code} --level {code})\n"
            f'       curl -H "Authorization: Bearer $TOKEN" {intake.url}/matters\n'
            "  stop with Ctrl-C",
            flush=True,
        )


def _reporting(what: str, action: Callable[[], object]) -> None:
    """Do ``action``; an exception is reported and whatever comes next still happens (stopping)."""
    try:
        action()
    except Exception as err:
        print(f"duban: {what} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


def choose_services(wanted: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """The services to run (``wanted``, default every one present) and why each wanted one that
    is absent is absent."""
    present, absent = discover_services()
    if wanted is None:
        return present, absent
    unknown = sorted(set(wanted) - set(PORT_OFFSETS))
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}: choose from {', '.join(PORT_OFFSETS)}")
    return [name for name in present if name in wanted], {n: why for n, why in absent.items() if n in wanted}


def run(
    data_dir: Path,
    port: int = 4222,
    levels: tuple[str, ...] = DEFAULT_LEVELS,
    *,
    http_base: int = 8100,
    demo: bool = False,
    services: Sequence[str] | None = None,
    dev_tokens: bool = False,
) -> int:
    registry = default_registry()
    unknown = [code for code in levels if code not in registry]
    if unknown:
        print(
            f"duban: unknown jurisdiction code(s) {', '.join(unknown)}: 台州市, its counties and their townships "
            "are built in; other jurisdictions (a new township) come from JSON files named in "
            "DUBAN_JURISDICTIONS_FILES (see contracts/jurisdictions.py)",
            file=sys.stderr,
        )
        return 2
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    chosen, absent = choose_services(services)
    for name, why in absent.items():
        print(f"duban: {name} is not running: {why}")
    if not chosen:
        print("duban: no service to run", file=sys.stderr)
        return 1
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    # SIGTERM, so that JetStream flushes, should duban up die without stopping it (SIGKILL)
    server = EmbeddedNats(data_dir / "nats", port=port, parent_death_signal=signal.SIGTERM)
    runner = Runner(data_dir, server, levels, chosen, http_base, with_tokens=dev_tokens)
    started = time.monotonic()
    try:
        runner.start()
        print(
            f"duban: starting {len(runner.children)} processes ({', '.join(chosen)} × {len(levels)} levels)",
            flush=True,
        )
        demo_loaded = not demo
        while not stop["now"]:
            runner.supervise_once()
            if runner.ready and not demo_loaded:
                print(f"duban: all {len(runner.children)} processes healthy in {time.monotonic() - started:.1f}s")
                demo_loaded = True
                try:
                    Demo(json.loads(runner.run_file.read_text()), say=lambda line: print(line, flush=True)).load()
                except Exception as err:  # the system keeps running; the demo said where it stopped
                    print(f"duban: the demo stopped: {type(err).__name__}: {err}", flush=True)
            pause(0.2)
    finally:  # also after an exception anywhere above: no child outlives duban up
        print("duban: stopping", flush=True)
        runner.stop()
        runner.ready = False
        _reporting("writing run.json", lambda: runner.write_run_file(stopped=True))
        print("duban: stopped", flush=True)
    return 0


# -- the demo ---------------------------------------------------------------------------------------
