"""Intake's HTTP API (事项受理): submit, review, route and read the matters of one level.

Every route but ``/healthz`` needs a bearer token of a principal of this deployment's
jurisdiction; the handlers check the roles. Commands take the matter id from the path and the
rest of the command as the JSON body. Reads come from the read models (``projections.py``); a
matter's detail falls back to the event store when its projection has not caught up yet, so a
matter is readable the moment it is submitted.

``app.py`` builds it with :func:`create_api` (a whole FastAPI app) or includes
:func:`build_router` in an app of its own (which then also needs ``install_error_handlers``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.bodies import BODY_NAMES, Body
from contracts.envelope import Envelope
from contracts.events import Command, upcast
from contracts.intake import (
    KIND_NAMES,
    STATUS_NAMES,
    Channel,
    ConvertMatter,
    EscalateMatter,
    FeedBackToRaiser,
    GiveFeedbackOnReply,
    MatterKind,
    MatterStatus,
    MergeMatter,
    RecordActivity,
    RecordOutcome,
    RegisterMatter,
    RejectMatter,
    RouteMatter,
    SendDownMatter,
    SubmitMatter,
    TransferMatter,
)
from contracts.jurisdictions import JurisdictionRegistry
from services.runtime.es.aggregate import DomainError
from services.runtime.http.app import (
    Provided,
    error_body,
    service_app,
    service_router,
)
from services.runtime.http.auth import STAFF, Principal
from services.runtime.http.bounds import DayOrInstant, limit_query, offset_query
from services.runtime.http.routes import ID_PATTERN, CommandRoute, IdempotencyKey, add_command_routes
from services.runtime.http.spreadsheets import upload_body, uploaded_file
from services.runtime.read import people
from services.runtime.settings import Settings

from . import imports
from .domain import Matter
from .handlers import IntakeHandlers

log = logging.getLogger("duban.intake.api")

TITLE = "duban intake 事项受理"
#: An aggregate id as subjects and KV keys take it (``contracts.envelope.Envelope.aggregate_id``).


# -- commands, shared with the NATS command subject -----------------------------------------
MATTER_ID = {"matter_id": "事项编号"}
#: Every command of intake: ``POST <path>`` over HTTP, ``duban.cmd.intake.<j>.<name>`` over NATS.
COMMANDS = [
    CommandRoute("/matters", SubmitMatter, "submit", "提交事项", ("matters",), 201, creates=True, name="submit"),
    CommandRoute("/matters/{matter_id}/register", RegisterMatter, "register", "立案", ("review",), ids=MATTER_ID),
    CommandRoute("/matters/{matter_id}/reject", RejectMatter, "reject", "不予立案", ("review",), ids=MATTER_ID),
    CommandRoute("/matters/{matter_id}/convert", ConvertMatter, "convert", "转换类别", ("review",), ids=MATTER_ID),
    CommandRoute(
        "/matters/{matter_id}/transfer",
        TransferMatter,
        "transfer",
        "转交另一机关（人大、政协）",
        ("review",),
        ids=MATTER_ID,
    ),
    CommandRoute("/matters/{matter_id}/merge", MergeMatter, "merge", "并案", ("review",), ids=MATTER_ID),
    CommandRoute("/matters/{matter_id}/route", RouteMatter, "route", "本级办理", ("routing",), ids=MATTER_ID),
    CommandRoute("/matters/{matter_id}/escalate", EscalateMatter, "escalate", "上报上级", ("routing",), ids=MATTER_ID),
    CommandRoute(
        "/matters/{matter_id}/send-down", SendDownMatter, "send_down", "交由下级办理", ("routing",), ids=MATTER_ID
    ),
    CommandRoute(
        "/matters/{matter_id}/outcome", RecordOutcome, "record_outcome", "记录办理结果", ("routing",), ids=MATTER_ID
    ),
    CommandRoute(
        "/matters/{matter_id}/feedback",
        GiveFeedbackOnReply,
        "give_feedback_on_reply",
        "反馈满意度（对上级的答复，由提出人在本级反馈）",
        ("routing",),
        ids=MATTER_ID,
    ),
    CommandRoute(
        "/matters/{matter_id}/raiser-feedback",
        FeedBackToRaiser,
        "feed_back_to_raiser",
        "向反映主体反馈（企业、群众）",
        ("routing",),
        ids=MATTER_ID,
    ),
]
COMMANDS_BY_NAME = {route.name: route for route in COMMANDS}
#: Activities (走访、调研、座谈) of stations and committees.
ACTIVITY_COMMANDS = [
    CommandRoute("/activities", RecordActivity, "record_activity", "登记活动", ("activities",), 201, creates=True)
]


def input_errors(command: Command, registry: JurisdictionRegistry) -> list[dict[str, Any]]:
    """What the models cannot check alone: ids usable as subjects, codes the registry knows.

    Errors are shaped like pydantic's (``loc`` within the command, ``type``, ``msg``)."""
    errors: list[dict[str, Any]] = []
    for name in ("matter_id", "into"):
        value = getattr(command, name, None)
        if isinstance(value, str) and not re.match(ID_PATTERN, value):
            errors.append({"loc": (name,), "type": "invalid_id", "msg": "Invalid id"})
    if isinstance(command, SubmitMatter) and command.matter.raised_in not in registry:
        errors.append({"loc": ("matter", "raised_in"), "type": "unknown_jurisdiction", "msg": "Unknown jurisdiction"})
    if isinstance(command, SendDownMatter) and command.to not in registry:
        errors.append({"loc": ("to",), "type": "unknown_jurisdiction", "msg": "Unknown jurisdiction"})
    return errors


