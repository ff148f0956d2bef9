"""The aggregate base: state rebuilt by applying events, one ``@applies`` method per event type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from contracts.events import Event


class DomainError(Exception):
    """A rule of the domain refuses the command; ``field`` names the input at fault, if any."""

    status = 409

    def __init__(self, message: str, *, field: str | None = None, code: str = "domain_rule") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class OtherKind(DomainError):
    """The id asked for is another kind of record's of the same context (a case's id given as a
    plan's, an organisation's as a person's): nothing of that kind can be loaded under it."""

    def __init__(self, aggregate_id: str, kind: str) -> None:
        super().__init__(f"编号 {aggregate_id} 已用于另一类记录，不能在此使用", field=None, code="other_kind")
        self.aggregate_id, self.kind = aggregate_id, kind


def check_kind(cls: type, aggregate_id: str, aggregate_type: str) -> None:
    """Refuse to load events of another aggregate type as ``cls`` (:class:`OtherKind`)."""
    expected = getattr(cls, "aggregate_type", None)
    if expected is not None and aggregate_type and aggregate_type != expected:
        raise OtherKind(aggregate_id, aggregate_type)


class NotAllowed(DomainError):
    """The actor may not do this (roles, jurisdiction, assignment)."""

    status = 403

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, code="forbidden")


def applies(event_type: type[Event]) -> Callable[[Callable], Callable]:
    """Mark an aggregate method as the one that applies ``event_type`` to the state."""

    def mark(fn: Callable) -> Callable:
        fn.__applies_to__ = event_type  # type: ignore[attr-defined]
        return fn

    return mark


class Aggregate(BaseModel):
    """State of one aggregate.

    ``version`` is the stream sequence of the aggregate's last stored commit (0 when new): the
    value an append passes as ``Nats-Expected-Last-Subject-Sequence``. ``sequence`` counts the
    events applied. Command methods are pure: they check the rules and return new events; only
    ``apply`` changes the state.
    """

    model_config = ConfigDict(extra="ignore")

    context: ClassVar[str]
    aggregate_type: ClassVar[str]
    #: Bump when the state's shape changes: stored snapshots of other versions are ignored.
    snapshot_version: ClassVar[int] = 1
    #: Keep a snapshot after each append (see eventstore.py). An aggregate of one or two commits
    #: (a ballot sheet) turns it off: its last commit, one direct get, is all a load needs.
    snapshots: ClassVar[bool] = True
    #: Commands on it continue the trace of its first event (``journey``): a matter's or a case's
    #: life is one trace. A book every registration of a year takes its number from turns it off:
    #: its commands belong to the request that asks, not to the year's first registration.
    has_journey: ClassVar[bool] = True
    _appliers: ClassVar[dict[type[Event], Callable[[Any, Any], None]]] = {}

    id: str
    version: int = 0
    sequence: int = 0
    #: The W3C trace context of the aggregate's first event: commands on it continue that trace,
    #: so the journey of a matter through services and levels is one trace (telemetry.py).
    journey: dict[str, str] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        appliers = {}
        for klass in reversed(cls.__mro__):
            for member in vars(klass).values():
                target = getattr(member, "__applies_to__", None)
                if target is not None:
                    appliers[target] = member
        cls._appliers = appliers

    @property
    def exists(self) -> bool:
        return self.version > 0

    def apply(self, event: Event) -> None:
        """Apply one stored or newly decided event to the state."""
        try:
            applier = type(self)._appliers[type(event)]
        except KeyError:
            raise TypeError(f"{type(self).__name__} has no @applies for {type(event).__name__}") from None
        applier(self, event)
        self.sequence += 1
