"""Running a command against an aggregate: load, decide, append, and retry on a lost race."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from contracts.envelope import SYSTEM_ACTOR, Actor
from contracts.events import Event
from services.runtime.observe.telemetry import continue_journey

from .aggregate import Aggregate
from .eventstore import Commit, ConcurrencyError, EventStore
from .ids import id_deriver

log = logging.getLogger("duban.commands")

#: The ids of reactions' events (:func:`caused_ids`); never changes.
reaction_id = id_deriver("6f1d3c2a-9b7e-4e55-a0c4-2d8f5b1e7a93")

A = TypeVar("A", bound=Aggregate)


async def execute(
    store: EventStore,
    cls: type[A],
    aggregate_id: str,
    decide: Callable[[A], Sequence[Event]],
    *,
    actor: Actor = SYSTEM_ACTOR,
    retries: int | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_ids: Callable[[int], Sequence[str]] | None = None,
    known: A | None = None,
) -> tuple[A, Commit | None]:
    """Load the aggregate, let ``decide`` turn its state into events, and append them.

    ``decide`` is the domain: it raises a ``DomainError`` to refuse, or returns the events (none
    when there is nothing to do). When another writer appended in between, the aggregate is
    reloaded and ``decide`` asked again, at most ``retries`` times (settings by default), then
    the ``ConcurrencyError`` reaches the caller (HTTP 409). ``event_ids(n)`` gives stable ids
    for idempotent commands, so a retried command is stored once. A reaction (``causation_id``:
    the event it reacts to) gets ids derived from that event by default (:func:`caused_ids`), so
    the same reaction run again — a redelivery, or every reaction once more after ``duban
    restore`` — is recognised by the stream's de-duplication and stored once. ``known``: the
    aggregate's state known without loading it (a new one whose id was just drawn at random, or
    one this process appended to last): the first attempt decides on it, the append's expected
    version still guarding the stream (a state another writer has moved past is refused there,
    and the aggregate loaded for the next attempt).
    """
    attempts = store.settings.command_retries if retries is None else retries
    for attempt in range(attempts + 1):
        state = known if attempt == 0 and known is not None else await store.load(cls, aggregate_id)
        attributes = {
            "duban.aggregate.type": cls.aggregate_type,
            "duban.aggregate.id": aggregate_id,
            "duban.jurisdiction": store.jurisdiction,
            "duban.service": store.context,
            "duban.actor.role": actor.role,
        }
        journey = state.journey if cls.has_journey else {}
        with continue_journey(journey, f"{store.context} {cls.aggregate_type} command", attributes):
            events = list(decide(state))
            if not events:
                return state, None
            try:
                commit = await store.append(
                    state,
                    events,
                    actor=actor,
                    correlation_id=correlation_id,
                    causation_id=causation_id,
                    event_ids=(
                        event_ids(len(events))
                        if event_ids
                        else caused_ids(causation_id, store.context, aggregate_id, events)
                        if causation_id
                        else None
                    ),
                )
                return state, commit
            except ConcurrencyError:
                if attempt == attempts:
                    raise
                log.info("concurrency conflict, retrying", extra={"aggregate_id": aggregate_id, "attempt": attempt + 1})
    raise AssertionError("unreachable")


def caused_ids(causation_id: str, context: str, aggregate_id: str, events: Sequence[Event]) -> list[str]:
    """Stable ids for the events a reaction to ``causation_id`` decides for one aggregate: the
    same reaction deciding the same thing again gets the same ids."""
    kinds = ",".join(event.event_type for event in events)
    return [reaction_id(causation_id, context, aggregate_id, kinds, str(index)) for index in range(len(events))]


async def create_once(
    store: EventStore,
    cls: type[A],
    aggregate_id: str,
    create: Callable[[A], Sequence[Event]],
    *,
    drawn: bool = False,
    **options: Any,
) -> tuple[A, bool]:
    """Create the aggregate ``aggregate_id`` with ``create`` unless it exists already: how every
    command that creates is made idempotent. A caller with an ``Idempotency-Key`` derives the id
    from the key and whose it is (``http/routes.py``), so a retry finds what the first request created
    and appends nothing. ``drawn``: the id was just drawn at random (no key), so no aggregate can
    have it and there is nothing to load (two requests to the server fewer). Returns the aggregate
    and whether this call created it. ``options`` are :func:`execute`'s (``actor``, ``event_ids``,
    ...)."""

    def decide(aggregate: A) -> Sequence[Event]:
        return [] if aggregate.exists else create(aggregate)

    known = cls(id=aggregate_id) if drawn else None
    aggregate, commit = await execute(store, cls, aggregate_id, decide, known=known, **options)
    return aggregate, commit is not None and not commit.duplicate
