"""Local ports for the servers a process starts itself: a test's or a benchmark's nats-server,
monitor, leaf node, PostgreSQL, SMTP server or served service, and the embedded nats-server
when no port is configured."""

from __future__ import annotations

import random
import socket

#: Where :func:`free_port` looks: below Linux's ephemeral ports (32768 and up, the local ports the
#: kernel gives outgoing connections: one of another process could be given a port found free
#: here before our server binds it) and above the blocks tests give ``duban up``
#: (tests/support/processes.py).
FREE_PORTS = range(26000, 32700)
_handed_out: set[int] = set()


def free_port() -> int:
    """A local port free now, for a server this process is about to start; never the same twice
    in a process (each probe is closed before the server binds, so the kernel could answer the
    same port to the next probe: a test's two services once raced for one)."""
    if len(_handed_out) > len(FREE_PORTS) // 2:
        _handed_out.clear()  # a long-lived process: the early ones are long bound or free again
    for _ in range(1000):
        port = random.randrange(FREE_PORTS.start, FREE_PORTS.stop)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {FREE_PORTS.start} and {FREE_PORTS.stop - 1}")
