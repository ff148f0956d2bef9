"""Intake between levels: the outbox relay and the inbox.

The relay reads this level's INTAKE stream and, for the events another level must hear of,
publishes an integration event to this level's OUTBOX (``Nats-Msg-Id`` derived from the source
event, so a redelivery is stored once):

- ``MatterEscalated`` / ``MatterSentDown`` → ``x.MatterHandedOver`` to the receiving level;
- ``MatterReceived`` → ``x.MatterTakenIn`` back to the sender (its path learns our id);
- ``OutcomeRecorded`` on a matter that came from another level → ``x.OutcomeReportedBack`` to it,
  which records it and, if its matter came from further away, passes it on: so a township sees
  the outcome of what Taizhou handled.

The inbox reads this level's INBOX and runs the matching handler; handlers are idempotent.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from contracts import integration as x
from contracts.envelope import Envelope, decode_commit
from contracts.events import Event, upcast
from contracts.intake import Hop, MatterEscalated, MatterReceived, MatterSentDown, OutcomeRecorded
from contracts.tracking import CaseClosed
from services.runtime.levels import send_to_level

from .domain import Matter
from .handlers import IntakeHandlers, derived_id

log = logging.getLogger("duban.intake.integration")

RELAYED = {MatterEscalated.event_type, MatterSentDown.event_type, MatterReceived.event_type, OutcomeRecorded.event_type}


class IntakeIntegration:
    def __init__(self, handlers: IntakeHandlers) -> None:
        self.handlers = handlers
        self.store = handlers.store
        self.here = handlers.here
        self.js = self.store.js

    # -- outbox ------------------------------------------------------------------------
    async def relay(self, msg: Msg) -> None:
        """Handle one stored commit of the INTAKE stream (at least once; publishing is idempotent)."""
        types = (msg.headers or {}).get("Duban-Event-Types", "")
        if not RELAYED.intersection(types.split(",")):
            return
        for envelope in decode_commit(msg.data):
            if envelope.event_type in RELAYED:
                for to, kind, message in await self._translate(envelope):
                    await self._publish(envelope, to, kind, message)

    async def _translate(self, envelope: Envelope) -> list[tuple[str, str, Event]]:
        event = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
        here = Hop(jurisdiction=self.here, matter_id=envelope.aggregate_id)
        if isinstance(event, MatterEscalated | MatterSentDown):
            matter = await self.store.load(Matter, envelope.aggregate_id)
            assert matter.data is not None
            direction = "up" if isinstance(event, MatterEscalated) else "down"
            path = matter.path  # the hops before this level
            message = x.MatterHandedOver(
                matter=matter.data.model_copy(update={"co_signers": matter.submitters[1:]}),
                origin=here,
                direction=direction,
                path=path,
                reason=event.reason,
            )
            return [(event.to, x.KIND_HANDED_OVER, message)]
        if isinstance(event, MatterReceived):
            return [
                (event.origin.jurisdiction, x.KIND_TAKEN_IN, x.MatterTakenIn(origin=event.origin, taken_in_as=here))
            ]
        if isinstance(event, OutcomeRecorded):
            matter = await self.store.load(Matter, envelope.aggregate_id)
            if matter.origin is None:
                return []  # raised here: nobody to report back to
            message = x.OutcomeReportedBack(origin=matter.origin, handled_in=event.handled_in, outcome=event.outcome)
            return [(matter.origin.jurisdiction, x.KIND_OUTCOME, message)]
        return []

    async def _publish(self, source: Envelope, to: str, kind: str, message: Event) -> None:
        await send_to_level(
            self.js,
            here=self.here,
            to=to,
            kind=kind,
            message=message,
            source=source,
            event_id=derived_id(source.event_id, kind),
            aggregate_type="matter",
        )
        log.info("integration event sent", extra={"to": to, "kind": kind, "matter_id": source.aggregate_id})

    # -- this level's tracking ------------------------------------------------------------
    async def tracking_event(self, msg: Msg) -> None:
        """A commit of this level's tracking: a closed case is its matter's outcome."""
        types = (msg.headers or {}).get("Duban-Event-Types", "")
        if CaseClosed.event_type not in types.split(","):
            return
        for envelope in decode_commit(msg.data):
            if envelope.event_type == CaseClosed.event_type:
                closed = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
                await self.handlers.case_closed(closed, envelope)

    # -- inbox -------------------------------------------------------------------------
    async def receive(self, msg: Msg) -> None:
        """Handle one integration event addressed to this level."""
        for envelope in decode_commit(msg.data):
            message = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
            if isinstance(message, x.MatterHandedOver):
                await self.handlers.take_in(message, envelope)
            elif isinstance(message, x.MatterTakenIn):
                await self.handlers.taken_in(message, envelope)
            elif isinstance(message, x.OutcomeReportedBack):
                await self.handlers.outcome_reported_back(message, envelope)
            else:
                log.info("integration event not for intake", extra={"event_type": envelope.event_type})
