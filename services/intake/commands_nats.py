"""Intake's commands over NATS request/reply, for other systems: ``duban.cmd.intake.<j>.<command>``.

``<command>`` is one of submit, register, reject, convert, transfer, merge, route, escalate, send-down and
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

from services.runtime.bus.nats_commands import answer, authenticate, header, invalid, raw_body, refusal
from services.runtime.http.bounds import dates_out_of_range
from services.runtime.http.routes import IDEMPOTENCY_KEY_MAX
from services.runtime.http.routes import run as run_route
from services.runtime.settings import Settings

from .api import COMMANDS_BY_NAME, input_errors, matter_view
from .handlers import IntakeHandlers

log = logging.getLogger("duban.intake.commands")

QUEUE = "intake-commands"


def command_subjects(jurisdiction: str, context: str = "intake") -> str:
    """The wildcard the command subscriber listens on."""
    return f"duban.cmd.{context}.{jurisdiction}.*"


async def handle_command(
    handlers: IntakeHandlers,
    settings: Settings,
    subject: str,
    headers: Mapping[str, str] | None,
    body: bytes,
) -> dict[str, Any]:
    """Authenticate, validate and run one command; the reply, whatever happens."""
    name = subject.rsplit(".", 1)[-1]
    route = COMMANDS_BY_NAME.get(name)
    if route is None:
        return refusal(404, "unknown_command", f"未知的命令，可用：{'、'.join(COMMANDS_BY_NAME)}", "subject")
    principal = await authenticate(headers, settings, handlers.here, subject)
    if isinstance(principal, dict):
        return principal
    key = header(headers, "Idempotency-Key") or None
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        return refusal(422, "invalid", f"Idempotency-Key 过长（最多 {IDEMPOTENCY_KEY_MAX} 个字符）", "Idempotency-Key")
    try:
        command = route.model.model_validate_json(body)
    except ValidationError as err:
        return invalid(err.errors(include_input=False, include_url=False))
    if errors := [*dates_out_of_range(command), *input_errors(command, handlers.registry)]:
        return invalid(errors)

    async def run() -> dict[str, Any]:
        matter = await run_route(route, handlers, command, principal, key)
        return {"ok": True, "matter": matter_view(matter)}

    return await answer(run(), name)


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
        decoder=raw_body,
        title=f"{context} commands",
        description=(
            "Commands of other systems, request/reply: subject duban.cmd.intake.<jurisdiction>.<command> "
            f"with <command> one of {', '.join(COMMANDS_BY_NAME)}; "
            "body the command as JSON (contracts/schemas/commands); "
            "headers Authorization: Bearer <jwt> and Idempotency-Key. Reply: {ok: true, matter} or "
            "{ok: false, status, error: {code, message, field}}."
        ),
    )
    async def intake_command(body: bytes, msg: NatsMessage) -> dict[str, Any]:
        raw = msg.raw_message
        return await handle_command(get_handlers(), settings, raw.subject, raw.headers, body)

    return intake_command


__all__ = ["QUEUE", "command_subjects", "handle_command", "register_command_subscriber"]
