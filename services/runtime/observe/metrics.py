"""Prometheus metrics of a service process, served at ``/metrics`` of its HTTP API.

Counters and histograms are updated where the work happens (appends in the event store,
batches in the projector, messages in the durable workers, deliveries in notify); the gauges
that describe the bus (each consumer's lag and un-acknowledged messages, the dead letters of the
level, the streams' sizes) are read from the NATS server when ``/metrics`` is scraped, so they
are never stale and cost nothing between scrapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter
from fastapi.responses import Response
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("duban.metrics")

#: One registry per process (a service process runs one service of one level).
REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_APPENDED = Counter(
    "duban_events_appended",
    "Events appended to the event store",
    ["context", "jurisdiction", "event_type"],
    registry=REGISTRY,
)
MESSAGES_HANDLED = Counter(
    "duban_messages_handled",
    "Messages handled by a projector or a durable worker, by outcome (ok, retry, dead_letter, unsettled: its "
    "dead letter could not be stored, so it is kept for redelivery)",
    ["consumer", "outcome"],
    registry=REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "duban_handler_seconds",
    "Time to handle one message (durable workers) or one batch (projectors)",
    ["consumer"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERIES = Counter(
    "duban_deliveries",
    "Notices by channel and outcome (sent, retry, failed, in_doubt)",
    ["channel", "outcome"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "duban_consumer_lag", "Messages not yet delivered to a consumer", ["stream", "consumer"], registry=REGISTRY
)
CONSUMER_ACK_PENDING = Gauge(
    "duban_consumer_ack_pending",
    "Messages delivered to a consumer and not acknowledged yet",
    ["stream", "consumer"],
    registry=REGISTRY,
)
STREAM_MESSAGES = Gauge("duban_stream_messages", "Messages in a stream", ["stream"], registry=REGISTRY)
STREAM_BYTES = Gauge("duban_stream_bytes", "Bytes in a stream", ["stream"], registry=REGISTRY)
MIRROR_LAG = Gauge(
    "duban_mirror_lag",
    "Messages a mirror kept at the hub has not copied yet from its origin at another level",
    ["mirror"],
    registry=REGISTRY,
)
MIRROR_CONTACT = Gauge(
    "duban_mirror_last_contact_seconds",
    "Seconds since a mirror last heard from its origin (-1: never)",
    ["mirror"],
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "duban_dead_letters",
    "Messages in the dead-letter stream of this level, by consumer",
    ["consumer"],
    registry=REGISTRY,
)


UNDECODABLE = Counter(
    "duban_undecodable_events",
    "Stored commits a load could not read (a malformed or unknown event), by stream",
    ["stream"],
    registry=REGISTRY,
)
#: The unreadable commits this process met, by (subject, stream sequence): ``/status`` lists them.
UNREADABLE: dict[tuple[str, int], dict] = {}


def report_unreadable(stream: str, subject: str, sequence: int, reason: str) -> None:
    """An event a load could not read: counted, listed in ``/status``, logged once per commit."""
    key = (subject, sequence)
    if key in UNREADABLE:
        return
    UNREADABLE[key] = {"stream": stream, "subject": subject, "sequence": sequence, "reason": reason[:300]}
    UNDECODABLE.labels(stream=stream).inc()
    log.error(
        "undecodable event: the aggregate cannot be loaded until an operator voids it (duban events void)",
        extra={"stream": stream, "subject": subject, "sequence": sequence, "reason": reason[:300]},
    )


def forget_unreadable(subject: str, sequence: int) -> None:
    UNREADABLE.pop((subject, sequence), None)


@dataclass(frozen=True)
class Watched:
    """What ``/metrics`` reads from the server: consumers (stream, durable), streams, and the
    dead-letter stream of the level with the consumers whose dead letters to count."""

    consumers: list[tuple[str, str]]
    streams: list[str]
    deadletter_stream: str | None = None
    deadletter_subjects: dict[str, str] | None = None  # consumer → its dead-letter subject
    #: projection name → an awaitable giving its checkpoint (stream sequence), for ``/status``
    checkpoints: dict[str, Callable[[], Awaitable[int]]] | None = None
    #: the mirrors of other levels' streams kept on this server (the hub's intake reports them)
    mirrors: list[str] = field(default_factory=list)


async def refresh(js: JetStreamContext, watched: Watched) -> None:
    """Read the bus's gauges from the server (a consumer or stream that is not there is skipped)."""

    async def consumer(stream: str, durable: str) -> None:
        try:
            info = await js.consumer_info(stream, durable)
        except Exception as err:  # not created yet, or the server is away: no sample rather than a wrong one
            log.debug("consumer info unavailable", extra={"stream": stream, "consumer": durable, "error": repr(err)})
            return
        CONSUMER_LAG.labels(stream, durable).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(stream, durable).set(info.num_ack_pending or 0)

    async def stream(name: str) -> None:
        try:
            info = await js.stream_info(name)
        except Exception:
            return
        STREAM_MESSAGES.labels(name).set(info.state.messages)
        STREAM_BYTES.labels(name).set(info.state.bytes)
        if info.mirror is not None:  # a copy of another level's stream, kept here
            MIRROR_LAG.labels(name).set(info.mirror.lag or 0)
            active = info.mirror.active
            MIRROR_CONTACT.labels(name).set(-1 if active is None or active < 0 else active / 1e9)

    await asyncio.gather(
        *(consumer(s, d) for s, d in watched.consumers),
        *(stream(n) for n in watched.streams),
        *(stream(n) for n in watched.mirrors),
    )
    if watched.deadletter_stream and watched.deadletter_subjects:
        try:
            info = await js.stream_info(watched.deadletter_stream, subjects_filter=">")
            counts = info.state.subjects or {}
        except Exception:
            return
        for name, subject in watched.deadletter_subjects.items():
            DEAD_LETTERS.labels(name).set(counts.get(subject, 0))


