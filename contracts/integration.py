"""Integration events: what one level tells another, through its OUTBOX and the other's INBOX.

Published on ``duban.x.<to>.<from>.<kind>`` as one envelope (``aggregate_type`` says which
aggregate of the sender it concerns). The receiver must treat them idempotently: the
``event_id`` is the sender's event id, and a redelivery changes nothing.
"""

from __future__ import annotations

from pydantic import Field

from .events import Event, event
from .intake import Hop, MatterData, Outcome


@event("x.MatterHandedOver")
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


#: Kinds (last subject token) of the integration subjects.
KIND_HANDED_OVER = "matter-handed-over"
KIND_TAKEN_IN = "matter-taken-in"
KIND_OUTCOME = "outcome-reported-back"
