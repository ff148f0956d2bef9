"""More than one process answering a service's HTTP, for a level that needs more than one core.

A Python process answers requests on one core. When a congress hall votes, hundreds of ballot
sheets arrive within seconds, and the evaluation service's one process is the bottleneck while
the machine's other cores idle. ``DUBAN_HTTP_WORKERS=N`` makes ``duban serve`` answer HTTP in N
processes on the same port:

* the first process (``DUBAN_HTTP_WORKER=0``, the one started) runs the whole service: the read
  models, the durable workers, periodic loops, NATS command subjects and operators' replays;
* it starts N-1 helpers (``DUBAN_HTTP_WORKER=1..N-1``: the same command, the same settings), which
  answer HTTP only: commands go through the event store, whose version checks hold across
  processes, and reads come from the read models the first process writes (SQLite in WAL mode
  or PostgreSQL, both readable by many processes);
* every process listens with ``SO_REUSEPORT``, so the kernel spreads connections over them;
* a helper that exits is restarted (after a pause that grows while it keeps failing); the helpers
  are stopped (SIGTERM, finishing the requests in hand) before the first process stops, and stop
  by themselves should the first process be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import uvicorn

from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("duban.http_workers")

#: The pipe a helper reports "serving" on (a file descriptor the first process passed it).
READY_FD_VARIABLE = "DUBAN_HTTP_READY_FD"

#: Seconds a helper gets to finish its requests after SIGTERM before it is killed.
STOP_TIMEOUT_S = 30.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes may listen on as well."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Helpers:
    """The helper processes of a first process: started, kept running, stopped."""

    def __init__(self, command: list[str], count: int, *, min_restart_s: float = 1.0) -> None:
        self.command = command
        self.count = count
        self.min_restart_s = min_restart_s
        self.processes: dict[int, subprocess.Popen] = {}
        self.restarts: dict[int, int] = {}
        self._task: asyncio.Task | None = None
        self._stopping = False

    def _spawn(self, index: int) -> int:
        """Start helper ``index``; the read end of the pipe it reports readiness on."""
        ready_read, ready_write = os.pipe()
        env = {**os.environ, "DUBAN_HTTP_WORKER": str(index), READY_FD_VARIABLE: str(ready_write)}
        # Its own session: a Ctrl-C in the terminal reaches the first process only, which then
        # stops its helpers after their requests in hand (rather than restarting them).
        try:
            self.processes[index] = subprocess.Popen(
                self.command, env=env, start_new_session=True, pass_fds=[ready_write]
            )
        finally:
            os.close(ready_write)
        log.info("http helper started", extra={"worker": index, "pid": self.processes[index].pid})
        return ready_read

    async def start(self, timeout_s: float = 120.0) -> None:
        """Start the helpers and wait until each is serving (or has failed: then it is restarted
        like any helper that exits), so the service is ready when its first process answers."""
        pipes = [self._spawn(index) for index in range(1, self.count)]
        try:
            await asyncio.wait_for(asyncio.gather(*(asyncio.to_thread(os.read, fd, 1) for fd in pipes)), timeout_s)
        except TimeoutError:
            log.error("http helpers not ready in time", extra={"timeout_s": timeout_s})
        finally:
            for fd in pipes:
                os.close(fd)
        self._task = asyncio.create_task(self._watch(), name="http-helpers")

    async def _watch(self) -> None:
        backoff: dict[int, float] = {}
        while not self._stopping:
            await asyncio.sleep(0.5)
            for index, process in list(self.processes.items()):
                code = process.poll()
                if code is None or self._stopping:
                    continue
                self.restarts[index] = self.restarts.get(index, 0) + 1
                pause = backoff.get(index, self.min_restart_s)
                log.error(
                    "http helper exited, restarting",
                    extra={"worker": index, "exit_code": code, "restarts": self.restarts[index], "pause_s": pause},
                )
                await asyncio.sleep(pause)
                backoff[index] = min(pause * 2, 30.0)
                if not self._stopping:
                    os.close(self._spawn(index))  # a restarted helper is not waited for

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for index, process in self.processes.items():
            try:
                await asyncio.to_thread(process.wait, max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("http helper did not stop, killed", extra={"worker": index, "pid": process.pid})
                process.kill()
                process.wait()


async def report_ready(server: uvicorn.Server) -> None:
    """In a helper: tell the first process (over the pipe it gave) once this one is serving."""
    fd = os.environ.get(READY_FD_VARIABLE)
    if fd is None:
        return
    while not server.started:  # noqa: ASYNC110 - uvicorn's Server has a flag, no event
        await asyncio.sleep(0.05)
    with contextlib.suppress(OSError):
        os.write(int(fd), b"1")
        os.close(int(fd))


async def exit_with_parent(server: uvicorn.Server, interval_s: float = 1.0) -> None:
    """In a helper: stop serving (as on SIGTERM) when the first process is gone, so a killed
    first process leaves no helper holding its port."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing signals a parent's death
        await asyncio.sleep(interval_s)
    log.error("first process gone, helper stopping", extra={"parent_pid": parent})
    server.should_exit = True


def helper_command() -> list[str]:
    """The command line this process was started with, for its helpers."""
    return [sys.executable, *sys.orig_argv[1:]]
