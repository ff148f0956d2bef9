"""Tracking's HTTP routes for plans (工作方案) that are not commands: reading plans, their items
across plans (by plan, kind, month of their window, leader, committee, group), their duties as
they stand, the matters that came in under them, and importing a plan file."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from contracts.intake import ID_PATTERN
from contracts.plans import ITEM_KIND_NAMES, LEADER_ROLE_NAMES, ItemKind, PlanData
from services.runtime.es.aggregate import DomainError
from services.runtime.http.app import error_body
from services.runtime.http.auth import Principal
from services.runtime.http.bounds import Month
from services.runtime.http.spreadsheets import ImportRefused, upload_body, uploaded_file

from . import projections
from .domain import Plan

PlanId = Path(pattern=ID_PATTERN, description="工作方案编号")


def plan_view(plan: Plan) -> dict[str, Any]:
    """A plan as the event store has it."""
    view = plan.model_dump(mode="json")
    view["plan_id"] = plan.id
    return view


def item_row(plan_row: dict[str, Any], item: dict[str, Any], counts: dict[tuple[str, str], int]) -> dict[str, Any]:
    """An item as lists show it: its plan, leaders and units as text, what came in under it."""
    by_place = {where: n for (item_id, where), n in counts.items() if item_id == item["id"]}
    evaluations = (plan_row["evaluations"] or {}).get(item["id"], [])
    progress = plan_row["progress"] or {}
    return item | {
        "plan_id": plan_row["id"],
        "plan_title": plan_row["title"],
        "kind_name": ITEM_KIND_NAMES[ItemKind(item["kind"])],
        "leader_names": "、".join(
            f"{LEADER_ROLE_NAMES[leader['role']]} {leader['name']}" for leader in item["leaders"]
        ),
        "committee_names": "、".join(item["committees"]),
        "lead_unit_names": "、".join(u["name"] for u in item["lead_units"]),
        "co_unit_names": "、".join([*(u["name"] for u in item["co_units"]), *item["other_units"]]),
        "matters": sum(by_place.values()),
        "matters_by_place": dict(sorted(by_place.items())),
        "milestones": [m | {"progress": progress.get(f"{item['id']}/{m['key']}")} for m in item["milestones"]],
        "evaluations": evaluations,
        "evaluation": evaluations[-1] if evaluations else None,
    }


def add_plan_routes(
    router: APIRouter,
    here: str,
    get_handlers: Callable[[], Any],
    get_engine: Callable[[], Any],
    caller: Callable[..., Any],
    now: Callable[[], datetime],
) -> None:
    async def plan_row(plan_id: str) -> dict[str, Any]:
        row = await projections.get_plan(get_engine(), plan_id)
        if row is None or row["jurisdiction"] != here:
            raise DomainError(f"工作方案 {plan_id} 不存在", field="plan_id", code="not_found")
        return row

    @router.get("/plans", tags=["plans"], summary="工作方案列表")
    async def list_plans(
        year: int | None = Query(default=None, ge=2000, le=2100), principal: Principal = Depends(caller)
    ) -> dict[str, Any]:
        rows = await projections.list_plans(get_engine(), jurisdiction=here, year=year)
        items = [
            {
                "id": r["id"],
                "title": r["title"],
                "year": r["year"],
                "source": r["source"],
                "motion_id": r["motion_id"],
                "items": len(r["data"]["items"]),
                "groups": len(r["data"]["groups"]),
                "phases": [{"name": p["name"], "start": p["start"], "end": p["end"]} for p in r["data"]["phases"]],
            }
            for r in rows
        ]
        return {"items": items}

    @router.post(
        "/plans/import",
        tags=["plans"],
        summary="导入工作方案文件（JSON）或项目表（XLSX/CSV）",
        openapi_extra=upload_body(
            "工作方案文件：JSON（方案编号 id、级别 jurisdiction 及方案内容），"
            "或项目表 XLSX/CSV（编号、序号、类别、项目、具体内容、牵头领导、责任领导、联系领导、"
            "工委、牵头单位、责任单位、开始、结束、期限、参与小组）"
        ),
    )
    async def import_plan(
        request: Request,
        plan_id: str | None = Query(default=None, pattern=ID_PATTERN, description="项目表所属的工作方案编号"),
        title: str | None = Query(default=None, max_length=200, description="新方案的标题（项目表）"),
        year: int | None = Query(default=None, ge=2000, le=2100, description="新方案的年度（项目表）"),
        principal: Principal = Depends(caller),
    ) -> Any:
        """A new plan is created, a changed one revised (every change an event), the same one
        again changes nothing. A table of items (XLSX, CSV) replaces the items of ``plan_id``,
        or starts that plan with ``title`` and ``year``; a bad row refuses the whole table."""
        try:
            content, name = await uploaded_file(request)
        except ImportRefused as err:
            return JSONResponse(error_body(err.code, err.message, "file"), err.status)
        plan, result = await get_handlers().plans.import_file(
            content, name or "工作方案文件", principal, plan_id=plan_id, title=title, year=year
        )
        assert plan.data is not None
        return {"plan_id": plan.id, "result": result, "items": len(plan.data.items), "version": plan.version}

    @router.get("/plans/{plan_id}", tags=["plans"], summary="工作方案详情：阶段、项目、收集的问题、询问问题、测评结果")
    async def get_plan(plan_id: str = PlanId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        row = await plan_row(plan_id)
        counts = await projections.plan_matter_counts(get_engine(), plan_id)
        data = row["data"]
        return {
            "id": row["id"],
            "title": row["title"],
            "year": row["year"],
            "source": row["source"],
            "issued_by": data.get("issued_by"),
            "issued_on": data.get("issued_on"),
            "body": data.get("body"),
            "motion_id": row["motion_id"],
            "phases": data["phases"],
            "groups": data["groups"],
            "items": [item_row(row, item, counts) for item in data["items"]],
            "questions": row["questions"],
            "changes": row["changes"],
            "version": row["version"],
        }

    @router.get(
        "/plans/{plan_id}/duties", tags=["plans"], summary="工作节点：按阶段、按小组，未完成的标出即将到期和已超期"
    )
    async def duties(
        plan_id: str = PlanId,
        group: str | None = Query(default=None, pattern=ID_PATTERN, description="小组编号"),
        status: str | None = Query(default=None, pattern=r"^(met|pending|due_soon|overdue)$"),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        rows = await get_handlers().plans.duties(await plan_row(plan_id), now())
        rows = [
            r for r in rows if (group is None or r["group_id"] == group) and (status is None or r["status"] == status)
        ]
        return {"items": rows}

    @router.get("/plans/{plan_id}/matters", tags=["plans"], summary="为该方案收集的事项（本级提出及下级上报）")
    async def matters(
        plan_id: str = PlanId,
        item: str | None = Query(default=None, pattern=ID_PATTERN, description="项目编号"),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        await plan_row(plan_id)
        return {"items": await projections.plan_matter_list(get_engine(), plan_id, item)}

    @router.get(
        "/plan-items", tags=["plans"], summary="工作方案项目：按方案、类别、月份（时限覆盖）、领导、工委、小组筛选"
    )
    async def plan_items(
        plan: str | None = Query(default=None, pattern=ID_PATTERN, description="工作方案编号"),
        kind: ItemKind | None = Query(default=None, description="类别"),
        month: Month | None = Query(default=None, description="时限覆盖的月份，如 2023-10（2000-01 至 2100-12）"),
        leader: str | None = Query(default=None, max_length=100, description="牵头/责任/联系领导"),
        committee: str | None = Query(default=None, max_length=100, description="工委"),
        group: str | None = Query(default=None, pattern=ID_PATTERN, description="参与的小组编号"),
        year: int | None = Query(default=None, ge=2000, le=2100),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        rows = await projections.list_plans(get_engine(), jurisdiction=here, year=year)
        found = []
        for row in rows:
            if plan is not None and row["id"] != plan:
                continue
            data = PlanData.model_validate(row["data"])
            counts = await projections.plan_matter_counts(get_engine(), row["id"])
            for item, raw in zip(data.items, row["data"]["items"], strict=True):
                if kind is not None and item.kind is not kind:
                    continue
                if month is not None:
                    y, m = (int(part) for part in month.split("-"))
                    if item.window is None or not item.window.covers_month(y, m):
                        continue
                if leader is not None and leader not in {x.name for x in item.leaders}:
                    continue
                if committee is not None and not any(re.sub(r"\s", "", committee) == c for c in item.committees):
                    continue
                if group is not None and group not in item.groups:
                    continue
                found.append(item_row(row, raw, counts))
        return {"items": found}
