"""A million tracking events, quickly: real cases' commits, copied with fresh ids.

``python -m bench.rebuild`` needs a tracking stream of 1,000,000 events. Appending them through
``EventStore.append`` runs at about 1,500 a second here (each append waits for its
acknowledgement, and the embedded server writes with ``sync_interval: always``): eleven minutes.
So a few cases are lived through the real handlers once (``TrackingHandlers`` on the in-memory
event store, seventy days ago by their clock: opened from a routed matter, assigned, signed,
urged, progress, extensions, a return and reassignment, co-units' input, replies with
commitments, feedback, re-handling, reopened, closed), and their commits are then published as
``EventStore.append`` publishes them (the same body, subject and headers) again and again, each
copy with every id in it (the case's, the matter's, the events', the correlation and causation
ids) made new by replacing its first eight hex digits with the copy's own (its number,
scattered). They go out as core NATS publishes, flushed every few thousand, the stream's count
checked at the end; their versions (``Nats-Expected-Last-Subject-Sequence``, ``Duban-Prev-Seq``)
are the true ones, since one connection publishes in order into an empty stream, so the stream
sequence of each commit is known.

Cases are interleaved as on a working level: a wave of ``WAVE`` cases is opened, then each takes
its next step in turn, so a batch of a projector touches about as many cases as it has events
(the document projections' worst case, one row per event).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from nats.aio.client import Client as NATS

from contracts import subjects
from contracts.envelope import EVENT_TYPES_HEADER, PREVIOUS_SEQUENCE_HEADER, SHANGHAI, encode_commit
from contracts.jurisdictions import default_registry
from contracts.tracking import (
    Commitment,
    DecideExtension,
    DeliverCommitment,
    GiveCoUnitInput,
    GiveFeedback,
    Rating,
    ReopenCase,
    ReportProgress,
    RequestExtension,
    ReturnCase,
    SignCase,
    SubmitReply,
    UrgeCase,
)
from services.runtime.es.eventstore import EventStore
from services.runtime.es.memory import InMemoryEventStore, MemoryStreams
from services.tracking.handlers import TrackingHandlers
from tests.support.clock import ManualClock
from tests.support.tracking import CO, DEPUTIES, LEAD, OTHER, STAFF, WENLING, assignment, deputy, routed, unit

CONTEXT = "tracking"
JURISDICTION = WENLING
#: Cases opened together and then advanced step by step in turn.
WAVE = 2_000
#: Commits published (core NATS, the server storing them in order) between flushes.
PUBLISH_WINDOW = 4_000
_HEX_ID = re.compile(rb"[0-9a-f]{32}")


@dataclass(frozen=True)
class TemplateCommit:
    """One commit of a template case, cut where its copies put their own id prefix."""

    events: int
    body_parts: list[bytes]
    msg_id_tail: str
    event_types: str


@dataclass(frozen=True)
class TemplateCase:
    case_id_tail: str
    commits: list[TemplateCommit]

    @property
    def events(self) -> int:
        return sum(c.events for c in self.commits)


async def _story(handlers: TrackingHandlers, clock: ManualClock, variant: int) -> str:
    """One case lived through the handlers; ``variant`` picks its course. Returns its id."""
    event, envelope = routed(when=clock())
    case = await handlers.open_case(event, envelope)
    cid = case.id
    co = [CO] if variant % 2 else []
    leader = "张主任" if variant == 3 else None
    await handlers.assign(assignment(cid, co_units=co, key=variant == 3, leader=leader), STAFF)
    clock.advance(days=2)
    if variant == 4:  # returned, and reassigned to the unit it named
        returned = ReturnCase(case_id=cid, reason="属市场监管职责", suggested_unit=OTHER.name)
        await handlers.return_case(returned, unit(LEAD))
        await handlers.assign(assignment(cid, lead_unit=OTHER), STAFF)
        lead = OTHER
    else:
        lead = LEAD
    await handlers.sign(SignCase(case_id=cid), unit(lead))
    clock.advance(days=10)
    await handlers.report_progress(ReportProgress(case_id=cid, text="已完成现场踏勘和方案编制", percent=30), unit(lead))
    if variant in (2, 5):
        await handlers.urge_by_staff(UrgeCase(case_id=cid, note="请加快办理进度"), STAFF)
        until = clock().date() + timedelta(days=120)
        await handlers.request_extension(
            RequestExtension(case_id=cid, until=until, reason="需跨年度施工，申请延期"), unit(lead)
        )
        await handlers.decide_extension(DecideExtension(case_id=cid, grant=True, note="同意延期"), STAFF)
    clock.advance(days=20)
    await handlers.report_progress(ReportProgress(case_id=cid, text="已完成招投标，正在施工", percent=70), unit(lead))
    if co:
        await handlers.co_unit_input(GiveCoUnitInput(case_id=cid, text="同意主办单位意见", countersign=True), unit(CO))
    clock.advance(days=15)
    commitments = (
        [Commitment(id="c1", text="明年完成剩余二十个村的改造", due_on=date(2027, 11, 30))] if variant == 5 else []
    )
    reply_class = "B" if commitments else "A"
    await handlers.reply(
        SubmitReply(
            case_id=cid,
            reply_class=reply_class,
            text="已完成一户一表改造，群众用水得到保障。" * 3,
            reason="部分村需明年施工" if commitments else None,
            commitments=commitments,
        ),
        unit(lead),
    )
    clock.advance(days=5)
    if variant == 2:  # not satisfied: handled again and answered again
        await handlers.feedback(
            GiveFeedback(case_id=cid, rating=Rating.dissatisfied, comment="仍有农户未通水"), deputy(DEPUTIES[0])
        )
        clock.advance(days=10)
        await handlers.report_progress(ReportProgress(case_id=cid, text="剩余农户已通水", percent=100), unit(lead))
        await handlers.reply(SubmitReply(case_id=cid, reply_class="A", text="剩余农户均已通水"), unit(lead))
    for submitter in DEPUTIES:
        case = await handlers.feedback(GiveFeedback(case_id=cid, rating=Rating.satisfied), deputy(submitter))
    if variant == 5:
        await handlers.deliver_commitment(DeliverCommitment(case_id=cid, commitment_id="c1", note="已完成"), unit(lead))
    if variant == 6 and case.status.value == "closed":
        await handlers.reopen(ReopenCase(case_id=cid, reason="代表再次反映"), STAFF)
        await handlers.reply(SubmitReply(case_id=cid, reply_class="A", text="已再次核查"), unit(lead))
        for submitter in DEPUTIES:
            await handlers.feedback(GiveFeedback(case_id=cid, rating=Rating.satisfied), deputy(submitter))
    return cid


def _cut(data: bytes) -> list[bytes]:
    """``data`` without the first eight hex digits of each id in it, cut there."""
    parts, at = [], 0
    for match in _HEX_ID.finditer(data):
        parts.append(data[at : match.start()])
        at = match.start() + 8
    parts.append(data[at:])
    return parts


async def template_cases(variants: int = 7) -> list[TemplateCase]:
    """Cases lived through the real handlers, one per course, their commits ready to copy."""
    streams = MemoryStreams()
    # Lived seventy days ago: their deadlines are still ahead, so a tracking service running on
    # them (bench/rebuild.py serves one) has nothing to urge and the stream stays as filled.
    start = datetime.now(SHANGHAI).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=70)
    clock = ManualClock(start)
    store = InMemoryEventStore(context=CONTEXT, jurisdiction=JURISDICTION, streams=streams, clock=clock)
    handlers = TrackingHandlers(store, default_registry(), clock=clock)
    ids = []
    for variant in range(variants):
        ids.append(await _story(handlers, clock, variant))
        clock.advance(hours=1)
    stream = streams.stream(subjects.event_stream(CONTEXT, JURISDICTION))
    templates = []
    for cid in ids:
        subject = subjects.event_subject(CONTEXT, JURISDICTION, cid)
        commits = [
            TemplateCommit(
                events=len(stored.envelopes),
                body_parts=_cut(encode_commit(stored.envelopes)),
                msg_id_tail=stored.msg_id[8:],
                event_types=",".join(e.event_type for e in stored.envelopes),
            )
            for stored in stream.messages
            if stored.subject == subject
        ]
        templates.append(TemplateCase(case_id_tail=cid[8:], commits=commits))
    return templates


def _prefix(number: int) -> str:
    """The eight hex digits that make copy ``number``'s ids: scattered as random ids are (one
    multiplication by an odd constant modulo 2**32, so no two copies share them), not in
    ascending order, which would spare the databases' id indexes the random inserts of real ids."""
    return f"{number * 2_654_435_761 % 2**32:08x}"


