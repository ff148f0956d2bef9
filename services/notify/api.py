"""Notify's HTTP API (通知与公示): the inbox, deliveries, the directory, the four lists, the monthly
summary and public disclosure.

Every route needs a bearer token of a principal of this deployment's jurisdiction, except the
public ones under ``/public/`` (公示, readable and commentable by anyone) and ``/healthz``.
Lists and summaries export as CSV or XLSX with ``?format=``; file names are Chinese (RFC 5987).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.bodies import Body
from contracts.intake import ID_PATTERN
from contracts.jurisdictions import UnknownJurisdiction, default_registry
from contracts.notify import (
    DELIVERY_STATUS_NAMES,
    KIND_NAMES,
    MONTH_PATTERN,
    AddTypicalCase,
    DeliveryStatus,
    MarkRead,
    NoticeChannel,
    NoticeKind,
    RecipientEntry,
    ReleaseDisclosure,
    RemoveTypicalCase,
    ReplayDelivery,
    ReportSummary,
    SubmitPublicComment,
    WithdrawDisclosure,
)
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.http.app import (
    Provided,
    Refusal,
    provided,
    service_app,
    service_router,
)
from services.runtime.http.auth import Principal, Role
from services.runtime.http.bounds import Day, Month, limit_query, month_errors, offset_query
from services.runtime.http.limits import Limiter, Rate
from services.runtime.http.routes import CommandRoute, add_command_routes
from services.runtime.settings import Settings

from . import lists, projections, summary
from .domain import Delivery, MonthlySummary
from .handlers import OPERATORS, STAFF, NotifyHandlers, reader_ids
from .settings import NotifySettings

log = logging.getLogger("duban.notify.api")

TITLE = "duban notify 通知、清单与公示"
READERS = (*STAFF, Role.leader, Role.operator)
#: The four lists are the congress's: its staff, leaders and deputies (and liaison stations) read them.
LIST_READERS = (*READERS, Role.deputy, Role.liaison_station)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DeliveryId = Path(pattern=ID_PATTERN, description="发送记录编号")
CaseId = Path(pattern=ID_PATTERN, description="办理件编号")
MonthInPath = Path(pattern=MONTH_PATTERN, description="月份，如 2026-09")
MONTH = {"month": "月份，如 2026-09"}


def _typical_cases(state: MonthlySummary) -> dict[str, Any]:
    month = state.id.removeprefix(MonthlySummary.id_for(""))  # known before the month is compiled
    return {"month": month, "typical_cases": [c.model_dump(mode="json") for c in state.typical_cases]}


#: Notify's commands: the inbox, deliveries, the monthly summary, disclosures.
COMMANDS = [
    CommandRoute(
        "/inbox/{delivery_id}/read",
        MarkRead,
        "mark_read",
        "标记已读",
        ("inbox",),
        ids={"delivery_id": "发送记录编号"},
        view=lambda d: {"id": d.id, "read_by": d.read_by},
    ),
    CommandRoute(
        "/deliveries/{delivery_id}/replay",
        ReplayDelivery,
        "replay",
        "重发（结果不明或已转死信的通知）",
        ("deliveries",),
        ids={"delivery_id": "发送记录编号"},
        view=lambda d: {"id": d.id, "replay": "requested"},
    ),
    CommandRoute(
        "/summaries/{month}/report",
        ReportSummary,
        "report_summary",
        "立即汇总并报送上级",
        ("summary",),
        ids=MONTH,
        view=lambda s: {
            "month": s.month,
            "revision": s.revision,
            "figures": s.figures.model_dump() if s.figures else None,
        },
    ),
    CommandRoute(
        "/summaries/{month}/typical-cases",
        AddTypicalCase,
        "add_typical_case",
        "添加典型案例",
        ("summary",),
        ids=MONTH,
        creates=True,
        view=_typical_cases,
    ),
    CommandRoute(
        "/summaries/{month}/typical-cases/{case_id}",
        RemoveTypicalCase,
        "remove_typical_case",
        "删除典型案例",
        ("summary",),
        ids={**MONTH, "case_id": "典型案例编号"},
        view=_typical_cases,
        verb="DELETE",
    ),
    CommandRoute(
        "/disclosures",
        ReleaseDisclosure,
        "release",
        "发布公示（已办结的重点件）",
        ("disclosure",),
        view=lambda d: {"id": d.id, "released": d.released, "text": d.text.model_dump()},
    ),
    CommandRoute(
        "/disclosures/{case_id}/withdraw",
        WithdrawDisclosure,
        "withdraw",
        "撤回公示",
        ("disclosure",),
        ids={"case_id": "办理件编号"},
        view=lambda d: {"id": d.id, "released": d.released},
    ),
]


def _require(principal: Principal, roles: tuple[Role, ...], what: str) -> None:
    if not principal.has(*roles):
        raise NotAllowed(f"当前身份不能{what}")


def _file(content: bytes, media_type: str, filename: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )


def _delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["status_name"] = DELIVERY_STATUS_NAMES.get(DeliveryStatus(row["status"])) if row.get("status") else None
    try:
        row["kind_name"] = KIND_NAMES[NoticeKind(row["kind"])]
    except (ValueError, KeyError):
        row["kind_name"] = row.get("kind")
    return row


def build_router(settings: Settings, *, handlers: Provided[NotifyHandlers], engine: Provided[AsyncEngine]) -> APIRouter:
    here, get_handlers, get_engine, caller, router = service_router(
        settings, handlers=handlers, engine=engine, not_found="不存在"
    )

    def place(code: str | None) -> str:
        try:
            return get_handlers().registry.get(code or "").name
        except UnknownJurisdiction:
            return code or ""

    # -- the inbox ------------------------------------------------------------------------
    @router.get("/inbox", tags=["inbox"], summary="我的站内消息")
    async def my_inbox(
        unread: bool = Query(default=False, description="仅未读"),
        limit: int = limit_query(100, 500),
        offset: int = offset_query(),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        """The caller's notices: addressed to them, to a role they hold, or (a leader) to their name."""
        rows = await projections.inbox(get_engine(), reader_ids(principal), unread=unread, limit=limit, offset=offset)
        return {"items": [_delivery_view(r) for r in rows], "limit": limit, "offset": offset}

    # -- deliveries (operators) -----------------------------------------------------------
    @router.get("/deliveries", tags=["deliveries"], summary="通知发送记录")
    async def deliveries(
        status: DeliveryStatus | None = None,
        recipient: str | None = Query(default=None, max_length=128),
        channel: NoticeChannel | None = None,
        topic: str | None = Query(default=None, max_length=64, description="事项、办理件或测评编号"),
        limit: int = limit_query(200, 1000),
        offset: int = offset_query(),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        """Every delivery with its status: ``in_doubt`` and ``dead_lettered`` are what operators look at."""
        _require(principal, (*OPERATORS, *STAFF), "查看发送记录")
        rows = await projections.list_deliveries(
            get_engine(),
            status=status.value if status else None,
            recipient_id=recipient,
            channel=channel.value if channel else None,
            topic_id=topic,
            limit=limit,
            offset=offset,
        )
        return {"items": [_delivery_view(r) for r in rows], "limit": limit, "offset": offset}

    @router.get("/deliveries/{delivery_id}", tags=["deliveries"], summary="发送记录详情与经过")
    async def delivery_detail(delivery_id: str = DeliveryId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        _require(principal, (*OPERATORS, *STAFF), "查看发送记录")
        h = get_handlers()
        delivery = await h.store.load(Delivery, delivery_id)
        if not delivery.exists:
            raise DomainError("发送记录不存在", field="delivery_id", code="not_found")
        history = [
            {"event_type": e.event_type, "occurred_at": e.occurred_at, "payload": e.payload}
            for e in await h.store.history(delivery_id)
        ]
        return {"delivery": delivery.model_dump(mode="json"), "history": history}

    # -- the directory --------------------------------------------------------------------
    @router.get("/directory", tags=["directory"], summary="通讯录")
    async def directory(principal: Principal = Depends(caller)) -> dict[str, Any]:
        _require(principal, (*STAFF, Role.operator), "查看通讯录")
        return {"items": await projections.list_directory(get_engine())}

    @router.put("/directory/{recipient_id}", tags=["directory"], summary="新增或修改通讯录条目")
    async def put_recipient(
        entry: RecipientEntry,
        recipient_id: str = Path(max_length=128),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        if entry.id != recipient_id:
            raise DomainError("路径中的编号与条目编号不一致", field="id", code="id_mismatch")
        recorded = await get_handlers().record_recipient(entry, principal)
        return recorded.entry.model_dump(mode="json") if recorded.entry else {}

    @router.delete("/directory/{recipient_id}", tags=["directory"], summary="删除通讯录条目")
    async def delete_recipient(recipient_id: str = Path(max_length=128), principal: Principal = Depends(caller)):
        await get_handlers().remove_recipient(recipient_id, principal)
        return {"id": recipient_id, "removed": True}

    # -- the four lists -------------------------------------------------------------------
    @router.get("/lists/{name}", tags=["lists"], summary="四张清单（问题、建议、督办、成果）")
    async def the_list(
        name: str = Path(pattern=r"^(problems|suggestions|supervision|results)$"),
        format: str = Query(default="json", pattern=r"^(json|csv|xlsx)$"),
        level: str | None = Query(default=None, pattern=r"^(prefecture|county|township)$"),
        jurisdiction: str | None = Query(default=None, pattern=r"^\d{6}(\d{3})?$", description="提出地（含下级）"),
        unit: str | None = Query(default=None, max_length=200, description="主办或协办单位编号或名称"),
        committee: str | None = Query(default=None, max_length=100),
        since: Day | None = Query(default=None, description="起始日（含）"),
        until: Day | None = Query(default=None, description="截止日（含）"),
        key: bool | None = Query(default=None, description="仅重点督办件"),
        year: int | None = Query(default=None, ge=2000, le=2100, description="年度清单（督办清单含跨年度承诺事项）"),
        leader: str | None = Query(default=None, max_length=100, description="领衔督办领导"),
        category: str | None = Query(default=None, max_length=50, description="分类"),
        plan: str | None = Query(default=None, pattern=ID_PATTERN, description="工作方案编号"),
        item: str | None = Query(default=None, pattern=ID_PATTERN, description="工作方案项目编号"),
        body: Body | None = Query(default=None, description="机关：congress 人大，cppcc 政协"),
        principal: Principal = Depends(caller),
    ) -> Any:
        """问题清单 ``problems``, 建议清单 ``suggestions``, 督办清单 ``supervision``, 成果清单 ``results``:
        the one place each list is served, as JSON or exported (``format=csv|xlsx``)."""
        _require(principal, LIST_READERS, "查看清单")
        filters = lists.Filters(
            level=level,
            jurisdiction=jurisdiction,
            unit=unit,
            committee=committee,
            since=since,
            until=until,
            key=key,
            year=year,
            leader=leader,
            category=category,
            plan=plan,
            item=item,
            body=body.value if body else None,
        )
        rows = await lists.list_rows(get_engine(), name, filters, place)
        title = f"{place(here)}{lists.LISTS[name].title}"
        if format == "csv":
            return _file(lists.to_csv(name, rows), "text/csv; charset=utf-8", f"{title}.csv")
        if format == "xlsx":
            return _file(lists.to_xlsx(name, rows, subtitle=title), XLSX, f"{title}.xlsx")
        headers, values = lists.table(name, rows)
        return {"title": title, "headers": headers, "rows": values, "count": len(values)}

    # -- the monthly summary --------------------------------------------------------------
    @router.get("/summaries/{month}", tags=["summary"], summary="一月一小结（本级视图）")
    async def month_view(
        month: Annotated[Month, MonthInPath],
        format: str = Query(default="json", pattern=r"^(json|xlsx)$"),
        principal: Principal = Depends(caller),
    ) -> Any:
        """One row per lower level (and this level's own, below the prefecture) and a total; at
        台州市 one row per county. ``format=xlsx`` is the 附件's table."""
        _require(principal, READERS, "查看汇总表")
        h = get_handlers()
        view = await summary.level_view(get_engine(), h.registry, here, month, tuple(h.settings.solved_classes))
        stored = await projections.get_row(get_engine(), projections.summaries, MonthlySummary.id_for(month))
        view["compiled"] = (
            {"revision": stored["revision"], "compiled_on": stored["compiled_on"], "report_to": stored["report_to"]}
            if stored and stored["revision"]
            else None
        )
        view["columns"] = [{"key": key, "label": label} for key, label in summary.COLUMNS]
        if format == "xlsx":
            content = summary.summary_xlsx(view, filled_by=principal.name or principal.id, filled_on=h.today())
            return _file(content, XLSX, f"{view['name']}{month}情况汇总表.xlsx")
        return view

    add_command_routes(
        router, COMMANDS, handlers=get_handlers, caller=caller, view=lambda state: state, check=month_errors
    )
    return router


def public_router(
    settings: Settings, *, handlers: Provided[NotifyHandlers], engine: Provided[AsyncEngine]
) -> APIRouter:
    """公示: read by anyone, no token; only what staff released, only what a disclosure says.
    Comments, which anyone may send, are limited per client address (``limits.py``)."""
    get_handlers = provided(handlers)
    get_engine = provided(engine)
    limits = settings.as_(NotifySettings)
    comments = Limiter(
        "公示意见",
        per_target=Rate(limits.public_comments_per_minute, 60),
        per_address=Rate(limits.public_comments_per_hour, 3600),
    )
    router = APIRouter(prefix="/public", tags=["public"])
    fields = (
        "id", "body", "title", "leads", "unit", "summary", "evaluation_result", "kind", "registration_no",
        "year", "number", "released_at",
    )  # fmt: skip
    bodies = default_registry().bodies_of(settings.jurisdiction)
    headings = {body: disclosure_heading(settings.jurisdiction, body) for body in bodies}
    OfBody = Query(default=None, description="机关：congress 人大，cppcc 政协；不填则两者都列出")

    def public(row: dict[str, Any]) -> dict[str, Any]:
        marks = [mark for mark, on in (("专题类", row["topical"]), ("合并", row["merged"])) if on]
        return {name: row[name] for name in fields} | {"marks": marks}

    async def released(body: Body | None) -> list[dict[str, Any]]:
        return [public(r) for r in await projections.released_disclosures(get_engine(), body)]

    @router.get("/disclosures", summary="公示（JSON）")
    async def disclosures(body: Body | None = OfBody) -> dict[str, Any]:
        """The released disclosures of one body or of both, by number within year and kind, each
        body's under its own heading (``headings``)."""
        shown = {b: h for b, h in headings.items() if body is None or b is body}
        return {"jurisdiction": settings.jurisdiction, "headings": shown, "items": await released(body)}

    @router.get("/disclosures.html", summary="公示（网页）", response_class=HTMLResponse)
    async def disclosures_page(body: Body | None = OfBody) -> HTMLResponse:
        items = await released(body)
        sections = [
            {"body": b, "heading": heading, "items": [i for i in items if i["body"] == b]}
            for b, heading in headings.items()
            if body is None or b is body
        ]
        if body is None:  # both bodies: a body with nothing released yet is left out
            sections = [section for section in sections if section["items"]] or sections[:1]
        return HTMLResponse(get_handlers().templates.page("disclosure.html.j2", {"sections": sections}))

    @router.get("/disclosures/{case_id}", summary="一项公示")
    async def disclosure(case_id: str = CaseId) -> dict[str, Any]:
        row = await projections.get_row(get_engine(), projections.disclosures, case_id)
        if row is None or not row["released"]:
            raise DomainError("该公示不存在或已撤回", field="case_id", code="not_found")
        return public(row)

    @router.post(
        "/disclosures/{case_id}/comments",
        status_code=202,
        summary="对公示事项提出意见（同一来源有频率限制）",
        responses={429: {"model": Refusal, "description": "提交过于频繁，Retry-After 秒后再试"}},
    )
    async def comment(
        request: Request,
        body: SubmitPublicComment,
        case_id: str = CaseId,
        idempotency_key: str | None = Header(default=None, alias="Idempotency-Key", max_length=200),
    ) -> dict[str, Any]:
        """The comment is recorded now and handed to intake as a matter (受理后进入审查). From one
        address, at most ``public_comments_per_minute`` a minute on a disclosure and
        ``public_comments_per_hour`` an hour on all (429 with ``Retry-After`` beyond)."""
        comments.take(request.client.host if request.client else "", case_id)
        received = await get_handlers().comment(case_id, body, idempotency_key or None)
        return {"id": received.id, "status": "received", "message": "意见已收到，将作为事项受理"}

    return router


def disclosure_heading(jurisdiction: str, body: Body) -> str:
    """The heading a body's disclosures go under, with its organ's name from the jurisdiction data:
    政协温岭市委员会重点提案办理落实情况公示, 温岭市人大常委会重点建议办理落实情况公示."""
    organ = default_registry().organ(jurisdiction, body).name
    return f"{organ}{'重点提案' if body is Body.cppcc else '重点建议'}办理落实情况公示"


def create_api(settings: Settings, *, handlers: Provided[NotifyHandlers], engine: Provided[AsyncEngine]) -> FastAPI:
    """The whole notify app of one level."""
    routers = (
        public_router(settings, handlers=handlers, engine=engine),
        build_router(settings, handlers=handlers, engine=engine),
    )
    return service_app(TITLE, settings, *routers, max_body=200_000)
