"""Replaying a dead letter: the service that failed it handles it again, on an operator's request.

A dead letter's original message was acknowledged when it was dead-lettered (so the messages
behind it kept flowing), and republishing it to its original subject would store an event a
second time. So a replay is a request to the service process that owns the consumer, on
``duban.ops.<jurisdiction>.<context>.replay`` with ``{"sequence": N}``: it reads the dead letter,
runs the consumer's own handler on it in a span of its own (so the replay is traced, joined to
the original trace through the headers it kept), and removes the dead letter once the handler
succeeded. The handlers of durable workers are idempotent, so a replay after a partial success
does no harm. A failed replay leaves the dead letter where it is and answers with the error.

Projections are not replayed this way: a projection that skipped a poison event is rebuilt
(``Projector.rebuild``) once its code is fixed, which applies every event in order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.runtime.observe.telemetry import extract_context, tracer

from .deadletters import discard_dead_letter, get_dead_letter

log = logging.getLogger("duban.replay")

Handler = Callable[[Msg], Awaitable[None]]


def replay_subject(jurisdiction: str, context: str) -> str:
    return f"duban.ops.{jurisdiction}.{context}.replay"


class ReplayResponder:
    """Answers replay requests for the durable workers of one service process."""

    def __init__(self, nc: NATS, *, jurisdiction: str, context: str, handlers: Mapping[str, Handler]) -> None:
        self.nc = nc
        self.jurisdiction = jurisdiction
        self.context = context
        self.handlers = dict(handlers)
        self._subscription = None

    async def start(self) -> None:
        # A queue group: with several processes of one service, one of them answers.
        self._subscription = await self.nc.subscribe(
            replay_subject(self.jurisdiction, self.context), queue=f"replay-{self.context}", cb=self._on_request
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _on_request(self, request: Msg) -> None:
        try:
            sequence = int(json.loads(request.data)["sequence"])
        except (ValueError, KeyError, TypeError):
            answer = {"ok": False, "error": 'bad request: {"sequence": N} expected'}
            await request.respond(json.dumps(answer).encode())
            return
        answer = await self.replay(sequence)
        await request.respond(json.dumps(answer, ensure_ascii=False).encode())

    async def replay(self, sequence: int) -> dict:
        js = self.nc.jetstream()
        letter = await get_dead_letter(js, self.jurisdiction, sequence)
        if letter is None:
            return {"ok": False, "error": f"no dead letter {sequence}"}
        if letter.context != self.context:
            return {"ok": False, "error": f"dead letter {sequence} belongs to {letter.context}"}
        handle = self.handlers.get(letter.consumer)
        if handle is None:
            return {"ok": False, "error": f"consumer {letter.consumer} cannot replay here (a projection: rebuild it)"}
        message = Msg(self.nc, subject=letter.original_subject, data=letter.data, headers=letter.headers)
        with tracer().start_as_current_span(
            f"replay {letter.consumer}",
            context=extract_context(letter.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": letter.original_subject,
                "messaging.consumer.group.name": letter.consumer,
                "duban.jurisdiction": self.jurisdiction,
                "duban.deadletter.sequence": sequence,
            },
        ) as span:
            try:
                await handle(message)
            except Exception as err:
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
                failed = {"sequence": sequence, "consumer": letter.consumer, "error": repr(err)}
                log.warning("replay failed", extra=failed)
                return {"ok": False, "error": f"{type(err).__name__}: {err}"}
        await discard_dead_letter(js, self.jurisdiction, sequence)
        log.info("dead letter replayed", extra={"sequence": sequence, "consumer": letter.consumer})
        return {"ok": True, "sequence": sequence, "consumer": letter.consumer}
