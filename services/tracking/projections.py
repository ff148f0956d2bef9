"""Tracking's read side: the case list and its lists (督办清单, 成果清单), each case's history,
the work items and the deputy groups, and their queries.

Four projections, each run by its own projector over the tracking stream of one jurisdiction:

* ``CaseListProjection`` → ``tracking_cases``: one row per case, as ``domain.Case`` sees it, with
  what the lists and the sweep need (deadline, thresholds fired, open commitments, list year);
* ``CaseHistoryProjection`` → ``tracking_case_history``: one row per event with a Chinese summary;
* ``WorkItemProjection`` → ``tracking_work_items``: seed 004's work items with their milestones
  and progress;
* ``DeputyGroupProjection`` → ``tracking_deputy_groups``: the deputy groups with their activities.

Times are stored in UTC (``UtcDateTime``) and shown in Asia/Shanghai by the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.envelope import Envelope
from contracts.intake import KIND_NAMES, MatterKind
from contracts.tracking import (
    GROUP_ACTIVITY_NAMES,
    RATING_NAMES,
    STATUS_NAMES,
    THRESHOLD_NAMES,
    CaseAssigned,
    CaseClosed,
    CaseEscalatedToLeader,
    CaseOpened,
    CaseReopened,
    CaseReturned,
    CaseSigned,
    CaseStatus,
    CaseUrged,
    CaseUrgedByStaff,
    CommitmentDelivered,
    CommitmentsCarriedOver,
    CoUnitInputGiven,
    Countersigned,
    DeputyGroupRegistered,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    FeedbackGiven,
    GroupActivityRecorded,
    MilestoneProgressRecorded,
    ProgressReported,
    ReplyReleased,
    ReplySentBack,
    ReplySubmitted,
    WorkItemRegistered,
)
from services.runtime.read.db import UtcDateTime, connected
from services.runtime.read.documents import DocumentProjection
from services.runtime.read.history import HistoryProjection, history_table, short
from services.runtime.read.projector import handles
from services.runtime.read.records import SEPARATOR, CaseRecords, case_table

HANDLING = (CaseStatus.assigned.value, CaseStatus.rehandling.value)

cases_metadata = MetaData()
history_metadata = MetaData()
items_metadata = MetaData()
groups_metadata = MetaData()
metadatas = (cases_metadata, history_metadata, items_metadata, groups_metadata)

cases = case_table("tracking_cases", cases_metadata)

history = history_table("tracking_case_history", history_metadata, "case_id")

work_items = Table(
    "tracking_work_items",
    items_metadata,
    Column("id", String(64), primary_key=True),
    Column("jurisdiction", String(9)),
    Column("year", Integer),
    Column("kind", String(32)),
    Column("title", String(500)),
    Column("content", Text),
    Column("lead_units", JSON),
    Column("co_units", JSON),
    Column("supervisors", JSON, doc="[{group_id, group_name, committee, leader}]"),
    Column("group_names", Text),
    Column("committees", Text, doc="the contact committees, joined with 、"),
    Column("leaders", Text, doc="the contact leaders, joined with 、"),
    Column("note", Text),
    Column("milestones", JSON, doc="[{quarter, target, progress, met, recorded_at}]"),
    Column("updated_at", UtcDateTime),
)

deputy_groups = Table(
    "tracking_deputy_groups",
    groups_metadata,
    Column("id", String(64), primary_key=True),
    Column("jurisdiction", String(9)),
    Column("year", Integer),
    Column("name", String(100)),
    Column("township", String(9)),
    Column("committee", String(100)),
    Column("leader", String(100)),
    Column("items", JSON),
    Column("min_activities", Integer, default=3),
    Column("activities", Integer, default=0),
    Column("activity_log", JSON, doc="[{held_on, kind, title, participants}]"),
    Column("updated_at", UtcDateTime),
)


# -- the case list -----------------------------------------------------------------------------


class CaseListProjection(CaseRecords):
    """One row per case, changed by each event as ``domain.Case`` changes its state (the runtime's
    case records, which notify keeps too)."""

    name = "tracking_cases"
    version = 6  # the shared case records, with 签收, where raised, and an index by opening
    metadata = cases_metadata
    table = cases


# -- the history of each case ------------------------------------------------------------------


class CaseHistoryProjection(HistoryProjection):
    """A row per case event, in the order it happened, with who did it and what it means."""

    name = "tracking_case_history"
    metadata = history_metadata
    table = history
    key = "case_id"

    @handles(CaseOpened)
    def opened(self, event: CaseOpened, envelope: Envelope) -> str:
        return f"本级办理，立{KIND_NAMES[MatterKind(event.kind)]}办理件：{event.title}"

    @handles(CaseAssigned)
    def assigned(self, event: CaseAssigned, envelope: Envelope) -> str:
        co = f"，协办：{SEPARATOR.join(u.name for u in event.co_units)}" if event.co_units else ""
        key = "，重点督办" + (f"（{event.leader}领衔）" if event.leader else "") if event.key else ""
        verb = "重新交办" if event.reassignment else "交办"
        warning = f"（{event.deadline.warnings[0]}）" if event.deadline.warnings else ""
        return (
            f"{verb}：主办 {event.lead_unit.name}{co}{key}；"
            f"办理期限 {event.deadline.rule}，至 {event.deadline.due_on.isoformat()}{warning}"
        )

    @handles(CaseUrgedByStaff)
    def urged_by_staff(self, event: CaseUrgedByStaff, envelope: Envelope) -> str:
        return f"催办：{short(event.note)}"

    @handles(CaseSigned)
    def signed(self, event: CaseSigned, envelope: Envelope) -> str:
        return f"{event.unit.name}签收"

    @handles(CaseReturned)
    def returned(self, event: CaseReturned, envelope: Envelope) -> str:
        suggested = f"，建议交 {event.suggested_unit}" if event.suggested_unit else ""
        return f"{event.unit.name}退回：{short(event.reason)}{suggested}"

    @handles(ExtensionRequested)
    def extension_requested(self, event: ExtensionRequested, envelope: Envelope) -> str:
        return f"{event.unit.name}申请延期至 {event.until.isoformat()}：{short(event.reason)}"

    @handles(ExtensionGranted)
    def extension_granted(self, event: ExtensionGranted, envelope: Envelope) -> str:
        return f"同意延期，期限至 {event.deadline.due_on.isoformat()}"

    @handles(ExtensionRefused)
    def extension_refused(self, event: ExtensionRefused, envelope: Envelope) -> str:
        return f"不同意延期：{short(event.reason)}"

    @handles(ProgressReported)
    def progress(self, event: ProgressReported, envelope: Envelope) -> str:
        percent = f"（{event.percent}%）" if event.percent is not None else ""
        return f"{event.unit.name}报送进展{percent}：{short(event.text)}"

    @handles(CoUnitInputGiven)
    def co_unit_input(self, event: CoUnitInputGiven, envelope: Envelope) -> str:
        return f"协办单位 {event.unit.name} 提出意见：{short(event.text)}"

    @handles(Countersigned)
    def countersigned(self, event: Countersigned, envelope: Envelope) -> str:
        return f"协办单位 {event.unit.name} 会签"

    @handles(ReplySubmitted)
    def reply_submitted(self, event: ReplySubmitted, envelope: Envelope) -> str:
        which = "第1轮答复" if event.round == 1 else f"第{event.round}轮答复（重新办理）"
        late = "" if event.on_time else "，已超期"
        return f"{event.unit.name}{which}，{event.reply_class}类{late}：{short(event.text)}"

    @handles(ReplySentBack)
    def reply_sent_back(self, event: ReplySentBack, envelope: Envelope) -> str:
        return f"答复审核退回修改：{short(event.comment)}"

    @handles(ReplyReleased)
    def reply_released(self, event: ReplyReleased, envelope: Envelope) -> str:
        changed = f"（审核由{event.previous_class}类改为{event.reply_class}类）" if event.previous_class else ""
        return f"答复送达提出人，{event.reply_class}类{changed}"

    @handles(FeedbackGiven)
    def feedback(self, event: FeedbackGiven, envelope: Envelope) -> str:
        paper = "（纸质反馈代录）" if event.on_paper else ""
        comment = f"：{short(event.comment)}" if event.comment else ""
        return f"{event.submitter.name}反馈{RATING_NAMES[event.rating]}{paper}{comment}"

    @handles(CaseReopened)
    def reopened(self, event: CaseReopened, envelope: Envelope) -> str:
        return f"重新办理（第{event.round}轮），期限至 {event.deadline.due_on.isoformat()}：{short(event.reason)}"

    @handles(CaseClosed)
    def closed(self, event: CaseClosed, envelope: Envelope) -> str:
        tail = f"，{event.open_commitments}项承诺事项继续跟踪" if event.open_commitments else ""
        return f"办结（{event.reply_class}类，主办 {event.unit.name}）{tail}"

    @handles(CommitmentDelivered)
    def delivered(self, event: CommitmentDelivered, envelope: Envelope) -> str:
        return f"承诺事项 {event.commitment_id} 已落实：{short(event.note)}"

    @handles(CommitmentsCarriedOver)
    def carried_over(self, event: CommitmentsCarriedOver, envelope: Envelope) -> str:
        return f"{len(event.commitment_ids)}项承诺事项未落实，转入{event.year}年督办清单（跨年度跟踪）"

    @handles(CaseUrged)
    def urged(self, event: CaseUrged, envelope: Envelope) -> str:
        return f"催办：{THRESHOLD_NAMES[event.threshold]}（期限 {event.deadline.due_on.isoformat()}）"

    @handles(CaseEscalatedToLeader)
    def escalated(self, event: CaseEscalatedToLeader, envelope: Envelope) -> str:
        return f"超期重点督办件，报{event.leader}领衔督办"


# -- work items and deputy groups --------------------------------------------------------------


class WorkItemProjection(DocumentProjection):
    name = "tracking_work_items"
    metadata = items_metadata
    table = work_items

    @handles(WorkItemRegistered)
    def registered(self, doc, event: WorkItemRegistered, envelope: Envelope) -> None:
        doc.update(
            jurisdiction=envelope.jurisdiction,
            year=event.year,
            kind=event.kind,
            title=event.title,
            content=event.content,
            lead_units=event.lead_units,
            co_units=event.co_units,
            supervisors=[s.model_dump() for s in event.supervisors],
            group_names=SEPARATOR.join(s.group_name for s in event.supervisors),
            committees=SEPARATOR.join(dict.fromkeys(s.committee for s in event.supervisors)),
            leaders=SEPARATOR.join(dict.fromkeys(s.leader for s in event.supervisors)),
            note=event.note,
            milestones=[
                {"quarter": m.quarter, "target": m.target, "progress": None, "met": None, "recorded_at": None}
                for m in event.milestones
            ],
            updated_at=envelope.occurred_at,
        )

    @handles(MilestoneProgressRecorded)
    def progress(self, doc, event: MilestoneProgressRecorded, envelope: Envelope) -> None:
        at = envelope.occurred_at.isoformat()
        doc["milestones"] = [
            m | {"progress": event.text, "met": event.met, "recorded_at": at} if m["quarter"] == event.quarter else m
            for m in doc["milestones"] or []
        ]
        doc["updated_at"] = envelope.occurred_at


class DeputyGroupProjection(DocumentProjection):
    name = "tracking_deputy_groups"
    metadata = groups_metadata
    table = deputy_groups

    @handles(DeputyGroupRegistered)
    def registered(self, doc, event: DeputyGroupRegistered, envelope: Envelope) -> None:
        doc.update(
            jurisdiction=envelope.jurisdiction,
            year=event.year,
            name=event.name,
            township=event.township,
            committee=event.committee,
            leader=event.leader,
            items=event.items,
            min_activities=event.min_activities,
            activities=doc["activities"] or 0,
            activity_log=doc["activity_log"] or [],
            updated_at=envelope.occurred_at,
        )

    @handles(GroupActivityRecorded)
    def activity(self, doc, event: GroupActivityRecorded, envelope: Envelope) -> None:
        entry = {
            "held_on": event.held_on.isoformat(),
            "kind": event.kind,
            "kind_name": GROUP_ACTIVITY_NAMES.get(event.kind, event.kind),
            "title": event.title,
            "participants": event.participants,
        }
        doc["activity_log"] = [*(doc["activity_log"] or []), entry]
        doc["activities"] = (doc["activities"] or 0) + 1
        doc["updated_at"] = envelope.occurred_at


# -- queries -----------------------------------------------------------------------------------


def _overdue(now: datetime):
    return and_(cases.c.status.in_(HANDLING), cases.c.due_at < now)


def _decorate(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    row["status_name"] = STATUS_NAMES.get(CaseStatus(row["status"]), row["status"]) if row["status"] else None
    row["overdue"] = bool(row["status"] in HANDLING and row["due_at"] is not None and row["due_at"] < now)
    try:
        row["kind_name"] = KIND_NAMES[MatterKind(row["kind"])]
    except (ValueError, KeyError):
        row["kind_name"] = row["kind"]
    return row


def _filters(query, *, jurisdiction: str, unit: str | None, committee: str | None, key: bool | None):
    query = query.where(cases.c.jurisdiction == jurisdiction)
    if unit is not None:
        query = query.where(or_(cases.c.lead_unit_id == unit, cases.c.lead_unit_name == unit))
    if committee is not None:
        query = query.where(cases.c.committee == committee)
    if key is not None:
        query = query.where(cases.c.key == key)
    return query


async def list_cases(
    conn: AsyncEngine | AsyncConnection,
    *,
    jurisdiction: str,
    now: datetime,
    status: str | None = None,
    unit: str | None = None,
    committee: str | None = None,
    key: bool | None = None,
    kind: str | None = None,
    text: str | None = None,
    raised_in: str | None = None,
    leader: str | None = None,
    category: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Every case of the level, newest first; ``text`` is looked for in the title and the 编号."""
    query = _filters(select(cases), jurisdiction=jurisdiction, unit=unit, committee=committee, key=key)
    if status is not None:
        query = query.where(cases.c.status == status)
    if kind is not None:
        query = query.where(cases.c.kind == kind)
    if raised_in is not None:
        query = query.where(cases.c.raised_in == raised_in)
    if leader is not None:
        query = query.where(cases.c.leader == leader)
    if category is not None:
        query = query.where(cases.c.category == category)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(cases.c.title.like(pattern, escape="\\"), cases.c.registration_no.like(pattern, escape="\\"))
        )
    query = query.order_by(cases.c.opened_at.desc(), cases.c.id).limit(limit).offset(offset)
    async with connected(conn) as db:
        return [_decorate(dict(row._mapping), now) for row in await db.execute(query)]


