"""Wiring of one level's notify: NATS, the event store, the read models, the listeners on intake's,
tracking's and evaluation's streams of this level, the sender, the summary sweep, the bus to the
level above and the HTTP API. The only module that knows all of them.

Notify hears of everything through events: it reads this level's INTAKE, TRACKING and EVALUATION
streams (each through its own durable consumer, created idempotently; the streams are created
here too, as their producers create them, so notify can start first) and this level's INBOX
(the monthly summaries lower levels report). It never calls another service, except to hand a
public comment to intake through intake's public command subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from contracts import integration as x
from contracts import notify as n
from contracts import subjects
from contracts.envelope import SHANGHAI, utcnow
from contracts.jurisdictions import JurisdictionRegistry, Level, default_registry
from services.runtime import service as runtime_service
from services.runtime.bus import sources
from services.runtime.bus.consumer import carrying
from services.runtime.bus.levels import connect, ensure_level_streams
from services.runtime.es.eventstore import EventStore
from services.runtime.read import people
from services.runtime.read.db import make_engine
from services.runtime.service import ServiceBase
from services.runtime.settings import Settings
from services.runtime.tasks import cancel_and_wait

from . import projections as p
from .api import create_api
from .channels import EmailChannel, WebhookChannel
from .dispatch import REQUESTS, Dispatcher, DispatchWorker
from .domain import previous_month
from .handlers import CommentForwarding, NotifyHandlers, PlannedNotices, SummaryRelay
from .notices import NoticePlanner
from .settings import NotifySettings
from .texts import Templates

log = logging.getLogger("duban.notify")

CONTEXT = "notify"
#: The contexts of this level whose events call for notices.
SOURCES = ("intake", "tracking", "evaluation")
#: The day of the next month each level reports its summary by, unless configured.
REPORT_DAY = {Level.TOWNSHIP: 5, Level.COUNTY: 10}


class NotifyService(ServiceBase):
    """Everything one level's notify runs; ``start()`` then ``stop()``."""

    context = CONTEXT
    settings_class = NotifySettings
    settings: NotifySettings

    def __init__(
        self,
        settings: NotifySettings,
        *,
        registry: JurisdictionRegistry | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(settings)
        self.registry = registry or default_registry()
        self.registry.get(settings.jurisdiction)
        self.clock = clock or utcnow
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))
        self._stopping = asyncio.Event()

    # -- start -------------------------------------------------------------------------
    async def start(self, *, sweep: bool = True) -> None:
        settings = self.settings
        self.nc = await connect(settings, CONTEXT, on_reconnected=self.reconnected)
        self.store = EventStore(self.nc, context=CONTEXT, jurisdiction=self.here, settings=settings, clock=self.clock)
        await self.store.ensure_streams()
        self.sources = {
            context: EventStore(self.nc, context=context, jurisdiction=self.here, settings=settings)
            for context in SOURCES
        }
        for source in self.sources.values():
            await source.ensure_streams(snapshots=False)
        await ensure_level_streams(self.store.js, self.here, self.registry, settings)
        self.streams = [self.store.stream, subjects.inbox_stream(self.here), subjects.outbox_stream(self.here)]
        self.templates = Templates(settings.templates_dir)
        self.handlers = NotifyHandlers(
            self.store, self.engine, self.registry, settings, self.templates, clock=self.clock
        )
        self.planner = NoticePlanner(
            self.here,
            self.registry,
            self.sources,
            self.clock,
            known_here=self.person_here,
            person_name=self.person_name,
        )
        self.senders: dict = {
            n.NoticeChannel.webhook: WebhookChannel(
                secret=settings.webhook_secret, timeout_s=settings.webhook_timeout_s
            )
        }
        if settings.smtp_host:
            self.senders[n.NoticeChannel.email] = EmailChannel(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.mail_from,
                username=settings.smtp_username,
                password=settings.smtp_password,
                starttls=settings.smtp_starttls,
                use_tls=settings.smtp_tls,
                timeout_s=settings.smtp_timeout_s,
                domain=f"duban-{self.here}",
            )
        # Leases are real time, whatever the business clock says (tests move that one by hand).
        self.dispatcher = Dispatcher(self.store, self.senders, lease_s=settings.send_lease_s, clock=utcnow)

        own, intake, tracking, evaluation = (sources.events(c, self.here) for c in (CONTEXT, *SOURCES))
        self.projectors = [
            *(
                self.projector(projection, own)
                for projection in (
                    p.DirectoryProjection(),
                    p.DeliveryProjection(),
                    p.SummaryProjection(),
                    p.DisclosureProjection(),
                    p.CommentProjection(),
                )
            ),
            self.projector(p.MatterProjection(), intake),
            self.projector(p.ActivityProjection(), intake),
            self.projector(p.CaseProjection(), tracking),
            self.projector(p.GroupActivityProjection(), tracking),
            self.projector(p.EvaluationProjection(), evaluation),
            self.projector(p.ReportedSummaryProjection(), sources.inbox(self.here, x.KIND_MONTHLY_SUMMARY)),
        ]
        # The directory first: notices planned from the first event already find their recipients.
        directory = self.projectors[0]
        await directory.prepare()
        if settings.directory_file is not None:
            loaded = await self.handlers.load_directory(settings.directory_file)
            log.info("directory file applied", extra={"recorded": loaded, "file": str(settings.directory_file)})
        await directory.catch_up()

        noticed = PlannedNotices(self.planner, self.handlers)
        self.listeners = [
            self.reactor(noticed, sources.events(c, self.here), durable=f"notify_{c}_events", verb="plan notices")
            for c in SOURCES
        ]
        self.sender = DispatchWorker(
            self.nc,
            stream=self.store.stream,
            durable="notify_send",
            dispatcher=self.dispatcher,
            retry_base_s=settings.retry_base_s,
            retry_max_s=settings.retry_max_s,
            ack_wait_s=settings.send_ack_wait_s,
            concurrency=8,
            jurisdiction=self.here,
            context=CONTEXT,
            span_name=f"send {own.span_subject}",
            filter_subjects=list(own.filter_subjects),
            wants=carrying(*REQUESTS),
            settings=settings.model_copy(update={"max_deliver": settings.delivery_attempts}),
            batch=20,
        )
        self.relay = self.reactor(SummaryRelay(self.handlers), own, durable="notify_summary_relay", verb="relay")
        self.comments = self.reactor(
            CommentForwarding(self.handlers), own, durable="notify_public_comments", verb="forward comment"
        )
        await self.run_workers(
            [
                *self.projectors,
                *await self.directory_projectors(),
                *self.listeners,
                self.sender,
                self.relay,
                self.comments,
            ]
        )
        if sweep:
            self._stopping.clear()  # a start tried again after a failed one (NATS not back yet)
            self.run_task(self._sweep_forever, "summary-sweep")
        log.info("notify started", extra={"jurisdiction": self.here, "channels": sorted(self.senders)})

    async def person_here(self, person_id: str) -> bool:
        """Whether ``person_id`` is a person of this level's directory (they sign in here)."""
        return await people.find_person(self.engine, person_id) is not None

    async def person_name(self, person_id: str) -> str | None:
        """The name of ``person_id`` in this level's directory (名册), None when it has no such person."""
        person = await people.find_person(self.engine, person_id)
        return (person or {}).get("name") or None

    # -- the monthly summary sweep -----------------------------------------------------
    def report_day(self) -> int | None:
        if self.settings.summary_report_day is not None:
            return self.settings.summary_report_day
        return REPORT_DAY.get(self.registry.get(self.here).level)

    async def sweep_once(self, now: datetime | None = None) -> int | None:
        """From its report day on, compile last month's summary (a new revision only when
        something changed, e.g. a township's late report). Returns the revision, if any."""
        day = self.report_day()
        if day is None or self.registry.parent_of(self.here) is None:
            return None
        today = (now or self.clock()).astimezone(SHANGHAI).date()
        if today.day < day:
            return None
        summary = await self.handlers.compile_summary(previous_month(today))
        return summary.revision

    async def _sweep_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep_once()
            except Exception:
                log.exception("summary sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.summary_interval_s)

    # -- running -----------------------------------------------------------------------
    async def stop(self) -> None:
        self._stopping.set()
        await super().stop()
        webhook = getattr(self, "senders", {}).get(n.NoticeChannel.webhook)
        if webhook is not None:
            await webhook.close()

    async def halt(self) -> None:
        """Stop at once, as a crash would, without finishing the batch in hand (fault tests): a
        send under way is cut off, and its message given back to the server."""
        self._stopping.set()
        for worker in self.workers:
            worker.stop()  # so a worker whose cancellation nats-py turns into a timeout still ends
        # cancelled until they end (``tasks.cancel_and_wait``: a cancellation can be lost in
        # nats-py's waits on 3.11), what they raised on the way out kept for no one
        await asyncio.gather(*(cancel_and_wait(task) for task in self._tasks), return_exceptions=True)
        self._tasks.clear()
        await self.stop()


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's notify until SIGINT/SIGTERM: read models, listeners, the sender, the
    summary sweep and HTTP. ``duban serve`` gives the runtime's settings; notify's own (SMTP,
    webhook key, directory file…) come from the same environment."""
    await runtime_service.serve_service(NotifyService(settings), create_api, host=host, port=port)
