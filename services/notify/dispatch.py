"""Sending: the worker on this level's NOTIFY stream, with at-most-once delivery, retries and dead
letters.

The commit that plans a delivery (``DeliveryPlanned``) is the request to send it; the commit of
an operator's replay (``DeliveryReplayed``) is another. For each, the delivery decides
(``domain.Delivery.on_request``):

1. delivered already, or settled (in doubt, dead-lettered) → acknowledged, nothing sent;
2. never attempted, or failed before → an attempt is recorded (``DeliveryAttempted``, with the
   version check: one sender wins), then the notice is sent, then the outcome is recorded;
3. an attempt recorded but no outcome: if it is younger than the lease, another sender may be
   at it, so the request waits; if older, that sender died mid-send. Whether the notice got
   there is unknown, and **at most once** means not sending it again: the request goes to the
   dead-letter stream with the reason and the delivery is settled *in doubt*. The same happens
   when a channel's conversation broke off after the notice was handed over (a timeout after
   sending). Operators see both in ``GET /deliveries?status=in_doubt`` and in the dead letters;
   after checking with the recipient they replay: ``POST /deliveries/{id}/replay`` (appends
   ``DeliveryReplayed``) or ``duban dead-letters replay`` (which hands the dead letter to this
   worker's handler, ``services/runtime/replay.py``): either sends it once more.

A transient failure is retried with exponential backoff (``retry_base_s`` doubling, at most
``retry_max_s``) until ``delivery_attempts``; then, or at once for a permanent refusal, the
request is dead-lettered with the error, the original subject and the number of attempts, and
the delivery is settled as dead-lettered. The dead letter is written before the delivery is
settled, so a crash between the two repeats both rather than losing the operator's view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind, Status, StatusCode

from contracts.envelope import EVENT_TYPES_HEADER
from contracts.notify import DeliveryPlanned, DeliveryReplayed, NoticeChannel
from services.runtime.commands import execute
from services.runtime.consumer import DurableWorker
from services.runtime.eventstore import EventStore
from services.runtime.telemetry import extract_context, tracer

from .channels import PermanentFailure, SendError, TransientFailure, UncertainOutcome
from .domain import Delivery, SendDecision

log = logging.getLogger("duban.notify.dispatch")

#: The events that ask the sender to send: a delivery planned, or replayed by an operator.
REQUESTS = {DeliveryPlanned.event_type, DeliveryReplayed.event_type}


class Settle(Exception):
    """The request is settled without more retries: ``in_doubt`` or dead-lettered now.

    ``reason`` is for staff (Chinese, on the delivery); ``error`` for operators (English, in the
    dead letter's header, which must stay plain ASCII for every NATS client to read)."""

    def __init__(self, how: str, reason: str, attempt: int, error: str | None = None) -> None:
        super().__init__(reason)
        self.how = how
        self.reason = reason
        self.attempt = attempt
        self.error = error or reason


class Dispatcher:
    """Handles one send request; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        senders: dict[NoticeChannel, object],
        *,
        lease_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.senders = senders
        self.lease_s = lease_s
        self.clock = clock
        self.instance = uuid.uuid4().hex  # this process: recorded on each attempt it starts

    async def handle(self, msg: Msg) -> None:
        """One commit of the NOTIFY stream: a delivery planned or replayed is sent; anything else
        is not the sender's. A message without JetStream metadata is an operator's replay of
        its dead letter (``services/runtime/replay.py``): that sends a settled delivery again."""
        types = (msg.headers or {}).get(EVENT_TYPES_HEADER)
        if types is not None and not REQUESTS.intersection(types.split(",")):
            return
        delivery_id = msg.subject.rsplit(".", 1)[-1]
        forced = not msg.reply  # JetStream deliveries carry their ack subject; a replay does not
        try:
            await self._send(msg, delivery_id, forced)
        except Settle as settled:
            if forced:  # the dead letter stays; the delivery says so again
                await self.settle_id(delivery_id, settled.how, settled.reason, settled.attempt, 0)
            raise
        except Exception as err:
            if forced:
                await self.settle_id(delivery_id, "dead", f"{type(err).__name__}: {err}", 0, 0)
            raise

    async def _send(self, msg: Msg, delivery_id: str, forced: bool) -> None:
        request_seq = 0 if forced else msg.metadata.sequence.stream
        decisions: list[SendDecision] = []

        def decide(delivery: Delivery) -> list:
            decision = delivery.on_request(request_seq, self.clock(), self.instance, self.lease_s, forced=forced)
            decisions.append(decision)
            return list(decision.events)

        while True:
            delivery, _ = await execute(self.store, Delivery, delivery_id, decide, retries=10)
            decision = decisions[-1]
            if decision.action != "wait":
                break
            # Someone's attempt is under way: wait for it to finish or for its lease to run out,
            # telling the server we are still at it (ack_wait is shorter than a lease may be).
            if not forced:
                await msg.in_progress()
            await asyncio.sleep(min(max(decision.wait_s, 0.05), 10.0))
        if decision.action == "skip":
            return
        if decision.action == "in_doubt":
            error = (
                f"in doubt: attempt {decision.attempt} started but never recorded an outcome (the sender stopped "
                "mid-send); not resent (at most once): check with the recipient, then replay"
            )
            raise Settle("in_doubt", decision.reason, decision.attempt, error)
        assert delivery.planned is not None
        sender = self.senders.get(delivery.planned.channel)
        attempt = decision.attempt
        try:
            if sender is None:
                raise PermanentFailure(f"channel {delivery.planned.channel.value} is off at this level")
            detail = await sender.send(delivery_id, delivery.planned)  # type: ignore[attr-defined]
        except TransientFailure as err:
            error = str(err)
            await self._record(delivery_id, lambda d: d.failed(attempt, error, False))
            raise
        except PermanentFailure as err:
            error = str(err)
            await self._record(delivery_id, lambda d: d.failed(attempt, error, True))
            raise Settle("dead", error, attempt) from None
        except UncertainOutcome as err:
            error = f"in doubt: {err}; not resent (at most once): check with the recipient, then replay"
            raise Settle("in_doubt", f"发送过程中断，无法确定是否已送达（{err}）", attempt, error) from None
        except Exception as err:  # anything unforeseen while sending: it may have gone out
            error = f"in doubt: unexpected {type(err).__name__} while sending; not resent (at most once)"
            reason = f"发送时出现意外错误，无法确定是否已送达（{type(err).__name__}）"
            raise Settle("in_doubt", reason, attempt, error) from None
        await self._record(delivery_id, lambda d: d.delivered(attempt, detail))
        log.info(
            "notice delivered",
            extra={"delivery_id": delivery_id, "channel": delivery.planned.channel.value, "attempt": attempt},
        )

    async def _record(self, delivery_id: str, decide) -> None:
        await execute(self.store, Delivery, delivery_id, decide, retries=10)

    async def settle(self, msg: Msg, how: str, reason: str, attempt: int) -> None:
        """Record how a request ended without a delivery (after its dead letter is written)."""
        await self.settle_id(msg.subject.rsplit(".", 1)[-1], how, reason, attempt, msg.metadata.sequence.stream)

    async def settle_id(self, delivery_id: str, how: str, reason: str, attempt: int, seq: int) -> None:
        if how == "in_doubt":
            await self._record(delivery_id, lambda d: d.in_doubt(attempt or d.attempts, reason, seq))
        else:
            await self._record(delivery_id, lambda d: d.dead_lettered(reason, seq))


class StoppableWorker(DurableWorker):
    """A durable worker that gives the messages of its batch back (nak) when it is cancelled
    mid-batch, so a restarted service gets them at once instead of after the ack wait. (A killed
    process cannot do this: its messages come back when the ack wait runs out.)"""

    async def step(self, timeout: float = 0.5) -> int:
        msgs = await self.fetch(self.batch, timeout)
        for index, msg in enumerate(msgs):
            try:
                await self._one(msg)
            except asyncio.CancelledError:
                for left in msgs[index:]:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(left.nak())
                raise
        return len(msgs)


class DispatchWorker(StoppableWorker):
    """The durable worker on this level's send requests, with notify's backoff and settling."""

    def __init__(
        self,
        *args,
        dispatcher: Dispatcher,
        retry_base_s: float,
        retry_max_s: float,
        ack_wait_s: float = 90.0,
        concurrency: int = 8,
        **kwargs,
    ) -> None:
        super().__init__(*args, handle=dispatcher.handle, **kwargs)
        self.dispatcher = dispatcher
        self.concurrency = concurrency
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.ack_wait_s = ack_wait_s

    async def prepare(self) -> None:
        """The durable worker's consumer, with notify's ack wait: a request a dead sender held
        comes back after it (and finds its attempt in doubt)."""
        await self.bind(
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.ack_wait_s,
                max_deliver=self.settings.max_deliver + 1,
                max_ack_pending=self.batch * 2,
            )
        )

    async def step(self, timeout: float = 0.5) -> int:
        """A batch's sends run side by side (at most ``concurrency`` at once): each is a different
        delivery, guarded by its own aggregate, and a slow mail server should not hold the rest."""
        msgs = await self.fetch(self.batch, timeout)
        if not msgs:
            return 0
        gate = asyncio.Semaphore(self.concurrency)
        done: set[int] = set()

        async def one(index: int, msg: Msg) -> None:
            async with gate:
                await self._one(msg)
                done.add(index)

        try:
            await asyncio.gather(*(one(i, m) for i, m in enumerate(msgs)))
        except asyncio.CancelledError:
            for index, left in enumerate(msgs):
                if index not in done:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(left.nak())
            raise
        return len(msgs)

    def backoff(self, delivered: int) -> float:
        return min(self.retry_base_s * 2 ** (delivered - 1), self.retry_max_s)

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
            except Settle as settled:
                span.set_status(Status(StatusCode.ERROR, settled.how))
                await self._dead_letter_and_settle(
                    msg, delivered, settled.how, settled.reason, settled.attempt, settled.error
                )
                return
            except Exception as err:
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
                if delivered >= self.settings.max_deliver:
                    reason = str(err) if isinstance(err, SendError) else f"{type(err).__name__}: {err}"
                    await self._dead_letter_and_settle(msg, delivered, "dead", reason, 0, reason)
                    return
                log.warning(
                    "send failed, will retry",
                    extra={"consumer": self.durable, "attempt": delivered, "error": repr(err)},
                )
                await msg.nak(delay=self.backoff(delivered))
                return
        await msg.ack()

    async def _dead_letter_and_settle(
        self, msg: Msg, delivered: int, how: str, reason: str, attempt: int, error: str
    ) -> None:
        await self.dead_letter(msg, sequence=msg.metadata.sequence.stream, attempts=delivered, error=error)
        await self.dispatcher.settle(msg, how, reason, attempt)
        await msg.ack()
