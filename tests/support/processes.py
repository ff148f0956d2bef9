"""Real processes as the tests start them: ``duban serve`` and ``duban up`` (:class:`Up`), waiting on
them, and what they leave behind."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.runtime.http.auth import dev_token
from services.runtime.tools.ports import FREE_PORTS
from services.runtime.tools.up import PORT_OFFSETS


def wait_for(check, timeout: float, what: str):
    """``check()``'s first true result, polled every 0.1 s; an AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def healthz(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie left for its parent to reap is gone for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def children(pid: int) -> list[int]:
    """The pids of a process's children (Linux ``/proc``)."""
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


ROOT = Path(__file__).resolve().parent.parent.parent
#: ``duban`` as the tests start it: the CLI module with this Python.
DUBAN = (sys.executable, "-m", "services.runtime.tools.cli")


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or environment mentions ``text`` (the data directory of one
    run: nats-server has it in its arguments, the services in ``DUBAN_DATA_DIR``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = b" ".join((entry / name).read_bytes() for name in ("cmdline", "environ"))
        except OSError:
            continue
        command = command.replace(b"\0", b" ").decode(errors="replace")
        if text in command and int(entry.name) != os.getpid() and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


#: Where blocks of service ports are looked for: below Linux's ephemeral ports (32768 and up, the
#: local ports of outgoing connections), so that no client of another test (a NATS client
#: reconnecting, an HTTP request) is given a service's port after it was found free: CI saw
#: 泽国镇's tracking restarted eight times in two minutes, "address already in use", while
#: test_chaos ran beside it.
PORT_BLOCKS = range(10000, 25000)


def free_port_block(size: int) -> int:
    """A base port whose next ``size`` ports are free (intake +0…, tracking +100…, …), all below
    the ephemeral ports."""
    assert PORT_BLOCKS.stop + max(PORT_OFFSETS.values()) + size < FREE_PORTS.start  # apart from free_port's
    for _ in range(50):
        base = random.randrange(PORT_BLOCKS.start, PORT_BLOCKS.stop)
        ports = [base + offset + index for offset in PORT_OFFSETS.values() for index in range(size)]
        try:
            for port in ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports")


class Up:
    """One ``duban up`` (``launcher`` runs the CLI: ``duban`` itself, or a wrapper around it)."""

    def __init__(
        self,
        data_dir: Path,
        base: int,
        *options: str,
        nats_port: int = 0,
        launcher: tuple[str, ...] = DUBAN,
        output: str = "up.log",
    ) -> None:
        self.data_dir, self.base = data_dir, base
        self.output = data_dir.parent / output
        command = [*launcher, "up", *options, "--data-dir", str(data_dir), "--nats-port", str(nats_port)]
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [*command, "--http-port-base", f"{base}"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def run_file(self) -> dict:
        return json.loads((self.data_dir / "run.json").read_text())

    def wait_ready(self, timeout: float = 90) -> dict:
        """run.json once every service answers /healthz (an AssertionError with the log if it stops);
        a run file left by an earlier run (its pid) does not count."""

        def ready() -> bool:
            if self.process.poll() is not None:
                return True
            if not (self.data_dir / "run.json").exists():
                return False
            info = self.run_file
            return info["pid"] == self.process.pid and info["ready"]

        wait_for(ready, timeout, "duban up to be ready")
        assert self.process.poll() is None, self.log()
        return self.run_file

    def pids(self) -> list[int]:
        """Its children as run.json lists them: the nats-server and every service."""
        info = self.run_file
        return [info["nats"]["pid"], *(p["pid"] for p in info["processes"].values())]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def headers(self, code: str, role: str) -> dict[str, str]:
        """A development principal of ``role`` at ``code`` (HS256: duban up turns development
        sign-in on), or the token run.json has for it when started with ``--dev-tokens``."""
        token = self.run_file.get("tokens", {}).get(code, {}).get(role) or dev_token(code, role)
        return {"Authorization": f"Bearer {token}"}

    def sign_in(self, person: str, level: str) -> subprocess.CompletedProcess:
        """``duban token PERSON --level CODE`` against this run, as a user types it."""
        return subprocess.run(
            [sys.executable, "-m", "services.runtime.tools.cli", "token", person, "--level", level],
            env={**os.environ, "DUBAN_DATA_DIR": str(self.data_dir)},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def person_token(self, person: str, level: str) -> str:
        """The access token of a person of ``level``'s directory (``sign_in``, which must work)."""
        done = self.sign_in(person, level)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def nats_admin_url(self) -> str:
        """Its nats-server as the administrator (the credentials duban up generated)."""
        from services.runtime.bus.accounts import admin_url

        url = admin_url(self.run_file)
        assert url is not None, "run.json names no NATS credentials"
        return url

    def url(self, code: str, service: str) -> str:
        return self.run_file["services"][code][service]
