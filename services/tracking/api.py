"""Tracking's HTTP API (督办): cases for units, committees and leaders; plans (the four lists are notify's).

Every route but ``/healthz`` needs a bearer token of a principal of this deployment's
jurisdiction; the handlers check the roles (only committee staff assign, review and close; only
the assigned lead unit replies; only assigned units report progress). Commands take the case id
from the path and the rest of the command as the JSON body. Times come back in UTC (ISO 8601)
with the Asia/Shanghai day beside each deadline (``due_on``).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.bodies import Body
from contracts.envelope import SHANGHAI
from contracts.intake import ID_PATTERN
from contracts.plans import CreatePlan, MarkPlanDutyDone, RecordPlanMilestone, RevisePlan, SendInquiryQuestion
from contracts.tracking import (
    STATUS_NAMES,
    AssignCase,
    CaseKind,
    CaseStatus,
    CloseCase,
    DecideExtension,
    DeliverCommitment,
    GiveCoUnitInput,
    GiveFeedback,
    RecordGroupActivity,
    ReopenCase,
    ReportProgress,
    RequestExtension,
    ReturnCase,
    ReviewReply,
    SignCase,
    SubmitReply,
    UrgeCase,
)
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.http.app import Provided, service_app, service_router
from services.runtime.http.auth import Principal, Role
from services.runtime.http.bounds import limit_query, offset_query
from services.runtime.http.routes import CommandRoute, add_command_routes
from services.runtime.settings import Settings

from . import projections
from .deadlines import WorkingCalendar
from .domain import Case
from .handlers import TrackingHandlers
from .plan_api import add_plan_routes, plan_view

log = logging.getLogger("duban.tracking.api")

TITLE = "duban tracking 督办"
CaseId = Path(pattern=ID_PATTERN, description="办理件编号（即事项编号）")
CASE_ID = {"case_id": "办理件编号（即事项编号）"}

#: One POST ``/cases/{case_id}/<name>`` per command of a case.
CASE_COMMANDS = [
    CommandRoute(f"/cases/{{case_id}}/{name}", model, method, summary, ("cases",), ids=CASE_ID)
    for name, model, method, summary in (
        ("assign", AssignCase, "assign", "交办（或退回后重新交办）"),
        ("sign", SignCase, "sign", "签收（主办单位）"),
        ("urge", UrgeCase, "urge_by_staff", "催办（工委）"),
        ("return", ReturnCase, "return_case", "退回（主办单位）"),
        ("extension", RequestExtension, "request_extension", "申请延期（主办单位）"),
        ("extension-decision", DecideExtension, "decide_extension", "审批延期"),
        ("progress", ReportProgress, "report_progress", "报送办理进展"),
        ("co-unit-input", GiveCoUnitInput, "co_unit_input", "协办意见与会签（协办单位）"),
        ("reply", SubmitReply, "reply", "答复（主办单位）"),
        ("review", ReviewReply, "review", "审核答复"),
        ("feedback", GiveFeedback, "feedback", "反馈满意度（提出人，或工委代录纸质反馈）"),
        ("close", CloseCase, "close", "办结"),
        ("reopen", ReopenCase, "reopen", "重新办理"),
        ("deliver-commitment", DeliverCommitment, "deliver_commitment", "承诺事项落实"),
    )
]
#: The commands of deputy groups (seed 004's 集中活动).
GROUP_COMMANDS = [
    CommandRoute(
        "/deputy-groups/{group_id}/activities",
        RecordGroupActivity,
        "record_group_activity",
        "登记小组活动",
        ("plans",),
        ids={"group_id": "代表小组编号"},
    ),
]

PLAN_ID = {"plan_id": "工作方案编号"}

#: The commands of plans (工作方案).
PLAN_COMMANDS = [
    CommandRoute("/plans", CreatePlan, "create", "制定工作方案", ("plans",), status_code=201),
    CommandRoute(
        "/plans/{plan_id}/revise", RevisePlan, "revise", "修订工作方案（整体替换，记录改动）", ("plans",), ids=PLAN_ID
    ),
    CommandRoute(
        "/plans/{plan_id}/items/{item_id}/milestones",
        RecordPlanMilestone,
        "record_milestone",
        "报送形象进度（责任单位或工委）",
        ("plans",),
        ids=PLAN_ID | {"item_id": "项目编号"},
    ),
    CommandRoute(
        "/plans/{plan_id}/duties/{duty}/done",
        MarkPlanDutyDone,
        "mark_done",
        "登记工作节点已完成（如小组方案已报送、书面总结已交）",
        ("plans",),
        ids=PLAN_ID | {"duty": "工作节点编号"},
    ),
    CommandRoute(
        "/plans/{plan_id}/questions",
        SendInquiryQuestion,
        "send_question",
        "询问问题书面交办（专题询问）：立询问问题件，交承办单位限期书面答复",
        ("plans",),
        status_code=201,
        ids=PLAN_ID,
        view=lambda case: case_view(case),
    ),
]


def case_view(case: Case) -> dict[str, Any]:
    """A case as the event store has it (the state after its last event)."""
    view = case.model_dump(mode="json", exclude={"draft", "fired"})
    view["status_name"] = STATUS_NAMES.get(case.status) if case.status else None
    if case.deadline is not None:
        view["due_at_shanghai"] = case.deadline.due_at.astimezone(SHANGHAI).isoformat()
    view["supervised"] = case.supervised
    return view


#: 督办清单 marks a case whose deadline is this many working days away or fewer (amber).
DUE_SOON_WORKING_DAYS = 5


def working_days_left(today: date, due_on: date | str | None, calendar: WorkingCalendar) -> int | None:
    """Working days from today up to the due day (both counted; 0 once it has passed); None
    without a deadline. Counted up to a fortnight: beyond that the figure does not matter."""
    if due_on is None:
        return None
    due = date.fromisoformat(due_on) if isinstance(due_on, str) else due_on
    if due < today:
        return 0
    days = [today + timedelta(days=n) for n in range(min((due - today).days + 1, 15))]
    return sum(1 for day in days if calendar.is_workday(day)) if (due - today).days < 15 else 99


def unit_only(principal: Principal) -> str | None:
    """The unit of a principal who is a unit's staff and nothing more (staff, leaders and
    operators see every case of the level): what it may see is its own cases."""
    if principal.has(Role.unit) and not principal.has(Role.committee, Role.admin, Role.leader, Role.operator):
        return principal.unit or principal.id
    return None


def build_router(
    settings: Settings, *, handlers: Provided[TrackingHandlers], engine: Provided[AsyncEngine]
) -> APIRouter:
    here, get_handlers, get_engine, caller, router = service_router(
        settings, handlers=handlers, engine=engine, not_found="办理件不存在"
    )

    add_command_routes(router, CASE_COMMANDS, handlers=get_handlers, caller=caller, view=case_view)
    add_command_routes(
        router, GROUP_COMMANDS, handlers=get_handlers, caller=caller, view=lambda group: group.model_dump(mode="json")
    )
    add_command_routes(router, PLAN_COMMANDS, handlers=lambda: get_handlers().plans, caller=caller, view=plan_view)

    def now():
        return get_handlers().clock()

    @router.get("/cases", tags=["cases"], summary="办理件列表")
    async def list_cases(
        status: CaseStatus | None = None,
        unit: str | None = Query(default=None, max_length=200, description="主办单位编号或名称"),
        committee: str | None = Query(default=None, max_length=100),
        key: bool | None = Query(default=None, description="仅重点督办件"),
        kind: CaseKind | None = Query(default=None, description="类别（含 inquiry 询问问题、rectification 整改）"),
        plan: str | None = Query(default=None, pattern=ID_PATTERN, description="工作方案编号"),
        item: str | None = Query(default=None, pattern=ID_PATTERN, description="工作方案的项目编号"),
        q: str | None = Query(default=None, max_length=100, description="在案由和编号中查找"),
        township: str | None = Query(default=None, pattern=r"^\d{9}$", description="事项提出地（乡镇、街道代码）"),
        leader: str | None = Query(default=None, max_length=100, description="领衔督办领导"),
        category: str | None = Query(default=None, max_length=50, description="分类（如 营商环境）"),
        body: Body | None = Query(default=None, description="机关：congress 人大，cppcc 政协"),
        limit: int = limit_query(100, 500),
        offset: int = offset_query(),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        if (own := unit_only(principal)) is not None:
            unit = own  # a unit sees the cases it leads, whatever it asks for
        rows = await projections.list_cases(
            get_engine(),
            jurisdiction=here,
            now=now(),
            status=status,
            unit=unit,
            committee=committee,
            key=key,
            kind=kind.value if kind else None,
            text=q,
            raised_in=township,
            leader=leader,
            category=category,
            body=body.value if body else None,
            plan=plan,
            item=item,
            limit=limit,
            offset=offset,
        )
        today = now().astimezone(SHANGHAI).date()
        calendar = get_handlers().config.calendar
        for row in rows:
            handling = row["status"] in projections.HANDLING  # as for overdue
            left = working_days_left(today, row.get("due_on"), calendar) if handling else None
            row["working_days_left"] = left
            row["due_soon"] = left is not None and not row["overdue"] and left <= DUE_SOON_WORKING_DAYS
        return {"items": rows, "limit": limit, "offset": offset}

    @router.get("/cases/{case_id}/assignment-preview", tags=["cases"], summary="交办前预览办理期限")
    async def assignment_preview(case_id: str = CaseId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        return await get_handlers().assignment_preview(case_id, principal)

    @router.get("/cases/{case_id}", tags=["cases"], summary="办理件详情与全部经过")
    async def case_detail(case_id: str = CaseId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        """The case as stored (always current) with its row in the lists and its full history."""
        case = await get_handlers().store.load(Case, case_id)
        if not case.exists:
            raise DomainError(f"办理件 {case_id} 不存在", field="case_id", code="not_found")
        if (own := unit_only(principal)) is not None and not (case.is_lead(own) or case.is_co_unit(own)):
            raise NotAllowed("无权查看其他承办单位的办理件", field="case_id")
        row = await projections.get_case(get_engine(), case_id, now())
        history = await projections.case_history(get_engine(), case_id)
        return {"case": case_view(case), "row": row, "history": history, "version": case.version}

    @router.get("/units/workload", tags=["lists"], summary="承办单位工作量与按时办结率")
    async def workload(principal: Principal = Depends(caller)) -> dict[str, Any]:
        return {"items": await projections.unit_workload(get_engine(), jurisdiction=here, now=now())}

    @router.get("/deputy-groups", tags=["plans"], summary="代表小组（集中活动不足3次的标出）")
    async def deputy_groups(
        year: int | None = Query(default=None, ge=2000, le=2100), principal: Principal = Depends(caller)
    ) -> dict[str, Any]:
        return {"items": await projections.list_deputy_groups(get_engine(), jurisdiction=here, year=year)}

    add_plan_routes(router, here, get_handlers, get_engine, caller, now)
    return router


def create_api(settings: Settings, *, handlers: Provided[TrackingHandlers], engine: Provided[AsyncEngine]) -> FastAPI:
    return service_app(TITLE, settings, build_router(settings, handlers=handlers, engine=engine))
