"""Waiting for what other services do asynchronously (they talk only through events)."""

from __future__ import annotations

import asyncio


async def eventually(check, timeout: float = 30.0, what: str | None = None, *, interval: float = 0.05):
    """Poll ``check`` (async) until it returns something truthy, and return that; fail after
    ``timeout`` (a ``TimeoutError``, or an assertion naming ``what`` is waited for)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = await check()
                if result:
                    return result
                await asyncio.sleep(interval)
    except TimeoutError:
        if what is None:
            raise
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None
