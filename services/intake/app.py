"""Wiring of one level's intake: NATS, the event store, read models, the bus between levels,
the HTTP API and the NATS command subject. The only module that knows all of them."""

from __future__ import annotations

import logging

from faststream.nats import NatsBroker

from contracts import subjects
from contracts.jurisdictions import JurisdictionRegistry, default_registry
from services.runtime import service as runtime_service
from services.runtime.bus import sources
from services.runtime.bus.levels import LevelTopology, connect, ensure_level_streams
from services.runtime.bus.mirrors import MirrorKeeper, kept_mirrors
from services.runtime.bus.nats_commands import documented_broker
from services.runtime.es.eventstore import EventStore
from services.runtime.read.db import make_engine
from services.runtime.service import ServiceBase
from services.runtime.settings import Settings

from .api import create_api
from .commands_nats import register_command_subscriber
from .handlers import IntakeHandlers
from .integration import CaseOutcomes, Inbox, Relay
from .projections import ActivityProjection, MatterHistoryProjection, MatterListProjection

log = logging.getLogger("duban.intake")

CONTEXT = "intake"
TRACKING = "tracking"


class IntakeService(ServiceBase):
    """Everything one level's intake runs; ``start()`` then ``stop()``."""

    def __init__(self, settings: Settings, *, registry: JurisdictionRegistry | None = None, context: str = CONTEXT):
        super().__init__(settings)
        self.registry = registry or default_registry()
        self.registry.get(settings.jurisdiction)  # an unknown code stops here, naming it
        self.context = context
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))

    async def start(self) -> None:
        self.nc = await connect(self.settings, CONTEXT, on_reconnected=self.reconnected)
        self.store = EventStore(self.nc, context=self.context, jurisdiction=self.here, settings=self.settings)
        await self.store.ensure_streams()
        await ensure_level_streams(self.store.js, self.here, self.registry, self.settings)
        # This level's tracking stream, as tracking creates it, so intake can start first.
        cases = EventStore(self.nc, context=TRACKING, jurisdiction=self.here, settings=self.settings)
        await cases.ensure_streams(snapshots=False)
        self.streams = [self.store.stream, subjects.outbox_stream(self.here), subjects.inbox_stream(self.here)]
        # the hub's intake reports the mirrors of the other levels' streams kept here (their lag),
        # and gets them going again as soon as a county's line is back (bus/mirrors.py)
        mirrored = LevelTopology().mirrored_levels
        self.mirrors = kept_mirrors(mirrored)
        self.handlers = IntakeHandlers(
            self.store, self.registry, cases=cases, cppcc_number_prefix=self.settings.cppcc_number_prefix
        )
        own = sources.events(self.context, self.here)
        await self.run_workers(
            [
                *(
                    self.projector(projection, own)
                    for projection in (MatterListProjection(), MatterHistoryProjection(), ActivityProjection())
                ),
                *await self.directory_projectors(),
                self.reactor(Relay(self.handlers), own, durable="intake_outbox_relay", verb="relay"),
                self.reactor(
                    Inbox(self.handlers), sources.inbox(self.here, *Inbox.KINDS), durable="intake_inbox", verb="receive"
                ),
                self.reactor(
                    CaseOutcomes(self.handlers),
                    sources.events(TRACKING, self.here),
                    durable="intake_tracking_events",
                    verb="record outcome",
                ),
            ]
        )
        if mirrored:
            self.run_task(MirrorKeeper(self.nc, mirrored).run, "mirror-keeper")
        log.info("intake started", extra={"jurisdiction": self.here})


def asyncapi_broker() -> NatsBroker:
    """Intake's FastStream broker as documentation: the command subject other systems call."""
    return documented_broker(register_command_subscriber)


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's intake until SIGINT/SIGTERM: workers, the NATS command subject and HTTP."""
    await runtime_service.serve_service(
        IntakeService(settings), create_api, host=host, port=port, commands=register_command_subscriber
    )