def matter_view(matter: Matter) -> dict[str, Any]:
    """A matter as the event store has it (the state after its last event)."""
    view = matter.model_dump(mode="json", exclude={"idempotency_key"})
    view["status_name"] = STATUS_NAMES.get(matter.status) if matter.status else None
    view["kind_name"] = KIND_NAMES.get(matter.data.kind) if matter.data else None
    view["body_name"] = BODY_NAMES[matter.data.body] if matter.data else None
    return view


MatterId = Path(pattern=ID_PATTERN, description="事项编号")


def _refuse_input(errors: list[dict[str, Any]], prefix: tuple[str, ...] = ("body",)) -> None:
    if errors:
        raise RequestValidationError([{**e, "loc": (*prefix, *e["loc"])} for e in errors])


# -- the router -----------------------------------------------------------------------------
def build_router(
    settings: Settings,
    *,
    handlers: Provided[IntakeHandlers],
    engine: Provided[AsyncEngine],
) -> APIRouter:
    """The intake routes. ``handlers`` and ``engine`` are the objects, or functions returning
    them (for an app built before NATS and the database are connected)."""
    from . import projections, similarity

    here, get_handlers, get_engine, caller, router = service_router(
        settings, handlers=handlers, engine=engine, not_found="事项不存在"
    )

    async def duplicates_of(title: str, content: str, exclude_id: str) -> list[dict[str, Any]]:
        """Possible duplicates from the read model; a hint, so a failing check gives none."""
        try:
            return await similarity.possible_duplicates(
                get_engine(), jurisdiction=here, title=title, content=content, exclude_id=exclude_id
            )
        except SQLAlchemyError as err:
            log.warning("duplicate check unavailable", extra={"error": type(err).__name__})
            return []

    def check(command: Command) -> list[dict[str, Any]]:
        return input_errors(command, get_handlers().registry)

    async def submitted(matter: Matter) -> dict[str, Any]:
        """A submitted matter, with the possible duplicates the answer lists."""
        view = matter_view(matter)
        assert matter.data is not None
        view["possible_duplicates"] = await duplicates_of(matter.data.title, matter.data.content, matter.id)
        return view

    add_command_routes(router, COMMANDS[:1], handlers=get_handlers, caller=caller, view=submitted, check=check)
    add_command_routes(router, COMMANDS[1:], handlers=get_handlers, caller=caller, view=matter_view, check=check)
    add_command_routes(
        router, ACTIVITY_COMMANDS, handlers=get_handlers, caller=caller, view=lambda a: a.model_dump(mode="json")
    )

    @router.post("/matters/import", tags=["matters"], summary="批量导入事项（CSV / XLSX）", openapi_extra=_IMPORT_BODY)
    async def import_file(
        request: Request,
        idempotency_key: str | None = IdempotencyKey,
        principal: Principal = Depends(caller),
    ) -> Any:
        """Import a liaison station's list; see ``services/intake/imports.py`` for the columns."""
        try:
            data, _ = await uploaded_file(request)
            return await imports.import_matters(get_handlers(), principal, data, idempotency_key=idempotency_key)
        except imports.ImportRefused as err:
            return JSONResponse(error_body(err.code, err.message, "file"), err.status)

    # -- reads ----------------------------------------------------------------------------
    @router.get("/matters", tags=["matters"], summary="事项列表")
    async def list_matters(
        kind: list[MatterKind] | None = Query(default=None, description="可多选"),
        status: list[MatterStatus] | None = Query(default=None, description="可多选"),
        body: Body | None = Query(default=None, description="机关：congress 人大，cppcc 政协"),
        lead: str | None = Query(default=None, pattern=ID_PATTERN, description="领衔人编号（我的事项）"),
        plan: str | None = Query(default=None, pattern=ID_PATTERN, description="为之收集的工作方案编号"),
        plan_item: str | None = Query(default=None, pattern=ID_PATTERN, description="为之收集的工作方案项目编号"),
        filters: _Filters = Depends(),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        rows = await projections.list_matters(
            get_engine(),
            jurisdiction=here,
            kind=kind,
            status=status,
            body=body,
            lead=lead,
            plan=plan,
            plan_item=plan_item,
            **filters.args,
        )
        return _page([hide_contact(row, principal) for row in rows], filters)

    @router.get("/matters/{matter_id}", tags=["matters"], summary="事项详情与全部经过")
    async def matter_detail(matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        """The matter and every event of it (who, when, what), oldest first. ``source`` says
        whether it was read from the read models or, when they lag, from the event store."""
        detail = await _detail(get_handlers(), get_engine(), matter_id)
        hide_contact(detail["matter"], principal)
        return detail

    @router.get("/matters/{matter_id}/duplicates", tags=["matters"], summary="可能重复的事项")
    async def matter_duplicates(matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        matter = await get_handlers().store.load(Matter, matter_id)
        if not matter.exists or matter.data is None:
            raise DomainError(f"事项 {matter_id} 不存在", field="matter_id", code="not_found")
        found = await duplicates_of(matter.data.title, matter.data.content, matter_id)
        return {"id": matter_id, "possible_duplicates": found}

    @router.get("/activities", tags=["activities"], summary="活动列表")
    async def list_activities(
        since: DayOrInstant | None = Query(default=None, description="起（含当日）"),
        until: DayOrInstant | None = Query(default=None, description="止（含当日）"),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        rows = await projections.list_activities(get_engine(), here, since=since, until=until)
        return {"items": rows}

    return router


class _Filters:
    """The filters every list shares."""

    def __init__(
        self,
        channel: Channel | None = Query(default=None, description="渠道"),
        category: str | None = Query(default=None, max_length=50, description="分类"),
        since: DayOrInstant | None = Query(default=None, description="提交时间起：日期含当日，时间含该时刻"),
        until: DayOrInstant | None = Query(default=None, description="提交时间止：日期含当日，时间不含该时刻"),
        q: str | None = Query(default=None, max_length=100, description="在案由和内容中查找"),
        limit: int = limit_query(100, 500),
        offset: int = offset_query(),
    ) -> None:
        self.limit, self.offset = limit, offset
        self.args = {
            "channel": channel,
            "category": category,
            "since": since,
            "until": until,
            "text": q,
            "limit": limit,
            "offset": offset,
        }


def may_see_contact(principal: Principal, row: dict[str, Any]) -> bool:
    """Who may read how to reach the enterprise or resident who raised it: the level's committee
    staff and the matter's own submitters; everyone else (units, leaders, other deputies,
    evaluators, operators) sees it masked."""
    staff = principal.has(*STAFF) and principal.jurisdiction == row.get("jurisdiction", principal.jurisdiction)
    return staff or principal.id in (row.get("submitter_ids") or [])


def mask_contact(contact: str) -> str:
    """``139****0001`` for a mobile, else its first character and asterisks."""
    digits = re.sub(r"\D", "", contact)
    if len(digits) >= 7 and len(digits) >= len(contact.replace(" ", "").replace("-", "")) - 1:
        return people.mask_mobile(digits) or ""
    return contact[:1] + "****"


def hide_contact(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    if row.get("raised_by_contact") and not may_see_contact(principal, row):
        row["raised_by_contact"] = mask_contact(row["raised_by_contact"])
    return row


def _page(rows: list[dict[str, Any]], filters: _Filters) -> dict[str, Any]:
    for row in rows:
        row["status_name"] = STATUS_NAMES.get(row.get("status"))  # type: ignore[arg-type]
        row["kind_name"] = KIND_NAMES.get(row.get("kind"))  # type: ignore[arg-type]
    return {"items": rows, "limit": filters.limit, "offset": filters.offset}


async def _detail(handlers: IntakeHandlers, engine: AsyncEngine, matter_id: str) -> dict[str, Any]:
    from . import projections

    matter = await handlers.store.load(Matter, matter_id)
    if not matter.exists:
        raise DomainError(f"事项 {matter_id} 不存在", field="matter_id", code="not_found")
    try:
        row = await projections.get_matter(engine, matter_id)
        history = await projections.matter_history(engine, matter_id) if row is not None else []
    except SQLAlchemyError as err:
        log.warning("read model unavailable, reading the event store", extra={"error": type(err).__name__})
        row, history = None, []
    source = "read_model"
    if row is None or (row.get("version") or 0) < matter.sequence or len(history) < matter.sequence:
        row, history = _fold(matter_id, await handlers.store.history(matter_id))
        source = "event_store"
    row["status_name"] = STATUS_NAMES.get(row.get("status"))  # type: ignore[arg-type]
    row["kind_name"] = KIND_NAMES.get(row.get("kind"))  # type: ignore[arg-type]
    return {"matter": row, "history": history, "source": source, "version": matter.version}


def _fold(matter_id: str, envelopes: list[Envelope]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The read models' row and history of one matter, from its stored events, by the very
    handlers of the projections (so both sources read the same)."""
    from .projections import MatterHistoryProjection, MatterListProjection

    listing, described = MatterListProjection(), MatterHistoryProjection()
    row = listing.new_document(matter_id)
    history = []
    for envelope in envelopes:
        event = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
        change = listing._handlers.get(envelope.event_type)
        if change is not None:
            change(listing, row, event, envelope)
        entry = described.row_for(envelope)
        if entry is not None:
            history.append(entry)
    return row, history


_IMPORT_BODY = upload_body(
    "CSV（UTF-8 或 GBK）或 XLSX；列：类别、案由、内容、领衔人、领衔人编号、"
    "附议人、渠道、分类、反映主体、联系方式、活动编号"
)


# -- the app --------------------------------------------------------------------------------
def create_api(settings: Settings, *, handlers: Provided[IntakeHandlers], engine: Provided[AsyncEngine]) -> FastAPI:
    """The intake HTTP app of one level."""
    description = (
        f"事项受理（{settings.jurisdiction}）：提交、审查（立案、不予立案、转类、并案）、本级办理、"
        "上报、交下级、办理结果，以及问题清单、建议清单和活动。所有接口（/healthz、/readyz 除外）需要 Bearer 令牌。"
    )
    router = build_router(settings, handlers=handlers, engine=engine)
    return service_app(TITLE, settings, router, max_body=imports.MAX_BYTES + 1024 * 1024, description=description)


__all__ = [
    "COMMANDS",
    "TITLE",
    "CommandRoute",
    "build_router",
    "create_api",
    "input_errors",
    "matter_view",
]
