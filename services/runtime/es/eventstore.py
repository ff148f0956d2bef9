"""The event store: JetStream streams per context, one subject per aggregate.

Atomic commits: the events one command decides for one aggregate are stored as **one message**
(a JSON array of envelopes). We chose this over a JetStream atomic batch because a batch cannot
carry ``Nats-Msg-Id`` (so a retried append would not be de-duplicated), needs a stream opted in to
atomic publishing and a server of 2.12 or newer; one message is atomic by construction, is
de-duplicated by one id (the first event's id) and is checked against the aggregate's version by
one ``Nats-Expected-Last-Subject-Sequence``.

Versions: an aggregate's version is the stream sequence of its last commit, not an event count.

Loading: reading an aggregate's subject with ``next_by_subj`` costs milliseconds per message on
a large stream, while a direct get of ``last_by_subj`` or of a sequence is a fraction of one. So
every commit carries the sequence of the aggregate's previous commit (``Duban-Prev-Seq``), a
snapshot of the state after each append is kept in a memory-storage KV bucket, and a load asks
for the snapshot and the subject's last message at once: when they agree (the common case) the
state is there; otherwise the commits after the snapshot are walked back by sequence. Snapshots
are a cache: losing them (memory storage, a server restart) only makes the next load walk back;
a stale one cannot cause a lost update because appends check the version.

The bucket stays in memory on purpose: a cache that a restart empties can never be older than
the stream it caches, and it costs no disk write per append. So a server restart removes the
bucket itself, not just its keys: a load that cannot read a snapshot for any reason (the bucket
gone, the server away) walks the stream instead, and the bucket is created again in the
background (at most every few seconds), so snapshots come back without restarting the service.

So an append costs one acknowledged publish: the snapshot after it is written fire-and-forget, as
a core NATS publish to the key's subject in the bucket (``$KV.<bucket>.<key>``, which the
bucket's stream stores just as it stores a ``kv.put``), not as a second round trip. Should the
server drop one, the next load walks back from the previous snapshot. One connection's messages
are stored in the order they were sent, so one process's appends to an aggregate leave the newest.

Headers: every commit carries ``Nats-Msg-Id`` (de-duplication),
``Nats-Expected-Last-Subject-Sequence`` (the version check), ``Duban-Prev-Seq`` (the back link
loads walk), ``Duban-Event-Types`` (so consumers skip commits without decoding them) and the W3C
trace context when there is one. Nothing else: every consumer parses every header of every
message, a measurable part of a projector's time in nats-py. ``Nats-Expected-Stream`` is not
needed (an event subject belongs to one stream only), and the aggregate type is in each envelope.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.client import KV_PRE_TEMPLATE
from nats.js.errors import APIError, BadRequestError, KeyDeletedError, KeyNotFoundError, NotFoundError
from opentelemetry.trace import SpanKind

from contracts import subjects
from contracts.envelope import (
    EVENT_TYPES_HEADER,
    PREVIOUS_SEQUENCE_HEADER,
    SYSTEM_ACTOR,
    Actor,
    Envelope,
    decode_commit,
    encode_commit,
    new_id,
    utcnow,
)
from contracts.events import Event, UnknownEventType, upcast
from services.runtime.observe.metrics import EVENTS_APPENDED, report_unreadable
from services.runtime.observe.telemetry import current_trace_context, tracer
from services.runtime.settings import Settings

from .aggregate import Aggregate, DomainError, check_kind

log = logging.getLogger("duban.eventstore")

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")

WRONG_LAST_SEQUENCE = 10071
STREAM_NAME_IN_USE = 10058
#: How often, at most, a service tries to make a missing snapshot bucket again.
SNAPSHOT_RETRY_S = 2.0


class ConcurrencyError(Exception):
    """Another writer appended to the aggregate since it was loaded (JetStream error 10071)."""

    def __init__(self, aggregate_id: str, expected: int, actual: int | None) -> None:
        super().__init__(f"aggregate {aggregate_id}: expected version {expected}, found {actual}")
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class StoreUnavailable(Exception):
    """The event store did not answer in time; nothing is known to be stored."""


class UndecodableEvent(DomainError):
    """A stored commit of the aggregate cannot be read (a malformed envelope, an event no class
    reads): the aggregate cannot be loaded until an operator voids that commit (``duban events
    void``). Answered 409 in Chinese, naming the stream sequence; reported in logs and ``/status``."""

    status = 409

    def __init__(self, aggregate_id: str, subject: str, sequence: int, reason: str) -> None:
        super().__init__(
            f"记录 {aggregate_id} 的第 {sequence} 号消息无法读取，暂不能查看或办理；已报告运维人员处理"
            f"（消息主题 {subject}）",
            field=None,
            code="undecodable_event",
        )
        self.subject, self.sequence, self.reason = subject, sequence, reason


@dataclass(frozen=True)
class Commit:
    """What an append stored: the new version (a stream sequence) and the envelopes."""

    version: int
    envelopes: list[Envelope]
    duplicate: bool = False


@dataclass(frozen=True)
class StoredCommit:
    seq: int
    previous: int
    envelopes: list[Envelope]
    headers: dict[str, str]
    #: Why the commit could not be read (its envelopes are then empty), or None.
    error: str | None = None


#: The parts of a stream's configuration duban sets and keeps: an existing stream that has them
#: all is left as it is (a service's user may only look at the streams ``duban provision`` made).
_KEPT = (
    "subjects",
    "storage",
    "num_replicas",
    "duplicate_window",
    "deny_delete",
    "deny_purge",
    "allow_direct",
    "max_msgs",
    "max_bytes",
    "max_age",
)


def _sources(config: StreamConfig) -> list[tuple]:
    return sorted((s.name, s.filter_subject, s.external.api if s.external else None) for s in (config.sources or []))


def up_to_date(existing: StreamConfig, wanted: StreamConfig) -> bool:
    """Whether ``existing`` already is ``wanted`` in every part duban sets."""
    for name in _KEPT:
        want, have = getattr(wanted, name), getattr(existing, name)
        if name == "subjects":
            want, have = sorted(want or []), sorted(have or [])
        if name in ("max_msgs", "max_bytes") and want is None:
            want = -1
        if name == "max_age" and want is None:
            want = 0
        if name == "duplicate_window":
            if not want:
                continue  # the server's default
            want, have = float(want), float(have or 0)
        if name == "storage":
            want, have = getattr(want, "value", want), getattr(have, "value", have)
        if want is not None and want != have:
            return False
    return _sources(existing) == _sources(wanted)


#: How many times ``ensure_stream`` asks again when the server's answer did not come in time.
ENSURE_ATTEMPTS = 4
#: JetStream's answer while a cluster is still forming: a peer the replicas need not yet known online.
NO_PEERS_FOR_PLACEMENT = 10005
#: How long ``ensure_stream`` waits for such a cluster before it gives up.
PLACEMENT_PATIENCE_S = 60.0


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Make sure a stream is there as ``config`` says: nothing when it already is (the only case a
    service's user meets where ``duban provision`` made the streams: it may look, not change),
    else create it or bring it to ``config`` (an open server, or provisioning itself).

    A server busy writing to its disk can answer after the client's timeout (5 s) a request it
    carried out all the same: the stream is then looked at again and, if still not as ``config``
    says, created again, ``ENSURE_ATTEMPTS`` times in all. A cluster still forming is waited for
    (``placed``: its patience counted once for the whole, not again after each timeout)."""
    await placed(lambda: _ensure_stream_in_time(js, config), config.name)


