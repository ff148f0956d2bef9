"""Tracking's ``CaseOpened`` as stored before a level had two bodies (人大 / 政协): version 1, kept
for the schema export, and the upcaster that reads it as version 2: the body its kind belongs to
(``contracts.bodies.default_body``: a 提案's case the CPPCC's, any other the congress's, the cases
tracking opens itself, questions and rectifications, the congress's), its leads its first submitter.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field

from .bodies import default_body
from .events import Event, event, upcaster
from .intake import PlanItemLink, Submitter
from .tracking import CaseKind


@event("tracking.CaseOpened", 1, current=False)
class CaseOpened(Event):
    """A matter routed to this level (intake's ``MatterRouted``) opened a case here."""

    matter_id: str
    kind: CaseKind
    title: str
    submitters: list[Submitter]
    registration_no: str | None = None
    category: str | None = None
    committee: str | None = None
    year: int = Field(description="the Asia/Shanghai year it was opened: the year of its lists")
    opened_on: date | None = Field(default=None, description="the Asia/Shanghai day it was opened")
    raised_in: str | None = Field(default=None, description="where its matter was raised (the 督办清单's 乡镇 filter)")
    plan_item: PlanItemLink | None = Field(default=None, description="the plan item it belongs to, if any")
    content: str | None = Field(default=None, description="the text of a case tracking opened itself (a question)")


@upcaster("tracking.CaseOpened", 1)
def _opened_v2(payload: dict[str, Any]) -> dict[str, Any]:
    submitters = payload.get("submitters") or []
    return {**payload, "body": default_body(payload["kind"]).value, "leads": submitters[:1]}
