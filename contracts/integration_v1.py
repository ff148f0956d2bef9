"""``x.MatterHandedOver`` as written before a level had two bodies (人大 / 政协): version 1, kept
for the schema export, and its upcaster: the matter is read as the body its kind belongs to, as
``contracts.intake_v1`` reads a stored matter (a hand-over still in an OUTBOX or INBOX when a level
is upgraded)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .events import Event, event, upcaster
from .intake import Hop
from .intake_v1 import MatterData, with_body


@event("x.MatterHandedOver", 1, current=False)
class MatterHandedOver(Event):
    """A matter escalated up (``direction="up"``) or sent down (``"down"``) to the receiver."""

    matter: MatterData
    origin: Hop
    direction: str = Field(pattern=r"^(up|down)$")
    path: list[Hop] = Field(default_factory=list)
    reason: str


@upcaster("x.MatterHandedOver", 1)
def _handed_over_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "matter": with_body(payload["matter"])}
