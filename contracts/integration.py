"""Integration events: what one level tells another, through its OUTBOX and the other's INBOX.

Published on ``duban.x.<to>.<from>.<kind>`` as one envelope (``aggregate_type`` says which
aggregate of the sender it concerns). The receiver must treat them idempotently: the
``event_id`` is the sender's event id, and a redelivery changes nothing.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from .events import Event, event
from .intake import HandlingReply, Hop, MatterData, Outcome, Submitter
from .notify import SummaryFigures, SummaryRow, TypicalCase


@event("x.MatterHandedOver", 2)
class MatterHandedOver(Event):
    """A matter escalated up (``direction="up"``) or sent down (``"down"``) to the receiver."""

    matter: MatterData
    origin: Hop
    direction: str = Field(pattern=r"^(up|down)$")
    path: list[Hop] = Field(default_factory=list)
    reason: str


@event("x.MatterTakenIn")
class MatterTakenIn(Event):
    """The receiving level took a handed-over matter in as its own matter ``taken_in_as``."""

    origin: Hop
    taken_in_as: Hop


@event("x.OutcomeReportedBack")
class OutcomeReportedBack(Event):
    """The outcome of a matter, reported back to the level it came from (``origin``)."""

    origin: Hop
    handled_in: Hop
    outcome: Outcome


@event("x.ReplyReportedBack")
class ReplyReportedBack(Event):
    """The reply of the level that handles a matter, reported back to the level it came from
    (``origin``), so its submitters read it and give their feedback there."""

    origin: Hop
    handled_in: Hop
    reply: HandlingReply


@event("x.FeedbackForwarded")
class FeedbackForwarded(Event):
    """A submitter's feedback on the reply, on its way up to the level that handles the matter:
    sent to the next level (``to``: the matter there), which takes it or passes it on."""

    to: Hop
    handled_in: Hop
    given_in: str = Field(pattern=r"^\d{6}(\d{3})?$")
    submitter: Submitter
    rating: str = Field(pattern=r"^(satisfied|basically_satisfied|dissatisfied)$")
    comment: str | None = None
    round: int = 1


#: Kinds (last subject token) of the integration subjects.
KIND_HANDED_OVER = "matter-handed-over"
KIND_TAKEN_IN = "matter-taken-in"
KIND_OUTCOME = "outcome-reported-back"
KIND_REPLY = "reply-reported-back"
KIND_FEEDBACK = "feedback-forwarded"


@event("x.MonthlySummaryReported")
class MonthlySummaryReported(Event):
    """一月一小结 (seed 003 三(四)): a level's figures of a month, its own and its lower levels',
    reported to the level above by the 20th of the next month. A later revision of the same
    reporter and month replaces an earlier one (``revision`` grows; redeliveries repeat one)."""

    reporter: str = Field(pattern=r"^\d{6}(\d{3})?$")
    reporter_name: str
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    revision: int = Field(ge=1)
    figures: SummaryFigures
    rows: list[SummaryRow] = Field(default_factory=list, description="the reporter's own row and its lower levels'")
    typical_cases: list[TypicalCase] = Field(default_factory=list)
    compiled_on: date


KIND_MONTHLY_SUMMARY = "monthly-summary"


# Hand-overs written before the bodies (人大 / 政协) existed are read through the upcaster there.
from . import integration_v1  # noqa: E402,F401
