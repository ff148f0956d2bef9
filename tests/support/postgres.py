"""Find a PostgreSQL server for the test suite, whatever the machine offers.

The ladder, first match wins (see :func:`start_postgres`):

1. ``DATABASE_URL`` when it is a ``postgresql`` URL: someone already runs a server for us.
2. A testcontainers ``PostgresContainer`` when a Docker engine answers a ping.
3. A throwaway local cluster made with ``initdb`` and ``postgres`` when those are on PATH.
4. Nothing: ``(None, None, reason)`` so the caller can ``pytest.skip(reason)``.

Each rung that is passed over adds a short note to the reason, so a skip says *why*.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from services.runtime.tools.ports import free_port

T = TypeVar("T")

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Stoppable(Protocol):
    def stop(self) -> Any: ...


def _run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is already running.

    ``asyncio.run`` refuses to nest, and callers may be inside an async fixture, so the
    coroutine gets a fresh loop on a short-lived thread.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(factory())  # type: ignore[arg-type]
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="pg-support", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _asyncpg_dsn(url: str) -> str:
    """asyncpg wants a plain ``postgresql://`` DSN, without SQLAlchemy's ``+driver``."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def asyncpg_url(url: str) -> str:
    """The same server and database, spelled for SQLAlchemy's asyncpg dialect."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def create_database(base_url: str, name: str) -> str:
    """Create database ``name`` on the server behind ``base_url``; return its asyncpg URL.

    An existing database of that name is dropped first (``WITH (FORCE)``), so tests stay
    re-runnable against a long-lived ``DATABASE_URL`` server.
    """
    if not _DB_NAME.match(name):
        raise ValueError(f"unsafe database name: {name!r}")

    async def create() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(base_url), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _run_async(create)
    return asyncpg_url(make_url(base_url).set(database=name).render_as_string(hide_password=False))


class LocalPostgres:
    """A throwaway cluster in a temp dir, for machines with PostgreSQL binaries but no Docker.

    ``initdb`` and ``postgres`` refuse to run as root, so as root they run as ``run_as``
    (the ``postgres`` system user by default) and the temp dir is handed to that user.
    The server runs in its own process group so ``stop()`` can take all its children down.
    """

    def __init__(self, *, run_as: str = "postgres", start_timeout: float = 30.0) -> None:
        self.run_as = run_as
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.url: str | None = None
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def unavailable_reason(run_as: str = "postgres") -> str | None:
        """Why this machine cannot host a local cluster, or None when it can."""
        missing = [b for b in ("initdb", "postgres") if shutil.which(b) is None]
        if missing:
            return f"{', '.join(missing)} not on PATH"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(run_as)
            except KeyError:
                return f"running as root and no {run_as!r} user to run initdb/postgres as"
        return None

    def _popen_kwargs(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict[str, Any] = {"env": env, "cwd": self.root}
        if self._user is not None:
            env["HOME"] = str(self.root)
            env["USER"] = env["LOGNAME"] = self._user.pw_name
            kwargs |= {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return kwargs

    def _log_tail(self, lines: int = 30) -> str:
        assert self.root is not None
        log = self.root / "server.log"
        if not log.exists():
            return "(no server log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LocalPostgres:
        reason = self.unavailable_reason(self.run_as)
        if reason:
            raise RuntimeError(reason)
        self._user = pwd.getpwnam(self.run_as) if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="duban-pg-"))
        data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        if self._user is not None:
            for path in (self.root, sock):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        atexit.register(self.stop)
        try:
            init = subprocess.run(
                [
                    *("initdb", "-D", str(data), "-U", "duban"),
                    *("--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=120,
                **self._popen_kwargs(),
            )
            if init.returncode != 0:
                raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout.decode(errors='replace')}")
            self.port = free_port()
            with open(self.root / "server.log", "wb") as log:
                self._proc = subprocess.Popen(
                    [
                        *("postgres", "-D", str(data), "-p", str(self.port), "-k", str(sock)),
                        *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._popen_kwargs(),
                )
            self.url = f"postgresql+asyncpg://duban@127.0.0.1:{self.port}/postgres"
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.url is not None
        dsn = _asyncpg_dsn(self.url)
        deadline = time.monotonic() + self.start_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}:\n{self._log_tail()}")

            async def ping() -> None:
                conn = await asyncpg.connect(dsn, timeout=2)
                await conn.close()

            try:
                _run_async(ping)
                return
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"postgres not ready after {self.start_timeout}s ({last!r}):\n{self._log_tail()}")

    def create_database(self, name: str) -> str:
        """Create a fresh database on this cluster and return its asyncpg URL."""
        if self.url is None:
            raise RuntimeError("LocalPostgres is not started")
        return create_database(self.url, name)

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown, SIGKILL to the whole process group as a fallback, then remove the dir.

        SIGINT is PostgreSQL's *fast* shutdown: unlike SIGTERM (*smart*), it does not wait for
        clients that a test forgot to disconnect. Safe to call twice.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.url = None
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _External:
    """Handle for a server we did not start (``DATABASE_URL``): stopping it is not ours to do."""

    def stop(self) -> None:
        pass


def docker_unavailable_reason(timeout: float = 3.0) -> str | None:
    """None when a Docker engine answers a ping, else why not. Never hangs past ``timeout``."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def _start_container() -> tuple[Stoppable, str]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:15", driver="asyncpg")
    container.start()
    try:
        return container, container.get_connection_url()
    except BaseException:
        container.stop()
        raise


def start_postgres() -> tuple[Stoppable | None, str | None, str]:
    """Walk the ladder; return ``(handle, base_url, reason)``.

    ``base_url`` is a ``postgresql+asyncpg://`` URL to an existing database on the server;
    pass it to :func:`create_database` to get a database of one's own. ``handle.stop()``
    releases whatever was started (a no-op for ``DATABASE_URL``). On failure handle and URL
    are None and ``reason`` lists why each rung was passed over.
    """
    notes: list[str] = []

    env_url = os.environ.get("DATABASE_URL", "")
    if env_url.startswith(("postgresql", "postgres://")):
        return _External(), asyncpg_url(env_url.replace("postgres://", "postgresql://", 1)), "DATABASE_URL"
    notes.append("DATABASE_URL is not a postgresql URL" if env_url else "DATABASE_URL not set")

    why_not = docker_unavailable_reason()
    if why_not is None:
        try:
            handle, url = _start_container()
            return handle, url, "testcontainers postgres:15"
        except Exception as exc:
            notes.append(f"testcontainers failed: {type(exc).__name__}: {exc}".splitlines()[0][:200])
    else:
        notes.append(f"no Docker engine ({why_not})")

    why_not = LocalPostgres.unavailable_reason()
    if why_not is None:
        local = LocalPostgres()
        try:
            local.start()
            return local, local.url, "local initdb cluster"
        except Exception as exc:
            notes.append(f"local cluster failed: {exc}"[:2000])
    else:
        notes.append(f"no local cluster ({why_not})")

    return None, None, "no PostgreSQL server: " + "; ".join(notes)
