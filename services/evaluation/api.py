"""Evaluation's HTTP API (测评): staff create, open and close sessions and see turnout and
results; evaluators see their sessions and cast their ballot sheets.

In a secret session no response names an evaluator together with a choice: staff see who voted
(turnout), results are counts, and an evaluator's own ballot is answered with the subjects
accepted, not echoed back with the choices.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.evaluation import CastBallots, DraftSession
from contracts.intake import ID_PATTERN
from services.runtime.aggregate import DomainError, NotAllowed
from services.runtime.auth import Principal
from services.runtime.http import (
    Provided,
    body_model,
    principal_from_request,
    provided,
    refusals,
    service_app,
)
from services.runtime.settings import Settings

from . import projections
from .domain import STATUS_NAMES, Session, derived_id
from .handlers import STAFF, EvaluationHandlers

TITLE = "duban evaluation 测评"
SessionId = Path(pattern=ID_PATTERN, description="测评编号")
SheetBody = body_model(CastBallots, "session_id")


class SheetAccepted(BaseModel):
    """A ballot sheet taken: the subjects scored, never the choices (see the module docstring)."""

    session_id: str
    accepted: list[str] = Field(description="已投票的测评对象")
    on_paper: bool = Field(description="是否为工委代录的纸质票")


def session_view(session: Session, *, staff: bool) -> dict[str, Any]:
    view = session.model_dump(mode="json", exclude={"electorate"} if not staff else set())
    view["status_name"] = STATUS_NAMES.get(session.status or "", session.status)
    view["electorate_size"] = len(session.electorate)
    return view


def build_router(
    settings: Settings, *, handlers: Provided[EvaluationHandlers], engine: Provided[AsyncEngine]
) -> APIRouter:
    here = settings.jurisdiction
    get_handlers = provided(handlers)
    get_engine = provided(engine)
    caller = principal_from_request(settings, jurisdiction=here)
    router = APIRouter(responses=refusals("测评不存在"))

    def staff_only(principal: Principal) -> None:
        if not principal.has(*STAFF):
            raise NotAllowed("仅工委工作人员可以查看")

    @router.post("/sessions", status_code=201, tags=["sessions"], summary="创建测评")
    async def draft(
        body: DraftSession,
        idempotency_key: str | None = Header(default=None, alias="Idempotency-Key", max_length=200),
        principal: Principal = Depends(caller),
    ) -> dict[str, Any]:
        """A retry with the same ``Idempotency-Key`` returns the session created the first time."""
        handlers = get_handlers()
        session_id = derived_id("draft", here, principal.id, idempotency_key) if idempotency_key else None
        if session_id is not None:
            existing = await handlers.store.load(Session, session_id)
            if existing.exists:
                return session_view(existing, staff=True)
        return session_view(await handlers.draft(body, principal, session_id), staff=True)

    @router.post("/sessions/{session_id}/open", tags=["sessions"], summary="开始测评")
    async def open_session(session_id: str = SessionId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        return session_view(await get_handlers().open(session_id, principal), staff=True)

    @router.post("/sessions/{session_id}/close", tags=["sessions"], summary="结束测评并公布结果")
    async def close_session(session_id: str = SessionId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        return session_view(await get_handlers().close(session_id, principal), staff=True)

    @router.post("/sessions/{session_id}/publish", tags=["sessions"], summary="公布结果（结束后未公布时）")
    async def publish(session_id: str = SessionId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        return session_view(await get_handlers().publish(session_id, principal), staff=True)

    @router.post("/sessions/{session_id}/ballots", tags=["ballots"], summary="投票（或工委代录纸质票）")
    async def cast(  # type: ignore[valid-type]
        body: SheetBody, session_id: str = SessionId, principal: Principal = Depends(caller)
    ) -> SheetAccepted:
        """One ballot sheet: ``choices`` of one or more subjects. Each evaluator scores each
        subject once; staff entering a paper ballot give ``evaluator_id``."""
        command = CastBallots.model_validate({**body.model_dump(), "session_id": session_id})
        return SheetAccepted.model_validate(await get_handlers().cast(command, principal))

    @router.get("/sessions", tags=["sessions"], summary="测评列表（参评人员只看到自己的）")
    async def list_sessions(principal: Principal = Depends(caller)) -> dict[str, Any]:
        staff = principal.has(*STAFF)
        rows = await projections.list_sessions(
            get_engine(), jurisdiction=here, evaluator=None if staff else principal.id
        )
        if not staff:
            for row in rows:
                row.pop("electorate", None)
        return {"items": rows}

    @router.get("/sessions/{session_id}", tags=["sessions"], summary="测评详情与结果")
    async def detail(session_id: str = SessionId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        session = await get_handlers().store.load(Session, session_id)
        staff = principal.has(*STAFF)
        if not session.exists or (not staff and not session.in_electorate(principal.id)):
            raise DomainError(f"测评 {session_id} 不存在", field="session_id", code="not_found")
        view = session_view(session, staff=staff)
        return {"session": view, "results": view.pop("results")}

    @router.get("/sessions/{session_id}/turnout", tags=["sessions"], summary="参评情况（谁已投票）")
    async def session_turnout(session_id: str = SessionId, principal: Principal = Depends(caller)) -> dict[str, Any]:
        staff_only(principal)
        session = await get_handlers().store.load(Session, session_id)
        if not session.exists:
            raise DomainError(f"测评 {session_id} 不存在", field="session_id", code="not_found")
        return await projections.session_turnout(get_engine(), session_id, session.electorate)

    return router


def create_api(settings: Settings, *, handlers: Provided[EvaluationHandlers], engine: Provided[AsyncEngine]) -> FastAPI:
    return service_app(TITLE, settings, build_router(settings, handlers=handlers, engine=engine))
