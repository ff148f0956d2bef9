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
   worker's handler, ``services/runtime/bus/replay.py``): either sends it once more.

A transient failure is retried with exponential backoff (``retry_base_s`` doubling, at most
``retry_max_s``) until ``delivery_attempts``; then, or at once for a permanent refusal, the
request is dead-lettered with the error, the original subject and the number of attempts, and
the delivery is settled as dead-lettered. The dead letter is written before the delivery is
settled, so a crash between the two repeats both rather than losing the operator's view.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from nats.aio.msg import Msg

from contracts.envelope import EVENT_TYPES_HEADER
from contracts.notify import DeliveryPlanned, DeliveryReplayed, NoticeChannel
from services.runtime.bus.consumer import DurableWorker
from services.runtime.es.commands import execute
from services.runtime.es.eventstore import EventStore
from services.runtime.observe.metrics import DELIVERIES

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
        its dead letter (``services/runtime/bus/replay.py``): that sends a settled delivery again."""
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
        channel = delivery.planned.channel.value
        try:
            if sender is None:
                raise PermanentFailure(f"channel {channel} is off at this level")
            detail = await sender.send(delivery_id, delivery.planned)  # type: ignore[attr-defined]
        except TransientFailure as err:
            DELIVERIES.labels(channel, "retry").inc()
            error = str(err)
            await self._record(delivery_id, lambda d: d.failed(attempt, error, False))
            raise
        except PermanentFailure as err:
            DELIVERIES.labels(channel, "failed").inc()
            error = str(err)
            await self._record(delivery_id, lambda d: d.failed(attempt, error, True))
            raise Settle("dead", error, attempt) from None
        except UncertainOutcome as err:
            DELIVERIES.labels(channel, "in_doubt").inc()
            error = f"in doubt: {err}; not resent (at most once): check with the recipient, then replay"
            raise Settle("in_doubt", f"发送过程中断，无法确定是否已送达（{err}）", attempt, error) from None
        except Exception as err:  # anything unforeseen while sending: it may have gone out
            DELIVERIES.labels(channel, "in_doubt").inc()
            error = f"in doubt: unexpected {type(err).__name__} while sending; not resent (at most once)"
            reason = f"发送时出现意外错误，无法确定是否已送达（{type(err).__name__}）"
            raise Settle("in_doubt", reason, attempt, error) from None
        DELIVERIES.labels(channel, "sent").inc()
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


class DispatchWorker(DurableWorker):
    """The durable worker on this level's send requests: a batch's sends side by side (each is a
    different delivery, guarded by its own aggregate, and a slow mail server should not hold the
    rest), notify's backoff, and a request given up settled on its delivery."""

    def __init__(self, *args, dispatcher: Dispatcher, retry_base_s: float, retry_max_s: float, **kwargs) -> None:
        super().__init__(*args, handle=dispatcher.handle, **kwargs)
        self.dispatcher = dispatcher
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s

    def backoff(self, delivered: int) -> float:
        return min(self.retry_base_s * 2 ** (delivered - 1), self.retry_max_s)

    def final(self, err: Exception) -> bool:
        return isinstance(err, Settle)  # in doubt, or refused for good: never retried

    async def give_up(self, msg: Msg, delivered: int, err: Exception) -> None:
        """The dead letter first, then the delivery settled (a crash in between repeats both
        rather than losing the operator's view), then the ack."""
        if isinstance(err, Settle):
            how, reason, attempt, error = err.how, err.reason, err.attempt, err.error
        else:
            reason = str(err) if isinstance(err, SendError) else f"{type(err).__name__}: {err}"
            how, attempt, error = "dead", 0, reason
        await self.dead_letter(msg, sequence=msg.metadata.sequence.stream, attempts=delivered, error=error)
        await self.dispatcher.settle(msg, how, reason, attempt)
        await msg.ack()
