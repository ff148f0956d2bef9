"""The bus between levels: each level's OUTBOX and INBOX streams, and who may touch what.

A level appends what it tells another level to its ``OUTBOX_<self>`` on
``duban.x.<to>.<self>.<kind>``. Its ``INBOX_<self>`` has no subjects of its own: it *sources*
the OUTBOX of its parent and of each child, filtered to ``duban.x.<self>.>``.

On one server (``duban up``) these are plain sources. In production (``deploy/``) the Taizhou
hub is a NATS cluster with JetStream domain ``taizhou`` and each county runs NATS as a leaf node
with a domain of its own; a township's services use its county's leaf. The INBOX then names the
other domain's API (``external.api = $JS.<domain>.API``): the receiving server pulls from the
sender's OUTBOX, so a hand-over is stored on the sender's side while the link is cut and arrives
when it is back. The hub takes a county's OUTBOX from its mirror of it (``mirrors.py``), which
nats-server (2.15.1) left waiting 40-50 s after a one-minute cut and up to two and a half minutes
after a long one (its retry backoff); the hub's intake now restarts a stalled mirror once the
county answers again (``mirrors.MirrorKeeper``): 1,000 escalations stored during a cut were at
台州 10.8 s after the line returned, the first 4.3 s after (``bench/escalation.py``). Where the
neighbours live is :class:`LevelTopology`, read from the environment (``DUBAN_JETSTREAM_DOMAIN``,
``DUBAN_LEVEL_DOMAINS``).

Isolation is NATS's job: every service of every level has its own NATS user whose permissions
(:func:`service_permissions`, written into ``deploy/nats/*.conf`` by ``deploy/generate.py``)
allow only its level's subjects, the JetStream API of its level's streams, its OUTBOX and its
INBOX, and replies on an inbox prefix of its own (:func:`inbox_prefix`): with the default
``_INBOX.`` every user of the account could read every other user's JetStream replies, the
fetched events of other levels included.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import subjects
from contracts.envelope import Envelope, encode_commit
from contracts.events import Event
from contracts.jurisdictions import JurisdictionRegistry
from services.runtime.bus.mirrors import kept_mirrors, mirror_name, nudge_subjects
from services.runtime.es.eventstore import ensure_stream
from services.runtime.observe.telemetry import current_trace_context, inject_headers
from services.runtime.settings import Settings

log = logging.getLogger("duban.levels")

#: The services of a level, each with a NATS user of its own in ``deploy/``.
SERVICES = subjects.CONTEXTS


class LevelTopology(BaseSettings):
    """Where this level's neighbours keep their streams.

    ``jetstream_domain``: the JetStream domain of the server this level uses (empty: one server,
    no domains). ``level_domains``: the domain of each neighbour this level exchanges matters with
    (JSON, e.g. ``{"331000": "taizhou", "331081100": "wenling"}``); when it is given, the INBOX
    sources exactly these neighbours (a township of this county on the same leaf names the same
    domain), so a hub does not chase the OUTBOX of counties that are not deployed.
    ``mirrored_levels`` (``DUBAN_MIRRORED_LEVELS``, same shape): the levels whose streams the
    server keeps a copy of, for ``duban restore``.
    """

    model_config = SettingsConfigDict(env_prefix="DUBAN_", extra="ignore")

    jetstream_domain: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$")
    level_domains: dict[str, str] = Field(default_factory=dict)
    #: The levels whose streams this server keeps a read-only copy of (JetStream mirrors across
    #: domains, ``mirrors.py``), each with its domain: the hub's (its services and its provisioning).
    mirrored_levels: dict[str, str] = Field(default_factory=dict)


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


def inbox_config(
    code: str,
    registry: JurisdictionRegistry,
    settings: Settings,
    domains: dict[str, str] | None = None,
    *,
    own_domain: str = "",
    mirrored: Iterable[str] = (),
) -> StreamConfig:
    """The INBOX of ``code``, sourcing its neighbours' OUTBOX filtered to what is addressed to it.

    ``domains`` maps a neighbour's code to the JetStream domain it runs in; a neighbour in another
    domain than ``own_domain`` is sourced through that domain's API. With ``domains`` given, only
    the neighbours it names are sourced. A neighbour in ``mirrored`` (the hub keeps a mirror of its
    streams, ``mirrors.py``) is sourced from that mirror on this server instead: a mirror follows
    its origin by sequence, even when the origin was restored onto a new server (``duban
    restore``), where a source across domains would see a new stream and take it all again.
    """
    sources = []
    kept_here = set(mirrored)
    for other in neighbours(registry, code):
        if domains and other not in domains and other not in kept_here:
            continue
        if other in kept_here:
            sources.append(
                StreamSource(
                    name=mirror_name(subjects.outbox_stream(other)), filter_subject=subjects.inbox_wildcard(code)
                )
            )
            continue
        source = StreamSource(name=subjects.outbox_stream(other), filter_subject=subjects.inbox_wildcard(code))
        domain = (domains or {}).get(other, "")
        if domain and domain != own_domain:
            source.external = ExternalStream(api=f"$JS.{domain}.API")
        sources.append(source)
    return StreamConfig(
        name=subjects.inbox_stream(code),
        subjects=[],
        sources=sources,
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        description=f"duban integration events addressed to {code}",
    )


async def ensure_level_streams(
    js: JetStreamContext,
    code: str,
    registry: JurisdictionRegistry,
    settings: Settings,
    topology: LevelTopology | None = None,
) -> None:
    """Create this level's OUTBOX and INBOX (idempotent; an existing INBOX takes the sources of
    the current topology)."""
    await ensure_stream(js, outbox_config(code, settings))
    await ensure_stream(js, level_inbox_config(code, registry, settings, topology or LevelTopology()))


def level_inbox_config(
    code: str, registry: JurisdictionRegistry, settings: Settings, topology: LevelTopology
) -> StreamConfig:
    """The INBOX of ``code`` where ``topology`` says its neighbours keep their OUTBOX."""
    return inbox_config(
        code,
        registry,
        settings,
        topology.level_domains or None,
        own_domain=topology.jetstream_domain,
        mirrored=topology.mirrored_levels,
    )


# -- connecting as a level's service ------------------------------------------------------------
async def send_to_level(
    js: JetStreamContext,
    *,
    here: str,
    to: str,
    kind: str,
    message: Event,
    source: Envelope,
    event_id: str,
    aggregate_type: str,
) -> None:
    """Append ``message`` to this level's OUTBOX for level ``to``: an envelope caused by
    ``source`` (its aggregate, sequence, time, actor and correlation carried over), in the current
    trace. ``event_id`` is derived from the source by the caller, so a repeat is de-duplicated
    (``Nats-Msg-Id``) and the receiver sees it once."""
    envelope = Envelope(
        event_id=event_id,
        event_type=message.event_type,
        schema_version=message.schema_version,
        aggregate_type=aggregate_type,
        aggregate_id=source.aggregate_id,
        sequence=source.sequence,
        jurisdiction=here,
        occurred_at=source.occurred_at,
        actor=source.actor,
        correlation_id=source.correlation_id,
        causation_id=source.event_id,
        trace_context=current_trace_context(),
        payload=message.model_dump(mode="json"),
    )
    headers = inject_headers({"Nats-Msg-Id": event_id, "Duban-Event-Types": message.event_type})
    await js.publish(subjects.integration_subject(to, here, kind), encode_commit([envelope]), headers=headers)


def inbox_prefix(code: str, service: str) -> str:
    """The reply subjects of one service of one level: ``_INBOX_<code>_<service>``."""
    return f"_INBOX_{subjects._token(code, 'jurisdiction')}_{subjects._token(service, 'service')}"


def client_tls(settings: Settings) -> ssl.SSLContext | None:
    """TLS to the NATS server when ``DUBAN_NATS_CA_FILE`` names the CA of its certificate."""
    if settings.nats_ca_file is None:
        return None
    return ssl.create_default_context(cafile=str(settings.nats_ca_file))


def connection_options(
    settings: Settings, service: str, *, on_reconnected: Callable[[], None] | None = None
) -> dict[str, Any]:
    """How every connection of a service process behaves when NATS goes away: it reconnects for
    ever, every half second (a restarted server is back within a second or two, and nothing a
    service does can wait longer than it must), and says so in one log line each time instead of
    nats-py's tracebacks. Shared by the service's own connection and its FastStream brokers.

    nats-py calls the disconnected callback also when the connection is closed on purpose (a
    service stopping), right before the closed callback: the warning waits for the loop's next
    turn and is not written when the connection was closed meanwhile (one info line instead).
    ``on_reconnected`` is called after each reconnection (the service wakes its consumers)."""
    name = f"duban-{service}-{settings.jurisdiction}"
    closed = False

    async def error(err: Exception) -> None:
        log.warning("nats connection error", extra={"connection": name, "error": repr(err)})

    def report_disconnected() -> None:
        if not closed:
            log.warning("nats disconnected, reconnecting", extra={"connection": name})

    async def disconnected() -> None:
        asyncio.get_running_loop().call_soon(report_disconnected)

    async def reconnected() -> None:
        log.warning("nats reconnected", extra={"connection": name})
        if on_reconnected is not None:
            on_reconnected()

    async def was_closed() -> None:
        nonlocal closed
        closed = True
        log.info("nats connection closed", extra={"connection": name})

    return {
        **({"tls": tls} if (tls := client_tls(settings)) is not None else {}),
        "name": name,
        "inbox_prefix": inbox_prefix(settings.jurisdiction, service),
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "error_cb": error,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "closed_cb": was_closed,
    }


async def connect(
    settings: Settings, service: str, *, on_reconnected: Callable[[], None] | None = None, **options: Any
) -> NATS:
    """Connect one service of one level to its NATS: user and password from ``DUBAN_NATS_URL``
    (``nats://user:password@host:port``), replies on the service's own inbox prefix (the only
    one its user may subscribe to in ``deploy/``), reconnecting for ever."""
    chosen = connection_options(settings, service, on_reconnected=on_reconnected)
    return await nats.connect(settings.nats_url, **{**chosen, **options})


# -- permissions --------------------------------------------------------------------------------
#: The contexts that send integration messages to other levels (escalations, reports, summaries).
SENDERS = ("intake", "notify")


def _reading(stream: str) -> list[str]:
    """The JetStream API a service needs to read ``stream``: look at it, get messages, run its consumers."""
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.API.CONSUMER.NAMES.{stream}",
        f"$JS.API.CONSUMER.LIST.{stream}",
        f"$JS.ACK.{stream}.>",
    ]


def service_permissions(code: str, service: str, mirrored: Iterable[str] | Mapping[str, str] = ()) -> dict[str, Any]:
    """The NATS permissions of ``service`` at level ``code`` (an allow list; anything else is denied).

    - publish: its own context's events and nobody else's; the level's OUTBOX only for the
      contexts that send to other levels (``SENDERS``); its dead letters; commands to the level's
      services; its own context's snapshots (a bucket per context: no other user can write a
      snapshot it would load); the JetStream API to read the level's streams and run consumers on
      them — look, never create, update, delete or purge: ``duban provision`` makes the streams
      with an administrator's credential. The one exception is its own snapshot bucket, which it
      makes again when a restarted server lost it (memory storage, a cache);
    - subscribe: replies on its own inbox prefix, the commands of its own context at this level,
      operators' requests to it (``duban.ops.<code>.<service>.*``, e.g. replaying a dead letter),
      and the level's own event and outbox subjects;
    - responses: it may answer the requests it receives (``allow_responses``), nothing else.

    The INBOX is read through the JetStream API of ``INBOX_<code>``: what other levels addressed
    to this one, and nothing else of theirs. Another level's subjects, streams and JetStream
    domains are simply not in the list.

    At the hub, ``mirrored`` names the levels whose streams it keeps a mirror of; its intake may
    look at those mirrors and, given their domains (code → domain), keep them going after a cut
    line (``mirrors.MirrorKeeper``): ask whether each domain answers (its account info) and step a
    stalled mirror's leader down. Neither changes a message or a stream's configuration.
    """
    bucket = subjects.snapshot_bucket(service, code)
    publish = [
        subjects.event_wildcard(service, code),
        *([subjects.outbox_wildcard(code)] if service in SENDERS else []),
        f"duban.dlq.{code}.{service}.>",
        f"duban.cmd.*.{code}.*",
        f"$KV.{bucket}.>",
        "$JS.API.INFO",
        f"$JS.API.STREAM.CREATE.KV_{bucket}",
    ]
    for stream in [*subjects.level_streams(code), f"KV_{bucket}"]:
        publish += _reading(stream)
    if service == "intake":  # at the hub: how far its mirrors of other levels' streams are behind
        publish += [f"$JS.API.STREAM.INFO.{name}" for name in kept_mirrors(mirrored)]
        if isinstance(mirrored, Mapping):  # and getting them going again when a line is back
            publish += nudge_subjects(dict(mirrored))
    # Operators put a dead letter back on its way and remove it (deadletters.py).
    publish.append(f"$JS.API.STREAM.MSG.DELETE.{subjects.deadletter_stream(code)}")
    subscribe = [
        f"{inbox_prefix(code, service)}.>",
        f"duban.cmd.{service}.{code}.*",
        f"duban.ops.{code}.{service}.*",
        f"duban.evt.*.{code}.*",
        subjects.outbox_wildcard(code),
    ]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}, "allow_responses": True}
