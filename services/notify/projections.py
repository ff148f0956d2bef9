"""Notify's read side: its own records of deliveries, the directory, summaries and disclosures,
and its own views of what intake, tracking and evaluation did at this level.

Notify never asks another service for anything: the four lists, the monthly summary and the
disclosures are built from these projections of the other contexts' streams of this level (and
of this level's INBOX, for the summaries lower levels report). Each projection has its own
``MetaData`` (a rebuild drops only its own tables) and its own projector:

=========================  ==========================  =============================================
projection                 stream                      table and what it is for
=========================  ==========================  =============================================
``DeliveryProjection``     NOTIFY                      ``notify_deliveries``: status of every
                                                       delivery; the in-app inbox
``DirectoryProjection``    NOTIFY                      ``notify_directory``: who is reachable how
``SummaryProjection``      NOTIFY                      ``notify_summaries``: this level's compiled
                                                       months and typical cases
``DisclosureProjection``   NOTIFY                      ``notify_disclosures``: what is released
``CommentProjection``      NOTIFY                      ``notify_public_comments``
``MatterProjection``       INTAKE                      ``notify_matters``: 问题清单, 建议清单; matters
                                                       collected and escalated (monthly summary)
``ActivityProjection``     INTAKE                      ``notify_activities``: activities held
``CaseProjection``         TRACKING                    ``notify_cases``: 督办清单, 成果清单; problems
                                                       solved; what a disclosure says
``GroupActivityProjection`` TRACKING                   ``notify_group_activities`` (seed 004)
``EvaluationProjection``   EVALUATION                  ``notify_evaluation_results`` per subject
``ReportedSummaryProjection`` INBOX                    ``notify_reported_summaries``: lower levels'
                                                       monthly reports, latest revision each
=========================  ==========================  =============================================
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Column, Date, Index, Integer, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from contracts import integration as x
from contracts.envelope import Envelope
from contracts.evaluation import OPTION_NAMES
from contracts.events import UnknownEventType, upcast
from contracts.notify import (
    DeliveryAttempted,
    DeliveryDeadLettered,
    DeliveryFailed,
    DeliveryInDoubt,
    DeliveryPlanned,
    DeliveryReplayed,
    DeliveryStatus,
    DisclosureReleased,
    DisclosureWithdrawn,
    MonthlySummaryCompiled,
    NoticeDelivered,
    NoticeRead,
    PublicCommentForwarded,
    PublicCommentReceived,
    RecipientEntry,
    RecipientRecorded,
    RecipientRemoved,
    TypicalCaseAdded,
    TypicalCaseRemoved,
)
from contracts.tracking import (
    GroupActivityRecorded,
)
from services.runtime.read.db import UtcDateTime, connected
from services.runtime.read.documents import DocumentProjection
from services.runtime.read.projector import Projection, handles, upsert
from services.runtime.read.records import (
    ActivityRecords,
    CaseRecords,
    MatterRecords,
    activity_table,
    bars,
    case_table,
    matter_table,
)

RESULTS_EVENT = "evaluation.ResultsPublished"


# -- tables ------------------------------------------------------------------------------------

deliveries_md, directory_md, summaries_md, disclosures_md, comments_md = (MetaData() for _ in range(5))
matters_md, activities_md, cases_md, groups_md, evaluation_md, reported_md = (MetaData() for _ in range(6))

deliveries = Table(
    "notify_deliveries",
    deliveries_md,
    Column("id", String(64), primary_key=True),
    Column("jurisdiction", String(9)),
    Column("kind", String(32)),
    Column("channel", String(16)),
    Column("recipient_id", String(128)),
    Column("recipient_name", String(200)),
    Column("address", String(2000)),
    Column("subject", String(500)),
    Column("body", Text),
    Column("topic_id", String(64)),
    Column("source_event_id", String(64)),
    Column("source_event_type", String(128)),
    Column("status", String(16)),
    Column("attempts", Integer, default=0),
    Column("last_error", Text),
    Column("planned_at", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    Column("read_at", UtcDateTime),
    Column("read_by", String(128)),
    Column("updated_at", UtcDateTime),
    Index("ix_notify_deliveries_recipient", "recipient_id", "channel"),
    Index("ix_notify_deliveries_status", "status"),
)

directory = Table(
    "notify_directory",
    directory_md,
    Column("key", String(64), primary_key=True, doc="the directory entry's aggregate id"),
    Column("id", String(128), index=True, doc="the recipient id"),
    Column("name", String(200)),
    Column("kind", String(32)),
    Column("names", Text, doc="|name|alias|… for look-ups by name"),
    Column("email", String(320)),
    Column("webhook_url", String(2000)),
    Column("webhook_secret_env", String(100)),
    Column("channels", JSON),
    Column("mute", JSON),
    Column("subscribe", Text, doc="|kind|… wanted without being addressed"),
    Column("removed", Boolean, default=False),
    Column("source", String(8)),
    Column("updated_at", UtcDateTime),
)

summaries = Table(
    "notify_summaries",
    summaries_md,
    Column("id", String(64), primary_key=True),
    Column("month", String(7)),
    Column("typical_cases", JSON),
    Column("revision", Integer, default=0),
    Column("figures", JSON),
    Column("rows", JSON),
    Column("reported_cases", JSON),
    Column("report_to", String(9)),
    Column("compiled_on", Date),
    Column("compiled_at", UtcDateTime),
)

disclosures = Table(
    "notify_disclosures",
    disclosures_md,
    Column("id", String(64), primary_key=True),
    Column("jurisdiction", String(9)),
    Column("released", Boolean, default=False),
    Column("body", String(16), doc="Body whose disclosure it is (人大 / 政协): its heading"),
    Column("title", String(200)),
    Column("leads", JSON),
    Column("merged", Boolean, default=False, doc="合并"),
    Column("topical", Boolean, default=False, doc="专题类"),
    Column("unit", String(200)),
    Column("summary", Text),
    Column("evaluation_result", String(200)),
    Column("kind", String(16)),
    Column("registration_no", String(64)),
    Column("year", Integer, doc="立案年度"),
    Column("number", Integer, doc="its number in its body's book of its kind and year"),
    Column("released_at", UtcDateTime),
    Column("withdrawn_at", UtcDateTime),
)

comments = Table(
    "notify_public_comments",
    comments_md,
    Column("id", String(64), primary_key=True),
    Column("disclosure_id", String(64), index=True),
    Column("name", String(100)),
    Column("contact", String(200)),
    Column("content", Text),
    Column("received_at", UtcDateTime),
    Column("matter_id", String(64)),
)

matters = matter_table("notify_matters", matters_md)

activities = activity_table("notify_activities", activities_md)

cases = case_table("notify_cases", cases_md)

group_activities = Table(
    "notify_group_activities",
    groups_md,
    Column("id", String(64), primary_key=True),
    Column("jurisdiction", String(9)),
    Column("group_id", String(64)),
    Column("kind", String(16)),
    Column("title", String(200)),
    Column("held_on", Date, index=True),
    Column("participants", Integer, default=0),
)

evaluation_results = Table(
    "notify_evaluation_results",
    evaluation_md,
    Column("subject_id", String(64), primary_key=True),
    Column("subject_kind", String(32)),
    Column("session_id", String(64)),
    Column("title", String(200)),
    Column("result", String(200), doc="e.g. 满意 (满意率 96.0%)"),
    Column("details", JSON),
    Column("published_at", UtcDateTime),
)

reported = Table(
    "notify_reported_summaries",
    reported_md,
    Column("id", String(32), primary_key=True, doc="<reporter>|<month>"),
    Column("reporter", String(9)),
    Column("reporter_name", String(100)),
    Column("month", String(7), index=True),
    Column("revision", Integer),
    Column("figures", JSON),
    Column("rows", JSON),
    Column("typical_cases", JSON),
    Column("compiled_on", Date),
    Column("received_at", UtcDateTime),
)

metadatas = (
    deliveries_md,
    directory_md,
    summaries_md,
    disclosures_md,
    comments_md,
    matters_md,
    activities_md,
    cases_md,
    groups_md,
    evaluation_md,
    reported_md,
)


# -- NOTIFY stream -----------------------------------------------------------------------------


class DeliveryProjection(DocumentProjection):
    """One row per delivery, its status as ``domain.Delivery`` sees it; inbox rows are the inbox."""

    name = "notify_deliveries"
    metadata = deliveries_md
    table = deliveries

    @staticmethod
    def _stamp(doc, envelope: Envelope) -> None:
        doc["updated_at"] = envelope.occurred_at

    @handles(DeliveryPlanned)
    def planned(self, doc, event: DeliveryPlanned, envelope: Envelope) -> None:
        doc.update(
            jurisdiction=envelope.jurisdiction,
            kind=event.kind.value,
            channel=event.channel.value,
            recipient_id=event.recipient.id,
            recipient_name=event.recipient.name,
            address=event.address,
            subject=event.subject,
            body=event.body,
            topic_id=event.topic_id,
            source_event_id=event.source.event_id,
            source_event_type=event.source.event_type,
            status=DeliveryStatus.planned.value,
            attempts=0,
            planned_at=envelope.occurred_at,
        )
        self._stamp(doc, envelope)

    @handles(DeliveryAttempted)
    def attempted(self, doc, event: DeliveryAttempted, envelope: Envelope) -> None:
        doc.update(status=DeliveryStatus.sending.value, attempts=event.attempt)
        self._stamp(doc, envelope)

    @handles(NoticeDelivered)
    def delivered(self, doc, event: NoticeDelivered, envelope: Envelope) -> None:
        doc.update(status=DeliveryStatus.delivered.value, delivered_at=envelope.occurred_at, last_error=None)
        self._stamp(doc, envelope)

    @handles(DeliveryFailed)
    def failed(self, doc, event: DeliveryFailed, envelope: Envelope) -> None:
        doc.update(status=DeliveryStatus.failed.value, last_error=event.error)
        self._stamp(doc, envelope)

    @handles(DeliveryInDoubt)
    def in_doubt(self, doc, event: DeliveryInDoubt, envelope: Envelope) -> None:
        doc.update(status=DeliveryStatus.in_doubt.value, last_error=event.reason)
        self._stamp(doc, envelope)

    @handles(DeliveryDeadLettered)
    def dead_lettered(self, doc, event: DeliveryDeadLettered, envelope: Envelope) -> None:
        doc.update(status=DeliveryStatus.dead_lettered.value, last_error=event.error)
        self._stamp(doc, envelope)

    @handles(DeliveryReplayed)
    def replayed(self, doc, event: DeliveryReplayed, envelope: Envelope) -> None:
        doc["status"] = DeliveryStatus.planned.value
        self._stamp(doc, envelope)

    @handles(NoticeRead)
    def read(self, doc, event: NoticeRead, envelope: Envelope) -> None:
        doc.update(read_at=envelope.occurred_at, read_by=event.reader)
        self._stamp(doc, envelope)


class DirectoryProjection(DocumentProjection):
    name = "notify_directory"
    metadata = directory_md
    table = directory

    @handles(RecipientRecorded)
    def recorded(self, doc, event: RecipientRecorded, envelope: Envelope) -> None:
        entry = event.entry
        doc.update(
            id=entry.id,
            name=entry.name,
            kind=entry.kind,
            names=bars([entry.name, *entry.names]),
            email=entry.email,
            webhook_url=entry.webhook_url,
            webhook_secret_env=entry.webhook_secret_env,
            channels=[c.value for c in entry.channels],
            mute=[k.value for k in entry.mute],
            subscribe=bars([k.value for k in entry.subscribe]),
            removed=False,
            source=event.source,
            updated_at=envelope.occurred_at,
        )

    @handles(RecipientRemoved)
    def removed(self, doc, event: RecipientRemoved, envelope: Envelope) -> None:
        doc.update(removed=True, updated_at=envelope.occurred_at)


class SummaryProjection(DocumentProjection):
    name = "notify_summaries"
    metadata = summaries_md
    table = summaries

    @handles(TypicalCaseAdded)
    def case_added(self, doc, event: TypicalCaseAdded, envelope: Envelope) -> None:
        doc["month"] = doc["month"] or envelope.aggregate_id.removeprefix("summary-")
        doc["typical_cases"] = [*(doc["typical_cases"] or []), event.case.model_dump(mode="json")]

    @handles(TypicalCaseRemoved)
    def case_removed(self, doc, event: TypicalCaseRemoved, envelope: Envelope) -> None:
        doc["typical_cases"] = [c for c in doc["typical_cases"] or [] if c["id"] != event.case_id]

    @handles(MonthlySummaryCompiled)
    def compiled(self, doc, event: MonthlySummaryCompiled, envelope: Envelope) -> None:
        doc.update(
            month=event.month,
            revision=event.revision,
            figures=event.figures.model_dump(),
            rows=[r.model_dump(mode="json") for r in event.rows],
            reported_cases=[c.model_dump(mode="json") for c in event.typical_cases],
            report_to=event.report_to,
            compiled_on=event.compiled_on,
            compiled_at=envelope.occurred_at,
        )
        doc["typical_cases"] = doc["typical_cases"] or []


class DisclosureProjection(DocumentProjection):
    name = "notify_disclosures"
    metadata = disclosures_md
    table = disclosures
    version = 2  # the body, 合并 and 专题类, the book number

    @handles(DisclosureReleased)
    def released(self, doc, event: DisclosureReleased, envelope: Envelope) -> None:
        text = event.text
        doc.update(
            jurisdiction=envelope.jurisdiction,
            released=True,
            body=text.body.value,
            title=text.title,
            leads=list(text.leads),
            merged=text.merged,
            topical=text.topical,
            unit=text.unit,
            summary=text.summary,
            evaluation_result=text.evaluation_result,
            kind=text.kind,
            registration_no=text.registration_no,
            year=text.year,
            number=text.number,
            released_at=envelope.occurred_at,
            withdrawn_at=None,
        )

    @handles(DisclosureWithdrawn)
    def withdrawn(self, doc, event: DisclosureWithdrawn, envelope: Envelope) -> None:
        doc.update(released=False, withdrawn_at=envelope.occurred_at)


class CommentProjection(DocumentProjection):
    name = "notify_public_comments"
    metadata = comments_md
    table = comments

    @handles(PublicCommentReceived)
    def received(self, doc, event: PublicCommentReceived, envelope: Envelope) -> None:
        doc.update(
            disclosure_id=event.disclosure_id,
            name=event.name,
            contact=event.contact,
            content=event.content,
            received_at=envelope.occurred_at,
        )

    @handles(PublicCommentForwarded)
    def forwarded(self, doc, event: PublicCommentForwarded, envelope: Envelope) -> None:
        doc["matter_id"] = event.matter_id


# -- INTAKE stream -----------------------------------------------------------------------------


class MatterProjection(MatterRecords):
    """One row per matter of this level, as the lists and the monthly summary need it (the
    runtime's matter records, which intake keeps too)."""

    name = "notify_matters"
    version = 7  # the shared matter records, with bodies (人大 / 政协), joint leads, 专题类 and book numbers
    metadata = matters_md
    table = matters


class ActivityProjection(ActivityRecords):
    """Activities held at this level (视察、调研、座谈、联系群众、主题活动), with the deputies there (the
    runtime's activity records, which intake keeps too)."""

    name = "notify_activities"
    version = 3  # the shared activity records, with participants
    metadata = activities_md
    table = activities


# -- TRACKING stream ---------------------------------------------------------------------------


class CaseProjection(CaseRecords):
    """One row per case of this level, for 督办清单, 成果清单, problems solved and disclosures (the
    runtime's case records, which tracking keeps too)."""

    name = "notify_cases"
    version = 9  # the shared case records, with bodies (人大 / 政协), leads, 合并 and 专题类
    metadata = cases_md
    table = cases


class GroupActivityProjection(DocumentProjection):
    """Deputy groups' activities (seed 004), which the monthly summary counts with the others."""

    name = "notify_group_activities"
    metadata = groups_md
    table = group_activities

    def key_of(self, envelope: Envelope) -> Any:
        return envelope.payload["activity_id"]

    @handles(GroupActivityRecorded)
    def recorded(self, doc, event: GroupActivityRecorded, envelope: Envelope) -> None:
        doc.update(
            jurisdiction=envelope.jurisdiction,
            group_id=envelope.aggregate_id,
            kind=event.kind,
            title=event.title,
            held_on=event.held_on,
            participants=event.participants,
        )


# -- EVALUATION stream -------------------------------------------------------------------------


def evaluation_payload(envelope: Envelope) -> dict[str, Any]:
    """An evaluation event's payload, read through its class when this code knows it (upcasting
    old versions), else as stored: notify only reads the fields it needs and tolerates others."""
    try:
        return upcast(envelope.event_type, envelope.schema_version, envelope.payload).model_dump(mode="json")
    except UnknownEventType:
        return dict(envelope.payload)


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def result_lines(result: dict[str, Any]) -> list[str]:
    """Readable lines of one subject's result (``contracts.evaluation.SubjectResult``): the
    counts per option, the rate, turnout and quorum."""
    lines = []
    counts = result.get("counts") or {}
    if isinstance(counts, dict) and counts:
        lines.append("，".join(f"{OPTION_NAMES.get(str(k), str(k))} {v} 票" for k, v in counts.items()))
    kinds = {str(k) for k in counts} if isinstance(counts, dict) else set()
    label = "可行率" if kinds & {"feasible", "basically_feasible", "infeasible"} else "满意率"
    if isinstance(result.get("rate"), int | float):
        lines.append(f"{label} {_percent(result['rate'])}")
    if isinstance(result.get("valid"), int):
        lines.append(f"有效票 {result['valid']} 张")
    turnout = result.get("turnout")
    if isinstance(turnout, float) and turnout <= 1:
        lines.append(f"参评率 {_percent(turnout)}")
    elif isinstance(turnout, int):
        lines.append(f"参评人数 {turnout}")
    if "quorum_met" in result:
        lines.append("达到规定参评人数" if result["quorum_met"] else "未达到规定参评人数，结果无效")
    if result.get("dissatisfied_dominates"):
        lines.append("否定票多于肯定票")
    return lines or ["（无明细）"]


def verdict_of(result: dict[str, Any]) -> str:
    """A short result for a disclosure: the option most chosen, with the rate (满意（满意率 94.6%）)."""
    counts = result.get("counts") or {}
    if not isinstance(counts, dict) or not any(counts.values()):
        return "；".join(result_lines(result))[:200]
    best = max(counts.items(), key=lambda kv: kv[1])[0]
    verdict = OPTION_NAMES.get(str(best), str(best))
    if isinstance(result.get("rate"), int | float):
        label = "可行率" if str(best).endswith("feasible") else "满意率"
        verdict += f"（{label} {_percent(result['rate'])}）"
    return verdict


class EvaluationProjection(Projection):
    """Per evaluated subject, its latest published result (``evaluation.ResultsPublished``): what
    a disclosure shows as its evaluation result. Read through ``evaluation_payload``: notify takes
    only ``results[].subject`` and the counts and rates, so it keeps reading older or newer
    shapes of the event."""

    name = "notify_evaluation_results"
    metadata = evaluation_md

    def wants(self, event_type: str) -> bool:
        return event_type == RESULTS_EVENT

    async def apply(self, session: AsyncSession, envelope: Envelope) -> None:
        await self.apply_batch(session, [envelope])

    async def apply_batch(self, session: AsyncSession, envelopes: list[Envelope]) -> None:
        rows = []
        for envelope in envelopes:
            if envelope.event_type != RESULTS_EVENT:
                continue
            payload = evaluation_payload(envelope)
            for result in payload.get("results") or []:
                subject = result.get("subject") or {}
                if not subject.get("id"):
                    continue
                rows.append(
                    {
                        "subject_id": str(subject["id"])[:64],
                        "subject_kind": subject.get("kind"),
                        "session_id": envelope.aggregate_id,
                        "title": (subject.get("title") or "")[:200],
                        "result": verdict_of(result),
                        "details": result,
                        "published_at": envelope.occurred_at,
                    }
                )
        if rows:
            conn = await session.connection()
            await conn.execute(upsert(evaluation_results, conn.dialect.name), rows)


# -- INBOX stream ------------------------------------------------------------------------------


class ReportedSummaryProjection(DocumentProjection):
    """The monthly summaries lower levels reported here: per reporter and month, the latest revision."""

    name = "notify_reported_summaries"
    metadata = reported_md
    table = reported

    def key_of(self, envelope: Envelope) -> Any:
        return f"{envelope.payload['reporter']}|{envelope.payload['month']}"

    @handles(x.MonthlySummaryReported)
    def reported(self, doc, event: x.MonthlySummaryReported, envelope: Envelope) -> None:
        if (doc["revision"] or 0) >= event.revision:
            return  # an older or repeated revision
        doc.update(
            reporter=event.reporter,
            reporter_name=event.reporter_name,
            month=event.month,
            revision=event.revision,
            figures=event.figures.model_dump(),
            rows=[r.model_dump(mode="json") for r in event.rows],
            typical_cases=[c.model_dump(mode="json") for c in event.typical_cases],
            compiled_on=event.compiled_on,
            received_at=envelope.occurred_at,
        )


# -- queries -----------------------------------------------------------------------------------


def entry_of(row: dict[str, Any]) -> RecipientEntry:
    names = [n for n in (row["names"] or "").split("|") if n and n != row["name"]]
    subscribe = [k for k in (row["subscribe"] or "").split("|") if k]
    return RecipientEntry(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        names=names,
        email=row["email"],
        webhook_url=row["webhook_url"],
        webhook_secret_env=row["webhook_secret_env"],
        channels=row["channels"] or ["inbox"],
        mute=row["mute"] or [],
        subscribe=subscribe,
    )


async def directory_entries(conn: AsyncEngine | AsyncConnection) -> list[RecipientEntry]:
    """Every entry of the directory (not removed), by id."""
    query = select(directory).where(directory.c.removed.is_(False)).order_by(directory.c.id)
    async with connected(conn) as db:
        return [entry_of(dict(r._mapping)) for r in await db.execute(query)]


async def list_directory(conn: AsyncEngine | AsyncConnection) -> list[dict[str, Any]]:
    query = select(directory).where(directory.c.removed.is_(False)).order_by(directory.c.id)
    async with connected(conn) as db:
        return [
            entry_of(dict(r._mapping)).model_dump(mode="json") | {"source": r.source} for r in await db.execute(query)
        ]


async def inbox(
    conn: AsyncEngine | AsyncConnection,
    recipient_ids: list[str],
    *,
    unread: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The in-app notices of these recipient ids (a person's own and their roles'), newest first."""
    query = select(deliveries).where(deliveries.c.channel == "inbox", deliveries.c.recipient_id.in_(recipient_ids))
    if unread:
        query = query.where(deliveries.c.read_at.is_(None))
    query = query.order_by(deliveries.c.planned_at.desc(), deliveries.c.id).limit(limit).offset(offset)
    async with connected(conn) as db:
        return [dict(r._mapping) for r in await db.execute(query)]


async def list_deliveries(
    conn: AsyncEngine | AsyncConnection,
    *,
    status: str | None = None,
    recipient_id: str | None = None,
    channel: str | None = None,
    topic_id: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    query = select(deliveries)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    if recipient_id is not None:
        query = query.where(deliveries.c.recipient_id == recipient_id)
    if channel is not None:
        query = query.where(deliveries.c.channel == channel)
    if topic_id is not None:
        query = query.where(deliveries.c.topic_id == topic_id)
    query = query.order_by(deliveries.c.planned_at.desc(), deliveries.c.id).limit(limit).offset(offset)
    async with connected(conn) as db:
        return [dict(r._mapping) for r in await db.execute(query)]


async def get_row(conn: AsyncEngine | AsyncConnection, table: Table, key: Any) -> dict[str, Any] | None:
    column = next(iter(table.primary_key.columns))
    async with connected(conn) as db:
        row = (await db.execute(select(table).where(column == key))).first()
    return dict(row._mapping) if row is not None else None


async def released_disclosures(conn: AsyncEngine | AsyncConnection, body: str | None = None) -> list[dict[str, Any]]:
    """What the public may read (of one body, or of both): released and not withdrawn, by number
    within year and kind as the body's books gave them (the latest year first), those without a
    number after them, latest released first."""
    query = (
        select(disclosures)
        .where(disclosures.c.released.is_(True))
        .order_by(
            disclosures.c.body,
            disclosures.c.year.is_(None),
            disclosures.c.year.desc(),
            disclosures.c.kind,
            disclosures.c.number.is_(None),
            disclosures.c.number,
            disclosures.c.released_at.desc(),
            disclosures.c.id,
        )
    )
    if body is not None:
        query = query.where(disclosures.c.body == str(body))
    async with connected(conn) as db:
        return [dict(r._mapping) for r in await db.execute(query)]


__all__ = [
    "ActivityProjection",
    "CaseProjection",
    "CommentProjection",
    "DeliveryProjection",
    "DirectoryProjection",
    "DisclosureProjection",
    "EvaluationProjection",
    "GroupActivityProjection",
    "MatterProjection",
    "ReportedSummaryProjection",
    "SummaryProjection",
    "metadatas",
]
