"""What every service's HTTP API shares: the caller's identity, typed errors, limits, health.

- :func:`principal_from_request` makes the dependency that turns ``Authorization: Bearer <jwt>``
  into a :class:`~services.runtime.http.auth.Principal` (401 with ``WWW-Authenticate`` otherwise) and,
  when given a jurisdiction, refuses principals of any other one (403).
- :func:`install_error_handlers` gives every refusal one shape,
  ``{"detail": {"code", "message", "field"}}`` with the message in Chinese as the domain raised it,
  and keeps FastAPI's 422 list for invalid input, minus the echoed ``input`` and ``ctx``: an error
  names the field and the rule, never the content that broke it.
- Nothing of a refused request is logged: the handlers below log nothing, and the only thing a
  refusal carries is the code, the field and the rule.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import nats.js.errors
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel, ConfigDict, create_model
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.eventstore import ConcurrencyError, StoreUnavailable
from services.runtime.es.unavailable import BUS_ERRORS, DATABASE_ERRORS, bus_unavailable, database_unavailable
from services.runtime.settings import Settings

from . import bounds
from .auth import NotAuthenticated, Principal, verifier_for
from .limits import TooManyRequests

log = logging.getLogger("duban.http")

__all__ = [
    "HTTP_TELEMETRY",
    "BodySizeLimit",
    "error_body",
    "field_of",
    "health_router",
    "install_error_handlers",
    "principal_from_request",
    "readiness_router",
    "validation_errors",
    "zh_reason",
]

#: The bearer scheme as OpenAPI shows it; errors are ours (``auto_error=False``).
bearer_scheme = HTTPBearer(auto_error=False, description="JWT: sub, name, roles, jurisdiction, exp")

#: Domain error codes that mean "no such thing" rather than "not now": answered 404, not 409.
NOT_FOUND_CODES = frozenset({"not_found"})


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The one shape of a refusal: ``{"detail": {"code", "message", "field"}}``."""
    return {"detail": {"code": code, "message": message, "field": field}}


# -- identity ------------------------------------------------------------------------------
def principal_from_request(
    settings: Settings | None = None, *, jurisdiction: str | None = None
) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency giving the authenticated caller.

    The token is checked with ``settings`` or, when none is given, with the app's
    ``app.state.settings``. With ``jurisdiction``, a principal of any other jurisdiction is
    refused (403): nobody acts on or reads another level's matters through this API.
    """

    async def principal(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise NotAuthenticated("missing bearer token")
        found = await verifier_for(settings or request.app.state.settings).verify(credentials.credentials)
        if jurisdiction is not None and found.jurisdiction != jurisdiction:
            raise NotAllowed(f"无权访问 {jurisdiction} 的数据", field="jurisdiction")
        return found

    return principal


# -- errors --------------------------------------------------------------------------------
_ZH_REASONS: dict[str, str] = {
    "missing": "必填",
    "extra_forbidden": "不允许的字段",
    "string_type": "应为文本",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "float_type": "应为数字",
    "bool_type": "应为是或否",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "list_type": "应为列表",
    "enum": "取值无效",
    "literal_error": "取值无效",
    "string_pattern_mismatch": "格式不正确",
    "date_type": "应为日期",
    "date_parsing": "日期格式不正确（应为 YYYY-MM-DD）",
    "date_from_datetime_parsing": "日期格式不正确（应为 YYYY-MM-DD）",
    "datetime_type": "应为日期时间",
    "datetime_parsing": "日期时间格式不正确",
    "datetime_from_date_parsing": "日期时间格式不正确",
    "timezone_aware": "日期时间须带时区",
    "json_invalid": "不是有效的 JSON",
    "json_type": "不是有效的 JSON",
    "unknown_jurisdiction": "未知的行政区划代码",
    "invalid_id": "编号只能包含字母、数字、下划线和连字符",
}

#: Messages of the contracts' own validators (never the input), in Chinese.
_ZH_VALUE_ERRORS: dict[str, str] = {
    "a submitter appears twice": "领衔人与附议人重复（同一编号出现两次）",
    "closes_at must be after opens_at": "结束时间须晚于开始时间",
    "a subject appears twice": "测评对象重复（同一编号出现两次）",
    "an electorate or a roster is needed": "须给出参评人员名单或名册",
    "a subject appears twice on the sheet": "同一测评对象在一张票上出现两次",
    "a name is empty, too long or contains |": "名称为空、过长或含有“|”",
}


def zh_reason(error: Mapping[str, Any]) -> str:
    """A Chinese reason for one pydantic error, naming the rule but not the input."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "string_too_short":
        return "不能为空" if ctx.get("min_length", 1) <= 1 else f"至少 {ctx['min_length']} 个字"
    if kind == "string_too_long":
        return f"过长（最多 {ctx.get('max_length')} 个字）"
    if kind == "too_long":
        return f"条目过多（最多 {ctx.get('max_length')} 项）"
    if kind == "too_short":
        return f"条目过少（至少 {ctx.get('min_length')} 项）"
    if kind == "value_error":
        message = str(ctx.get("error", ""))
        # a validator's own refusal in Chinese (naming the field) is said as it is
        return _ZH_VALUE_ERRORS.get(message) or (message if re.search("[\u4e00-\u9fff]", message) else "取值无效")
    if kind in _ZH_REASONS:
        return _ZH_REASONS[kind]
    if kind in bounds.ZH_REASONS:
        return bounds.ZH_REASONS[kind]
    if kind.startswith(("greater_than", "less_than")):
        return _out_of_range(kind, ctx)
    return "取值无效"


