"""A durable worker on a stream: at-least-once handling with retries and dead letters.

For work whose effect is idempotent by itself (publishing with a ``Nats-Msg-Id``, appending with
stable event ids): the outbox relay and the inbox of each level. Read models use the projector,
which is exactly-once through its checkpoint. A message whose handler fails is naked with a
growing delay; on its ``max_deliver``-th failure it goes to the dead-letter stream with its error
and is acknowledged, so the messages behind it keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind, Status, StatusCode

from contracts.envelope import EVENT_TYPES_HEADER

from .pull import PullConsumer
from .settings import Settings
from .telemetry import extract_context, tracer

log = logging.getLogger("duban.consumer")

MessageHandler = Callable[[Msg], Awaitable[None]]


def carrying(*event_types: str) -> Callable[[Msg], bool]:
    """A ``wants`` predicate: the stored commits that carry one of ``event_types`` (read from the
    ``Duban-Event-Types`` header, without decoding the body)."""
    wanted = frozenset(event_types)

    def wants(msg: Msg) -> bool:
        return not wanted.isdisjoint((msg.headers or {}).get(EVENT_TYPES_HEADER, "").split(","))

    return wants


class DurableWorker(PullConsumer):
    """Pulls ``stream`` through the durable consumer ``durable`` and hands each message to ``handle``."""

    def __init__(
        self,
        nc: NATS,
        *,
        stream: str,
        durable: str,
        handle: MessageHandler,
        jurisdiction: str,
        context: str,
        span_name: str,
        filter_subjects: list[str] | None = None,
        settings: Settings | None = None,
        batch: int = 100,
        wants: Callable[[Msg], bool] | None = None,
    ) -> None:
        super().__init__(
            nc,
            stream=stream,
            durable=durable,
            filter_subjects=filter_subjects,
            jurisdiction=jurisdiction,
            context=context,
            settings=settings,
        )
        self.handle = handle
        self.span_name = span_name
        self.batch = batch
        #: Messages this worker has nothing to do with are acknowledged without a span or a call
        #: (most of a stream is events another context must not react to).
        self.wants = wants

    async def prepare(self) -> None:
        await self.bind(
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=60,
                max_deliver=self.settings.max_deliver + 1,  # our own count decides; the server's is a backstop
                max_ack_pending=self.batch * 2,
            )
        )

    async def step(self, timeout: float = 0.5) -> int:
        msgs = await self.fetch(self.batch, timeout)
        for msg in msgs:
            await self._one(msg)
        return len(msgs)

    async def drain(self, timeout: float = 30.0) -> None:
        """Handle everything waiting now (tests, one-shot runs)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if await self.step(timeout=0.2) == 0 and await self.idle():
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.durable} did not drain in {timeout}s")

    async def _one(self, msg: Msg) -> None:
        if self.wants is not None and not self.wants(msg):
            await msg.ack()
            return
        delivered = msg.metadata.num_delivered
        with tracer().start_as_current_span(
            self.span_name,
            context=extract_context(msg.headers),
            kind=SpanKind.CONSUMER,
            attributes={**self.span_attributes(msg), "messaging.message.delivery_count": delivered},
        ) as span:
            try:
                await self.handle(msg)
            except Exception as err:
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
                if delivered >= self.settings.max_deliver:
                    await self.dead_letter(msg, sequence=msg.metadata.sequence.stream, attempts=delivered, error=err)
                    await msg.ack()
                    return
                log.warning(
                    "handler failed, will retry",
                    extra={"consumer": self.durable, "attempt": delivered, "error": repr(err)},
                )
                await msg.nak(delay=min(0.2 * 2 ** (delivered - 1), 30.0))
                return
        await msg.ack()
