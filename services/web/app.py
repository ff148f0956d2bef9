"""Wiring of one level's 工作台: its sessions, the level's services it calls, the pages, the
vendored static files, and the headers every page carries (a Content-Security-Policy without
inline scripts, no framing, no sniffing).

Served by ``duban serve web`` (``duban up`` runs it beside the other services of each level and
prints its URL first). It holds no state of its own beyond sessions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from contracts.jurisdictions import default_registry
from services.runtime.read.db import make_engine
from services.runtime.settings import Settings

from .client import Refused, Services, SignedOut
from .pages import TEMPLATES, BadForm, NeedsSignIn, build_router, organs_heading
from .sessions import Sessions
from .settings import WebSettings

log = logging.getLogger("duban.web")

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


def create_app(settings: Settings, *, sessions: Sessions | None = None) -> FastAPI:
    settings = settings.as_(WebSettings)
    engine = make_engine(settings.sqlalchemy_url("web"))
    sessions = sessions or Sessions(engine, settings.web_session_ttl_s, settings.jurisdiction)
    services = Services(settings, sessions)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sessions.prepare()
        try:
            yield
        finally:
            await services.close()
            await engine.dispose()

    app = FastAPI(title="duban 工作台", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings, app.state.sessions, app.state.services = settings, sessions, services

    level = default_registry().get(settings.jurisdiction)

    def problem(request: Request, status: int, message: str) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            "error.html",
            {
                "level": level,
                "organs": organs_heading(level, None),
                "session": None,
                "nav": [],
                "unread": 0,
                "path": request.url.path,
                "message": message,
            },
            status_code=status,
        )

    @app.exception_handler(NeedsSignIn)
    @app.exception_handler(SignedOut)
    async def to_sign_in(request: Request, exc: Exception) -> Response:
        response = RedirectResponse("/login", status_code=303)
        if isinstance(exc, SignedOut):
            response.delete_cookie(sessions.cookie)
        return response

    @app.exception_handler(BadForm)
    async def bad_form(request: Request, exc: Exception) -> Response:
        return problem(request, 403, "表单已失效（缺少或不符的安全令牌），请返回刷新页面后重试")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return problem(request, exc.status if 400 <= exc.status < 600 else 502, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "页面不存在", 405: "不支持的操作"}.get(exc.status_code, "请求无法处理")
        return problem(request, exc.status_code, message)

    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(build_router(settings, sessions, services))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run one level's 工作台 until SIGINT/SIGTERM."""
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    log.info("serving", extra={"service": "web", "jurisdiction": settings.jurisdiction, "url": f"http://{host}:{port}"})
    await uvicorn.Server(config).serve()


__all__ = ["HTMLResponse", "create_app", "serve"]
