"""``duban up``: the whole system on one machine, on the embedded default.

Starts the embedded nats-server (JetStream in ``.duban/nats``, ``sync_interval: always``),
creates the streams of every level, starts each landed service of each level as its own
process (``duban serve``), restarts one that crashes (and says so), writes ``.duban/run.json``
(base URLs, the NATS URL, development tokens per role and level) and stops everything on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats

from contracts import subjects
from contracts.jurisdictions import default_registry

from .auth import Role, issue_token
from .deadletters import ensure_deadletter_stream
from .eventstore import EventStore
from .nats_server import EmbeddedNats
from .settings import Settings

log = logging.getLogger("duban.up")

#: The levels ``duban up`` runs by default: 台州市, 温岭市 and one Wenling township (泽国镇).
DEFAULT_LEVELS = ("331000", "331081", "331081100")
#: The services that have landed, each with its base port (+ the level's index).
SERVICES = {"intake": 8100, "tracking": 8200}


class Supervised:
    """One service process of one level, restarted when it dies."""

    def __init__(self, service: str, code: str, port: int, env: dict[str, str], logs: Path) -> None:
        self.service, self.code, self.port, self.env, self.logs = service, code, port, env, logs
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def arguments(self) -> list[str]:
        return ["--jurisdiction", self.code, "--port", str(self.port)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log_file = open(self.logs / f"{self.service}-{self.code}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.runtime.cli", "serve", self.service, *self.arguments],
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.restarts += 1
            print(f"duban: {self.service} of {self.code} exited ({self.process.returncode}), restarting", flush=True)
            self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def dev_tokens(levels: tuple[str, ...], secret: str) -> dict[str, dict[str, str]]:
    """One development principal per role and level (HS256 with the development secret)."""
    return {
        code: {
            role.value: issue_token(
                f"{role.value}-{code}", [role.value], code, name=f"{role.value}@{code}", secret=secret
            )
            for role in Role
        }
        for code in levels
    }


async def _prepare_streams(url: str, levels: tuple[str, ...]) -> None:
    nc = await nats.connect(url)
    try:
        for code in levels:
            for context in subjects.CONTEXTS:
                await EventStore(nc, context=context, jurisdiction=code).ensure_streams()
            await ensure_deadletter_stream(nc.jetstream(), code)
    finally:
        await nc.close()


def run(data_dir: Path, port: int, levels: tuple[str, ...] = DEFAULT_LEVELS) -> int:
    registry = default_registry()
    for code in levels:
        registry.get(code)  # unknown codes fail here, with the code in the message
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    server = EmbeddedNats(data_dir / "nats", port=port).start()
    children: list[Supervised] = []
    try:
        asyncio.run(_prepare_streams(server.url, levels))
        env = {**os.environ, "DUBAN_NATS_URL": server.url, "DUBAN_DATA_DIR": str(data_dir)}
        for service, base in SERVICES.items():
            for index, code in enumerate(levels):
                children.append(Supervised(service, code, base + index, env, data_dir / "logs"))
        for child in children:
            child.start()
        run_file = data_dir / "run.json"
        services: dict[str, dict[str, str]] = {code: {} for code in levels}
        for child in children:
            services[child.code][child.service] = child.url
        run_file.write_text(
            json.dumps(
                {
                    "nats_url": server.url,
                    "nats_monitor": f"http://127.0.0.1:{server.monitor_port}",
                    "levels": {code: registry.get(code).name for code in levels},
                    "services": services,
                    "tokens": dev_tokens(levels, Settings().jwt_secret),
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        print(f"duban: NATS (JetStream, sync_interval always) at {server.url}, data in {data_dir}")
        for code in levels:
            urls = ", ".join(f"{name} {url}/docs" for name, url in services[code].items())
            print(f"  {code} {registry.get(code).name}: {urls}")
        print(f"  run file with development tokens: {run_file}   logs: {data_dir / 'logs'}   stop with Ctrl-C")
        stop = {"now": False}

        def request_stop(*_: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop["now"]:
            for child in children:
                child.check()
            time.sleep(0.5)
    finally:
        for child in children:
            child.stop()
        server.stop()
        print("duban: stopped")
    return 0
