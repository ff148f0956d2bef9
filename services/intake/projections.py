"""Intake's read side: the matter list, each matter's history, the activities, and their queries.

Three projections, each run by its own projector over the intake stream of one jurisdiction:

* ``MatterListProjection`` → ``intake_matters``: one row per matter, as ``domain.Matter`` sees it
  (the source of 问题清单 and 建议清单, DOMAIN.md "Lists, reports and notices");
* ``MatterHistoryProjection`` → ``intake_matter_history``: one row per event, with a short Chinese
  summary, so that the history of a matter can be read back in full;
* ``ActivityProjection`` → ``intake_activities``: one row per activity, with the number of matters
  collected at it (for the monthly summary 一月一小结).

Each projection has its own ``MetaData``: the projector drops and re-creates a projection's
``metadata`` when it rebuilds it, and one shared ``MetaData`` would wipe the other read models
while their checkpoints stayed put. ``metadatas`` lists all three for whoever creates the schema.

Times are stored in UTC and read back timezone-aware (``UtcDateTime``), on SQLite as on
PostgreSQL. Query periods: a ``date`` is a whole day in Asia/Shanghai (both ends included), a
``datetime`` is an instant (``since`` included, ``until`` excluded; naive means Asia/Shanghai).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    MetaData,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.envelope import SHANGHAI, Envelope
from contracts.intake import (
    ACTIVITY_KIND_NAMES,
    FEEDBACK_WAY_NAMES,
    KIND_NAMES,
    RAISER_RATING_NAMES,
    MatterAbsorbed,
    MatterConverted,
    MatterEscalated,
    MatterForwarded,
    MatterMerged,
    MatterNotRegistered,
    MatterReceived,
    MatterRegistered,
    MatterRouted,
    MatterSentDown,
    MatterSubmitted,
    OutcomeRecorded,
    RaiserFedBack,
    ReplyRecorded,
    SubmitterFeedbackGiven,
    SubmitterFeedbackReceived,
)
from contracts.jurisdictions import UnknownJurisdiction, default_registry
from services.runtime.read.db import connected
from services.runtime.read.history import HistoryProjection, history_table, short
from services.runtime.read.projector import handles
from services.runtime.read.records import SEPARATOR as SUBMITTER_SEPARATOR
from services.runtime.read.records import ActivityRecords, MatterRecords, activity_table, matter_table

__all__ = [
    "ActivityProjection",
    "MatterHistoryProjection",
    "MatterListProjection",
    "activities",
    "get_matter",
    "list_activities",
    "list_matters",
    "matter_history",
    "matters",
    "metadatas",
]


# -- tables ------------------------------------------------------------------------------------

matters_metadata = MetaData()
history_metadata = MetaData()
activities_metadata = MetaData()
#: Every intake read model's schema, one ``MetaData`` per projection (see the module docstring).
metadatas = (matters_metadata, history_metadata, activities_metadata)

matters = matter_table("intake_matters", matters_metadata)

history = history_table("intake_matter_history", history_metadata, "matter_id")

activities = activity_table("intake_activities", activities_metadata)


# -- the matter list ---------------------------------------------------------------------------


class MatterListProjection(MatterRecords):
    """One row per matter, changed by each event as ``domain.Matter`` changes its state (the
    runtime's matter records, which notify keeps too)."""

    name = "intake_matters"
    version = 7  # the shared matter records, with bodies (人大 / 政协), joint leads, 专题类 and book numbers
    metadata = matters_metadata
    table = matters


# -- the history of each matter ----------------------------------------------------------------


def _place(code: str) -> str:
    """The name and code, as 台州市（331000）, or the bare code of a jurisdiction the registry does not know."""
    try:
        return f"{default_registry().get(code).name}（{code}）"
    except UnknownJurisdiction:
        return code


def _with_reason(summary: str, reason: str | None) -> str:
    return f"{summary}：{short(reason)}" if reason else summary


class MatterHistoryProjection(HistoryProjection):
    """A row per matter event, in the order it happened, with who did it and what it means."""

    name = "intake_matter_history"
    version = 2  # replies reported back, feedback travelling up, the raiser fed back
    metadata = history_metadata
    table = history
    key = "matter_id"

    @handles(MatterSubmitted)
    def submitted(self, event: MatterSubmitted, envelope: Envelope) -> str:
        data = event.matter
        by = data.lead.name + (f"等{len(data.co_signers) + 1}人" if data.co_signers else "")
        return f"{by}提出{KIND_NAMES[data.kind]}：{data.title}"

    @handles(MatterReceived)
    def received(self, event: MatterReceived, envelope: Envelope) -> str:
        how = "上报" if event.direction == "up" else "交办"
        return f"收到{_place(event.origin.jurisdiction)}{how}的{KIND_NAMES[event.matter.kind]}：{event.matter.title}"

    @handles(MatterRegistered)
    def registered(self, event: MatterRegistered, envelope: Envelope) -> str:
        return f"立案：{event.registration_no}"

    @handles(MatterNotRegistered)
    def not_registered(self, event: MatterNotRegistered, envelope: Envelope) -> str:
        return _with_reason("不予立案", event.reason)

    @handles(MatterConverted)
    def converted(self, event: MatterConverted, envelope: Envelope) -> str:
        return _with_reason(f"由{KIND_NAMES[event.from_kind]}转为{KIND_NAMES[event.to_kind]}", event.reason)

    @handles(MatterMerged)
    def merged(self, event: MatterMerged, envelope: Envelope) -> str:
        return _with_reason(f"并入 {event.into}", event.reason)

    @handles(MatterAbsorbed)
    def absorbed(self, event: MatterAbsorbed, envelope: Envelope) -> str:
        names = SUBMITTER_SEPARATOR.join(s.name for s in event.submitters)
        return f"并入事项 {event.merged}" + (f"，增加提出人：{names}" if names else "")

    @handles(MatterRouted)
    def routed(self, event: MatterRouted, envelope: Envelope) -> str:
        return "本级办理" + (f"（{event.committee}）" if event.committee else "")

    @handles(MatterEscalated)
    def escalated(self, event: MatterEscalated, envelope: Envelope) -> str:
        return _with_reason(f"上报至 {_place(event.to)}", event.reason)

    @handles(MatterSentDown)
    def sent_down(self, event: MatterSentDown, envelope: Envelope) -> str:
        return _with_reason(f"交由 {_place(event.to)} 办理", event.reason)

    @handles(MatterForwarded)
    def forwarded(self, event: MatterForwarded, envelope: Envelope) -> str:
        return f"{_place(event.to.jurisdiction)}已接收，事项编号 {event.to.matter_id}"

    @handles(OutcomeRecorded)
    def outcome_recorded(self, event: OutcomeRecorded, envelope: Envelope) -> str:
        details = [f"{event.outcome.reply_class}类"] if event.outcome.reply_class else []
        if event.outcome.unit:
            details.append(f"主办单位：{event.outcome.unit}")
        tail = f"（{'，'.join(details)}）" if details else ""
        if event.reported_back:
            return f"收到{_place(event.handled_in.jurisdiction)}的办理结果，已办结{tail}"
        return f"办结{tail}"

    @handles(ReplyRecorded)
    def reply_recorded(self, event: ReplyRecorded, envelope: Envelope) -> str:
        unit = f"，{event.reply.unit}" if event.reply.unit else ""
        where = f"收到{_place(event.handled_in.jurisdiction)}的答复" if event.reported_back else "答复"
        return f"{where}（第{event.reply.round}轮，{event.reply.reply_class}类{unit}）：{short(event.reply.text)}"

    @handles(SubmitterFeedbackGiven)
    def feedback_given(self, event: SubmitterFeedbackGiven, envelope: Envelope) -> str:
        comment = f"：{short(event.comment)}" if event.comment else ""
        rating = RAISER_RATING_NAMES[event.rating]
        to = _place(event.handled_in.jurisdiction)
        return f"{event.submitter.name}反馈{rating}（第{event.round}轮答复），转{to}{comment}"

    @handles(SubmitterFeedbackReceived)
    def feedback_received(self, event: SubmitterFeedbackReceived, envelope: Envelope) -> str:
        rating = RAISER_RATING_NAMES[event.rating]
        return f"收到{_place(event.given_in)}{event.submitter.name}的反馈：{rating}（第{event.round}轮答复）"

    @handles(RaiserFedBack)
    def raiser_fed_back(self, event: RaiserFedBack, envelope: Envelope) -> str:
        rating = f"，{RAISER_RATING_NAMES[event.rating]}" if event.rating else ""
        note = f"：{short(event.note)}" if event.note else ""
        return f"向反映主体反馈（{FEEDBACK_WAY_NAMES[event.way]}，{event.fed_back_on.isoformat()}{rating}）{note}"


# -- activities --------------------------------------------------------------------------------


class ActivityProjection(ActivityRecords):
    """One row per activity of this level, with the matters collected there (the runtime's
    activity records, which notify keeps too for the monthly summary)."""

    name = "intake_activities"
    version = 2  # participants: deputies of each level apart from the others listed
    metadata = activities_metadata
    table = activities


# -- queries -----------------------------------------------------------------------------------


def _instant(value: date | datetime, *, end: bool) -> datetime:
    """A period bound as an aware instant: a date covers its whole day in Asia/Shanghai."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=SHANGHAI)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time.min, tzinfo=SHANGHAI)


def _day(value: date | datetime) -> date:
    """The Asia/Shanghai day of a date or an instant (naive means Asia/Shanghai)."""
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).date() if value.tzinfo is not None else value.date()
    return value


def _values(value: str | Iterable[str] | None) -> list[str] | None:
    """One value or several (``"problem"`` or ``[MatterKind.problem, MatterKind.demand]``)."""
    if value is None:
        return None
    if isinstance(value, str):  # StrEnum members are str too
        return [str(value)]
    return [str(v) for v in value]


_LIST_COLUMNS = [c for c in matters.columns if c.name != "content"]


async def list_matters(
    conn: AsyncEngine | AsyncConnection,
    *,
    jurisdiction: str,
    kind: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    body: str | None = None,
    channel: str | None = None,
    category: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    text: str | None = None,
    lead: str | None = None,
    plan: str | None = None,
    plan_item: str | None = None,
    limit: int = 100,
    offset: int = 0,
    with_content: bool = False,
) -> list[dict[str, Any]]:
    """The matters of ``jurisdiction``, newest first, filtered by each argument given.

    ``kind`` and ``status`` take one value or several; ``text`` matches title or content
    (case-insensitive, ``%`` and ``_`` taken literally); the period is on ``submitted_at`` (see the
    module docstring for dates against datetimes). Rows leave out ``content`` unless
    ``with_content``.
    """
    query = select(*(matters.columns if with_content else _LIST_COLUMNS)).where(matters.c.jurisdiction == jurisdiction)
    if (kinds := _values(kind)) is not None:
        query = query.where(matters.c.kind.in_(kinds))
    if (statuses := _values(status)) is not None:
        query = query.where(matters.c.status.in_(statuses))
    if body is not None:
        query = query.where(matters.c.body == str(body))
    if channel is not None:
        query = query.where(matters.c.channel == str(channel))
    if lead is not None:
        query = query.where(matters.c.lead_id == lead)
    if plan is not None:
        query = query.where(matters.c.plan_id == plan)
    if plan_item is not None:
        query = query.where(matters.c.plan_item == plan_item)
    if category is not None:
        query = query.where(matters.c.category == category)
    if since is not None:
        query = query.where(matters.c.submitted_at >= _instant(since, end=False))
    if until is not None:
        query = query.where(matters.c.submitted_at < _instant(until, end=True))
    if text and text.strip():
        needle = text.strip()
        in_title = matters.c.title.icontains(needle, autoescape=True)
        query = query.where(or_(in_title, matters.c.content.icontains(needle, autoescape=True)))
    query = query.order_by(matters.c.submitted_at.desc(), matters.c.id.desc()).limit(limit).offset(offset)
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query)]


async def get_matter(conn: AsyncEngine | AsyncConnection, matter_id: str) -> dict[str, Any] | None:
    """One matter's row, content included; ``None`` if there is none."""
    async with connected(conn) as db:
        row = (await db.execute(select(matters).where(matters.c.id == matter_id))).first()
    return dict(row._mapping) if row is not None else None


async def matter_history(conn: AsyncEngine | AsyncConnection, matter_id: str) -> list[dict[str, Any]]:
    """Every event of a matter, oldest first, with its actor and Chinese summary."""
    query = select(history).where(history.c.matter_id == matter_id).order_by(history.c.sequence)
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query)]


async def list_activities(
    conn: AsyncEngine | AsyncConnection,
    jurisdiction: str,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> list[dict[str, Any]]:
    """Activities of ``jurisdiction`` held from ``since`` to ``until`` (both days included), latest
    first, each with ``kind_name`` (视察、调研…) and ``matters_collected``."""
    query = select(activities).where(activities.c.jurisdiction == jurisdiction, activities.c.held_on.is_not(None))
    if since is not None:
        query = query.where(activities.c.held_on >= _day(since))
    if until is not None:
        query = query.where(activities.c.held_on <= _day(until))
    query = query.order_by(activities.c.held_on.desc(), activities.c.id)
    async with connected(conn) as db:
        rows = [dict(row._mapping) for row in await db.execute(query)]
    for row in rows:
        row["kind_name"] = ACTIVITY_KIND_NAMES.get(row["kind"], row["kind"])
    return rows
