"""Evaluation's HTTP API (测评): staff create, open and close sessions and see turnout and
results; evaluators see their sessions and cast their ballot sheets.

In a secret session no response names an evaluator together with a choice: staff see who voted
(turnout), results are counts, and an evaluator's own ballot is answered with the subjects
accepted, not echoed back with the choices.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.evaluation import CastBallots, CloseSession, DraftSession, OpenSession, PublishResults
from contracts.intake import ID_PATTERN
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.http.app import (
    Provided,
    service_app,
    service_router,
)
from services.runtime.http.auth import Principal
from services.runtime.http.routes import CommandRoute, add_command_routes
from services.runtime.settings import Settings

from . import projections
from .domain import STATUS_NAMES, Session
from .handlers import STAFF, EvaluationHandlers

TITLE = "duban evaluation 测评"


class SheetAccepted(BaseModel):
    """A ballot sheet taken: the subjects scored, never the choices (see the module docstring)."""

    session_id: str
    accepted: list[str] = Field(description="已投票的测评对象")
    on_paper: bool = Field(description="是否为工委代录的纸质票")


SessionId = Path(pattern=ID_PATTERN, description="测评编号")
SESSION_ID = {"session_id": "测评编号"}
#: What staff do with a session; what evaluators do (a sheet each).
SESSION_COMMANDS = [
    CommandRoute("/sessions", DraftSession, "draft", "创建测评", ("sessions",), 201, creates=True),
    CommandRoute("/sessions/{session_id}/open", OpenSession, "open", "开始测评", ("sessions",), ids=SESSION_ID),
    CommandRoute(
        "/sessions/{session_id}/close", CloseSession, "close", "结束测评并公布结果", ("sessions",), ids=SESSION_ID
    ),
    CommandRoute(
        "/sessions/{session_id}/publish",
        PublishResults,
        "publish",
        "公布结果（结束后未公布时）",
        ("sessions",),
        ids=SESSION_ID,
    ),
]
BALLOT_COMMANDS = [
    CommandRoute(
        "/sessions/{session_id}/ballots",
        CastBallots,
        "cast",
        "投票（或工委代录纸质票）",
        ("ballots",),
        ids=SESSION_ID,
        answer=SheetAccepted,
    ),
]


def session_view(session: Session, *, staff: bool) -> dict[str, Any]:
    view = session.model_dump(mode="json", exclude={"electorate"} if not staff else set())
    view["status_name"] = STATUS_NAMES.get(session.status or "", session.status)
    view["electorate_size"] = len(session.electorate)
    return view


def build_router(
    settings: Settings, *, handlers: Provided[EvaluationHandlers], engine: Provided[AsyncEngine]
) -> APIRouter:
    here, get_handlers, get_engine, caller, router = service_router(
        settings, handlers=handlers, engine=engine, not_found="测评不存在"
    )

    def staff_only(principal: Principal) -> None:
        if not principal.has(*STAFF):
            raise NotAllowed("仅工委工作人员可以查看")

    add_command_routes(
        router, SESSION_COMMANDS, handlers=get_handlers, caller=caller, view=lambda s: session_view(s, staff=True)
    )
    add_command_routes(router, BALLOT_COMMANDS, handlers=get_handlers, caller=caller, view=lambda sheet: sheet)

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
