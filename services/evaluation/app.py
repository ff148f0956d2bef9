"""Wiring of one level's evaluation: NATS, the event store, read models, the ballot subject for
hall terminals, the closing of sessions by time, and the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from faststream.nats import NatsBroker
from sqlalchemy import and_, or_, select

from contracts.evaluation import CloseSession, PublishResults
from services.runtime import service as runtime_service
from services.runtime.bus import sources
from services.runtime.bus.levels import connect
from services.runtime.bus.nats_commands import documented_broker
from services.runtime.es.eventstore import EventStore
from services.runtime.read import people
from services.runtime.read.db import make_engine
from services.runtime.service import ServiceBase
from services.runtime.settings import Settings

from .api import create_api
from .commands_nats import register_command_subscriber
from .handlers import EvaluationHandlers, load_rosters
from .projections import SessionProjection, TurnoutProjection, sessions
from .settings import EvaluationSettings

log = logging.getLogger("duban.evaluation")

CONTEXT = "evaluation"


class EvaluationService(ServiceBase):
    """Everything one level's evaluation runs; ``start()`` then ``stop()``."""

    context = CONTEXT
    settings_class = EvaluationSettings
    settings: EvaluationSettings

    def __init__(
        self, settings: Settings, *, clock: Callable[[], datetime] | None = None, status_ttl_s: float = 1.0
    ) -> None:
        super().__init__(settings)
        self.clock = clock
        self.status_ttl_s = status_ttl_s
        self.engine = make_engine(settings.sqlalchemy_url(CONTEXT))
        self._stopping = asyncio.Event()

    async def start(self, *, close_by_time: bool = True) -> None:
        self.nc = await connect(self.settings, CONTEXT, on_reconnected=self.reconnected)
        extra = {"clock": self.clock} if self.clock is not None else {}
        self.store = EventStore(self.nc, context=CONTEXT, jurisdiction=self.here, settings=self.settings, **extra)
        await self.store.ensure_streams()
        self.streams = [self.store.stream]
        self.handlers = EvaluationHandlers(
            self.store,
            ballot_key=self.settings.ballot_secret.encode(),
            rosters=load_rosters(self.settings.rosters_file),
            status_ttl_s=self.status_ttl_s,
            directory=self.group_members,
            **extra,
        )
        own = sources.events(CONTEXT, self.here)
        await self.run_workers(
            [
                *(self.projector(projection, own) for projection in (SessionProjection(), TurnoutProjection())),
                *await self.directory_projectors(),
            ]
        )
        if close_by_time:
            self._stopping.clear()
            self.run_task(self._close_by_time, "close-by-time")
        log.info("evaluation started", extra={"jurisdiction": self.here})

    async def group_members(self, org_id: str) -> list[str] | None:
        """The enabled members of a group of this level's directory; None if it has no such group."""
        if not any(o["id"] == org_id for o in await people.list_orgs(self.engine)):
            return None
        return [p["id"] for p in await people.members_of(self.engine, org_id)]

    async def close_due(self) -> int:
        """Close (and publish) every open session whose closing time has passed, and publish the
        results of any closed session that has none (a stop or crash between the close and the
        publication left it so); how many sessions were handled."""
        now = self.handlers.clock()
        due_or_unpublished = or_(
            and_(sessions.c.status == "opened", sessions.c.closes_at <= now), sessions.c.status == "closed"
        )
        async with self.engine.connect() as conn:
            found = [
                (row.id, row.status)
                for row in await conn.execute(select(sessions.c.id, sessions.c.status).where(due_or_unpublished))
            ]
        for session_id, status in found:
            try:
                if status == "opened":
                    await self.handlers.close(CloseSession(session_id=session_id))
                    log.info("session closed by time", extra={"session_id": session_id})
                else:
                    # possibly closed by staff a moment ago, their publication still to come: the
                    # same grace as after any close, so a sheet checked before it is counted
                    await asyncio.sleep(self.handlers.status_ttl_s * 2)
                    await self.handlers.publish(PublishResults(session_id=session_id))
                    log.info("results of a closed session published", extra={"session_id": session_id})
            except Exception:
                log.exception("closing a session by time failed", extra={"session_id": session_id})
        return len(found)

    async def _close_by_time(self) -> None:
        """Every ``session_check_interval_s`` until stopped; a close in hand is finished (its
        results published) before the loop ends. Should a process die between a close and its
        publication, the next check, here or in the next process, publishes the results."""
        while not self._stopping.is_set():
            try:
                await self.close_due()
            except Exception:
                log.exception("close-by-time check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.session_check_interval_s)

    async def stop(self) -> None:
        # The runtime waits for its tasks to end before cancelling them: this one ends when told.
        self._stopping.set()
        await super().stop()


def asyncapi_broker() -> NatsBroker:
    """Evaluation's FastStream broker as documentation: the ballot subject of hall terminals."""
    return documented_broker(register_command_subscriber)


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's evaluation until SIGINT/SIGTERM: read models, the ballot subject, HTTP."""
    await runtime_service.serve_service(
        EvaluationService(settings), create_api, host=host, port=port, commands=register_command_subscriber
    )
