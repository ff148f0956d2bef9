"""Ending a task for certain.

``task.cancel()`` asks once, and on Python 3.11 the answer can be lost: ``asyncio.wait_for``,
which nats-py waits with (``Subscription.next_msg``, ``Client.request``, a pull consumer's
``fetch``), returns the result that arrives at the moment it is cancelled instead of raising
``CancelledError`` (CPython issue 86296, bpo-42130; ``wait_for`` was rewritten in 3.12). A worker
or loop cancelled just as a message or a reply comes in then goes on as if nothing was asked,
and whoever awaits it waits for ever: a test of ``duban restore`` hung so in CI, awaiting 温岭市's
cancelled relay, which had fetched a hand-over at that instant.
"""

from __future__ import annotations

import asyncio
import contextlib

#: Seconds between two cancellations of a task that runs on.
CANCEL_AGAIN_S = 1.0


async def cancel_and_wait(task: asyncio.Task, *, again_s: float = CANCEL_AGAIN_S) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``again_s`` while
    it runs on. What it raised other than its cancellation is raised here."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_s)
    with contextlib.suppress(asyncio.CancelledError):
        await task
