"""The bus between levels: each level's OUTBOX and INBOX streams.

A level appends what it tells another level to its ``OUTBOX_<self>`` on
``duban.x.<to>.<self>.<kind>``. Its ``INBOX_<self>`` has no subjects of its own: it *sources*
the OUTBOX of its parent and of each child, filtered to ``duban.x.<self>.>``. On one server
these are plain sources; in production each county runs NATS as a leaf node with its own
JetStream domain and the source names the other domain's API (``external``), so a hand-over
is stored and forwarded: it survives a cut link and arrives when the link is back.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from contracts import subjects
from contracts.jurisdictions import JurisdictionRegistry

from .eventstore import ensure_stream
from .settings import Settings


def neighbours(registry: JurisdictionRegistry, code: str) -> list[str]:
    """The levels that exchange matters with ``code``: its parent and its children."""
    parent = registry.parent_of(code)
    return ([parent.code] if parent else []) + [child.code for child in registry.children_of(code)]


def outbox_config(code: str, settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=subjects.outbox_stream(code),
        subjects=[subjects.outbox_wildcard(code)],
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        description=f"duban integration events sent by {code}",
    )


def inbox_config(code: str, registry: JurisdictionRegistry, settings: Settings, domains: dict[str, str] | None = None):
    """``domains`` maps a neighbour's code to its JetStream domain when it runs on another leaf."""
    sources = []
    for other in neighbours(registry, code):
        source = StreamSource(name=subjects.outbox_stream(other), filter_subject=subjects.inbox_wildcard(code))
        if domains and other in domains:
            source.external = ExternalStream(api=f"$JS.{domains[other]}.API")
        sources.append(source)
    return StreamConfig(
        name=subjects.inbox_stream(code),
        subjects=[],
        sources=sources,
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        deny_delete=True,
        deny_purge=True,
        description=f"duban integration events addressed to {code}",
    )


async def ensure_level_streams(
    js: JetStreamContext, code: str, registry: JurisdictionRegistry, settings: Settings
) -> None:
    """Create this level's OUTBOX and INBOX (idempotent)."""
    await ensure_stream(js, outbox_config(code, settings))
    await ensure_stream(js, inbox_config(code, registry, settings))
