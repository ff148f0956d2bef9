"""Intake's commands over NATS request/reply, for other systems: ``duban.cmd.intake.<j>.<command>``.

``<command>`` is one of submit, register, reject, convert, merge, route, escalate, send-down and
outcome; the body is the command as JSON (``matter_id`` included, except for submit). Headers:
``Authorization: Bearer <jwt>`` (required) and ``Idempotency-Key`` (submit: a retry with the same
key is taken once). Core NATS, not JetStream: a command is answered, not stored; the events it
produces are.

Every request gets an answer, never an exception: ``{"ok": true, "matter": {...}}`` or
``{"ok": false, "status": 4xx, "error": {"code", "message", "field"}}`` (422 answers also list
``errors``, one per field). A refused command is never logged with its input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from faststream.nats import NatsBroker, NatsMessage
from pydantic import ValidationError

from services.runtime.aggregate import DomainError
from services.runtime.auth import NotAuthenticated, decode_token
from services.runtime.eventstore import ConcurrencyError, StoreUnavailable
from services.runtime.http import NOT_FOUND_CODES, validation_errors
from services.runtime.settings import Settings

from .api import COMMANDS, IDEMPOTENCY_KEY_MAX, input_errors, matter_view, run_command
from .handlers import IntakeHandlers

log = logging.getLogger("duban.intake.commands")

QUEUE = "intake-commands"


def command_subjects(jurisdiction: str, context: str = "intake") -> str:
    """The wildcard the command subscriber listens on."""
    return f"duban.cmd.{context}.{jurisdiction}.*"


def refusal(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "status": status, "error": {"code": code, "message": message, "field": field}, **extra}


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


async def handle_command(
    handlers: IntakeHandlers,
    settings: Settings,
    subject: str,
    headers: Mapping[str, str] | None,
    body: bytes,
) -> dict[str, Any]:
    """Authenticate, validate and run one command; the reply, whatever happens."""
    name = subject.rsplit(".", 1)[-1]
    spec = COMMANDS.get(name)
    if spec is None:
        return refusal(404, "unknown_command", f"未知的命令，可用：{'、'.join(COMMANDS)}", "subject")
    authorization = _header(headers, "Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return refusal(401, "not_authenticated", "缺少 Authorization: Bearer 令牌", "Authorization")
    try:
        principal = decode_token(token.strip(), settings)
    except NotAuthenticated:
        return refusal(401, "not_authenticated", "令牌无效或已过期", "Authorization")
    if principal.jurisdiction != handlers.here:
        return refusal(403, "forbidden", f"无权操作 {handlers.here} 的事项", "jurisdiction")
    key = _header(headers, "Idempotency-Key") or None
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        return refusal(422, "invalid", f"Idempotency-Key 过长（最多 {IDEMPOTENCY_KEY_MAX} 个字符）", "Idempotency-Key")
    try:
        command = spec.model.model_validate_json(body)
    except ValidationError as err:
        return _invalid(err.errors(include_input=False, include_url=False))
    if errors := input_errors(command, handlers.registry):
        return _invalid(errors)
    try:
        matter = await run_command(handlers, name, command, principal, key)
    except DomainError as err:
        status = 404 if err.code in NOT_FOUND_CODES else err.status
        return refusal(status, err.code, err.message, err.field)
    except ConcurrencyError:
        return refusal(409, "conflict", "数据已被他人修改，请重试")
    except StoreUnavailable:
        return refusal(503, "unavailable", "事件存储暂时不可用，请稍后重试")
    except Exception:
        log.exception("intake command failed", extra={"command": name})
        return refusal(500, "internal", "内部错误，请稍后重试")
    return {"ok": True, "matter": matter_view(matter)}


def _invalid(errors: list[Any]) -> dict[str, Any]:
    cleaned = validation_errors(errors)
    first = cleaned[0] if cleaned else {"field": None, "message": "取值无效"}
    message = f"{first['field']}：{first['message']}" if first["field"] else first["message"]
    return refusal(422, "invalid", message, first["field"], errors=cleaned)


async def _raw_body(message: NatsMessage) -> bytes:
    """FastStream's decoder for commands: the bytes as sent, parsed by :func:`handle_command`
    (which answers malformed JSON with a 422 reply instead of failing in the decoder)."""
    return message.body


def register_command_subscriber(
    broker: NatsBroker,
    handlers: IntakeHandlers | Callable[[], IntakeHandlers],
    settings: Settings,
    *,
    context: str = "intake",
):
    """Declare the command subscriber on ``broker`` (core NATS, queue group ``intake-commands``,
    so several instances share the load). ``handlers`` may be a function returning them, for a
    broker declared before NATS is connected. Returns the subscriber."""
    get_handlers = handlers if callable(handlers) and not isinstance(handlers, IntakeHandlers) else lambda: handlers

    @broker.subscriber(
        command_subjects(settings.jurisdiction, context),
        queue=QUEUE,
        decoder=_raw_body,
        title=f"{context} commands",
        description=(
            "Commands of other systems, request/reply: subject duban.cmd.intake.<jurisdiction>.<command> "
            f"with <command> one of {', '.join(COMMANDS)}; body the command as JSON (contracts/schemas/commands); "
            "headers Authorization: Bearer <jwt> and Idempotency-Key. Reply: {ok: true, matter} or "
            "{ok: false, status, error: {code, message, field}}."
        ),
    )
    async def intake_command(body: bytes, msg: NatsMessage) -> dict[str, Any]:
        raw = msg.raw_message
        return await handle_command(get_handlers(), settings, raw.subject, raw.headers, body)

    return intake_command


__all__ = ["QUEUE", "command_subjects", "handle_command", "register_command_subscriber"]
