"""A level's streams copied onto a fresh server, message by message, at their own sequences.

``duban restore`` reads every stream of a level from where a copy is kept (the hub's mirrors,
``mirrors.py``, or a ``duban backup`` file, ``backupfile.py``) and stores each message again on the
level's new server, with its subject, headers and body, **at the sequence it had**: every message
is published with ``Nats-Expected-Last-Sequence`` set to the sequence before it, so nothing can be
stored out of place, and an aggregate's version (a stream sequence) and the ``Duban-Prev-Seq``
links of its commits are what they were. A gap (a dead letter an operator removed) is kept as a
gap. A restore cut short is run again: it checks what the target holds against the copy and goes
on after it.

What the level had sent and received stays sent and received:

- the messages keep their ``Nats-Msg-Id``, and being stored anew they fill the stream's
  de-duplication window: when the level's services start (within ``duplicate_window``, 10 minutes
  by default) and their reactions run through the stream again, whatever they send again with the
  same derived id (to the OUTBOX, to their own streams) is recognised and not stored twice;
- the INBOX cannot take a client's message with the server's ``Nats-Stream-Source`` header, so it
  is restored under a subject list of its own, its messages keep that header as
  ``Duban-Stream-Source``, and it then sources its neighbours again starting right after the last
  message it had from each (``opt_start_seq``): nothing received is lost or taken twice;
- the neighbours' INBOX, sourcing this level's OUTBOX at the sequence they had reached, go on from
  there, since the OUTBOX has its sequences back.

Services then rebuild what they keep elsewhere: snapshots are a cache, consumers are made again,
and a read model whose checkpoint is past the restored stream is rebuilt (``projector.py``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig, SubjectTransform
from nats.js.errors import NotFoundError

log = logging.getLogger("duban.restore")

#: The headers a publisher's expectations are in (the server checks them): not carried over; each
#: restored message expects instead the sequence before its own.
EXPECTED_PREFIX = "Nats-Expected-"
SOURCE_HEADER = "Nats-Stream-Source"
#: Where a restored INBOX message keeps the server's source header (``Nats-Stream-Source``).
RESTORED_SOURCE_HEADER = "Duban-Stream-Source"
#: Publishes in flight at once while restoring (one connection keeps them in order).
WINDOW = 256
#: How long a restored message's acknowledgement is waited for before it is put in again on its own.
ACK_WAIT_S = 5.0
#: ``duban.x.<to>.<from>.<kind>``: what an INBOX holds.
INBOX_SUBJECT_TOKENS = 5


class RestoreError(Exception):
    """The copy cannot be put back as it is: says what and where."""


@dataclass(frozen=True)
class StoredMessage:
    """One stored message of a stream, as a copy keeps it."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes
    time: str = ""

    def as_record(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "subject": self.subject,
            "headers": self.headers,
            "data": base64.b64encode(self.data).decode("ascii"),
            "time": self.time,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> StoredMessage:
        return cls(
            seq=int(record["seq"]),
            subject=record["subject"],
            headers=dict(record.get("headers") or {}),
            data=base64.b64decode(record["data"]),
            time=record.get("time", ""),
        )


async def read_stream(
    js: JetStreamContext, stream: str, *, upto: int | None = None, wait_s: float = 30.0
) -> AsyncIterator[StoredMessage]:
    """Every message of ``stream`` up to sequence ``upto`` (default: its last one when reading
    starts, so a copy is consistent for each stream), in order, through an ordered consumer: one
    that notices a delivery lost on the way (a leaf link that drops, interest not yet known across
    it) by its delivery sequences and starts again after the last message it had, so a message is
    never skipped (and a removed one is not mistaken for a lost one)."""
    info = await js.stream_info(stream)
    last = info.state.last_seq if upto is None else upto
    if info.state.messages == 0 or last < info.state.first_seq:
        return
    sub = await js.subscribe(
        ">",
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, mem_storage=True, headers_only=False),
    )  # flow control paces the server to how fast the copy is written (nats-py's default limits)
    try:
        seq, pending = 0, 1
        # up to ``last``, or to the last message there when the stream's last ones were removed
        while seq < last and pending:
            msg = await sub.next_msg(timeout=wait_s)
            seq, pending = msg.metadata.sequence.stream, msg.metadata.num_pending
            if seq > last:
                break
            yield StoredMessage(
                seq=seq,
                subject=msg.subject,
                headers=dict(msg.headers or {}),
                data=msg.data,
                time=msg.metadata.timestamp.isoformat() if msg.metadata.timestamp else "",
            )
    finally:
        await sub.unsubscribe()


def restored_headers(headers: dict[str, str], seq: int) -> dict[str, str]:
    """A message's headers as it is stored again at sequence ``seq``: the publisher's expectations
    replaced by the sequence before it, the server's source header kept under duban's name."""
    kept = {k: v for k, v in headers.items() if not k.startswith(EXPECTED_PREFIX)}
    if SOURCE_HEADER in kept:
        kept[RESTORED_SOURCE_HEADER] = kept.pop(SOURCE_HEADER)
    kept["Nats-Expected-Last-Sequence"] = str(seq - 1)
    return kept


