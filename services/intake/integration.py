"""Intake between levels, and the outcome of this level's cases: intake's reactions.

The relay (:class:`Relay`) reads this level's INTAKE stream and, for the events another level must
hear of, publishes an integration event to this level's OUTBOX (``Nats-Msg-Id`` derived from the
source event, so a redelivery is stored once):

- ``MatterEscalated`` / ``MatterSentDown`` → ``x.MatterHandedOver`` to the receiving level;
- ``MatterReceived`` → ``x.MatterTakenIn`` back to the sender (its path learns our id);
- ``OutcomeRecorded`` on a matter that came from another level → ``x.OutcomeReportedBack`` to it,
  which records it and, if its matter came from further away, passes it on: so a township sees
  the outcome of what Taizhou handled;
- ``ReplyRecorded`` likewise → ``x.ReplyReportedBack``: the reply reaches where the matter was
  raised, and its submitters give their feedback there;
- ``SubmitterFeedbackGiven`` / ``SubmitterFeedbackReceived`` → ``x.FeedbackForwarded`` up to the
  next level, until it reaches the level that handles the matter, whose tracking takes it.

The inbox (:class:`Inbox`) reads this level's INBOX; :class:`CaseOutcomes` reads this level's
TRACKING stream (a closed case is its matter's outcome). Their handlers are idempotent.
"""

from __future__ import annotations

import logging

from contracts import integration as x
from contracts.envelope import Envelope
from contracts.events import Event
from contracts.intake import (
    Hop,
    MatterEscalated,
    MatterReceived,
    MatterSentDown,
    OutcomeRecorded,
    ReplyRecorded,
    SubmitterFeedbackGiven,
    SubmitterFeedbackReceived,
)
from contracts.tracking import CaseClosed, ReplyReleased
from services.runtime.bus.levels import send_to_level
from services.runtime.bus.reactions import Reactions, reacts_to

from .domain import Matter
from .handlers import IntakeHandlers, derived_id

log = logging.getLogger("duban.intake.integration")


#: Messages of a batch the relay and the inbox handle side by side (each aggregate's in order):
#: a county's day of escalations, stored while its line was cut, is taken in at the hub as fast as
#: the streams store, rather than one round trip after another. A whole batch (the worker's 100):
#: 10,000 stored escalations were all at 台州 62 s after the line returned, 83 s with 32 at once
#: (bench/escalation.py, the same load on the machine); each take-in is two appends to the hub's
#: replicated streams, so more at once keeps more of those round trips in flight.
SIDE_BY_SIDE = 100


