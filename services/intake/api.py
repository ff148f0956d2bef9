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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import UploadFile

from contracts.envelope import Envelope
from contracts.events import Command, upcast
from contracts.intake import (
    KIND_NAMES,
    STATUS_NAMES,
    Channel,
    ConvertMatter,
    EscalateMatter,
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
)
from contracts.jurisdictions import JurisdictionRegistry
from services.runtime.aggregate import DomainError
from services.runtime.auth import Principal
from services.runtime.http import (
    HTTP_TELEMETRY,
    BodySizeLimit,
    Provided,
    body_model,
    error_body,
    health_router,
    install_error_handlers,
    principal_from_request,
    provided,
    refusals,
)
from services.runtime.settings import Settings

from . import imports
from .domain import Matter
from .handlers import IntakeHandlers

log = logging.getLogger("duban.intake.api")

TITLE = "duban intake 事项受理"
#: An aggregate id as subjects and KV keys take it (``contracts.envelope.Envelope.aggregate_id``).
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
IDEMPOTENCY_KEY_MAX = 200


# -- commands, shared with the NATS command subject -----------------------------------------
@dataclass(frozen=True)
class CommandSpec:
    """A command name of the API (``/matters/{id}/<name>``, ``duban.cmd.intake.<j>.<name>``)."""

    model: type[Command]
    method: str


COMMANDS: dict[str, CommandSpec] = {
    "submit": CommandSpec(SubmitMatter, "submit"),
    "register": CommandSpec(RegisterMatter, "register"),
    "reject": CommandSpec(RejectMatter, "reject"),
    "convert": CommandSpec(ConvertMatter, "convert"),
    "merge": CommandSpec(MergeMatter, "merge"),
    "route": CommandSpec(RouteMatter, "route"),
    "escalate": CommandSpec(EscalateMatter, "escalate"),
    "send-down": CommandSpec(SendDownMatter, "send_down"),
    "outcome": CommandSpec(RecordOutcome, "record_outcome"),
}


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


async def run_command(
    handlers: IntakeHandlers,
    name: str,
    command: Command,
    principal: Principal,
    idempotency_key: str | None = None,
) -> Matter:
    """Run one named command through the handlers (checks of roles and scope are theirs)."""
    if name == "submit":
        assert isinstance(command, SubmitMatter)
        matter = await handlers.submit(command, principal, idempotency_key)
        if idempotency_key and matter.data is not None and not _same_submission(matter, command):
            raise DomainError(
                "该 Idempotency-Key 已用于另一项内容不同的提交", field="Idempotency-Key", code="idempotency_key_reused"
            )
        return matter
    return await getattr(handlers, COMMANDS[name].method)(command, principal)


def _same_submission(matter: Matter, command: SubmitMatter) -> bool:
    """A retry repeats what was submitted (its kind may have been converted since)."""
    assert matter.data is not None
    stored, sent = matter.data, command.matter
    return (stored.title, stored.content, stored.lead) == (sent.title, sent.content, sent.lead)


def matter_view(matter: Matter) -> dict[str, Any]:
    """A matter as the event store has it (the state after its last event)."""
    view = matter.model_dump(mode="json", exclude={"idempotency_key"})
    view["status_name"] = STATUS_NAMES.get(matter.status) if matter.status else None
    view["kind_name"] = KIND_NAMES.get(matter.data.kind) if matter.data else None
    return view


# -- request bodies: the command without the matter id (it is in the path) ------------------
RejectBody = body_model(RejectMatter)
ConvertBody = body_model(ConvertMatter)
MergeBody = body_model(MergeMatter)
RouteBody = body_model(RouteMatter)
EscalateBody = body_model(EscalateMatter)
SendDownBody = body_model(SendDownMatter)
OutcomeBody = body_model(RecordOutcome)


REFUSALS = refusals("事项不存在")

