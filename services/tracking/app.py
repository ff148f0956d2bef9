"""Wiring of one level's tracking: NATS, the event store, read models, intake's events, the
sweep and the HTTP API. The only module that knows all of them.

Tracking hears of matters only through intake's events on this level's INTAKE stream: a
``MatterRouted`` (本级办理) opens a case. It never calls intake; intake in turn reads this
level's TRACKING stream and records a closed case's outcome on its matter.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from contracts import subjects
from contracts.envelope import decode_commit
from contracts.evaluation import ResultsPublished
from contracts.events import upcast
from contracts.intake import MatterRouted
from contracts.jurisdictions import JurisdictionRegistry, default_registry
from services.runtime import service as runtime_service
from services.runtime.consumer import DurableWorker, carrying
from services.runtime.db import make_engine
from services.runtime.eventstore import EventStore
from services.runtime.levels import connect
from services.runtime.projector import Projector
from services.runtime.service import ServiceBase
from services.runtime.settings import Settings

from .api import create_api
from .deadlines import DeadlinePolicy, WorkingCalendar
from .evaluations import EvaluationResults
from .handlers import TrackingConfig, TrackingHandlers
from .projections import CaseHistoryProjection, CaseListProjection, DeputyGroupProjection, WorkItemProjection
from .sweep import Sweeper

log = logging.getLogger("duban.tracking")

CONTEXT = "tracking"
INTAKE = "intake"
EVALUATION = "evaluation"


def config_from(settings: Settings) -> TrackingConfig:
    """The deployment's tracking configuration from its settings (files named there are read now)."""
    policy = DeadlinePolicy.load(settings.deadlines_file) if settings.deadlines_file else DeadlinePolicy()
    return TrackingConfig(
        policy=policy,
        calendar=WorkingCalendar(settings.holidays_dir),
        reply_classes=tuple(settings.reply_classes),
        review_replies=settings.review_replies,
    )


class TrackingService(ServiceBase):
    """Everything one level's tracking runs; ``start()`` then ``stop()``."""

    context = CONTEXT

    def __init__(
        self,
        settings: Settings,
        *,
        registry: JurisdictionRegistry | None = None,
        config: TrackingConfig | None = None,
        clock=None,
    ) -> None:
        super().__init__(settings)
        self.registry = registry or default_registry()
        self.registry.get(settings.jurisdiction)
        self.config = config or config_from(settings)
        self.clock = clock
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))

    async def start(self, *, sweep: bool = True) -> None:
        self.nc = await connect(self.settings, CONTEXT)
        extra = {"clock": self.clock} if self.clock is not None else {}
        self.store = EventStore(self.nc, context=CONTEXT, jurisdiction=self.here, settings=self.settings, **extra)
        await self.store.ensure_streams()
        # The streams of intake and evaluation, as they create them, so tracking can start first.
        for other in (INTAKE, EVALUATION):
            await EventStore(self.nc, context=other, jurisdiction=self.here, settings=self.settings).ensure_streams()
        self.streams = [self.store.stream]
        self.handlers = TrackingHandlers(self.store, self.registry, self.config, **extra)
        self.evaluations = EvaluationResults(self.handlers, reopen_below_rate=self.settings.reopen_below_rate)
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
        listeners = [
            DurableWorker(
                self.nc,
                stream=subjects.event_stream(other, self.here),
                durable=durable,
                handle=handle,
                wants=carrying(wanted),
                jurisdiction=self.here,
                context=CONTEXT,
                span_name=f"{name} {subjects.event_subject_template(other)}",
                filter_subjects=[subjects.event_wildcard(other, self.here)],
                settings=self.settings,
            )
            for other, durable, handle, name, wanted in (
                (INTAKE, "tracking_intake_events", self.on_intake_event, "open case", MatterRouted.event_type),
                (
                    EVALUATION,
                    "tracking_evaluation_results",
                    self.evaluations.on_event,
                    "reopen case",
                    ResultsPublished.event_type,
                ),
            )
        ]
        self.sweeper = Sweeper(self.handlers, self.engine, interval_s=self.settings.sweep_interval_s)
        await self.run_workers([*self.projectors, *listeners])
        if sweep:
            self.run_task(self.sweeper.run, "sweep")
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

    async def stop(self) -> None:
        if hasattr(self, "sweeper"):
            self.sweeper.stop()
        await super().stop()
        await self.engine.dispose()


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's tracking until SIGINT/SIGTERM: read models, listeners, the sweep and HTTP."""
    service = TrackingService(settings)
    await runtime_service.serve(
        service,
        lambda: create_api(settings, handlers=lambda: service.handlers, engine=service.engine),
        host=host,
        port=port,
    )
