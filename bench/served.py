"""A service in a process of its own, as the service benchmarks measure it: started with
``duban serve``, waited for, talked to over plain HTTP, read from ``/proc`` and stopped.

bench/ballots.py (the hall's terminals), bench/submit.py (a liaison station's submissions) and
bench/web.py (the 工作台's pages) each serve what they measure this way, so the service's figures
are its own process's (and its HTTP helpers'), not the benchmark's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

#: The development tokens' secret of every served service: a benchmark's clients sign their own.
BENCH_SECRET = "duban-bench-secret"


def environment(
    nats_url: str, data_dir: Path, http_workers: int | None = None, more: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a served service on ``nats_url`` with its data in ``data_dir``,
    answering HTTP in ``http_workers`` processes (the service's default when None), development
    tokens (HS256, ``BENCH_SECRET``) allowed, and ``more``.

    Nothing of duban's settings comes from the shell that runs the benchmark: its ``DUBAN_*``,
    ``DATABASE_URL`` and ``NATS_URL`` are left out (the services read the last two as well). A
    ``DATABASE_URL`` set for the tests would otherwise put the served service's read models on
    that PostgreSQL server, not in the SQLite files of ``data_dir`` that the benchmark fills and
    measures (and leave its tables there)."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DUBAN_") and name not in ("DATABASE_URL", "NATS_URL")
    }
    env = inherited | {
        "DUBAN_NATS_URL": nats_url,
        "DUBAN_DATA_DIR": str(data_dir),
        "DUBAN_DEV_SIGNIN": "true",
        "DUBAN_JWT_SECRET": BENCH_SECRET,
    }
    if http_workers is not None:
        env["DUBAN_HTTP_WORKERS"] = str(http_workers)
    return env | dict(more or {})


def serve(service: str, jurisdiction: str, port: int, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """``duban serve SERVICE`` of ``jurisdiction`` on ``port``, its output in ``log``."""
    command = [sys.executable, "-m", "services.runtime.tools.cli", "serve", service]
    command += ["--jurisdiction", jurisdiction, "--port", str(port)]
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT)


async def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until ``url``'s ``/healthz`` answers 200; an error once ``process`` has exited or after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[4]} exited with {process.returncode} (see its log)")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy in {timeout:.0f} s")


def stop_services(processes: Sequence[subprocess.Popen], timeout: float = 15.0) -> None:
    """SIGTERM to each (as an operator stops a service, its HTTP helpers with it), then each
    waited for, SIGKILL for one still running after ``timeout`` seconds."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class KeepAlive:
    """One keep-alive HTTP/1.1 connection sending one request at a time (a hall's terminal, a
    liaison station's client).

    A few lines over asyncio streams rather than httpx: the clients share the service's two cores
    here, and httpx spends about as much CPU a request as the service does (about 4 ms), which
    would be measured as the service's latency.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> KeepAlive:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: bytes, authorization: str) -> tuple[int, bytes]:
        """The answer's status and body."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


# -- a process and its HTTP helpers, from Linux's /proc (None elsewhere) -----------------------


def _children(pid: int) -> list[int] | None:
    try:
        return [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time so far of a process and its children (its HTTP helpers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) or 0.0 for child in _children(pid) or ())


def peak_rss_mb(pid: int) -> float | None:
    """The largest resident set (``VmHWM``, its high-water mark) of a process and of each of its
    children (a service's HTTP helpers), the largest of them in MiB; None once the process is gone."""

    def own(p: int) -> float | None:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    children = _children(pid)
    if children is None:
        return own(pid)
    found = [value for value in (own(pid), *(peak_rss_mb(child) for child in children)) if value is not None]
    return round(max(found), 1) if found else None
