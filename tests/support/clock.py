"""A clock the test moves by hand (handlers take ``clock=`` as a callable returning an aware instant)."""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts.envelope import SHANGHAI


class ManualClock:
    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=SHANGHAI)
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when if when.tzinfo is not None else when.replace(tzinfo=SHANGHAI)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
