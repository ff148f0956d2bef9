"""A durable worker on a stream: at-least-once handling with retries and dead letters.

For work whose effect is idempotent by itself (publishing with a ``Nats-Msg-Id``, appending with
stable event ids): the outbox relay and the inbox of each level. Read models use the projector,
which is exactly-once through its checkpoint. A message whose handler fails is naked with a
growing delay; on its ``max_deliver``-th failure it goes to the dead-letter stream with its error
and is acknowledged, so the messages behind it keep flowing.

A message is never settled unless it was handled or its dead letter is stored: if the dead-letter
publish fails too, the message is naked and comes again later, and the failure is logged and
counted (``duban_messages_handled{outcome="unsettled"}``). Hence the server's own
``max_deliver`` is unlimited: a limit there would drop a message that was never handed on. And
an outage is not the message's fault: while NATS or the database is away (``unavailable.py``)
the handler is tried again in place, the message held with "in progress", no attempt used up, and
a message is never dead-lettered for an outage, however long it lasts.

A worker with other needs overrides the hooks rather than the loop: ``backoff`` (the delay before
a failed message comes again), ``final`` (a failure not worth retrying) and ``give_up`` (what is
done after the last attempt: by default the dead letter and the ack); ``concurrency`` lets the
messages of a batch run side by side and ``ack_wait_s`` sets how long a message held by a dead
process waits before it is delivered again (notify's sender uses all of them). With ``key`` as
well, only messages of different keys run side by side: those of one key (one aggregate, for the
reactions of a level's bus) keep their order, one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind, Status, StatusCode

from contracts.envelope import EVENT_TYPES_HEADER
from services.runtime.es.unavailable import unavailable
from services.runtime.observe.metrics import HANDLER_SECONDS, MESSAGES_HANDLED
from services.runtime.observe.telemetry import extract_context, tracer
from services.runtime.settings import Settings

from .pull import PullConsumer

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
        concurrency: int = 1,
        key: Callable[[Msg], Hashable] | None = None,
        ack_wait_s: float = 60.0,
        hold_s: float = 60.0,
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
        self.concurrency = concurrency
        #: What must keep its order within a batch (messages of one key run one after another);
        #: None: every message of a batch is independent of the others.
        self.key = key
        self.ack_wait_s = ack_wait_s
        #: How long a message is held and tried again in place while NATS or the database is
        #: away, before it is given back (nak) to come again later.
        self.hold_s = hold_s

    async def prepare(self) -> None:
        await self.bind(
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.ack_wait_s,
                # Our own count decides when a message is dead-lettered; a limit on the server
                # would drop one whose dead letter could not be stored (see the docstring).
                max_deliver=-1,
                max_ack_pending=self.batch * 2,
            )
        )

    async def step(self, timeout: float | None = None) -> int:
        """One batch: its messages one after another, or up to ``concurrency`` side by side (each
        independent of the others, or, with ``key``, those of one key one after another in their
        order). Cancelled mid-batch (the service stopping), the messages not handled yet are given
        back (nak), so a restarted service gets them at once rather than after the ack wait (a
        killed process cannot: they come back after it)."""
        msgs = await self.fetch(self.batch, timeout)
        done: set[int] = set()
        gate = asyncio.Semaphore(self.concurrency)

        async def in_order(run: list[tuple[int, Msg]]) -> None:
            async with gate:
                for index, msg in run:
                    await self._one(msg)
                    done.add(index)

        try:
            if self.concurrency == 1 or len(msgs) < 2:
                await in_order(list(enumerate(msgs)))
            else:
                await asyncio.gather(*(in_order(run) for run in self._runs(msgs)))
        except asyncio.CancelledError:
            for index, left in enumerate(msgs):
                if index not in done:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(left.nak())
            raise
        return len(msgs)

    async def run(self) -> None:
        """Until ``stop()``. One message at a time, batch after batch; with ``concurrency``, the
        batches overlap: up to ``concurrency`` messages in hand, the next ones fetched as soon as
        there is room rather than when the slowest of the last batch is done (a batch waiting on
        its slowest message left the hub's intake idle half the time while a county's stored
        escalations came in). Those of one ``key`` still run one after another in their order,
        across batches. When it stops, the messages in hand are finished and acknowledged first;
        cancelled, those not handled yet are given back (nak), as ``step`` does."""
        if self.concurrency == 1:
            return await super().run()
        tails: dict[Hashable, asyncio.Task] = {}
        flying: dict[asyncio.Task, Msg] = {}

        def landed(key: Hashable, task: asyncio.Task) -> None:
            flying.pop(task, None)
            if tails.get(key) is task:
                del tails[key]
            if not task.cancelled() and (err := task.exception()) is not None:
                log.warning("message not settled", extra={"consumer": self.durable, "error": repr(err)})

        try:
            while not self._stopping.is_set():
                room = self.concurrency - len(flying)
                if room <= 0:
                    await asyncio.wait(list(flying), return_when=asyncio.FIRST_COMPLETED)
                    continue
                for msg in await self.fetch(min(self.batch, room)):
                    key = self._key_of(msg)
                    task = asyncio.create_task(self._after(tails.get(key), msg))
                    tails[key] = task
                    flying[task] = msg
                    task.add_done_callback(functools.partial(landed, key))
            if flying:
                await asyncio.wait(list(flying))
        except asyncio.CancelledError:
            for task, msg in list(flying.items()):
                task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.shield(msg.nak())
            raise
        except Exception:
            if flying:  # a fetch failed (NATS away): what is in hand finishes before a restart
                await asyncio.wait(list(flying))
            raise

    async def _after(self, before: asyncio.Task | None, msg: Msg) -> None:
        """``msg`` once the message of its key before it is done."""
        if before is not None:
            await asyncio.wait([before])
        await self._one(msg)

    def _key_of(self, msg: Msg) -> Hashable:
        """What ``msg`` keeps its order within: its ``key``, its subject when that cannot be read
        (an undecodable body, to fail and be dead-lettered as usual), itself without ``key``."""
        if self.key is None:
            return id(msg)
        try:
            return self.key(msg)
        except Exception:
            return ("subject", msg.subject)

    def _runs(self, msgs: list[Msg]) -> list[list[tuple[int, Msg]]]:
        """The batch as runs that may go side by side: one per key (``_key_of``), in the batch's
        order."""
        runs: dict[Hashable, list[tuple[int, Msg]]] = {}
        for index, msg in enumerate(msgs):
            runs.setdefault(self._key_of(msg), []).append((index, msg))
        return list(runs.values())

    def backoff(self, delivered: int) -> float:
        """Seconds before a message that failed its ``delivered``-th time comes again."""
        return min(0.2 * 2 ** (delivered - 1), 30.0)

    def final(self, err: Exception) -> bool:
        """Whether a failure is not worth retrying (``give_up`` at once); none by default."""
        return False

    async def give_up(self, msg: Msg, delivered: int, err: Exception) -> None:
        """After the last attempt: the message goes to the dead letters, then it is acknowledged."""
        await self.dead_letter(msg, sequence=msg.metadata.sequence.stream, attempts=delivered, error=err)
        await msg.ack()

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
        started = time.perf_counter()
        with tracer().start_as_current_span(
            self.span_name,
            context=extract_context(msg.headers),
            kind=SpanKind.CONSUMER,
            attributes={**self.span_attributes(msg), "messaging.message.delivery_count": delivered},
        ) as span:
            try:
                await self._handle_while_unavailable(msg)
            except Exception as err:
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
                HANDLER_SECONDS.labels(self.durable).observe(time.perf_counter() - started)
                await self._failed(msg, delivered, err)
                return
        HANDLER_SECONDS.labels(self.durable).observe(time.perf_counter() - started)
        MESSAGES_HANDLED.labels(self.durable, "ok").inc()
        await msg.ack()

    async def _handle_while_unavailable(self, msg: Msg) -> None:
        """The handler, tried again in place while NATS or the database is away (for at most
        ``hold_s``), the message kept from redelivery with "in progress"."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold_s
        delay = 0.2
        while True:
            try:
                await self.handle(msg)
                return
            except Exception as err:
                if not unavailable(err) or loop.time() + delay > deadline:
                    raise
                log.warning(
                    "bus or store unavailable, holding the message",
                    extra={"consumer": self.durable, "subject": msg.subject, "error": repr(err)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                with contextlib.suppress(Exception):  # the server may still be away
                    await msg.in_progress()

    async def _failed(self, msg: Msg, delivered: int, err: Exception) -> None:
        """After a failed attempt: give up (dead letter, then ack) on the last one or a ``final``
        failure, else nak with backoff. An outage never gives up; a dead letter that could not be
        stored leaves the message unsettled, to come again."""
        if not unavailable(err) and (self.final(err) or delivered >= self.settings.max_deliver):
            try:
                await self.give_up(msg, delivered, err)
            except Exception as settle_err:
                MESSAGES_HANDLED.labels(self.durable, "unsettled").inc()
                log.error(
                    "message not dead-lettered, kept for redelivery",
                    extra={
                        "consumer": self.durable,
                        "subject": msg.subject,
                        "attempt": delivered,
                        "error": repr(err),
                        "dead_letter_error": repr(settle_err),
                    },
                )
                await self._nak(msg, self.backoff(delivered))
                return
            MESSAGES_HANDLED.labels(self.durable, "dead_letter").inc()
            return
        MESSAGES_HANDLED.labels(self.durable, "retry").inc()
        log.warning(
            "handler failed, will retry",
            extra={"consumer": self.durable, "attempt": delivered, "error": repr(err)},
        )
        await self._nak(msg, self.backoff(delivered))

    async def _nak(self, msg: Msg, delay: float) -> None:
        try:
            await msg.nak(delay=delay)
        except Exception as err:  # the server is away: the message comes again after the ack wait
            log.warning("nak not sent", extra={"consumer": self.durable, "subject": msg.subject, "error": repr(err)})
