"""Child processes of duban's launchers: waits that survive a shifted clock, and children that do
not outlive the process that started them.

A shifted clock: under libfaketime with the monotonic clock left alone (``faketime
--exclude-monotonic``, ``FAKETIME_DONT_FAKE_MONOTONIC=1``), Python 3.11's ``time.sleep`` (an
absolute ``clock_nanosleep`` on the monotonic clock, whose deadline libfaketime shifts) fails
with EINVAL, and so does ``Popen.wait(timeout)``, which sleeps in a loop. ``select`` with a
relative timeout works in every libfaketime mode; ``threading.Event().wait`` does not (it hangs
under plain ``faketime``). A launcher that crashes in a sleep leaves its children running.

Outliving the parent: a launcher killed with SIGKILL runs no cleanup at all. On Linux a child
asks the kernel for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``). The kernel sends
it when the *thread* that started the child ends, so launchers start children from their main
thread.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable

log = logging.getLogger("duban.children")

#: ``<linux/prctl.h>``
PR_SET_PDEATHSIG = 1

_sleep_fails = False


def pause(seconds: float) -> None:
    """``time.sleep``, or ``select`` once ``time.sleep`` has failed (EINVAL on a shifted clock)."""
    global _sleep_fails
    if not _sleep_fails:
        try:
            time.sleep(seconds)
            return
        except OSError as err:
            _sleep_fails = True
            log.warning("time.sleep failed, waiting with select from now on", extra={"error": str(err)})
    select.select([], [], [], seconds)


def wait_exit(process: subprocess.Popen, timeout: float) -> bool:
    """Whether ``process`` has exited within ``timeout`` seconds (polled: ``Popen.wait(timeout)``
    sleeps with ``time.sleep`` and fails with it)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        pause(min(0.05, left))
    return True


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # a libc without prctl: children live on, as elsewhere
        return None


def die_with_parent(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent ``signum`` when this process dies (Linux), or None
    where the kernel offers no such thing."""
    prctl = _prctl()  # looked up before the fork: the child only calls it
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request: nobody will signal
            os.kill(os.getpid(), signum)

    return preexec
