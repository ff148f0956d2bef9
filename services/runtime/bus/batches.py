"""Batches of a pull consumer, collected by a plain subscription: how every durable consumer of a
service fetches (``pull.py``: projectors and durable workers), and what ``duban rebuild`` reads a
stream with (``read/rebuild.py``).

nats-py's ``PullSubscription.fetch`` waits for each message of a batch with ``next_msg``: a
task, a timer (``wait_for``) and a uuid per message, about as much CPU as receiving and parsing
the message itself (bench/: a fifth of the raw consumer's profile). ``Batches`` sends the same
pull requests nats-py sends (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``, JetStream's pull
protocol) with replies to an inbox of its own, and a callback appends each message to the batch
of the request it answers: requests are answered in the order they were sent, each by messages
and, when it ends with fewer than asked, one status message (404 nothing more now, 408 expired,
409 the consumer changed). Over the benchmark's stream this halves the projector's CPU.

``fetch`` asks for what is there now (``no_wait``), else sends one lingering request until
``timeout`` (the server's ``expires``) that also carries ``no_wait``: the server answers it as soon
as messages come and it has run out of them (a 404 after them), rather than holding them until the
batch is full or the request expires (nats-py's ``fetch`` sends its first request so too). A live
projector so applies an event milliseconds after it is stored, not up to ``pull_wait_s`` later
(pages and tests reading right after a write saw the old read model). ``wake`` ends a waiting
request at once: a consumer stopping does not wait out a lingering request.
A request whose answer does not come in time (the connection was lost meanwhile) is given up;
messages that come later for it join the next batch, as nats-py's next fetch drains them from
its queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

log = logging.getLogger("duban.batches")

#: How much longer than the server's ``expires`` the client waits for a request's answer.
_GRACE_S = 1.0


class ConsumerMissing(Exception):
    """A pull request found no consumer to answer it (an operator removed it): the worker fails,
    and the service prepares it again, which makes the consumer (``ServiceBase._keep_running``)."""


@dataclass
class _Request:
    size: int
    #: Messages for it, in the order they came (stray ones first: they came before it was sent).
    msgs: list[Msg] = field(default_factory=list)
    #: How many of them answered it.
    received: int = 0
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    #: Why it has no answer (the consumer is not there), raised by ``answer``.
    error: Exception | None = None

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Batches:
    """Pull requests and their answers for one durable consumer (see the module docstring)."""

    def __init__(self, nc: NATS, stream: str, consumer: str) -> None:
        self.nc = nc
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.inbox = nc.new_inbox()
        self._sub = None
        self._requests: deque[_Request] = deque()
        #: Messages that came when no request was waiting (answers to one given up).
        self._stray: list[Msg] = []
        #: How many times ``wake`` was called: a fetch woken between its two requests ends.
        self._woken = 0

    async def start(self, batch: int) -> None:
        self._sub = await self.nc.subscribe(
            self.inbox, cb=self._delivered, pending_msgs_limit=4 * batch + 16, pending_bytes_limit=1 << 30
        )

    def wake(self) -> None:
        """End the requests waiting now: each answer gives what came of it (nothing, when idle);
        what the server sends for them later joins the next batch. For a consumer that stops, or
        whose connection was made again (the server may have lost its requests)."""
        self._woken += 1
        for request in self._requests:
            request.finish()

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        self.wake()
        self._requests.clear()
        self._stray.clear()

    async def ask(self, batch: int, *, expires: float | None = None) -> None:
        """Ask for up to ``batch`` messages: what the consumer has now, or, with ``expires``, what
        comes first within ``expires`` seconds (the server ends the request once it has no more)."""
        request = _Request(batch, msgs=self._stray)
        self._stray = []
        self._requests.append(request)
        body: dict[str, int | bool] = {"batch": batch, "no_wait": True}
        if expires is not None:
            body["expires"] = max(int(expires * 1_000_000_000) - 100_000, 1)
        await self.nc.publish(self.subject, json.dumps(body).encode(), reply=self.inbox)

    async def answer(self, timeout: float, *, in_time: bool = False) -> list[Msg]:
        """The messages of the oldest request, once it is answered in full (or, after
        ``timeout``, what came of it; with ``in_time``, a ``TimeoutError``); messages left over
        from a request given up come first."""
        request = self._requests[0]
        try:
            await asyncio.wait_for(asyncio.shield(request.done), timeout)
        except TimeoutError:
            if in_time:
                raise
            log.warning("pull request not answered in time", extra={"subject": self.subject, "timeout": timeout})
        if self._requests and self._requests[0] is request:
            self._requests.popleft()
        request.finish()
        if request.error is not None and not request.msgs:
            raise request.error
        return request.msgs

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages: the answer to a request asked before (``ask``), else what is
        there now, else what comes within ``timeout`` (nothing when nothing came)."""
        if self._requests:
            return await self.answer(timeout + _GRACE_S)
        woken = self._woken
        await self.ask(batch)
        msgs = await self.answer(timeout + _GRACE_S)
        if msgs or self._woken != woken:
            return msgs
        await self.ask(batch, expires=timeout)
        return await self.answer(timeout + _GRACE_S)

    async def _delivered(self, msg: Msg) -> None:
        request = next((r for r in self._requests if not r.done.done()), None)
        if not msg.data and msg.headers and "Status" in msg.headers:
            status = msg.headers["Status"]
            if status == "503" and request is not None:  # no responders: the consumer was removed
                request.error = ConsumerMissing(f"no consumer answers {self.subject}")
            elif status not in ("404", "408", "409"):
                log.warning("unexpected status of a pull request", extra={"status": status, "subject": self.subject})
            if request is not None:
                request.finish()  # the request is over: what came is its batch
            return
        if request is None:
            self._stray.append(msg)
            return
        request.msgs.append(msg)
        request.received += 1
        if request.received >= request.size:
            request.finish()