MatterId = Path(pattern=ID_PATTERN, description="事项编号")
IdempotencyKey = Header(
    default=None,
    alias="Idempotency-Key",
    max_length=IDEMPOTENCY_KEY_MAX,
    description="重试时使用相同的值，事项只受理一次",
)


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

    here = settings.jurisdiction
    get_handlers = provided(handlers)
    get_engine = provided(engine)
    caller = principal_from_request(settings, jurisdiction=here)
    router = APIRouter(responses=REFUSALS)

    async def duplicates_of(title: str, content: str, exclude_id: str) -> list[dict[str, Any]]:
        """Possible duplicates from the read model; a hint, so a failing check gives none."""
        try:
            return await similarity.possible_duplicates(
                get_engine(), jurisdiction=here, title=title, content=content, exclude_id=exclude_id
            )
        except SQLAlchemyError as err:
            log.warning("duplicate check unavailable", extra={"error": type(err).__name__})
            return []

    async def command(name: str, command: Command, principal: Principal, key: str | None = None) -> dict:
        h = get_handlers()
        _refuse_input(input_errors(command, h.registry))
        return matter_view(await run_command(h, name, command, principal, key))

    def with_id(model: type[Command], matter_id: str, body: BaseModel | None = None) -> Command:
        return model.model_validate({**(body.model_dump() if body else {}), "matter_id": matter_id})

    # -- commands -------------------------------------------------------------------------
    @router.post("/matters", status_code=201, tags=["matters"], summary="提交事项")
    async def submit(
        body: SubmitMatter,
        idempotency_key: str | None = IdempotencyKey,
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        """Raise a matter (议案、建议、提案、问题、企业诉求). A retry with the same
        ``Idempotency-Key`` returns the same matter; the answer lists possible duplicates."""
        view = await command("submit", body, principal, idempotency_key or None)
        view["possible_duplicates"] = await duplicates_of(body.matter.title, body.matter.content, view["id"])
        return view

    @router.post("/matters/import", tags=["matters"], summary="批量导入事项（CSV / XLSX）", openapi_extra=_IMPORT_BODY)
    async def import_file(
        request: Request,
        idempotency_key: str | None = IdempotencyKey,
        principal: Principal = Depends(caller),
    ) -> Any:
        """Import a liaison station's list; see ``services/intake/imports.py`` for the columns."""
        form = await request.form(max_files=1, max_fields=10)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                return JSONResponse(
                    error_body("missing_file", "请以 multipart/form-data 上传文件（字段名 file）", "file"), 422
                )
            data = await upload.read(imports.MAX_BYTES + 1)
        finally:
            await form.close()
        try:
            return await imports.import_matters(get_handlers(), principal, data, idempotency_key=idempotency_key)
        except imports.ImportRefused as err:
            return JSONResponse(error_body(err.code, err.message, "file"), err.status)

    @router.post("/matters/{matter_id}/register", tags=["review"], summary="立案")
    async def register(matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        return await command("register", with_id(RegisterMatter, matter_id), principal)

    @router.post("/matters/{matter_id}/reject", tags=["review"], summary="不予立案")
    async def reject(body: RejectBody, matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict:
        return await command("reject", with_id(RejectMatter, matter_id, body), principal)

    @router.post("/matters/{matter_id}/convert", tags=["review"], summary="转换类别")
    async def convert(body: ConvertBody, matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict:
        return await command("convert", with_id(ConvertMatter, matter_id, body), principal)

    @router.post("/matters/{matter_id}/merge", tags=["review"], summary="并案")
    async def merge(body: MergeBody, matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict:
        return await command("merge", with_id(MergeMatter, matter_id, body), principal)

    @router.post("/matters/{matter_id}/route", tags=["routing"], summary="本级办理")
    async def route(body: RouteBody, matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict:
        return await command("route", with_id(RouteMatter, matter_id, body), principal)

    @router.post("/matters/{matter_id}/escalate", tags=["routing"], summary="上报上级")
    async def escalate(body: EscalateBody, matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict:
        return await command("escalate", with_id(EscalateMatter, matter_id, body), principal)

    @router.post("/matters/{matter_id}/send-down", tags=["routing"], summary="交由下级办理")
    async def send_down(body: SendDownBody, matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict:
        return await command("send-down", with_id(SendDownMatter, matter_id, body), principal)

    @router.post("/matters/{matter_id}/outcome", tags=["routing"], summary="记录办理结果")
    async def outcome(body: OutcomeBody, matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict:
        return await command("outcome", with_id(RecordOutcome, matter_id, body), principal)

    @router.post("/activities", status_code=201, tags=["activities"], summary="登记活动")
    async def record_activity(body: RecordActivity, principal: Principal = Depends(caller)) -> dict[str, Any]:
        activity = await get_handlers().record_activity(body, principal)
        return activity.model_dump(mode="json")

    # -- reads ----------------------------------------------------------------------------
    @router.get("/matters", tags=["matters"], summary="事项列表")
    async def list_matters(
        kind: list[MatterKind] | None = Query(default=None, description="可多选"),
        status: list[MatterStatus] | None = Query(default=None, description="可多选"),
        filters: _Filters = Depends(),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        rows = await projections.list_matters(get_engine(), jurisdiction=here, kind=kind, status=status, **filters.args)
        return _page(rows, filters)

    @router.get("/lists/problems", tags=["lists"], summary="问题清单")
    async def problem_list(
        status: list[MatterStatus] | None = Query(default=None),
        filters: _Filters = Depends(),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        rows = await projections.problem_list(get_engine(), jurisdiction=here, status=status, **filters.args)
        return _page(rows, filters)

    @router.get("/lists/suggestions", tags=["lists"], summary="建议清单")
    async def suggestion_list(
        status: list[MatterStatus] | None = Query(default=None),
        filters: _Filters = Depends(),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        rows = await projections.suggestion_list(get_engine(), jurisdiction=here, status=status, **filters.args)
        return _page(rows, filters)

    @router.get("/matters/{matter_id}", tags=["matters"], summary="事项详情与全部经过")
    async def matter_detail(matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        """The matter and every event of it (who, when, what), oldest first. ``source`` says
        whether it was read from the read models or, when they lag, from the event store."""
        return await _detail(get_handlers(), get_engine(), matter_id)

    @router.get("/matters/{matter_id}/duplicates", tags=["matters"], summary="可能重复的事项")
    async def matter_duplicates(matter_id: str = MatterId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        matter = await get_handlers().store.load(Matter, matter_id)
        if not matter.exists or matter.data is None:
            raise DomainError(f"事项 {matter_id} 不存在", field="matter_id", code="not_found")
        found = await duplicates_of(matter.data.title, matter.data.content, matter_id)
        return {"id": matter_id, "possible_duplicates": found}

    @router.get("/activities", tags=["activities"], summary="活动列表")
    async def list_activities(
        since: date | datetime | None = Query(default=None, description="起（含当日）"),
        until: date | datetime | None = Query(default=None, description="止（含当日）"),
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
        since: date | datetime | None = Query(default=None, description="提交时间起：日期含当日，时间含该时刻"),
        until: date | datetime | None = Query(default=None, description="提交时间止：日期含当日，时间不含该时刻"),
        q: str | None = Query(default=None, max_length=100, description="在案由和内容中查找"),
        limit: int = Query(default=100, ge=1, le=500),
        offset: int = Query(default=0, ge=0, le=1_000_000),
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


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV（UTF-8 或 GBK）或 XLSX；列：类别、案由、内容、领衔人、领衔人编号、"
                            "附议人、渠道、分类、反映主体、联系方式、活动编号",
                        }
                    },
                    "required": ["file"],
                }
            }
        },
    }
}


# -- the app --------------------------------------------------------------------------------
def create_api(
    settings: Settings,
    *,
    handlers: Provided[IntakeHandlers],
    engine: Provided[AsyncEngine],
    health: Callable[[], Awaitable[bool]] | None = None,
) -> FastAPI:
    """The intake HTTP app of one level: the routes, typed errors, a body limit and ``/healthz``.

    ``health`` (e.g. "is NATS connected") makes ``/healthz`` answer 503 when it says no.
    """
    app = FastAPI(
        title=TITLE,
        version="1",
        telemetry=HTTP_TELEMETRY,
        description=(
            f"事项受理（{settings.jurisdiction}）：提交、审查（立案、不予立案、转类、并案）、本级办理、"
            "上报、交下级、办理结果，以及问题清单、建议清单和活动。所有接口（/healthz 除外）需要 Bearer 令牌。"
        ),
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=imports.MAX_BYTES + 1024 * 1024)
    app.include_router(health_router(health))
    app.include_router(build_router(settings, handlers=handlers, engine=engine))
    return app


__all__ = [
    "COMMANDS",
    "TITLE",
    "CommandSpec",
    "build_router",
    "create_api",
    "input_errors",
    "matter_view",
    "run_command",
]
