"""``free_port``: the ports tests, benchmarks and ``duban up`` give the servers they start."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

from services.runtime.tools import ports
from services.runtime.tools.ports import FREE_PORTS, free_port


def test_free_ports_are_below_the_ephemeral_ports_and_never_handed_out_twice():
    given = [free_port() for _ in range(500)]
    assert len(set(given)) == len(given)
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert all(FREE_PORTS.start <= port < FREE_PORTS.stop <= int(ephemeral[0]) for port in given)
    for port in given[:20]:  # free: a server can bind each
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_a_port_in_use_is_passed_over(monkeypatch):
    busy, other = free_port(), free_port()
    monkeypatch.setattr(ports, "_handed_out", set())  # neither handed out yet
    tries = itertools.chain([busy, busy, other], itertools.repeat(other))
    monkeypatch.setattr(ports.random, "randrange", lambda start, stop: next(tries))
    with socket.socket() as server:
        server.bind(("127.0.0.1", busy))
        server.listen()
        assert free_port() == other
