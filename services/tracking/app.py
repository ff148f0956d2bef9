"""Wiring of one level's tracking: NATS, the event store, read models, intake's events, the
sweep and the HTTP API. The only module that knows all of them.

Tracking hears of matters only through intake's events on this level's INTAKE stream: a
``MatterRouted`` (本级办理) opens a case. It never calls intake; intake in turn reads this
level's TRACKING stream and records a closed case's outcome on its matter.
"""

from __future__ import annotations

import logging

from contracts.jurisdictions import JurisdictionRegistry, default_registry
from services.runtime import service as runtime_service
from services.runtime.bus import sources
from services.runtime.bus.levels import connect
from services.runtime.es.eventstore import EventStore
from services.runtime.read.db import make_engine
from services.runtime.service import ServiceBase
from services.runtime.settings import Settings

from .api import create_api
from .deadlines import DeadlinePolicy, WorkingCalendar
from .evaluations import EvaluationResults
from .handlers import RoutedMatters, TrackingConfig, TrackingHandlers
from .plans import PlanHandlers
from .projections import (
    CaseHistoryProjection,
    CaseListProjection,
    DeputyGroupProjection,
    PlanMattersProjection,
    PlanProjection,
)
from .settings import TrackingSettings
from .sweep import Sweeper

log = logging.getLogger("duban.tracking")

CONTEXT = "tracking"
INTAKE = "intake"
EVALUATION = "evaluation"


def config_from(settings: TrackingSettings) -> TrackingConfig:
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
    settings_class = TrackingSettings
    settings: TrackingSettings

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
        self.config = config or config_from(self.settings)
        self.clock = clock
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))

    async def start(self, *, sweep: bool = True) -> None:
        self.nc = await connect(self.settings, CONTEXT, on_reconnected=self.reconnected)
        extra = {"clock": self.clock} if self.clock is not None else {}
        self.store = EventStore(self.nc, context=CONTEXT, jurisdiction=self.here, settings=self.settings, **extra)
        await self.store.ensure_streams()
        # The streams of intake and evaluation, as they create them, so tracking can start first.
        for other in (INTAKE, EVALUATION):
            other_store = EventStore(self.nc, context=other, jurisdiction=self.here, settings=self.settings)
            await other_store.ensure_streams(snapshots=False)
        self.streams = [self.store.stream]
        self.handlers = TrackingHandlers(self.store, self.registry, self.config, **extra)
        self.plans = self.handlers.plans = PlanHandlers(self.handlers, self.engine, **extra)
        self.evaluations = EvaluationResults(
            self.handlers, self.plans, reopen_below_rate=self.settings.reopen_below_rate
        )
        own = sources.events(CONTEXT, self.here)
        self.sweeper = Sweeper(self.handlers, self.engine, plans=self.plans, interval_s=self.settings.sweep_interval_s)
        await self.run_workers(
            [
                *(
                    self.projector(projection, own)
                    for projection in (
                        CaseListProjection(),
                        CaseHistoryProjection(),
                        PlanProjection(),
                        DeputyGroupProjection(),
                    )
                ),
                self.projector(PlanMattersProjection(), sources.events(INTAKE, self.here)),
                *await self.directory_projectors(),
                self.reactor(
                    RoutedMatters(self.handlers),
                    sources.events(INTAKE, self.here),
                    durable="tracking_intake_events",
                    verb="open case",
                ),
                self.reactor(
                    self.evaluations,
                    sources.events(EVALUATION, self.here),
                    durable="tracking_evaluation_results",
                    verb="reopen case",
                ),
            ]
        )
        if sweep:
            self.run_task(self.sweeper.run, "sweep")
        log.info("tracking started", extra={"jurisdiction": self.here})

    async def stop(self) -> None:
        if hasattr(self, "sweeper"):
            self.sweeper.stop()
        await super().stop()


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's tracking until SIGINT/SIGTERM: read models, listeners, the sweep and HTTP."""
    await runtime_service.serve_service(TrackingService(settings), create_api, host=host, port=port)
