"""The NATS a test uses: ``NATS_URL``, else a testcontainers NATS, else a local nats-server."""

from __future__ import annotations

import os
from pathlib import Path

from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.postgres import docker_unavailable_reason


class _Container:
    def __init__(self) -> None:
        from testcontainers.nats import NatsContainer

        # sync_interval can only be set in a config file; the container is for developers with
        # Docker, the durability tests start their own local servers.
        self.container = NatsContainer("nats:2.11").with_command("-js")
        self.container.start()
        self.url = self.container.nats_uri()

    def stop(self) -> None:
        self.container.stop()


class _External:
    def __init__(self, url: str) -> None:
        self.url = url

    def stop(self) -> None:
        pass


def start_nats(directory: Path):
    """A running NATS with JetStream and an object with ``url`` and ``stop()``; a local one keeps
    its JetStream files in ``directory`` (a pytest temporary directory, which pytest removes
    after a few runs: a directory of our own under /tmp was left behind by every run)."""
    if os.environ.get("NATS_URL"):
        return _External(os.environ["NATS_URL"])
    if docker_unavailable_reason() is None:
        return _Container()
    return EmbeddedNats(directory).start()
