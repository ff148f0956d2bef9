"""Wiring of one level's intake: NATS, the event store, read models, the bus between levels,
the HTTP API and the NATS command subject. The only module that knows all of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
import uvicorn
from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS

from contracts import integration as x
from contracts import subjects
from contracts.jurisdictions import JurisdictionRegistry, default_registry
from services.runtime.consumer import DurableWorker
from services.runtime.db import make_engine
from services.runtime.eventstore import EventStore
from services.runtime.levels import ensure_level_streams
from services.runtime.projector import Projector
from services.runtime.settings import Settings

from .api import create_api
from .commands_nats import register_command_subscriber
from .handlers import IntakeHandlers
from .integration import IntakeIntegration
from .projections import ActivityProjection, MatterHistoryProjection, MatterListProjection

log = logging.getLogger("duban.intake")

CONTEXT = "intake"
TRACKING = "tracking"


class IntakeService:
    """Everything one level's intake runs; ``start()`` then ``stop()``."""

    def __init__(self, settings: Settings, *, registry: JurisdictionRegistry | None = None, context: str = CONTEXT):
        self.settings = settings
        self.registry = registry or default_registry()
        self.registry.get(settings.jurisdiction)  # an unknown code stops here, naming it
        self.here = settings.jurisdiction
        self.context = context
        self.nc: NATS | None = None
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.nc = await nats.connect(
            self.settings.nats_url, name=f"duban-intake-{self.here}", max_reconnect_attempts=-1
        )
        self.store = EventStore(self.nc, context=self.context, jurisdiction=self.here, settings=self.settings)
        await self.store.ensure_streams()
        await ensure_level_streams(self.store.js, self.here, self.registry, self.settings)
        self.handlers = IntakeHandlers(self.store, self.registry)
        self.integration = IntakeIntegration(self.handlers)
        self.projectors = [
            Projector(
                self.nc,
                projection,
                self.engine,
                stream=self.store.stream,
                filter_subjects=[subjects.event_wildcard(self.context, self.here)],
                jurisdiction=self.here,
                context=self.context,
                settings=self.settings,
            )
            for projection in (MatterListProjection(), MatterHistoryProjection(), ActivityProjection())
        ]
        self.relay = DurableWorker(
            self.nc,
            stream=self.store.stream,
            durable="intake_outbox_relay",
            handle=self.integration.relay,
            jurisdiction=self.here,
            context=self.context,
            span_name=f"relay {subjects.event_subject_template(self.context)}",
            settings=self.settings,
        )
        self.inbox = DurableWorker(
            self.nc,
            stream=subjects.inbox_stream(self.here),
            durable="intake_inbox",
            handle=self.integration.receive,
            jurisdiction=self.here,
            context=self.context,
            span_name="receive duban.x.{to}.{from}.{kind}",
            filter_subjects=[
                f"duban.x.{self.here}.*.{kind}" for kind in (x.KIND_HANDED_OVER, x.KIND_TAKEN_IN, x.KIND_OUTCOME)
            ],
            settings=self.settings,
        )
        # This level's tracking stream, as tracking creates it, so intake can start first.
        await EventStore(self.nc, context=TRACKING, jurisdiction=self.here, settings=self.settings).ensure_streams()
        self.tracking = DurableWorker(
            self.nc,
            stream=subjects.event_stream(TRACKING, self.here),
            durable="intake_tracking_events",
            handle=self.integration.tracking_event,
            jurisdiction=self.here,
            context=self.context,
            span_name=f"record outcome {subjects.event_subject_template(TRACKING)}",
            filter_subjects=[subjects.event_wildcard(TRACKING, self.here)],
            settings=self.settings,
        )
        for worker in self.workers:
            await worker.prepare()
            self._tasks.append(asyncio.create_task(self._keep_running(worker), name=f"intake-{type(worker).__name__}"))
        log.info("intake started", extra={"jurisdiction": self.here})

    @property
    def workers(self) -> list:
        return [*self.projectors, self.relay, self.inbox, self.tracking]

    async def _keep_running(self, worker) -> None:
        """A worker that fails is logged and restarted, never silently gone."""
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker failed, restarting", extra={"worker": type(worker).__name__})
                await asyncio.sleep(1.0)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until read models, relay and inbox have handled everything waiting now."""
        js = self.store.js
        consumers = [(p.stream, p.durable) for p in self.projectors]
        consumers += [(w.stream, w.durable) for w in (self.relay, self.inbox, self.tracking)]
        async with asyncio.timeout(timeout):
            for stream, durable in consumers:
                while True:
                    info = await js.consumer_info(stream, durable)
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
                    await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.nc is not None:
            await self.nc.close()
        await self.engine.dispose()


def asyncapi_broker() -> NatsBroker:
    """Intake's FastStream broker as documentation: the command subject other systems call."""
    broker = NatsBroker()
    register_command_subscriber(broker, lambda: None, Settings(jurisdiction="331000"))
    return broker


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's intake until SIGINT/SIGTERM: workers, the NATS command subject and HTTP.

    uvicorn stops taking requests and finishes those in flight on SIGTERM; then the command
    subscriber drains and the workers stop after their current batch."""
    service = IntakeService(settings)
    await service.start()
    broker = NatsBroker(settings.nats_url)
    register_command_subscriber(broker, lambda: service.handlers, settings)
    await broker.start()
    api = create_api(settings, handlers=lambda: service.handlers, engine=service.engine)
    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_config=None, access_log=False))
    log.info("intake serving", extra={"jurisdiction": settings.jurisdiction, "url": f"http://{host}:{port}"})
    try:
        await server.serve()
    finally:
        await broker.stop()
        await service.stop()
