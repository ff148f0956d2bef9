"""Tracking's read side: the case list and its lists (督办清单, 成果清单), each case's history,
the plans, the matters collected for them, the deputy groups, and their queries.

Each projection is run by its own projector over the tracking stream of one jurisdiction (the
plans' matters over intake's):

* ``CaseListProjection`` → ``tracking_cases``: one row per case, as ``domain.Case`` sees it, with
  what the lists and the sweep need (deadline, thresholds fired, open commitments, list year);
* ``CaseHistoryProjection`` → ``tracking_case_history``: one row per event with a Chinese summary;
* ``PlanProjection`` → ``tracking_plans``: each plan as last revised, with its milestones reported,
  duties done and urged, inquiry questions and the evaluations of its items;
* ``PlanMattersProjection`` → ``tracking_plan_matters``: the matters raised here or arrived from
  below for an item of a plan of this level (intake's ``MatterSubmitted`` and ``MatterReceived``);
* ``DeputyGroupProjection`` → ``tracking_deputy_groups``: the deputy groups with their activities.

Times are stored in UTC (``UtcDateTime``) and shown in Asia/Shanghai by the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.envelope import Envelope
from contracts.evaluation import KIND_NAMES as SESSION_KIND_NAMES
from contracts.evaluation import OPTION_NAMES
from contracts.intake import MatterData, MatterReceived, MatterSubmitted
from contracts.plans import (
    PlanCreated,
    PlanDutyDone,
    PlanDutyUrged,
    PlanItemEvaluated,
    PlanMilestoneRecorded,
    PlanQuestionSent,
    PlanRevised,
    duty_holder,
)
from contracts.tracking import (
    CASE_KIND_NAMES,
    GROUP_ACTIVITY_NAMES,
    OWN_KINDS,
    RATING_NAMES,
    STATUS_NAMES,
    THRESHOLD_NAMES,
    CaseAssigned,
    CaseClosed,
    CaseEscalatedToLeader,
    CaseEvaluated,
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
    ProgressReported,
    ReplyReleased,
    ReplySentBack,
    ReplySubmitted,
)
from services.runtime.read.db import UtcDateTime, connected
from services.runtime.read.documents import DocumentProjection
from services.runtime.read.history import HistoryProjection, history_table, short
from services.runtime.read.projector import Projection, handles
from services.runtime.read.records import SEPARATOR, CaseRecords, case_table

HANDLING = (CaseStatus.assigned.value, CaseStatus.rehandling.value)

cases_metadata = MetaData()
history_metadata = MetaData()
plans_metadata = MetaData()
plan_matters_metadata = MetaData()
groups_metadata = MetaData()
metadatas = (cases_metadata, history_metadata, plans_metadata, plan_matters_metadata, groups_metadata)

cases = case_table("tracking_cases", cases_metadata)

history = history_table("tracking_case_history", history_metadata, "case_id")

plans = Table(
    "tracking_plans",
    plans_metadata,
    Column("id", String(64), primary_key=True),
    Column("jurisdiction", String(9)),
    Column("year", Integer),
    Column("title", String(500)),
    Column("source", String(200)),
    Column("motion_id", String(64)),
    Column("data", JSON, doc="contracts.plans.PlanData as last revised"),
    Column("progress", JSON, doc="{item/milestone: {text, met, unit, at}}"),
    Column("done", JSON, doc="{duty or duty@group: {done_on, note}}"),
    Column("urged", JSON, doc="[{duty, group_id, threshold, at}]"),
    Column("questions", JSON, doc="[{case_id, item_id, title, unit, due_on}]"),
    Column("evaluations", JSON, doc="{item: [{session_id, session_title, session_kind, rate, …}]}"),
    Column("changes", JSON, doc="[{at, by, changes}]: every revision"),
    Column("created_at", UtcDateTime),
    Column("updated_at", UtcDateTime),
    Column("version", Integer),
)

plan_matters = Table(
    "tracking_plan_matters",
    plan_matters_metadata,
    Column("matter_id", String(64), primary_key=True),
    Column("plan_id", String(64)),
    Column("item_id", String(64)),
    Column("raised_in", String(9)),
    Column("kind", String(16)),
    Column("title", String(200)),
    Column("arrived_at", UtcDateTime),
    Index("ix_tracking_plan_matters_plan", "plan_id", "item_id"),
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
    version = 8  # the shared case records, with bodies (人大 / 政协), leads, 合并 and 专题类
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
        if event.kind in OWN_KINDS:
            return f"立{CASE_KIND_NAMES[event.kind]}件：{event.title}"
        return f"本级办理，立{CASE_KIND_NAMES[event.kind]}办理件：{event.title}"

    @handles(CaseEvaluated)
    def evaluated(self, event: CaseEvaluated, envelope: Envelope) -> str:
        return f"{event.session_title}（{SESSION_KIND_NAMES.get(event.session_kind, '测评')}）：{result_text(event)}"

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


class PlanProjection(DocumentProjection):
    """One row per plan: the plan as last revised, and what happened under it."""

    name = "tracking_plans"
    metadata = plans_metadata
    table = plans

    def _plan(self, doc, plan, envelope: Envelope) -> None:
        doc.update(
            jurisdiction=envelope.jurisdiction,
            year=plan.year,
            title=plan.title,
            source=plan.source,
            motion_id=plan.motion_id,
            data=plan.model_dump(mode="json"),
            updated_at=envelope.occurred_at,
            version=envelope.sequence,
        )
        for column, empty in (("progress", {}), ("done", {}), ("urged", []), ("questions", []), ("evaluations", {})):
            doc[column] = doc[column] if doc[column] is not None else empty
        doc["changes"] = doc["changes"] or []

    @handles(PlanCreated)
    def created(self, doc, event: PlanCreated, envelope: Envelope) -> None:
        self._plan(doc, event.plan, envelope)
        doc["created_at"] = envelope.occurred_at

    @handles(PlanRevised)
    def revised(self, doc, event: PlanRevised, envelope: Envelope) -> None:
        self._plan(doc, event.plan, envelope)
        entry = {"at": envelope.occurred_at.isoformat(), "by": envelope.actor.name or envelope.actor.principal_id}
        doc["changes"] = [*doc["changes"], entry | {"changes": event.changes}]

    def _touch(self, doc, envelope: Envelope) -> None:
        doc["updated_at"] = envelope.occurred_at
        doc["version"] = envelope.sequence

    @handles(PlanMilestoneRecorded)
    def milestone(self, doc, event: PlanMilestoneRecorded, envelope: Envelope) -> None:
        entry = {"text": event.text, "met": event.met, "unit": event.unit, "at": envelope.occurred_at.isoformat()}
        doc["progress"] = {**doc["progress"], f"{event.item_id}/{event.milestone}": entry}
        self._touch(doc, envelope)

    @handles(PlanDutyDone)
    def duty_done(self, doc, event: PlanDutyDone, envelope: Envelope) -> None:
        holder = duty_holder(event.duty, event.group_id)
        doc["done"] = {**doc["done"], holder: {"done_on": event.done_on.isoformat(), "note": event.note}}
        self._touch(doc, envelope)

    @handles(PlanDutyUrged)
    def duty_urged(self, doc, event: PlanDutyUrged, envelope: Envelope) -> None:
        entry = {"duty": event.duty, "group_id": event.group_id, "threshold": event.threshold}
        doc["urged"] = [*doc["urged"], entry | {"at": envelope.occurred_at.isoformat()}]
        self._touch(doc, envelope)

    @handles(PlanQuestionSent)
    def question(self, doc, event: PlanQuestionSent, envelope: Envelope) -> None:
        doc["questions"] = [*doc["questions"], event.model_dump(mode="json")]
        self._touch(doc, envelope)

    @handles(PlanItemEvaluated)
    def item_evaluated(self, doc, event: PlanItemEvaluated, envelope: Envelope) -> None:
        entry = event.model_dump(mode="json", exclude={"item_id"}) | {"result": result_text(event)}
        doc["evaluations"] = {**doc["evaluations"], event.item_id: [*doc["evaluations"].get(event.item_id, []), entry]}
        self._touch(doc, envelope)


def result_text(event: CaseEvaluated | PlanItemEvaluated) -> str:
    """满意 12、基本满意 3、不满意 1，满意率 94%."""
    counts = "、".join(f"{OPTION_NAMES.get(k, k)} {v}" for k, v in event.counts.items())
    rate = f"{event.rate:.0%}" if event.rate is not None else "—"
    below = "，未达要求" if event.below_bar else ""
    return f"{counts}，满意率 {rate}{below}"


class PlanMattersProjection(Projection):
    """Matters raised here or arriving from below for an item of a plan of this level: what came
    in under each item, and from which township (intake's events of this level)."""

    name = "tracking_plan_matters"
    metadata = plan_matters_metadata

    async def _record(self, session, matter: MatterData, envelope: Envelope) -> None:
        link = matter.plan_item
        if link is None or link.jurisdiction != envelope.jurisdiction:
            return
        exists = await session.execute(
            select(plan_matters.c.matter_id).where(plan_matters.c.matter_id == envelope.aggregate_id)
        )
        if exists.first() is not None:
            return
        await session.execute(
            plan_matters.insert().values(
                matter_id=envelope.aggregate_id,
                plan_id=link.plan_id,
                item_id=link.item_id,
                raised_in=matter.raised_in,
                kind=matter.kind.value,
                title=matter.title,
                arrived_at=envelope.occurred_at,
            )
        )

    @handles(MatterSubmitted)
    async def submitted(self, session, event: MatterSubmitted, envelope: Envelope) -> None:
        await self._record(session, event.matter, envelope)

    @handles(MatterReceived)
    async def received(self, session, event: MatterReceived, envelope: Envelope) -> None:
        await self._record(session, event.matter, envelope)


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
        row["kind_name"] = CASE_KIND_NAMES[row["kind"]]
    except KeyError:
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
    body: str | None = None,
    plan: str | None = None,
    item: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Every case of the level (of one body, when ``body`` is given), newest first; ``text`` is
    looked for in the title and the 编号."""
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
    if body is not None:
        query = query.where(cases.c.body == body)
    if plan is not None:
        query = query.where(cases.c.plan_id == plan)
    if item is not None:
        query = query.where(cases.c.plan_item == item)
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


# -- plans -------------------------------------------------------------------------------------


async def list_plans(
    conn: AsyncEngine | AsyncConnection, *, jurisdiction: str, year: int | None = None
) -> list[dict[str, Any]]:
    query = select(plans).where(plans.c.jurisdiction == jurisdiction)
    if year is not None:
        query = query.where(plans.c.year == year)
    async with connected(conn) as db:
        return [dict(row._mapping) for row in await db.execute(query.order_by(plans.c.year.desc(), plans.c.id))]


async def get_plan(conn: AsyncEngine | AsyncConnection, plan_id: str) -> dict[str, Any] | None:
    async with connected(conn) as db:
        row = (await db.execute(select(plans).where(plans.c.id == plan_id))).first()
    return dict(row._mapping) if row is not None else None


async def plan_item_owners(conn: AsyncEngine | AsyncConnection, item_ids: list[str]) -> dict[str, str]:
    """The plan of each of ``item_ids`` that some plan of this database has."""
    wanted = set(item_ids)
    async with connected(conn) as db:
        rows = await db.execute(select(plans.c.id, plans.c.data))
        return {
            item["id"]: row.id for row in rows for item in (row.data or {}).get("items", []) if item["id"] in wanted
        }


async def plan_matter_counts(conn: AsyncEngine | AsyncConnection, plan_id: str) -> dict[tuple[str, str], int]:
    """{(item, township or level): matters} of a plan."""
    query = (
        select(plan_matters.c.item_id, plan_matters.c.raised_in, func.count())
        .where(plan_matters.c.plan_id == plan_id)
        .group_by(plan_matters.c.item_id, plan_matters.c.raised_in)
    )
    async with connected(conn) as db:
        return {(item, where): n for item, where, n in await db.execute(query)}


async def plan_matter_list(
    conn: AsyncEngine | AsyncConnection, plan_id: str, item_id: str | None = None
) -> list[dict[str, Any]]:
    query = select(plan_matters).where(plan_matters.c.plan_id == plan_id)
    if item_id is not None:
        query = query.where(plan_matters.c.item_id == item_id)
    async with connected(conn) as db:
        return [dict(r._mapping) for r in await db.execute(query.order_by(plan_matters.c.arrived_at))]


async def group_activity_days(conn: AsyncEngine | AsyncConnection, group_ids: list[str]) -> dict[str, list[str]]:
    """The days of each group's recorded activities (ISO dates)."""
    query = select(deputy_groups.c.id, deputy_groups.c.activity_log).where(deputy_groups.c.id.in_(group_ids))
    async with connected(conn) as db:
        return {row.id: [a["held_on"] for a in row.activity_log or []] for row in await db.execute(query)}
