"""Reactions: what a service does when an event it acts on is stored (the write side's ``@handles``).

A projection declares how each event changes a read model (``projector.handles``); a
:class:`Reactions` class declares, the same way, what a service *does* when an event is stored:
one ``@reacts_to(EventType, ...)`` method per kind of event, ``async def m(self, event, envelope)``,
given the upcast event and its envelope. Tracking opens a case when intake routes a matter here;
intake records a closed case's outcome; notify plans notices; a level takes in what another level
handed over.

The runtime runs a ``Reactions`` as a durable worker (``consumer.DurableWorker``) on the stream
that holds those events (``ServiceBase.reactor``): commits that carry none of them are
acknowledged unread (the ``Duban-Event-Types`` header); the others are decoded, and each wanted
event is passed to its method, in order. Delivery is at least once, so reactions are idempotent:
they append with event ids derived from the source (``execute`` derives them from the
``causation_id`` a reaction passes, ``commands.caused_ids``), publish with a derived
``Nats-Msg-Id``, or check the state first. After ``duban restore`` every reaction runs once more
over the restored events; the restored streams' de-duplication window recognises what they store
or send again.

A class may run the messages of a batch side by side (``concurrency``, e.g. intake's relay and
inbox, so that a county's day of escalations is taken in at the hub in seconds, not one round trip
after another): those about one aggregate of one level (``key``: a stored commit's aggregate, or
the sender's aggregate of an integration event) still run one after another, in their order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ClassVar

from nats.aio.msg import Msg

from contracts.envelope import EVENT_TYPES_HEADER, Envelope, decode_commit
from contracts.events import Event, upcast

Reaction = Callable[[Any, Any, Envelope], Awaitable[Any]]


def reacts_to(*event_types: type[Event] | str) -> Callable[[Reaction], Reaction]:
    """Mark a method as what the service does for each of ``event_types`` (classes or type names)."""

    def mark(fn: Reaction) -> Reaction:
        fn.__reacts_to__ = tuple(t if isinstance(t, str) else t.event_type for t in event_types)  # type: ignore[attr-defined]
        return fn

    return mark


class Reactions:
    """A service's reactions to the events of one or more streams; subclasses declare them with
    ``@reacts_to``."""

    _reactions: ClassVar[dict[str, Reaction]]
    #: How many messages of a batch its worker runs side by side (those of one ``key`` in order).
    concurrency: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Reaction] = {}
        for klass in reversed(cls.__mro__):
            for member in vars(klass).values():
                for event_type in getattr(member, "__reacts_to__", ()):
                    found[event_type] = member
        cls._reactions = found

    @classmethod
    def event_types(cls) -> frozenset[str]:
        """The event types this class reacts to."""
        return frozenset(cls._reactions)

    def wants(self, msg: Msg) -> bool:
        """Whether a stored commit carries an event reacted to (read from its header, undecoded)."""
        carried = (msg.headers or {}).get(EVENT_TYPES_HEADER)
        return carried is None or not self._reactions.keys().isdisjoint(carried.split(","))

    def key(self, msg: Msg) -> Hashable:
        """What the messages that must keep their order share: the aggregate a commit is about
        (an event stream's subject) or, on an INBOX, the sender's aggregate and level."""
        envelope = decode_commit(msg.data)[0]
        return (envelope.jurisdiction, envelope.aggregate_type, envelope.aggregate_id)

    async def handle(self, msg: Msg) -> None:
        """Each event of the commit that is reacted to, in order, to its method."""
        for envelope in decode_commit(msg.data):
            reaction = self._reactions.get(envelope.event_type)
            if reaction is not None:
                event = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
                await reaction(self, event, envelope)


__all__ = ["Reactions", "reacts_to"]
