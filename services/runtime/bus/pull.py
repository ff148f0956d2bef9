"""One durable pull consumer on a stream: what the projector and the durable worker share.

Binding (with its subject filters and the dead-letter stream beside it), fetching in batches
(``batches.py``; an empty fetch is not an error), running until stopped, letting go of the
subscription, and sending a message that kept failing to the dead-letter stream.

An idle consumer's pull request lingers at the server for ``pull_wait_s`` (5 s) and is answered
as soon as a message comes, so waiting longer costs no latency, only how often an idle service
asks: at half a second, a ``duban up`` of three levels doing nothing used 11.3 CPU-seconds every
30 s (3.1 of them nats-server's), at 5 s 3.0 (0.6). ``stop`` and ``wake`` (the service calls it
after a reconnection) end a waiting fetch at once.

What survives a restart of the nats-server, and why nothing more is needed: the streams (events,
OUTBOX, INBOX, dead letters) and the durable consumers are file storage, so a restarted server
has them as they were, with each consumer's acknowledged floor; the client reconnects by itself
(``levels.connection_options``) and the subscription's next fetch goes to the same consumer.
What the server had delivered just before the link broke may never have come: the consumer holds
it unacknowledged until its ack wait and hands out newer messages first. A durable worker's
explicit acks leave it to come again after that wait (its handling is idempotent, its order per
key not kept for it); a projector, whose position would pass it, makes its consumer again from
its checkpoint after every reconnect (``projector.py``): it raises ``Reconnected``, and the
service prepares it again as after any interruption, with a warning rather than an error.
Should a consumer be missing all the same (an operator removed it), its worker fails, and the
service prepares it again before running it (``ServiceBase._keep_running``): ``bind`` creates
the consumer and the dead-letter stream if they are not there. The one thing a service keeps in
memory storage, the snapshot bucket, is made again by the event store (``es/eventstore.py``).
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from services.runtime.settings import Settings

from .batches import Batches
from .deadletters import dead_letter, ensure_deadletter_stream

#: Messages a consumer's subscription may hold when its consumer sets no ``max_ack_pending``.
_PENDING = 256


class Reconnected(Exception):
    """The connection to NATS was lost and made again since the worker's consumer was made: the
    worker must be prepared again (``ServiceBase._keep_running`` does, retrying while the
    restarted server's JetStream does not answer yet). An interruption, not a failure."""


class PullConsumer:
    """Base of a loop over one durable pull consumer; subclasses say what a ``step`` does."""

    def __init__(
        self,
        nc: NATS,
        *,
        stream: str,
        durable: str,
        filter_subjects: list[str] | None,
        jurisdiction: str,
        context: str,
        settings: Settings | None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.stream = stream
        self.durable = durable
        self.filter_subjects = filter_subjects or []
        self.jurisdiction = jurisdiction
        self.context = context
        self.settings = settings or Settings(jurisdiction=jurisdiction)
        self._batches: Batches | None = None
        self._stopping = asyncio.Event()

    async def bind(self, config: ConsumerConfig) -> None:
        """Create the durable consumer from ``config`` and this consumer's filters, and bind to it."""
        await self.close()
        await ensure_deadletter_stream(self.js, self.jurisdiction, self.settings.stream_replicas)
        if len(self.filter_subjects) == 1:
            config.filter_subject = self.filter_subjects[0]
        elif self.filter_subjects:
            config.filter_subjects = self.filter_subjects
        await self.js.add_consumer(self.stream, config)
        batches = Batches(self.nc, self.stream, self.durable)
        await batches.start(config.max_ack_pending or _PENDING)
        self._batches = batches

    async def fetch(self, batch: int, timeout: float | None = None) -> list[Msg]:
        """Up to ``batch`` messages: what is waiting now, else what comes first within
        ``timeout`` (``pull_wait_s`` by default); none when nothing came, or when ``wake`` was
        called meanwhile."""
        assert self._batches is not None, "prepare() first"
        return await self._batches.fetch(batch, self.settings.pull_wait_s if timeout is None else timeout)

    def wake(self) -> None:
        """End a fetch that waits for messages now (it returns what came: nothing). The service
        calls it when its connection was made again: the restarted server may have lost the
        fetch's request, which would otherwise be waited out."""
        if self._batches is not None:
            self._batches.wake()

    async def idle(self) -> bool:
        """Nothing waiting and nothing delivered but unacknowledged, as the server sees it."""
        info = await self.js.consumer_info(self.stream, self.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    async def step(self) -> int:
        raise NotImplementedError

    async def run(self) -> None:
        """Step until ``stop()``; call ``prepare()`` first."""
        while not self._stopping.is_set():
            await self.step()

    def stop(self) -> None:
        """Stop after the batch in hand; a fetch waiting for messages ends at once."""
        self._stopping.set()
        self.wake()

    async def close(self) -> None:
        """Let go of the subscription (the durable consumer stays for the next start)."""
        if self._batches is not None:
            batches, self._batches = self._batches, None
            await batches.stop()

    def span_attributes(self, msg: Msg) -> dict[str, str | int]:
        """The messaging attributes of a consumer span for ``msg`` (semantic conventions)."""
        return self.consumer_attributes(
            {
                "messaging.destination.name": msg.subject,
                "messaging.message.id": (msg.headers or {}).get("Nats-Msg-Id", ""),
            }
        )

    def consumer_attributes(self, particular: dict[str, str | int]) -> dict[str, str | int]:
        """The attributes of every consumer span of this consumer, with ``particular`` (those of
        one message, or of a batch)."""
        return {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            **particular,
            "messaging.consumer.group.name": self.durable,
            "duban.jurisdiction": self.jurisdiction,
            "duban.service": self.context,
        }

    async def dead_letter(self, msg: Msg, *, sequence: int, attempts: int, error: BaseException) -> None:
        await dead_letter(
            self.js,
            jurisdiction=self.jurisdiction,
            context=self.context,
            consumer=self.durable,
            subject=msg.subject,
            stream=self.stream,
            sequence=sequence,
            data=msg.data,
            headers=msg.headers,
            attempts=attempts,
            error=error,
        )
