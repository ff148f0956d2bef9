"""Ids derived from what they stand for, so that a retried command, a redelivered message or a
second sweeper arrives at the same id (and the event store's version check or de-duplication
makes the repeat a no-op)."""

from __future__ import annotations

import uuid
from collections.abc import Callable


def id_deriver(namespace: str) -> Callable[..., str]:
    """``derived_id(*parts)`` for one service: the uuid5 of its ``|``-joined parts under the
    service's own ``namespace``. A namespace never changes: stored events name ids made with it."""
    space = uuid.UUID(namespace)

    def derived_id(*parts: str) -> str:
        return uuid.uuid5(space, "|".join(parts)).hex

    return derived_id
