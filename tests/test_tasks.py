"""services/runtime/tasks.py: a task cancelled just as what it waits for arrives still ends."""

from __future__ import annotations

import asyncio
import sys

import pytest

from services.runtime.tasks import cancel_and_wait


async def test_a_cancellation_lost_in_wait_for_is_asked_again():
    """A worker waiting with ``asyncio.wait_for`` (as nats-py's ``next_msg`` does) is cancelled
    in the same turn of the loop as its message arrives: on Python 3.11 ``wait_for`` returns the
    message and the worker waits again, the cancellation lost; ``cancel_and_wait`` asks again
    and returns once it has ended."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    taken: list[int] = []

    async def worker() -> None:
        while True:
            taken.append(await asyncio.wait_for(queue.get(), 10))

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)  # waiting in wait_for
    queue.put_nowait(1)  # the message arrives ...
    task.cancel()  # ... as the worker is cancelled
    await asyncio.sleep(0.05)
    if sys.version_info < (3, 12):
        assert taken == [1] and not task.done(), "the cancellation was expected to be lost on 3.11"
    await asyncio.wait_for(cancel_and_wait(task, again_s=0.05), 5)
    assert task.cancelled()


async def test_what_a_task_raised_is_raised_by_cancel_and_wait():
    async def failing() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleaning up failed") from None

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleaning up failed"):
        await cancel_and_wait(task)
