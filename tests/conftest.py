"""The fixture ladder: one NATS server and one PostgreSQL server for the whole session.

NATS: ``NATS_URL`` if set; a testcontainers NATS when a Docker engine answers; otherwise a
nats-server process from the installed wheel on a free port with a temporary store.
PostgreSQL: ``DATABASE_URL``, testcontainers, or a throwaway cluster from ``initdb``; tests that
need it skip with the reason only where none of these exists.
"""

from __future__ import annotations

import os
import sys
import uuid

# The tests mint development tokens (HS256 with the development secret), as ``duban up``'s
# scripts may: accepted only where development sign-in is on, as here and under ``duban up``.
os.environ.setdefault("DUBAN_DEV_SIGNIN", "true")
# The suite starts a few hundred Python processes (every ``duban serve`` of every ``duban up``):
# each imports duban from its cached bytecode rather than compiling it again, even where the
# environment asks for no bytecode to be written (__pycache__ is ignored by git).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import nats
import pytest

from services.runtime.read.db import make_engine
from tests.support.nats import start_nats
from tests.support.postgres import create_database, start_postgres

sys.dont_write_bytecode = False  # and this process too (the test modules, rewritten by pytest)

#: every refusal any test provokes must be Chinese and in duban's shape; the longest files first,
#: each file (or group of files) in one worker; the duban up --demo that some files share
pytest_plugins = ["tests.support.chinese_errors", "tests.support.shared_up", "tests.support.scheduling"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    server = start_nats(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server) -> str:
    return nats_server.url


@pytest.fixture
async def nc(nats_url):
    client = await nats.connect(nats_url, name="duban-tests")
    yield client
    await client.close()


@pytest.fixture
def unique() -> str:
    """A fresh name, so that tests sharing a server never share a stream."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def postgres_server():
    handle, url, reason = start_postgres()
    if url is None:
        yield None, reason
        return
    yield url, reason
    handle.stop()


@pytest.fixture
def postgres_url(postgres_server, unique) -> str:
    base, reason = postgres_server
    if base is None:
        pytest.skip(f"no PostgreSQL: {reason}")
    return create_database(base, unique)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """Each projector test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'projection.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def spans():
    """Every span finished from now on in this test process, in memory (an SDK tracer provider
    is installed once per process; tests ``spans.clear()`` before what they trace)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.runtime.observe.telemetry import setup_tracing

    exporter = InMemorySpanExporter()
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    else:
        setup_tracing("tests", "331000", processors=[SimpleSpanProcessor(exporter)])
    return exporter