_BOUND_WORDS = {"ge": "不小于", "gt": "大于", "le": "不大于", "lt": "小于"}


def _out_of_range(kind: str, ctx: Mapping[str, Any]) -> str:
    """``数值超出范围（应不大于 500）``: the rule's bound, which is the API's, never the input."""
    for name, words in _BOUND_WORDS.items():
        if name in ctx and isinstance(ctx[name], int | float):
            return f"数值超出范围（应{words} {ctx[name]}）"
    return "数值超出范围"


def field_of(loc: Sequence[Any]) -> str | None:
    """``("body", "matter", "title")`` → ``"matter.title"``; list positions stay as numbers."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI/pydantic errors without what would reflect the input back (``input``, ``ctx``,
    ``url``) and without pydantic's English ``msg``: each with the field as a dotted path, the
    error's ``type`` and a Chinese ``message``."""
    cleaned = []
    for error in errors:
        loc = list(error.get("loc", ()))
        cleaned.append(
            {
                "loc": loc,
                "field": field_of(loc),
                "type": str(error.get("type", "")),
                "message": zh_reason(error),
            }
        )
    return cleaned


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = 404 if exc.code in NOT_FOUND_CODES else exc.status
    return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=status)


async def _concurrency_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("conflict", "数据已被他人修改，请刷新后重试"), status_code=409)


#: Seconds a client is asked to wait when NATS or the database is away (the services answer
#: again within one to two seconds of a restarted nats-server being back: tests/test_chaos.py).
RETRY_AFTER_S = 2


def unavailable_response(message: str = "事件存储暂时不可用，请稍后重试") -> JSONResponse:
    """503 with ``Retry-After``: nothing was done, the same request may be sent again."""
    return JSONResponse(
        error_body("unavailable", message), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return unavailable_response()


async def _bus_or_database_error(request: Request, exc: Exception) -> JSONResponse:
    """NATS, JetStream or the database away (``es/unavailable.py``): 503; any other error of theirs
    is ours to fix: 500, without its text."""
    if database_unavailable(exc):  # away, or refusing for a moment (a deadlock PostgreSQL broke)
        return unavailable_response("数据库暂时不可用，请稍后重试")
    if bus_unavailable(exc):
        return unavailable_response("消息总线（NATS）暂时不可用，请稍后重试")
    log.error("request failed", exc_info=exc, extra={"path": request.url.path})
    return JSONResponse(error_body("internal", "内部错误，请稍后重试"), status_code=500)


#: What FastAPI and Starlette answer by themselves (no route, a body that is not JSON…), in Chinese.
_HTTP_REFUSALS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "请求内容无法解析（应为 JSON，或上传文件时为 multipart/form-data）"),
    404: ("no_such_route", "没有这个接口"),
    405: ("method_not_allowed", "该接口不支持此请求方法"),
    406: ("not_acceptable", "无法按要求的格式答复"),
    413: ("too_large", "请求内容过大"),
    415: ("unsupported_media_type", "不支持的内容类型（应为 application/json）"),
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own refusals (English ``detail`` text) in duban's shape, in Chinese."""
    assert isinstance(exc, StarletteHTTPException)
    code, message = _HTTP_REFUSALS.get(exc.status_code, ("http_error", "请求无法处理"))
    if isinstance(exc, BodyTooLarge):
        message = str(exc.detail)
    elif exc.status_code == 404:
        message = f"{message}：{request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{message}：{request.method} {request.url.path}"
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _not_authenticated(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        error_body("not_authenticated", "未登录或登录已失效，请重新登录"),
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="duban"'},
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Any other error is ours to fix: 500 in duban's shape, without its text (Starlette raises it
    on after this answer, so the server logs it with its traceback)."""
    return JSONResponse(error_body("internal", "内部错误，请稍后重试"), status_code=500)


async def _too_many_requests(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TooManyRequests)
    return JSONResponse(
        error_body("too_many_requests", exc.message),
        status_code=429,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """DomainError → its status (403 for NotAllowed, 404 for "not found", else 409);
    ConcurrencyError → 409 ``conflict``; StoreUnavailable, NATS or the database away (or refusing
    for a moment: a deadlock PostgreSQL broke) → 503 with ``Retry-After``; NotAuthenticated →
    401; invalid input → 422 naming the field, without echoing the input; a body past the limit →
    413; a write over a limit (``limits.py``) → 429 with ``Retry-After``; an id of another kind of
    aggregate → 409; anything else → 500, in the same shape."""
    app.add_exception_handler(DomainError, _domain_error)  # NotAllowed is a DomainError (status 403)
    app.add_exception_handler(ConcurrencyError, _concurrency_error)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    for error in (*BUS_ERRORS, *DATABASE_ERRORS, DBAPIError, nats.js.errors.APIError):
        if error is not StoreUnavailable:
            app.add_exception_handler(error, _bus_or_database_error)
    app.add_exception_handler(NotAuthenticated, _not_authenticated)
    app.add_exception_handler(TooManyRequests, _too_many_requests)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)


# -- limits --------------------------------------------------------------------------------
class BodyTooLarge(StarletteHTTPException):
    """A request body past the limit, found while it is read (a chunked body has no
    Content-Length to judge it by before). An HTTPException, because FastAPI passes those raised
    while it reads a body on to the exception handlers (any other error of reading is its 400
    "error parsing the body"): ``_http_error`` answers it 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=too_large_message(max_bytes))