async def status(js: JetStreamContext, watched: Watched) -> dict:
    """What ``duban status`` shows of this process: streams, consumers with lag and checkpoints,
    dead letters by consumer (the same figures ``/metrics`` exports)."""
    await refresh(js, watched)
    checkpoints = {}
    for name, read in (watched.checkpoints or {}).items():
        try:
            checkpoints[name] = await read()
        except Exception as err:
            log.warning("checkpoint unreadable", extra={"projection": name, "error": repr(err)})
    return {
        "streams": [
            {
                "stream": name,
                "messages": sample("duban_stream_messages", {"stream": name}),
                "bytes": sample("duban_stream_bytes", {"stream": name}),
            }
            for name in watched.streams
        ],
        "consumers": [
            {
                "stream": stream,
                "consumer": durable,
                "lag": sample("duban_consumer_lag", {"stream": stream, "consumer": durable}),
                "ack_pending": sample("duban_consumer_ack_pending", {"stream": stream, "consumer": durable}),
                "checkpoint": checkpoints.get(durable),
            }
            for stream, durable in watched.consumers
        ],
        "mirrors": [
            {
                "mirror": name,
                "messages": sample("duban_stream_messages", {"stream": name}),
                "lag": sample("duban_mirror_lag", {"mirror": name}),
                "last_contact_s": sample("duban_mirror_last_contact_seconds", {"mirror": name}),
            }
            for name in watched.mirrors
        ],
        "dead_letters": {
            name: sample("duban_dead_letters", {"consumer": name}) or 0 for name in (watched.deadletter_subjects or {})
        },
        "undecodable": list(UNREADABLE.values()),
    }


def metrics_router(js: Callable[[], JetStreamContext | None], watched: Callable[[], Watched | None]) -> APIRouter:
    """``GET /metrics`` in Prometheus' text format (unauthenticated, like ``/healthz``: a scraper
    on the operators' network reads it; it carries counts, never content)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        context, what = js(), watched()
        if context is not None and what is not None:
            await refresh(context, what)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @router.get("/status", include_in_schema=False)
    async def service_status() -> dict:
        context, what = js(), watched()
        if context is None or what is None:
            return {"ready": False}
        return {"ready": True, **(await status(context, what))}

    return router


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    """The current value of one sample (tests and ``duban status``)."""
    return REGISTRY.get_sample_value(name, labels or {})
