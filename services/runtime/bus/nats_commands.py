"""Commands over NATS request/reply, for other systems and terminals: what every service's
command subject shares (``duban.cmd.<context>.<jurisdiction>.<command>``).

Every request gets an answer, never an exception: ``{"ok": true, ...}`` or ``{"ok": false,
"status": 4xx, "error": {"code", "message", "field"}}`` (422 answers also list ``errors``, one per
field). Headers: ``Authorization: Bearer <jwt>`` (required). A refused command is never logged
with its input.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faststream.nats import NatsBroker, NatsMessage
from faststream.nats.security import NatsSecurity

from services.runtime.es.aggregate import DomainError
from services.runtime.es.eventstore import ConcurrencyError, StoreUnavailable
from services.runtime.http.app import NOT_FOUND_CODES, validation_errors
from services.runtime.http.auth import NotAuthenticated, Principal, verifier_for
from services.runtime.settings import Settings

from .levels import connection_options

log = logging.getLogger("duban.commands.nats")

#: A service's ``register_command_subscriber(broker, handlers, settings)``.
Register = Callable[[NatsBroker, Callable[[], Any], Settings], None]


def command_broker(settings: Settings, context: str, register: Register, handlers: Callable[[], Any]) -> NatsBroker:
    """The FastStream broker answering a service's command subject at its level, with the
    service's own reply prefix (``levels.inbox_prefix``); started and stopped by ``serve``."""
    options = connection_options(settings, context)  # its user's reply prefix, reconnecting for ever
    # FastStream takes TLS as its security object, not as nats-py's ``tls`` argument
    tls = options.pop("tls", None)
    security = NatsSecurity(ssl_context=tls) if tls is not None else None
    broker = NatsBroker(settings.nats_url, **{**options, "name": f"{options['name']}-commands"}, security=security)
    register(broker, handlers, settings)
    return broker


def documented_broker(register: Register) -> NatsBroker:
    """A service's command subscriber on an unconnected broker, for the AsyncAPI document."""
    broker = NatsBroker()
    register(broker, lambda: None, Settings(jurisdiction="331000"))
    return broker


def refusal(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "status": status, "error": {"code": code, "message": message, "field": field}, **extra}


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


async def authenticate(
    headers: Mapping[str, str] | None, settings: Settings, here: str, subject: str
) -> Principal | dict[str, Any]:
    """The principal of the request's bearer token, or the refusal to answer with (a service
    account may use only the subjects its token lists)."""
    authorization = header(headers, "Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return refusal(401, "not_authenticated", "缺少 Authorization: Bearer 令牌", "Authorization")
    try:
        principal = await verifier_for(settings).verify(token.strip())
    except NotAuthenticated:
        return refusal(401, "not_authenticated", "令牌无效或已过期", "Authorization")
    if principal.jurisdiction != here:
        return refusal(403, "forbidden", f"无权操作 {here} 的数据", "jurisdiction")
    if not principal.may_use(subject):
        return refusal(403, "forbidden", f"该服务账号无权使用主题 {subject}", "subject")
    return principal


def invalid(errors: list[Any]) -> dict[str, Any]:
    cleaned = validation_errors(errors)
    first = cleaned[0] if cleaned else {"field": None, "message": "取值无效"}
    message = f"{first['field']}：{first['message']}" if first["field"] else first["message"]
    return refusal(422, "invalid", message, first["field"], errors=cleaned)


async def answer(work: Awaitable[dict[str, Any]], what: str) -> dict[str, Any]:
    """Run a command and turn whatever it raises into the refusal a client reads."""
    try:
        return await work
    except DomainError as err:
        status = 404 if err.code in NOT_FOUND_CODES else err.status
        return refusal(status, err.code, err.message, err.field)
    except ConcurrencyError:
        return refusal(409, "conflict", "数据已被他人修改，请重试")
    except StoreUnavailable:
        return refusal(503, "unavailable", "事件存储暂时不可用，请稍后重试")
    except Exception:
        log.exception("command failed", extra={"command": what})
        return refusal(500, "internal", "内部错误，请稍后重试")


async def raw_body(message: NatsMessage) -> bytes:
    """FastStream's decoder for commands: the bytes as sent, parsed by the command's handler
    (which answers malformed JSON with a 422 reply instead of failing in the decoder)."""
    return message.body
