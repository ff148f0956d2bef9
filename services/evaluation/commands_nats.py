"""Ballots over NATS request/reply, for the ballot terminals of a congress hall:
``duban.cmd.evaluation.<jurisdiction>.cast``.

The body is a ballot sheet (``contracts/schemas/commands/evaluation.CastBallots.json``), the header
``Authorization: Bearer <jwt>`` the evaluator's (or, for a paper ballot, the staff member's)
token. The reply is ``{"ok": true, "accepted": [subject ids]}`` or a refusal with the reason
(``services/runtime/bus/nats_commands.py``): a second ballot for a subject, a ballot outside the
window or from outside the electorate are refused, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faststream.nats import NatsBroker, NatsMessage
from pydantic import ValidationError

from contracts import subjects
from contracts.evaluation import CastBallots
from services.runtime.bus.nats_commands import answer, authenticate, invalid, raw_body, refusal
from services.runtime.settings import Settings

from .handlers import EvaluationHandlers

QUEUE = "evaluation-commands"


async def handle_cast(handlers: EvaluationHandlers, settings: Settings, headers, body: bytes) -> dict[str, Any]:
    subject = subjects.command_subject("evaluation", handlers.here, "cast")
    principal = await authenticate(headers, settings, handlers.here, subject)
    if isinstance(principal, dict):
        return principal
    try:
        command = CastBallots.model_validate_json(body)
    except ValidationError as err:
        return invalid(err.errors(include_input=False, include_url=False))

    async def run() -> dict[str, Any]:
        return {"ok": True, **(await handlers.cast(command, principal))}

    return await answer(run(), "cast")


def register_command_subscriber(
    broker: NatsBroker, handlers: Callable[[], EvaluationHandlers], settings: Settings, *, context: str = "evaluation"
):
    """Declare the ballot subscriber on ``broker`` (core NATS, queue group, request/reply)."""

    @broker.subscriber(
        f"duban.cmd.{context}.{settings.jurisdiction}.*",
        queue=QUEUE,
        decoder=raw_body,
        title=f"{context} ballots",
        description=(
            "Ballot terminals, request/reply: subject duban.cmd.evaluation.<jurisdiction>.cast, body a ballot "
            "sheet (contracts/schemas/commands/evaluation.CastBallots.json), header Authorization: Bearer <jwt>. "
            "Reply: {ok: true, accepted: [subject ids]} or {ok: false, status, error: {code, message, field}}."
        ),
    )
    async def evaluation_command(body: bytes, msg: NatsMessage) -> dict[str, Any]:
        raw = msg.raw_message
        if not raw.subject.endswith(".cast"):
            return refusal(404, "unknown_command", "未知的命令，可用：cast", "subject")
        return await handle_cast(handlers(), settings, raw.headers, body)

    return evaluation_command
