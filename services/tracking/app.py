"""Wiring of one level's tracking: NATS, the event store, read models, intake's events, the
sweep and the HTTP API. The only module that knows all of them.

Tracking hears of matters only through intake's events on this level's INTAKE stream: a
``MatterRouted`` (本级办理) opens a case. It never calls intake; intake in turn reads this
level's TRACKING stream and records a closed case's outcome on its matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
import uvicorn
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts import subjects
from contracts.envelope import decode_commit
from contracts.events import upcast
from contracts.intake import MatterRouted
from contracts.jurisdictions import JurisdictionRegistry, default_registry
from services.runtime.consumer import DurableWorker
from services.runtime.db import make_engine
from services.runtime.eventstore import EventStore
from services.runtime.projector import Projector
from services.runtime.settings import Settings

from .api import create_api
from .deadlines import DeadlinePolicy, WorkingCalendar
from .handlers import TrackingConfig, TrackingHandlers
from .projections import CaseHistoryProjection, CaseListProjection, DeputyGroupProjection, WorkItemProjection
from .sweep import Sweeper

log = logging.getLogger("duban.tracking")

CONTEXT = "tracking"
INTAKE = "intake"


def config_from(settings: Settings) -> TrackingConfig:
    """The deployment's tracking configuration from its settings (files named there are read now)."""
    policy = DeadlinePolicy.load(settings.deadlines_file) if settings.deadlines_file else DeadlinePolicy()
    return TrackingConfig(
        policy=policy,
        calendar=WorkingCalendar(settings.holidays_dir),
        reply_classes=tuple(settings.reply_classes),
        review_replies=settings.review_replies,
    )


class TrackingService:
    """Everything one level's tracking runs; ``start()`` then ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: JurisdictionRegistry | None = None,
        config: TrackingConfig | None = None,
        clock=None,
    ) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.registry.get(settings.jurisdiction)
        self.here = settings.jurisdiction
        self.config = config or config_from(settings)
        self.clock = clock
        self.nc: NATS | None = None
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))
        self._tasks: list[asyncio.Task] = []

    async def start(self, *, sweep: bool = True) -> None:
        self.nc = await nats.connect(
            self.settings.nats_url, name=f"duban-tracking-{self.here}", max_reconnect_attempts=-1
        )
        extra = {"clock": self.clock} if self.clock is not None else {}
        self.store = EventStore(self.nc, context=CONTEXT, jurisdiction=self.here, settings=self.settings, **extra)
        await self.store.ensure_streams()
        # Intake's stream, as intake creates it, so this level's tracking can start first.
        await EventStore(self.nc, context=INTAKE, jurisdiction=self.here, settings=self.settings).ensure_streams()
        self.handlers = TrackingHandlers(self.store, self.registry, self.config, **extra)
        self.projectors = [
            Projector(
                self.nc,
                projection,
                self.engine,
                stream=self.store.stream,
                filter_subjects=[subjects.event_wildcard(CONTEXT, self.here)],
                jurisdiction=self.here,
                context=CONTEXT,
                settings=self.settings,
            )
            for projection in (
                CaseListProjection(),
                CaseHistoryProjection(),
                WorkItemProjection(),
                DeputyGroupProjection(),
            )
        ]
        self.intake_events = DurableWorker(
            self.nc,
            stream=subjects.event_stream(INTAKE, self.here),
            durable="tracking_intake_events",
            handle=self.on_intake_event,
            jurisdiction=self.here,
            context=CONTEXT,
            span_name=f"open case {subjects.event_subject_template(INTAKE)}",
            filter_subjects=[subjects.event_wildcard(INTAKE, self.here)],
            settings=self.settings,
        )
        self.sweeper = Sweeper(self.handlers, self.engine, interval_s=self.settings.sweep_interval_s)
        workers = [*self.projectors, self.intake_events]
        for worker in workers:
            await worker.prepare()
            self._tasks.append(asyncio.create_task(self._keep_running(worker), name=f"tracking-{worker.durable}"))
        if sweep:
            self._tasks.append(asyncio.create_task(self.sweeper.run(), name="tracking-sweep"))
        log.info("tracking started", extra={"jurisdiction": self.here})

    async def on_intake_event(self, msg: Msg) -> None:
        """A commit of intake at this level: a routed matter opens its case here."""
        types = (msg.headers or {}).get("Duban-Event-Types", "")
        if MatterRouted.event_type not in types.split(","):
            return
        for envelope in decode_commit(msg.data):
            if envelope.event_type == MatterRouted.event_type:
                routed = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
                await self.handlers.open_case(routed, envelope)
                log.info("case opened", extra={"matter_id": envelope.aggregate_id})

    async def _keep_running(self, worker) -> None:
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker failed, restarting", extra={"worker": worker.durable})
                await asyncio.sleep(1.0)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the read models and the intake listener have handled everything waiting now."""
        js = self.store.js
        async with asyncio.timeout(timeout):
            for worker in (*self.projectors, self.intake_events):
                while True:
                    info = await js.consumer_info(worker.stream, worker.durable)
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
                    await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.sweeper.stop()
        for worker in (*self.projectors, self.intake_events):
            worker.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.nc is not None:
            await self.nc.close()
        await self.engine.dispose()


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's tracking until SIGINT/SIGTERM: workers, the sweep and HTTP."""
    service = TrackingService(settings)
    await service.start()
    api = create_api(settings, handlers=lambda: service.handlers, engine=service.engine)
    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_config=None, access_log=False))
    log.info("tracking serving", extra={"jurisdiction": settings.jurisdiction, "url": f"http://{host}:{port}"})
    try:
        await server.serve()
    finally:
        await service.stop()