def source_positions(messages: list[StoredMessage]) -> dict[str, int]:
    """The last sequence each sourced stream had delivered, from the messages' source headers
    (``Nats-Stream-Source: <stream>[:<hash>] <seq> …``)."""
    found: dict[str, int] = {}
    for message in messages:
        value = message.headers.get(SOURCE_HEADER) or message.headers.get(RESTORED_SOURCE_HEADER)
        if not value:
            continue
        name, seq, *_ = value.split(" ")
        stream = name.split(":")[0]  # an external source's name carries its API's hash
        found[stream] = max(found.get(stream, 0), int(seq))
    return found


@dataclass
class StreamRestored:
    stream: str
    messages: int
    last_seq: int
    skipped: int
    seconds: float


class Restorer:
    """Puts a level's streams back on a fresh server from a copy, one stream at a time."""

    def __init__(self, js: JetStreamContext, *, say: Callable[[str], None] = lambda line: None) -> None:
        self.js = js
        self.say = say

    async def restore(
        self, config: StreamConfig, messages: AsyncIterator[StoredMessage], *, last_seq: int
    ) -> StreamRestored:
        """``config``'s stream made again with ``messages`` (sequences up to ``last_seq``)."""
        if config.sources:
            return await self._restore_sourced(config, [m async for m in messages], last_seq)
        started = time.monotonic()
        have = await self._existing(config.name)
        if have is None:
            await self.js.add_stream(config)
            have = 0
        restored = await self._put(config, messages, after=have, last_seq=last_seq)
        return StreamRestored(config.name, restored, last_seq, have, time.monotonic() - started)

    async def _existing(self, stream: str) -> int | None:
        """The last sequence ``stream`` holds already (a restore run before), None if it is not there."""
        try:
            info = await self.js.stream_info(stream)
        except NotFoundError:
            return None
        return info.state.last_seq

    async def _put(
        self,
        config: StreamConfig,
        messages: AsyncIterator[StoredMessage],
        *,
        after: int,
        last_seq: int,
        prefix: str = "",
    ) -> int:
        """Store the messages after sequence ``after``, each at its own sequence, ``WINDOW`` of
        them in flight at once (``prefix``: put before each subject, for an INBOX held under
        subjects of its own)."""
        stream = config.name
        if after > last_seq:
            raise RestoreError(
                f"{stream} on the target already holds {after} messages, more than the copy's {last_seq}: "
                "restore onto a fresh server (or a stream the copy is not behind)"
            )
        inflight: deque[tuple[StoredMessage, asyncio.Future]] = deque()
        done = 0
        expected = after  # the last sequence stored (or in flight) on the target
        reported = time.monotonic()

        async def settle(keep: int) -> None:
            while len(inflight) > keep:
                message, future = inflight.popleft()
                try:
                    # nats-py 2.16 never completes the future of a publish the server refused
                    # (its reply handler raises instead of setting the error): hence the time limit
                    ack = await asyncio.wait_for(future, ACK_WAIT_S)
                except Exception:  # redone one by one below, which says what failed
                    ack = None
                if ack is not None and not ack.duplicate and ack.seq == message.seq:
                    continue
                # This one was not stored where it belongs, so those behind it were refused (each
                # expects the one before): put them in one by one, after what the target holds.
                behind = [message]
                while inflight:
                    later, pending = inflight.popleft()
                    pending.cancel()
                    behind.append(later)
                for again in behind:
                    await self._one_by_one(stream, again, prefix)

        async for message in messages:
            if message.seq <= after:
                if message.seq == after and after:
                    await self._check_same(stream, message)
                continue
            if message.seq <= expected:
                raise RestoreError(f"{stream}: the copy holds sequence {message.seq} twice or out of order")
            if expected + 1 < message.seq:  # a gap in the original (a removed dead letter)
                await settle(0)
                while expected + 1 < message.seq:
                    await self._gap(config, expected + 1, prefix)
                    expected += 1
            headers = restored_headers(message.headers, message.seq)
            future = await self.js.publish_async(prefix + message.subject, message.data, headers=headers)
            inflight.append((message, future))
            expected = message.seq
            done += 1
            await settle(WINDOW)
            if time.monotonic() - reported > 5:
                reported = time.monotonic()
                self.say(f"  {stream}: {message.seq} of {last_seq}")
        await settle(0)
        while expected < last_seq:  # removed messages at the end
            await self._gap(config, expected + 1, prefix)
            expected += 1
        return done

    async def _one_by_one(self, stream: str, message: StoredMessage, prefix: str) -> None:
        """One message put in on its own, after a pipelined put went wrong: skipped if the target
        holds it already, else stored at its sequence (without its id if the original had stored
        that id twice, further apart than the de-duplication window)."""
        have = await self._existing(stream) or 0
        if have >= message.seq:
            await self._check_same(stream, message)
            return
        headers = restored_headers(message.headers, message.seq)
        try:
            ack = await self.js.publish(prefix + message.subject, message.data, headers=headers, stream=stream)
            if ack.duplicate:
                headers.pop("Nats-Msg-Id", None)
                ack = await self.js.publish(prefix + message.subject, message.data, headers=headers, stream=stream)
        except Exception as err:
            raise RestoreError(f"{stream}: message {message.seq} not stored: {err}") from err
        if ack.seq != message.seq:
            raise RestoreError(f"{stream}: message {message.seq} was stored as {ack.seq}")

    async def _gap(self, config: StreamConfig, seq: int, prefix: str) -> None:
        """Keep sequence ``seq`` empty, as in the original: a placeholder stored and removed."""
        if config.deny_delete:
            raise RestoreError(f"{config.name}: sequence {seq} is not in the copy, and the stream keeps every one")
        subject = prefix + (config.subjects or ["duban.restore.gap"])[0].replace(">", "gap").replace("*", "gap")
        ack = await self.js.publish(subject, b"", headers=restored_headers({}, seq), stream=config.name)
        await self.js.delete_msg(config.name, ack.seq)

    async def _check_same(self, stream: str, message: StoredMessage) -> None:
        stored = await self.js.get_msg(stream, seq=message.seq)
        if stored.data != message.data:
            raise RestoreError(
                f"{stream}: the target's message {message.seq} differs from the copy's: "
                "it is not a restore of this copy; restore onto a fresh server"
            )

    async def _restore_sourced(self, config: StreamConfig, messages: list[StoredMessage], last_seq: int):
        """An INBOX: its messages taken in on a subject of its own (``duban.restore.<stream>.``
        before theirs, taken off again by a subject transform, so they are stored under their own
        subjects without overlapping the OUTBOX of a level on the same server), then its sources
        again, each starting right after the last message it had delivered."""
        started = time.monotonic()
        try:
            info = await self.js.stream_info(config.name)
        except NotFoundError:
            info = None
        have = info.state.last_seq if info is not None else None
        if info is not None and info.config.sources:  # restored and sourcing already: a run before finished it
            if have < last_seq:
                raise RestoreError(f"{config.name} is sourcing already with {have} of {last_seq} messages")
            return StreamRestored(config.name, 0, last_seq, have, time.monotonic() - started)
        odd = [m for m in messages if len(m.subject.split(".")) != INBOX_SUBJECT_TOKENS]
        if odd:
            raise RestoreError(
                f"{config.name}: message {odd[0].seq} has the subject {odd[0].subject!r}, not an INBOX one"
            )
        prefix = f"duban.restore.{config.name}."
        holding = StreamConfig(
            name=config.name,
            subjects=[prefix + ">"],
            subject_transform=SubjectTransform(
                src=prefix + "duban.x.*.*.*", dest="duban.x.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
            ),
            storage=config.storage or StorageType.FILE,
            num_replicas=config.num_replicas,
            duplicate_window=config.duplicate_window,
            deny_delete=config.deny_delete,
            deny_purge=config.deny_purge,
            allow_direct=config.allow_direct,
            description=config.description,
        )
        if have is None:
            await self.js.add_stream(holding)
            have = 0

        async def each() -> AsyncIterator[StoredMessage]:
            for message in messages:
                yield message

        restored = await self._put(holding, each(), after=have, last_seq=last_seq, prefix=prefix)
        positions = source_positions(messages)
        for source in config.sources or []:
            if source.name in positions:
                source.opt_start_seq = positions[source.name] + 1
        await self.js.update_stream(config)
        return StreamRestored(config.name, restored, last_seq, have, time.monotonic() - started)


MessagesOf = Callable[[str], Awaitable[tuple[int, AsyncIterator[StoredMessage]]]]


async def restore_level(
    js: JetStreamContext,
    configs: list[StreamConfig],
    messages_of: MessagesOf,
    *,
    say: Callable[[str], None] = lambda line: None,
) -> list[StreamRestored]:
    """Every stream in ``configs`` restored from ``messages_of(stream) -> (last_seq, messages)``;
    the INBOX streams first (they hold their neighbours' subjects while restoring)."""
    restorer = Restorer(js, say=say)
    ordered = sorted(configs, key=lambda c: 0 if c.sources else 1)
    results = []
    for config in ordered:
        last_seq, messages = await messages_of(config.name)
        result = await restorer.restore(config, messages, last_seq=last_seq)
        rate = result.messages / result.seconds if result.seconds else 0.0
        say(
            f"restored {config.name}: {result.messages} messages to sequence {last_seq}"
            + (f" ({result.skipped} there already)" if result.skipped else "")
            + f" in {result.seconds:.1f}s ({rate:.0f}/s)"
        )
        results.append(result)
    return results