class Relay(Reactions):
    """This level's INTAKE events that another level must hear of, sent to it through the OUTBOX."""

    concurrency = SIDE_BY_SIDE

    def __init__(self, handlers: IntakeHandlers) -> None:
        self.store = handlers.store
        self.here = handlers.here

    @reacts_to(MatterEscalated, MatterSentDown)
    async def hand_over(self, event: MatterEscalated | MatterSentDown, envelope: Envelope) -> None:
        matter = await self.store.load(Matter, envelope.aggregate_id)
        assert matter.data is not None
        message = x.MatterHandedOver(
            matter=matter.data.model_copy(update={"co_signers": matter.submitters[1:]}),
            origin=Hop(jurisdiction=self.here, matter_id=envelope.aggregate_id),
            direction="up" if isinstance(event, MatterEscalated) else "down",
            path=matter.path,  # the hops before this level
            reason=event.reason,
        )
        await self._send(envelope, event.to, x.KIND_HANDED_OVER, message)

    @reacts_to(MatterReceived)
    async def confirm_taken_in(self, event: MatterReceived, envelope: Envelope) -> None:
        here = Hop(jurisdiction=self.here, matter_id=envelope.aggregate_id)
        message = x.MatterTakenIn(origin=event.origin, taken_in_as=here)
        await self._send(envelope, event.origin.jurisdiction, x.KIND_TAKEN_IN, message)

    @reacts_to(ReplyRecorded)
    async def reply_back(self, event: ReplyRecorded, envelope: Envelope) -> None:
        """The handling level's reply goes down to where the matter came from (and on from there)."""
        matter = await self.store.load(Matter, envelope.aggregate_id)
        if matter.origin is None:
            return  # raised here: its submitters give their feedback here, in tracking
        message = x.ReplyReportedBack(origin=matter.origin, handled_in=event.handled_in, reply=event.reply)
        await self._send(envelope, matter.origin.jurisdiction, x.KIND_REPLY, message)

    @reacts_to(SubmitterFeedbackGiven, SubmitterFeedbackReceived)
    async def feedback_up(self, event: SubmitterFeedbackGiven | SubmitterFeedbackReceived, envelope: Envelope) -> None:
        """A submitter's feedback goes up, level by level, to the level that handles the matter."""
        if event.handled_in.jurisdiction == self.here:
            return  # it has arrived: tracking takes it here
        matter = await self.store.load(Matter, envelope.aggregate_id)
        if matter.forwarded_as is None:
            log.error("feedback with nowhere to go", extra={"matter_id": envelope.aggregate_id})
            return
        given_in = event.given_in if isinstance(event, SubmitterFeedbackReceived) else self.here
        message = x.FeedbackForwarded(
            to=matter.forwarded_as,
            handled_in=event.handled_in,
            given_in=given_in,
            submitter=event.submitter,
            rating=event.rating,
            comment=event.comment,
            round=event.round,
        )
        await self._send(envelope, matter.forwarded_as.jurisdiction, x.KIND_FEEDBACK, message)

    @reacts_to(OutcomeRecorded)
    async def report_back(self, event: OutcomeRecorded, envelope: Envelope) -> None:
        matter = await self.store.load(Matter, envelope.aggregate_id)
        if matter.origin is None:
            return  # raised here: nobody to report back to
        message = x.OutcomeReportedBack(origin=matter.origin, handled_in=event.handled_in, outcome=event.outcome)
        await self._send(envelope, matter.origin.jurisdiction, x.KIND_OUTCOME, message)

    async def _send(self, source: Envelope, to: str, kind: str, message: Event) -> None:
        await send_to_level(
            self.store.js,
            here=self.here,
            to=to,
            kind=kind,
            message=message,
            source=source,
            event_id=derived_id(source.event_id, kind),
            aggregate_type="matter",
        )
        log.info("integration event sent", extra={"to": to, "kind": kind, "matter_id": source.aggregate_id})


class Inbox(Reactions):
    """What other levels addressed to this one (the INBOX)."""

    KINDS = (x.KIND_HANDED_OVER, x.KIND_TAKEN_IN, x.KIND_OUTCOME, x.KIND_REPLY, x.KIND_FEEDBACK)
    concurrency = SIDE_BY_SIDE

    def __init__(self, handlers: IntakeHandlers) -> None:
        self.handlers = handlers

    @reacts_to(x.MatterHandedOver)
    async def take_in(self, message: x.MatterHandedOver, envelope: Envelope) -> None:
        await self.handlers.take_in(message, envelope)

    @reacts_to(x.MatterTakenIn)
    async def taken_in(self, message: x.MatterTakenIn, envelope: Envelope) -> None:
        await self.handlers.taken_in(message, envelope)

    @reacts_to(x.OutcomeReportedBack)
    async def outcome_reported_back(self, message: x.OutcomeReportedBack, envelope: Envelope) -> None:
        await self.handlers.outcome_reported_back(message, envelope)

    @reacts_to(x.ReplyReportedBack)
    async def reply_reported_back(self, message: x.ReplyReportedBack, envelope: Envelope) -> None:
        await self.handlers.reply_reported_back(message, envelope)

    @reacts_to(x.FeedbackForwarded)
    async def feedback_forwarded(self, message: x.FeedbackForwarded, envelope: Envelope) -> None:
        await self.handlers.feedback_forwarded(message, envelope)


class CaseOutcomes(Reactions):
    """This level's tracking: a closed case is its matter's outcome."""

    def __init__(self, handlers: IntakeHandlers) -> None:
        self.handlers = handlers

    @reacts_to(CaseClosed)
    async def case_closed(self, closed: CaseClosed, envelope: Envelope) -> None:
        await self.handlers.case_closed(closed, envelope)

    @reacts_to(ReplyReleased)
    async def reply_released(self, released: ReplyReleased, envelope: Envelope) -> None:
        await self.handlers.reply_released(released, envelope)
