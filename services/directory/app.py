"""Wiring of one level's directory (名册): NATS, the event store, its read models, the people
seeded at start, sign-in and the HTTP API.

The directory owns the events of the level's people and organisations; every other service
reads them into its own projection (``ServiceBase.directory_projectors``). It also issues the
level's tokens, which every service verifies with its JWKS.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from contracts.directory import EnrollOrg, EnrollPerson, Org, Person
from contracts.jurisdictions import JurisdictionRegistry, default_registry
from services.runtime import service as runtime_service
from services.runtime.bus import sources
from services.runtime.bus.levels import connect
from services.runtime.es.eventstore import EventStore
from services.runtime.http.auth import Principal, Role
from services.runtime.read.db import make_engine
from services.runtime.service import ServiceBase
from services.runtime.settings import Settings

from .api import create_api
from .dev import dev_directory
from .handlers import DirectoryHandlers
from .keys import KeyRing
from .projections import PROJECTIONS, sessions_metadata
from .settings import DirectorySettings
from .signin import SignIn

log = logging.getLogger("duban.directory")

CONTEXT = "directory"
#: The demo's people (seed 004's deputy groups of 温岭市 and their deputies): ``duban up`` loads it.
DEMO_FILE = Path(__file__).parent / "data" / "demo_directory.json"


class DirectoryService(ServiceBase):
    """Everything one level's directory runs; ``start()`` then ``stop()``."""

    context = CONTEXT
    settings_class = DirectorySettings
    settings: DirectorySettings

    def __init__(self, settings: Settings, *, registry: JurisdictionRegistry | None = None) -> None:
        super().__init__(settings)
        self.registry = registry or default_registry()
        self.registry.get(settings.jurisdiction)
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))
        self.ring = KeyRing(self.settings.keys_file())
        self.signin = SignIn(self.settings, self.engine, self.ring)

    async def start(self) -> None:
        self.ring.keys()  # the key file exists (created on first start) before anyone asks
        async with self.engine.begin() as conn:
            await conn.run_sync(sessions_metadata.create_all)
        self.nc = await connect(self.settings, CONTEXT, on_reconnected=self.reconnected)
        self.store = EventStore(self.nc, context=CONTEXT, jurisdiction=self.here, settings=self.settings)
        await self.store.ensure_streams()
        self.streams = [self.store.stream]
        self.handlers = DirectoryHandlers(self.store, self.engine, self.registry)
        own = sources.events(CONTEXT, self.here)
        await self.run_workers([self.projector(projection(), own) for projection in PROJECTIONS])
        if self.background and self.settings.dev_signin:
            await seed(self.handlers, dev_directory(self.registry.get(self.here)), "development people")
        if self.background and self.settings.seed_file is not None:
            await seed(self.handlers, read_seed(self.settings.seed_file, self.here), str(self.settings.seed_file))
        log.info("directory started", extra={"jurisdiction": self.here})


def seed_actor(here: str) -> Principal:
    return Principal(id="directory-seed", name="名册初始化", roles=[Role.admin], jurisdiction=here)


def read_seed(path: Path, here: str) -> dict[str, Any]:
    """This level's part of a seed file (``{"<code>": {"orgs": [...], "people": [...]}}``)."""
    return json.loads(Path(path).read_text(encoding="utf-8")).get(here, {})


async def seed(handlers: DirectoryHandlers, data: dict[str, Any], source: str) -> dict[str, int]:
    """Enrol the organisations and people of ``data`` (``{"orgs": [...], "people": [...]}``),
    idempotently: a second start adds nothing."""
    actor = seed_actor(handlers.here)
    for org in data.get("orgs", []):
        await handlers.enroll_org(EnrollOrg(org=Org.model_validate(org)), actor)
    for person in data.get("people", []):
        await handlers.enroll_person(EnrollPerson(person=Person.model_validate(person)), actor)
    counts = {"orgs": len(data.get("orgs", [])), "people": len(data.get("people", []))}
    log.info("directory seeded", extra={"source": source, **counts})
    return counts


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's directory until SIGINT/SIGTERM: read models, sign-in, HTTP."""
    service = DirectoryService(settings)
    await runtime_service.serve(
        service,
        lambda: create_api(
            service.settings, handlers=lambda: service.handlers, engine=service.engine, signin=service.signin
        ),
        host=host,
        port=port,
    )
