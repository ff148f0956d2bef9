"""The event store's contract in memory, for domain and handler tests that need no server.

It keeps what the JetStream store keeps and answers as it answers (pyeventsourcing's in-memory
persistence beside its real ones): one stream per context and level whose sequence numbers every
commit, a commit per ``append`` (the events of one command, atomic), versions that are stream
sequences, the version check (``Nats-Expected-Last-Subject-Sequence``: another writer's commit in
between is a :class:`ConcurrencyError`), de-duplication by the first event's id (a retry of an
append that was stored is answered as that commit, also after another writer moved on), and
loads and histories read back through upcasting. Stores built on one :class:`MemoryStreams`
share their streams, as services on one server do.

The contract tests (``tests/test_eventstore.py``) run against both stores: what passes here passes
on a real nats-server. What it does not have: a server to publish to (``js``/``nc``), consumers,
snapshots (a load replays the aggregate's commits, which costs nothing here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from contracts import subjects
from contracts.envelope import SYSTEM_ACTOR, Actor, Envelope, new_id, utcnow
from contracts.events import Event, upcast
from services.runtime.observe.telemetry import current_trace_context
from services.runtime.settings import Settings

from .aggregate import Aggregate, check_kind
from .eventstore import Commit, ConcurrencyError, envelopes_of

A = TypeVar("A", bound=Aggregate)


@dataclass
class _Stored:
    seq: int
    subject: str
    previous: int
    msg_id: str
    stored_at: datetime
    envelopes: list[Envelope]


@dataclass
class _Stream:
    messages: list[_Stored] = field(default_factory=list)
    last_by_subject: dict[str, int] = field(default_factory=dict)
    by_msg_id: dict[str, _Stored] = field(default_factory=dict)

    def at(self, seq: int) -> _Stored:
        return self.messages[seq - 1]


class MemoryStreams:
    """The streams of one pretend server: stores built on the same instance share them."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    def stream(self, name: str) -> _Stream:
        return self._streams.setdefault(name, _Stream())

    def messages(self, name: str) -> int:
        """How many commits a stream holds (what ``stream_info().state.messages`` says)."""
        return len(self.stream(name).messages)


class InMemoryEventStore:
    """Appends and loads the aggregates of one context at one level, in memory."""

    def __init__(
        self,
        *,
        context: str,
        jurisdiction: str,
        settings: Settings | None = None,
        streams: MemoryStreams | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.context = context
        self.jurisdiction = jurisdiction
        self.settings = settings or Settings(jurisdiction=jurisdiction)
        self.clock = clock
        self.streams = streams or MemoryStreams()
        self.stream = subjects.event_stream(context, jurisdiction)

    async def ensure_streams(self) -> None:
        """Nothing to create: a stream exists once it is used."""

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
        """As :meth:`EventStore.append`: stored if the aggregate's version is still
        ``expected_version``; a retry with the same ``event_ids`` is answered as the commit stored."""
        if not events:
            raise ValueError("append needs at least one event")
        expected = aggregate.version if expected_version is None else expected_version
        ids = list(event_ids) if event_ids else [new_id() for _ in events]
        if len(ids) != len(events):
            raise ValueError("one event id per event")
        stream = self.streams.stream(self.stream)
        subject = subjects.event_subject(self.context, self.jurisdiction, aggregate.id)
        now = self.clock()
        actual = stream.last_by_subject.get(subject, 0)
        if actual != expected:
            # As the JetStream store does on "wrong last sequence": a retry of our own append is
            # recognised by the commit stored right after ``expected`` carrying our id.
            ours = self._stored_after(stream, actual, expected, ids[0])
            if ours is None:
                raise ConcurrencyError(aggregate.id, expected, actual)
            return self._applied(aggregate, events, Commit(ours.seq, ours.envelopes, duplicate=True))
        seen = stream.by_msg_id.get(ids[0])
        if seen is not None and now - seen.stored_at <= timedelta(seconds=self.settings.duplicate_window_s):
            return self._applied(aggregate, events, Commit(seen.seq, seen.envelopes, duplicate=True))
        carrier = current_trace_context()
        envelopes = envelopes_of(
            aggregate, events, ids, self.jurisdiction, now, actor, correlation_id or ids[0], causation_id, carrier
        )
        stored = _Stored(len(stream.messages) + 1, subject, expected, ids[0], now, envelopes)
        stream.messages.append(stored)
        stream.last_by_subject[subject] = stored.seq
        stream.by_msg_id[ids[0]] = stored
        if aggregate.sequence == 0 and not aggregate.journey:
            aggregate.journey = dict(carrier)
        return self._applied(aggregate, events, Commit(stored.seq, envelopes))

    @staticmethod
    def _stored_after(stream: _Stream, last: int, expected: int, msg_id: str) -> _Stored | None:
        seq = last
        while seq and seq > expected:
            stored = stream.at(seq)
            if stored.previous == expected:
                return stored if stored.msg_id == msg_id else None
            seq = stored.previous
        return None

    @staticmethod
    def _applied(aggregate: Aggregate, events: Sequence[Event], commit: Commit) -> Commit:
        for event in events:
            aggregate.apply(event)
        aggregate.version = commit.version
        return commit

    # -- load ------------------------------------------------------------------------------
    async def last_sequence(self, aggregate_id: str) -> int:
        """The aggregate's current version (0 if it has no events)."""
        subject = subjects.event_subject(self.context, self.jurisdiction, aggregate_id)
        return self.streams.stream(self.stream).last_by_subject.get(subject, 0)

    def _commits(self, aggregate_id: str) -> list[_Stored]:
        stream = self.streams.stream(self.stream)
        seq = stream.last_by_subject.get(subjects.event_subject(self.context, self.jurisdiction, aggregate_id), 0)
        chain = []
        while seq:
            chain.append(stream.at(seq))
            seq = chain[-1].previous
        chain.reverse()
        return chain

    async def load(self, cls: type[A], aggregate_id: str) -> A:
        """The aggregate's current state and version; a new, empty one if it has no events."""
        state = cls(id=aggregate_id)
        for commit in self._commits(aggregate_id):
            for envelope in commit.envelopes:
                if envelope.sequence == 1 and envelope.trace_context:
                    state.journey = dict(envelope.trace_context)
                check_kind(cls, aggregate_id, envelope.aggregate_type)
                state.apply(upcast(envelope.event_type, envelope.schema_version, envelope.payload))
            state.version = commit.seq
        return state

    async def history(self, aggregate_id: str) -> list[Envelope]:
        """Every stored event of the aggregate, oldest first."""
        return [envelope for commit in self._commits(aggregate_id) for envelope in commit.envelopes]

    async def save_snapshot(self, aggregate: Aggregate, *, wait: bool = True) -> None:
        """No snapshots in memory: a load replays the commits."""


__all__ = ["InMemoryEventStore", "MemoryStreams"]