async def _ensure_stream_in_time(js: JetStreamContext, config: StreamConfig) -> None:
    for attempt in range(1, ENSURE_ATTEMPTS + 1):
        try:
            await _ensure_stream_once(js, config)
            return
        except NatsTimeoutError:
            if attempt == ENSURE_ATTEMPTS:
                raise
            log.warning("stream not ensured in time, asking again", extra={"stream": config.name, "attempt": attempt})


async def placed(make: Callable[[], Awaitable[T]], name: str) -> T:
    """``make()`` (a stream or bucket made), asked again every second for ``PLACEMENT_PATIENCE_S``
    while the cluster refuses it for want of peers: a cluster whose nodes have just started refuses
    replicas on a peer it has not heard from yet ("no suitable peers for placement, peer offline")."""
    loop = asyncio.get_running_loop()
    patience = loop.time() + PLACEMENT_PATIENCE_S
    while True:
        try:
            return await make()
        except BadRequestError as err:
            if err.err_code != NO_PEERS_FOR_PLACEMENT or loop.time() > patience:
                raise
            log.warning(
                "no peers for the replicas yet (the cluster is forming), asking again",
                extra={"stream": name, "error": err.description},
            )
            await asyncio.sleep(1.0)


async def _ensure_stream_once(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        info = None
    if info is not None and up_to_date(info.config, config):
        return
    try:
        await js.add_stream(config)
    except BadRequestError as err:
        if err.err_code != STREAM_NAME_IN_USE:
            raise
        await js.update_stream(config)


def event_stream_config(context: str, jurisdiction: str, settings: Settings) -> StreamConfig:
    """The event stream of one context at one level: append-only (no deletes, no purges)."""
    return StreamConfig(
        name=subjects.event_stream(context, jurisdiction),
        subjects=[subjects.event_wildcard(context, jurisdiction)],
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        description=f"duban {context} events of {jurisdiction}",
    )


class EventStore:
    """Appends and loads the aggregates of one context at one level."""

    def __init__(
        self,
        nc: NATS,
        *,
        context: str,
        jurisdiction: str,
        settings: Settings | None = None,
        publish_timeout: float = 5.0,
        retry_for: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=publish_timeout)
        self.context = context
        self.jurisdiction = jurisdiction
        self.settings = settings or Settings(jurisdiction=jurisdiction)
        self.clock = clock  # stamps ``occurred_at``: the service's clock, controlled in tests
        self.stream = subjects.event_stream(context, jurisdiction)
        #: Direct gets only from a stream of one replica: a replicated stream (the hub's) answers a
        #: direct get from any replica, a follower possibly not yet holding the last commit, and a
        #: load must see its own writes; its gets go to the stream's leader instead.
        self.direct = self.settings.stream_replicas == 1
        self.bucket = subjects.snapshot_bucket(context, jurisdiction)
        self.publish_timeout = publish_timeout
        self.retry_for = retry_for
        self._kv = None
        self._recreating: asyncio.Task | None = None
        self._recreate_after = 0.0
        #: The subject prefix of the snapshot bucket's keys, as nats-py's KeyValue builds it.
        self._snapshot_prefix = KV_PRE_TEMPLATE.format(bucket=self.bucket)
        self._span_name = f"publish {subjects.event_subject_template(context)}"

    # -- streams ---------------------------------------------------------------------------
    def stream_config(self) -> StreamConfig:
        return event_stream_config(self.context, self.jurisdiction, self.settings)

    async def ensure_streams(self, *, snapshots: bool = True) -> None:
        """The event stream and (for the context's own service) the snapshot bucket, there as
        configured. Idempotent. ``snapshots=False`` for another context's stream a service reads."""
        await ensure_stream(self.js, self.stream_config())
        if snapshots:
            await self.ensure_snapshot_bucket()

    async def ensure_snapshot_bucket(self) -> None:
        """Create the snapshot bucket if it is not there (a server restart empties memory storage)."""
        config = KeyValueConfig(
            bucket=self.bucket,
            history=1,
            storage=StorageType.MEMORY,
            replicas=self.settings.stream_replicas,
            direct=True,
            description=f"duban aggregate snapshots of {self.jurisdiction} (a cache)",
        )
        self._kv = await placed(lambda: self.js.create_key_value(config), f"KV_{self.bucket}")

    async def _snapshots(self):
        if self._kv is None:
            self._kv = await self.js.key_value(self.bucket)
        return self._kv

    def _snapshots_failed(self, err: BaseException) -> None:
        """A snapshot could not be read: the load walks the stream, and the bucket is made again
        in the background (once at a time, at most every ``SNAPSHOT_RETRY_S``)."""
        now = time.monotonic()
        if self._recreating is not None or now < self._recreate_after:
            return
        self._recreate_after = now + SNAPSHOT_RETRY_S
        log.warning("snapshots unavailable, loading from the stream", extra={"bucket": self.bucket, "error": repr(err)})

        async def recreate() -> None:
            try:
                await self.ensure_snapshot_bucket()
                log.info("snapshot bucket ensured", extra={"bucket": self.bucket})
            except Exception as again:  # the server is still away: the next failed read tries again
                log.warning("snapshot bucket not ensured", extra={"bucket": self.bucket, "error": repr(again)})
            finally:
                self._recreating = None

        self._recreating = asyncio.get_running_loop().create_task(recreate())

    # -- append ----------------------------------------------------------------------------
    async def append(
        self,
        aggregate: Aggregate,
        events: Sequence[Event],
        expected_version: int | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> Commit:
        """Store ``events`` for ``aggregate`` if its version is still ``expected_version``.

        On success the events are applied to ``aggregate`` and its version moves to the new
        stream sequence. Raises ``ConcurrencyError`` if another writer got there first. A
        retry of the same events (same ``event_ids``) is recognised as already stored.
        """
        if not events:
            raise ValueError("append needs at least one event")
        expected = aggregate.version if expected_version is None else expected_version
        ids = list(event_ids) if event_ids else [new_id() for _ in events]
        if len(ids) != len(events):
            raise ValueError("one event id per event")
        subject = subjects.event_subject(self.context, self.jurisdiction, aggregate.id)
        correlation_id = correlation_id or ids[0]
        with tracer().start_as_current_span(
            self._span_name,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": subject,
                "messaging.destination.template": subjects.EVENT_SUBJECT_TEMPLATE,
                "messaging.message.id": ids[0],
                "messaging.batch.message_count": len(events),
                "duban.aggregate.type": aggregate.aggregate_type,
                "duban.aggregate.id": aggregate.id,
                "duban.jurisdiction": self.jurisdiction,
                "duban.service": self.context,
                "duban.event_types": ",".join(e.event_type for e in events),
            },
        ) as span:
            now = self.clock()
            carrier = current_trace_context()
            envelopes = envelopes_of(
                aggregate, events, ids, self.jurisdiction, now, actor, correlation_id, causation_id, carrier
            )
            headers = {
                "Nats-Msg-Id": ids[0],
                "Nats-Expected-Last-Subject-Sequence": str(expected),
                PREVIOUS_SEQUENCE_HEADER: str(expected),
                EVENT_TYPES_HEADER: ",".join(e.event_type for e in events),
                **carrier,  # the trace context, as the envelopes carry it
            }
            commit = await self._publish(subject, encode_commit(envelopes), headers, ids[0], expected, aggregate.id)
            span.set_attribute("messaging.nats.stream.sequence", commit.version)
            if commit.duplicate:
                span.set_attribute("duban.duplicate", True)
            else:
                for event in events:
                    EVENTS_APPENDED.labels(self.context, self.jurisdiction, event.event_type).inc()
        if aggregate.sequence == 0 and not aggregate.journey:
            aggregate.journey = dict(carrier)
        for event in events:
            aggregate.apply(event)
        aggregate.version = commit.version
        await self.save_snapshot(aggregate, wait=False)
        return Commit(commit.version, envelopes, commit.duplicate)

    async def _publish(
        self,
        subject: str,
        body: bytes,
        headers: dict[str, str],
        msg_id: str,
        expected: int,
        aggregate_id: str,
    ) -> Commit:
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                ack = await self.js.publish(subject, body, timeout=self.publish_timeout, headers=headers)
                return Commit(ack.seq, [], duplicate=bool(ack.duplicate))
            except APIError as err:
                if err.err_code != WRONG_LAST_SEQUENCE:
                    raise
                stored = await self._stored_after(subject, expected, msg_id)
                if stored is not None:
                    return Commit(stored, [], duplicate=True)
                raise ConcurrencyError(aggregate_id, expected, await self.last_sequence(aggregate_id)) from None
            except (NatsTimeoutError, NoRespondersError, nats.errors.ConnectionClosedError) as err:
                # The ack may be lost while the message is stored: retrying with the same
                # Nats-Msg-Id is safe (de-duplicated, or recognised by _stored_after).
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"no acknowledgement for {subject}: {err!r}") from err
                log.warning("append retry", extra={"subject": subject, "error": repr(err)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _stored_after(self, subject: str, expected: int, msg_id: str) -> int | None:
        """The sequence of our own commit if it is the one stored right after ``expected``."""
        seq = await self._last_seq_of_subject(subject)
        while seq and seq > expected:
            msg = await self.js.get_msg(self.stream, seq=seq, direct=self.direct)
            headers = msg.headers or {}
            previous = int(headers.get(PREVIOUS_SEQUENCE_HEADER, "0"))
            if previous == expected:
                return seq if headers.get("Nats-Msg-Id") == msg_id else None
            seq = previous
        return None

    # -- load ------------------------------------------------------------------------------
    async def last_sequence(self, aggregate_id: str) -> int:
        """The aggregate's current version (0 if it has no events)."""
        return await self._last_seq_of_subject(subjects.event_subject(self.context, self.jurisdiction, aggregate_id))

    async def _last_seq_of_subject(self, subject: str) -> int:
        try:
            msg = await self.js.get_msg(self.stream, subject=subject, direct=self.direct)
        except NotFoundError:
            return 0
        return msg.seq

    async def _last_commit(self, aggregate_id: str) -> StoredCommit | None:
        subject = subjects.event_subject(self.context, self.jurisdiction, aggregate_id)
        try:
            msg = await self.js.get_msg(self.stream, subject=subject, direct=self.direct)
        except NotFoundError:
            return None
        return _stored(msg)

    async def _commit_at(self, seq: int) -> StoredCommit:
        return _stored(await self.js.get_msg(self.stream, seq=seq, direct=self.direct))

    def snapshot_key(self, cls: type[Aggregate], aggregate_id: str) -> str:
        """Keyed by this store's context: one bucket per level serves every context's aggregates."""
        return f"{self.context}.{cls.aggregate_type}.{aggregate_id}"

    async def _snapshot(self, cls: type[A], aggregate_id: str) -> A | None:
        try:
            entry = await (await self._snapshots()).get(self.snapshot_key(cls, aggregate_id))
        except (KeyNotFoundError, KeyDeletedError):
            return None
        except Exception as err:  # the bucket or the server is away: walk the stream instead
            self._snapshots_failed(err)
            return None
        try:
            data = json.loads(entry.value)
            if data.get("v") != cls.snapshot_version:
                return None
            return cls.model_validate(data["state"])
        except (ValueError, KeyError):
            log.warning("unreadable snapshot ignored", extra={"aggregate_id": aggregate_id})
            return None

    async def save_snapshot(self, aggregate: Aggregate, *, wait: bool = True) -> None:
        """Store ``aggregate`` as the snapshot of its id; never raises (a snapshot is a cache).

        ``wait=False`` (what ``append`` and ``load`` use) sends it without waiting for the
        server's acknowledgement: a core publish to the key's subject, which the bucket's stream
        stores like a ``put``; ``wait=True`` is ``kv.put``, acknowledged."""
        if not aggregate.snapshots:
            return
        key = self.snapshot_key(type(aggregate), aggregate.id)
        value = b'{"v":%d,"state":%s}' % (aggregate.snapshot_version, aggregate.model_dump_json().encode())
        try:
            if wait:
                await (await self._snapshots()).put(key, value)
            else:
                await self.nc.publish(self._snapshot_prefix + key, value)
        except Exception as err:  # a snapshot is a cache: failing to write one is not fatal
            log.warning("snapshot not saved", extra={"aggregate_id": aggregate.id, "error": repr(err)})

    async def load(self, cls: type[A], aggregate_id: str) -> A:
        """The aggregate's current state and version; a new, empty one if it has no events."""
        if cls.snapshots:
            snapshot, last = await asyncio.gather(self._snapshot(cls, aggregate_id), self._last_commit(aggregate_id))
        else:
            snapshot, last = None, await self._last_commit(aggregate_id)
        if last is None:
            return cls(id=aggregate_id)
        if snapshot is not None and snapshot.version == last.seq:
            return snapshot
        base = snapshot.version if snapshot is not None else 0
        commits = await self._walk_back(last, stop_at=base)
        if commits and commits[0].previous != base:  # the snapshot is not on this chain
            commits = await self._walk_back(last, stop_at=0)
            snapshot = None
        state = snapshot if snapshot is not None and commits[0].previous == base else cls(id=aggregate_id)
        for commit in commits:
            events = await self._readable(aggregate_id, commit)
            if events is None:  # voided by an operator: skipped, its numbers kept
                state.sequence += max(1, len(commit.headers.get(EVENT_TYPES_HEADER, "").split(",")))
            else:
                for envelope, event in events:
                    check_kind(cls, aggregate_id, envelope.aggregate_type)
                    if envelope.sequence == 1 and envelope.trace_context:
                        state.journey = dict(envelope.trace_context)
                    state.apply(event)
            state.version = commit.seq
        await self.save_snapshot(state, wait=False)
        return state

    async def _readable(self, aggregate_id: str, commit: StoredCommit) -> list[tuple[Envelope, Event]] | None:
        """The commit's envelopes with their events; None when an operator voided it; raises
        :class:`UndecodableEvent` (reported) when it cannot be read and was not voided."""
        error = commit.error
        events: list[tuple[Envelope, Event]] = []
        if error is None:
            try:
                events = [(e, upcast(e.event_type, e.schema_version, e.payload)) for e in commit.envelopes]
            except (ValueError, UnknownEventType) as err:
                error = f"{type(err).__name__}: {err}"
        if error is None:
            return events
        subject = subjects.event_subject(self.context, self.jurisdiction, aggregate_id)
        if await self.voided(aggregate_id, commit.seq):
            return None
        report_unreadable(self.stream, subject, commit.seq, error)
        raise UndecodableEvent(aggregate_id, subject, commit.seq, error)

    async def voided(self, aggregate_id: str, sequence: int) -> dict | None:
        """The operator's mend voiding this commit (``duban events void``), if there is one."""
        subject = subjects.mend_subject(self.jurisdiction, self.context, aggregate_id, sequence)
        try:
            msg = await self.js.get_msg(subjects.mend_stream(self.jurisdiction), subject=subject)
        except NotFoundError:
            return None
        except APIError as err:  # no MENDS stream (an open development server never provisioned)
            log.warning("mends unreadable", extra={"subject": subject, "error": repr(err)})
            return None
        return json.loads(msg.data or b"{}")

    async def _walk_back(self, last: StoredCommit, *, stop_at: int) -> list[StoredCommit]:
        """Commits after ``stop_at`` up to ``last``, oldest first, by their previous-sequence links."""
        chain = [last]
        while chain[-1].previous > stop_at:
            chain.append(await self._commit_at(chain[-1].previous))
        chain.reverse()
        return chain

    async def history(self, aggregate_id: str) -> list[Envelope]:
        """Every stored event of the aggregate, oldest first (for detail views and audits)."""
        last = await self._last_commit(aggregate_id)
        if last is None:
            return []
        envelopes: list[Envelope] = []
        for commit in await self._walk_back(last, stop_at=0):
            readable = await self._readable(aggregate_id, commit)
            envelopes += [envelope for envelope, _ in readable or []]
        return envelopes


def envelopes_of(
    aggregate: Aggregate,
    events: Sequence[Event],
    ids: Sequence[str],
    jurisdiction: str,
    now: datetime,
    actor: Actor,
    correlation_id: str,
    causation_id: str | None,
    trace_context: dict[str, str],
) -> list[Envelope]:
    """The envelopes of one commit of ``aggregate``: numbered after its events so far, stamped
    ``now``, with who, why and the trace context (what both event stores store)."""
    return [
        Envelope(
            event_id=event_id,
            event_type=event.event_type,
            schema_version=event.schema_version,
            aggregate_type=aggregate.aggregate_type,
            aggregate_id=aggregate.id,
            sequence=aggregate.sequence + i + 1,
            jurisdiction=jurisdiction,
            occurred_at=now,
            actor=actor,
            correlation_id=correlation_id,
            causation_id=causation_id,
            trace_context=trace_context,
            payload=event.model_dump(mode="json"),
        )
        for i, (event_id, event) in enumerate(zip(ids, events, strict=True))
    ]


def _stored(msg) -> StoredCommit:
    """A stored commit; one whose body cannot be read keeps its link back and says why."""
    headers = dict(msg.headers or {})
    try:
        previous = int(headers.get(PREVIOUS_SEQUENCE_HEADER, "0"))
    except ValueError:
        previous = 0
    try:
        envelopes, error = decode_commit(msg.data or b"[]"), None
    except ValueError as err:
        envelopes, error = [], f"{type(err).__name__}: {err}"
    return StoredCommit(seq=msg.seq, previous=previous, envelopes=envelopes, headers=headers, error=error)


__all__ = ["Commit", "ConcurrencyError", "EventStore", "StoreUnavailable", "UndecodableEvent", "ensure_stream"]