def commits(templates: list[TemplateCase], events: int) -> Iterator[tuple[str, bytes, str, str, int]]:
    """``(case id, body, message id, event types, events)`` of each commit in stream order, until
    ``events`` events (the last case may stop part-way)."""
    made = 0
    number = 0
    while made < events:
        wave = []
        for _ in range(WAVE):
            template = templates[number % len(templates)]
            wave.append((_prefix(number), template))
            number += 1
        for step in range(max(len(t.commits) for _, t in wave)):
            for prefix, template in wave:
                if step >= len(template.commits):
                    continue
                commit = template.commits[step]
                if made >= events:
                    return
                yield (
                    prefix + template.case_id_tail,
                    prefix.encode().join(commit.body_parts),
                    prefix + commit.msg_id_tail,
                    commit.event_types,
                    commit.events,
                )
                made += commit.events


async def publish(nc: NATS, events: int, *, say=lambda line: None) -> dict:
    """Fill the (new, empty) tracking stream of ``JURISDICTION`` with ``events`` events; returns
    counts. The stream is made as the event store makes it."""
    store = EventStore(nc, context=CONTEXT, jurisdiction=JURISDICTION)
    await store.ensure_streams(snapshots=False)
    info = await store.js.stream_info(store.stream)
    assert info.state.last_seq == 0, f"{store.stream} is not empty"
    templates = await template_cases()
    last: dict[str, int] = {}
    seq = made = 0
    step = max(events // 10, 1)
    for case_id, body, msg_id, types, count in commits(templates, events):
        subject = subjects.event_subject(CONTEXT, JURISDICTION, case_id)
        previous = str(last.get(case_id, 0))
        headers = {
            "Nats-Msg-Id": msg_id,
            "Nats-Expected-Last-Subject-Sequence": previous,
            PREVIOUS_SEQUENCE_HEADER: previous,
            EVENT_TYPES_HEADER: types,
        }
        await nc.publish(subject, body, headers=headers)
        seq += 1
        if seq % PUBLISH_WINDOW == 0:
            await nc.flush()
        last[case_id] = seq
        before = made
        made += count
        if made // step != before // step:
            say(f"fill: {made:,}/{events:,} events")
    await nc.flush()
    # The server stores what a connection publishes in order, shortly after it has read it.
    deadline = asyncio.get_running_loop().time() + 60
    while (info := await store.js.stream_info(store.stream)).state.last_seq < seq:
        assert asyncio.get_running_loop().time() < deadline, (info.state, seq)
        await asyncio.sleep(0.05)
    assert info.state.last_seq == seq == info.state.messages, (info.state, seq)
    return {"events": made, "commits": seq, "cases": len(last), "stream_bytes": info.state.bytes}