async def get_case(conn: AsyncEngine | AsyncConnection, case_id: str, now: datetime) -> dict[str, Any] | None:
    async with connected(conn) as db:
        row = (await db.execute(select(cases).where(cases.c.id == case_id))).first()
    return _decorate(dict(row._mapping), now) if row is not None else None


async def case_history(conn: AsyncEngine | AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    query = select(history).where(history.c.case_id == case_id).order_by(history.c.sequence, history.c.event_id)
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query)]


async def unit_workload(
    conn: AsyncEngine | AsyncConnection, *, jurisdiction: str, now: datetime
) -> list[dict[str, Any]]:
    """Per lead unit: cases assigned, still open, overdue now, closed, closed with an on-time
    reply, and the on-time rate (on-time replies / cases replied)."""
    replied = cases.c.reply_on_time.is_not(None)
    query = (
        select(
            cases.c.lead_unit_id.label("unit_id"),
            func.max(cases.c.lead_unit_name).label("unit_name"),
            func.count().label("assigned"),
            func.sum(case((cases.c.status != CaseStatus.closed.value, 1), else_=0)).label("open"),
            func.sum(case((_overdue(now), 1), else_=0)).label("overdue"),
            func.sum(case((cases.c.status == CaseStatus.closed.value, 1), else_=0)).label("closed"),
            func.sum(case((replied, 1), else_=0)).label("replied"),
            func.sum(case((cases.c.reply_on_time.is_(True), 1), else_=0)).label("on_time"),
        )
        .where(cases.c.jurisdiction == jurisdiction, cases.c.lead_unit_id.is_not(None))
        .group_by(cases.c.lead_unit_id)
        .order_by(cases.c.lead_unit_id)
    )
    async with connected(conn) as db:
        rows = [dict(row._mapping) for row in await db.execute(query)]
    for row in rows:
        row["on_time_rate"] = round(row["on_time"] / row["replied"], 4) if row["replied"] else None
    return rows