def too_large_message(max_bytes: int) -> str:
    return f"请求内容过大（上限 {max_bytes / 1024 / 1024:g} MB）"


class BodySizeLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` is answered 413 before it is
    parsed (by its Content-Length, or by counting when it is sent in chunks). The server reads
    the rest of the body and drops it, so the client reads the 413 (a connection closed while it
    still sends is reset, losing the answer) and the connection stays usable."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await self._refuse(send)
                    return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:  # read outside FastAPI's body parsing and its exception handlers
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(error_body("too_large", too_large_message(self.max_bytes)), status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse never reads
    return {"type": "http.disconnect"}


# -- health --------------------------------------------------------------------------------
#: Why a service is not ready: ``{"code": ..., "message": <Chinese>}`` each.
Readiness = Callable[[], Awaitable[list[dict[str, str]]]]


def health_router(check: Callable[[], Awaitable[bool]] | None = None) -> APIRouter:
    """``GET /healthz`` without authentication, for liveness (is the process serving HTTP?):
    200 ``{"status": "ok"}``, or 503 with the reason when ``check`` says no or fails. Whether the service can
    do its work (NATS, JetStream, its database) is ``/readyz`` (:func:`readiness_router`)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="存活检查")
    async def healthz() -> JSONResponse:
        healthy = True
        if check is not None:
            try:
                healthy = bool(await check())
            except Exception:
                healthy = False
        if healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse(
            {"status": "unavailable", "reasons": [{"code": "unhealthy", "message": "服务暂时不能工作"}]},
            status_code=503,
        )

    return router


def readiness_router(check: Readiness) -> APIRouter:
    """``GET /readyz`` without authentication, for load balancers and ``duban status``: 200
    ``{"status": "ready"}`` when the service can work, else 503 with ``Retry-After`` and the
    reasons (``{"status": "unavailable", "reasons": [{"code", "message"}]}``)."""
    router = APIRouter(tags=["health"])

    @router.get("/readyz", summary="就绪检查（消息总线、数据库）")
    async def readyz() -> JSONResponse:
        try:
            reasons = await check()
        except Exception as err:
            reasons = [{"code": "check_failed", "message": f"就绪检查失败：{type(err).__name__}"}]
        if not reasons:
            return JSONResponse({"status": "ready"})
        return JSONResponse(
            {"status": "unavailable", "reasons": reasons},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    return router


#: Paths answered even while NATS is away: probes, and the documentation.
ALWAYS_ANSWERED = frozenset({"/healthz", "/readyz", "/metrics", "/status", "/docs", "/redoc", "/openapi.json"})


class UnavailableWhileDisconnected:
    """ASGI middleware: while the service's NATS connection is down, every API call is answered
    503 with ``Retry-After`` at once (rather than after the seconds a request to a server that is
    away takes to time out); probes and documentation are still answered."""

    def __init__(self, app: ASGIApp, connected: Callable[[], bool]) -> None:
        self.app = app
        self.connected = connected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        answered = path in ALWAYS_ANSWERED or path.startswith("/static/")
        if scope["type"] == "http" and not answered and not self.connected():
            response = unavailable_response("消息总线（NATS）暂时不可用，请稍后重试")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


# -- shared by the services' APIs ------------------------------------------------------------

T = TypeVar("T")
#: An object, or a function returning it at each request (for an app built before NATS and the
#: database are connected).
Provided = T | Callable[[], T]


def provided(value: Any) -> Callable[[], Any]:
    """A provider for ``value``: the function given, or one returning the object given."""
    return value if callable(value) else (lambda: value)


def body_model(command: type[BaseModel], path_field: str = "matter_id") -> type[BaseModel]:
    """The request body of a command whose ``path_field`` comes from the URL path."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in command.model_fields.items() if name != path_field
    }
    return create_model(
        f"{command.__name__}Body",
        __config__=ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True),
        __doc__=command.__doc__,
        **fields,
    )


class RefusalDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class Refusal(BaseModel):
    """A refused request: ``code``, a message in Chinese and the field at fault."""

    detail: RefusalDetail


class ServiceRouter(NamedTuple):
    """What every service's router starts from: its level, its handlers and read-model engine (as
    functions, for an app built before NATS and the database are connected), the dependency giving
    the caller (of this level only) and the router, whose refusals say what was not found."""

    here: str
    handlers: Callable[[], Any]
    engine: Callable[[], Any]
    caller: Callable[..., Awaitable[Principal]]
    router: APIRouter


def service_router(settings: Settings, *, handlers: Any, engine: Any, not_found: str) -> ServiceRouter:
    here = settings.jurisdiction
    return ServiceRouter(
        here,
        provided(handlers),
        provided(engine),
        principal_from_request(settings, jurisdiction=here),
        APIRouter(responses=refusals(not_found)),
    )


def refusals(not_found: str) -> dict[int | str, dict[str, Any]]:
    """The documented refusals of a service's routes (401, 403, 404 with ``not_found``, 409)."""
    return {
        401: {"model": Refusal, "description": "未登录或登录已失效"},
        403: {"model": Refusal, "description": "无权操作"},
        404: {"model": Refusal, "description": not_found},
        409: {"model": Refusal, "description": "当前状态不允许，或数据已被他人修改"},
    }


#: Paths that probes poll: no span for them.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/status"})

#: FastAPI's own OpenTelemetry, on when a tracer provider is installed (``duban serve`` does): one
#: server span per request, named by its route and joined to the trace of a caller's
#: ``traceparent``. No spans for dependencies, endpoint and serialisation (they would triple the
#: spans of a ballot burst and say nothing an operator needs), no OpenTelemetry metrics
#: (``/metrics`` is Prometheus) and no OpenTelemetry logs (they would carry refused input).
HTTP_TELEMETRY: TelemetryConfig = {
    "operation_spans": False,
    "metrics": False,
    "logs": False,
    "exclude": lambda scope: scope.get("path") in UNTRACED_PATHS,
}


def service_app(
    title: str, settings: Settings, *routers: APIRouter, max_body: int = 1_000_000, description: str = ""
) -> FastAPI:
    """A service's FastAPI app of one level: its routers, typed Chinese errors, a body limit,
    ``/healthz`` and a span per request (``service.operated`` adds ``/readyz``, ``/metrics`` and
    ``/status``)."""
    api = FastAPI(
        title=f"{title}（{settings.jurisdiction}）",
        version="1",
        telemetry=HTTP_TELEMETRY,
        description=description,
        docs_url=None,  # served below from vendored files: government intranets have no CDN
        redoc_url=None,
    )
    api.state.settings = settings
    install_error_handlers(api)
    api.add_middleware(BodySizeLimit, max_bytes=max_body)
    api.include_router(health_router())
    api.include_router(docs_router(api))
    for router in routers:
        api.include_router(router)
    return api


#: Swagger UI's files, vendored at a pinned version with their licence (``static/swagger-ui/VERSION``).
SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"


def docs_router(api: FastAPI) -> APIRouter:
    """``/docs``: Swagger UI from the service's own files (``/static/swagger-ui/…``), nothing loaded
    from outside the machine."""
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=api.openapi_url or "/openapi.json",
            title=f"{api.title} 接口文档",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )

    router.routes.append(Mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI), name="swagger-ui"))
    return router
