"""Limits on writes anyone may send without signing in (公示意见): per client address and target.

Each limit is a sliding window kept in memory, **per process**: every HTTP process of a service
counts on its own (with N processes an address gets up to N times the allowance) and a restart
forgets what it counted. That stops a burst from one address (50 anonymous comments in 0.09 s
became 50 matters); a limit shared by every process would need NATS KV or the database.

The address is the client's as uvicorn gives it (``request.client``): behind a reverse proxy, the
``X-Forwarded-For`` it sets, which uvicorn trusts only from ``--forwarded-allow-ips`` (by default
127.0.0.1). A refused write raises :class:`TooManyRequests`, answered 429 with ``Retry-After`` and
the limit in Chinese (``app.install_error_handlers``); nothing of it is handled or stored.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """At most ``count`` in any ``per_s`` seconds."""

    count: int
    per_s: float

    def __str__(self) -> str:
        if self.per_s % 3600 == 0:
            return f"每 {self.per_s / 3600:g} 小时至多 {self.count} 次"
        if self.per_s % 60 == 0:
            return f"每 {self.per_s / 60:g} 分钟至多 {self.count} 次"
        return f"每 {self.per_s:g} 秒至多 {self.count} 次"


class TooManyRequests(Exception):
    """A write over a limit: answered 429, ``Retry-After`` the whole seconds until it would pass."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class SlidingWindow:
    """The times of the hits of each key within the last ``rate.per_s`` seconds."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._hits: dict[Hashable, deque[float]] = {}
        self._swept = 0.0

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may hit again: 0 when it may now."""
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        while hits and hits[0] <= now - self.rate.per_s:
            hits.popleft()
        if len(hits) < self.rate.count:
            return 0.0
        return hits[0] + self.rate.per_s - now

    def hit(self, key: Hashable, now: float) -> None:
        self._hits.setdefault(key, deque()).append(now)
        if now - self._swept > self.rate.per_s:  # forget keys quiet for a whole window
            self._swept = now
            for quiet in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.rate.per_s]:
                del self._hits[quiet]


class Limiter:
    """Writes of one kind (``what``, e.g. 公示意见): at most ``per_target`` from an address to one
    target (a disclosure), and ``per_address`` from an address to all targets together."""

    def __init__(
        self, what: str, *, per_target: Rate, per_address: Rate, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what
        self.by_target = SlidingWindow(per_target)
        self.by_address = SlidingWindow(per_address)
        self.clock = clock

    def take(self, address: str, target: str) -> None:
        """Count one write of ``address`` to ``target``, or raise :class:`TooManyRequests` (and
        count nothing) when it is over either limit."""
        now = self.clock()
        for window, key, scope in (
            (self.by_target, (address, target), "同一来源对同一事项"),
            (self.by_address, address, "同一来源"),
        ):
            wait = window.wait(key, now)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                message = f"{self.what}提交过于频繁（{scope}{window.rate}），请 {seconds} 秒后再试"
                raise TooManyRequests(message, seconds)
        self.by_target.hit((address, target), now)
        self.by_address.hit(address, now)


__all__ = ["Limiter", "Rate", "SlidingWindow", "TooManyRequests"]