async def sweep_candidates(conn: AsyncEngine | AsyncConnection, *, jurisdiction: str) -> list[dict[str, Any]]:
    """Cases the sweep must look at: those being handled (a deadline runs) and closed ones with
    open commitments (year-end carry-over). The aggregate decides; this only narrows."""
    query = select(
        cases.c.id,
        cases.c.status,
        cases.c.due_on,
        cases.c.due_at,
        cases.c.fired,
        cases.c.list_year,
        cases.c.open_commitments,
    ).where(
        cases.c.jurisdiction == jurisdiction,
        or_(
            cases.c.status.in_(HANDLING),
            and_(cases.c.status == CaseStatus.closed.value, cases.c.open_commitments > 0),
        ),
    )
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query)]


async def list_work_items(
    conn: AsyncEngine | AsyncConnection, *, jurisdiction: str, kind: str | None = None, year: int | None = None
) -> list[dict[str, Any]]:
    query = select(work_items).where(work_items.c.jurisdiction == jurisdiction)
    if kind is not None:
        query = query.where(work_items.c.kind == kind)
    if year is not None:
        query = query.where(work_items.c.year == year)
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query.order_by(work_items.c.id))]


async def list_deputy_groups(
    conn: AsyncEngine | AsyncConnection, *, jurisdiction: str, year: int | None = None
) -> list[dict[str, Any]]:
    """The deputy groups, each flagged ``below_required`` while it has held fewer group
    activities than required (≥3, seed 004 二(一))."""
    query = select(deputy_groups).where(deputy_groups.c.jurisdiction == jurisdiction)
    if year is not None:
        query = query.where(deputy_groups.c.year == year)
    async with connected(conn) as db:
        rows = [dict(row._mapping) for row in await db.execute(query.order_by(deputy_groups.c.township))]
    for row in rows:
        row["below_required"] = (row["activities"] or 0) < (row["min_activities"] or 0)
    return rows
