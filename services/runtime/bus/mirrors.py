"""Every level's streams kept a second time outside that level: JetStream mirrors on the hub.

A county (and the townships on its leaf node) keeps its streams on one server's disk. The hub
cluster keeps a mirror of each of them (``MIRROR_<stream>``: ``MIRROR_INTAKE_331081``, …), made
by the hub's ``duban provision`` for the levels ``DUBAN_MIRRORED_LEVELS`` names (compose sets it
from deploy/topology.toml) and replicated like the hub's own streams. A mirror pulls through the
other domain's API (``$JS.<domain>.API``), so what a county stores while its line is cut is copied
when the line is back. Mirrors have no subjects (nobody can publish into one), deny deletes and
purges, and no county user's permissions name the hub's domain: read-only copies the county cannot
alter. A mirror keeps the stream sequences of its origin, which ``duban restore`` relies on.

Not mirrored: the snapshot buckets (a memory cache, rebuilt by loads) and the consumers (each
service makes its own again; see ``restore.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from contracts import subjects
from services.runtime.es.eventstore import ensure_stream

PREFIX = "MIRROR_"


def mirror_name(stream: str) -> str:
    return PREFIX + stream


def kept_mirrors(levels: Iterable[str]) -> list[str]:
    """The names of the mirrors of every stream of ``levels``."""
    return [mirror_name(stream) for code in sorted(levels) for stream in subjects.level_streams(code)]


def mirror_config(stream: str, domain: str, replicas: int) -> StreamConfig:
    """The hub's copy of ``stream``, which lives in JetStream domain ``domain``."""
    return StreamConfig(
        name=mirror_name(stream),
        mirror=StreamSource(name=stream, external=ExternalStream(api=f"$JS.{domain}.API")),
        storage=StorageType.FILE,
        num_replicas=replicas,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        description=f"duban: a copy of {stream} (domain {domain}) for duban restore",
    )


async def ensure_mirrors(js: JetStreamContext, levels: dict[str, str], replicas: int) -> list[str]:
    """A mirror of every stream of each level in ``levels`` (code → its JetStream domain)."""
    made = []
    for code, domain in sorted(levels.items()):
        for stream in subjects.level_streams(code):
            config = mirror_config(stream, domain, replicas)
            await ensure_stream(js, config)
            made.append(config.name)
    return made
