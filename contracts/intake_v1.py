"""Intake's events as they were stored before a level had two bodies (人大 / 政协): version 1 of
``MatterSubmitted``, ``MatterReceived`` and ``MatterRouted``, kept for the schema export, and the
upcasters that read them as version 2.

Before, a matter had no ``body``: there was one body per level, the congress, and every kind went
to it, 提案 included. A 提案 is the CPPCC's by definition, so an old matter is read as the body its
kind belongs to (``contracts.bodies.default_body``: 提案 政协, any other kind 人大); it has no joint
leads and is not topical. An old ``MatterRouted`` is read the same way, its leads being its first
submitter (the lead, as the records read it then).
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .bodies import default_body
from .events import Event, event, upcaster
from .intake import (
    JURISDICTION_CODE,
    MAX_CONTENT,
    MAX_TITLE,
    Attachment,
    Channel,
    Hop,
    MatterKind,
    PlanItemLink,
    RaisedBy,
    Submitter,
)


class MatterData(BaseModel):  # version 1: no body, no joint leads, no 专题类 mark
    """What was raised: the part of a matter that travels with it between levels."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    kind: MatterKind
    title: str = Field(min_length=1, max_length=MAX_TITLE, description="案由")
    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    lead: Submitter
    co_signers: list[Submitter] = Field(default_factory=list, max_length=200)
    channel: Channel
    raised_in: str = Field(pattern=JURISDICTION_CODE, description="the jurisdiction where it was raised")
    raised_at: AwareDatetime | None = Field(
        default=None,
        description="提出日期: when it was raised, given for what is entered later (a paper list, an import); "
        "the time of submission when not given. Travels with the matter to other levels.",
    )
    category: str | None = Field(default=None, max_length=50)
    attachments: list[Attachment] = Field(default_factory=list, max_length=50)
    raised_by: RaisedBy | None = None
    activity_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    plan_item: PlanItemLink | None = Field(
        default=None, description="the plan item (专题、主题活动、工作项目) it was collected for, at any level above"
    )

    @model_validator(mode="after")
    def _distinct_submitters(self) -> MatterData:
        ids = [self.lead.id, *(s.id for s in self.co_signers)]
        if len(ids) != len(set(ids)):
            raise ValueError("a submitter appears twice")
        return self


@event("intake.MatterSubmitted", 1, current=False)
class MatterSubmitted(Event):
    """A matter was raised (提出) at this level."""

    matter: MatterData
    idempotency_key: str | None = None


@event("intake.MatterReceived", 1, current=False)
class MatterReceived(Event):
    """A matter arrived from another level (escalated up to us or sent down to us)."""

    matter: MatterData
    origin: Hop
    direction: str = Field(pattern=r"^(up|down)$")
    path: list[Hop] = Field(default_factory=list, description="earlier hops, oldest first")
    reason: str | None = None


@event("intake.MatterRouted", 1, current=False)
class MatterRouted(Event):
    """Handled at this level (本级办理): tracking opens a case for it."""

    kind: MatterKind
    title: str
    submitters: list[Submitter]
    registration_no: str | None = None
    category: str | None = None
    committee: str | None = None
    note: str | None = None
    raised_in: str | None = Field(default=None, description="where it was raised (a township of this county…)")
    plan_item: PlanItemLink | None = Field(default=None, description="the plan item it was collected for")


def with_body(matter: dict[str, Any]) -> dict[str, Any]:
    return {**matter, "body": default_body(matter["kind"]).value}


@upcaster("intake.MatterSubmitted", 1)
def _submitted_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "matter": with_body(payload["matter"])}


@upcaster("intake.MatterReceived", 1)
def _received_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "matter": with_body(payload["matter"])}


@upcaster("intake.MatterRouted", 1)
def _routed_v2(payload: dict[str, Any]) -> dict[str, Any]:
    submitters = payload.get("submitters") or []
    return {**payload, "body": default_body(payload["kind"]).value, "leads": submitters[:1]}
