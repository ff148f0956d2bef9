"""Records of matters and cases as the services that read them keep them: one row per matter of a
level (from intake's events), one row per case (from tracking's events).

Several services read the same events the same way: intake lists its matters from a row per
matter and notify builds the four lists and the monthly summary from the same rows; tracking's
case list and notify's lists read a row per case; intake's activities and notify's summary a row
per activity. The projection is written once, here, over the
public events of ``contracts`` (never a service's code); each service runs it into a table of
its own database under a name of its own (``matter_table("intake_matters", metadata)``), by
subclassing :class:`MatterRecords` or :class:`CaseRecords` with its ``name``, ``metadata`` and
``table``, and may add handlers for what only it keeps. Queries are the services' own.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Date, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import SHANGHAI, Envelope
from contracts.intake import (
    ActivityRecorded,
    MatterAbsorbed,
    MatterConverted,
    MatterData,
    MatterEscalated,
    MatterForwarded,
    MatterMerged,
    MatterNotRegistered,
    MatterReceived,
    MatterRegistered,
    MatterRouted,
    MatterSentDown,
    MatterStatus,
    MatterSubmitted,
    MatterTransferred,
    OutcomeRecorded,
    RaiserFedBack,
    ReplyRecorded,
    SubmitterFeedbackGiven,
    SubmitterFeedbackReceived,
)
from contracts.jurisdictions import UnknownJurisdiction, default_registry
from contracts.tracking import (
    CaseAssigned,
    CaseClosed,
    CaseEscalatedToLeader,
    CaseOpened,
    CaseReopened,
    CaseReturned,
    CaseSigned,
    CaseStatus,
    CaseUrged,
    CommitmentDelivered,
    CommitmentsCarriedOver,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    FeedbackGiven,
    ReplyReleased,
    ReplySentBack,
    ReplySubmitted,
    under_supervision,
)

from .db import UtcDateTime
from .documents import DocumentProjection
from .projector import handles

#: Names joined in one column (submitters, co-units).
SEPARATOR = "、"


def level_of(code: str | None) -> str | None:
    """The level of a jurisdiction code (prefecture, county, township), if the registry knows it."""
    if not code:
        return None
    try:
        return default_registry().get(code).level.value
    except UnknownJurisdiction:
        return None


# -- matters -----------------------------------------------------------------------------------


def matter_table(name: str, metadata: MetaData) -> Table:
    """The table of a row per matter, named ``name`` in ``metadata``."""
    return Table(
        name,
        metadata,
        Column("id", String(64), primary_key=True),
        Column("jurisdiction", String(9), doc="the level that holds this record of the matter"),
        Column("kind", String(16), doc="MatterKind"),
        Column("body", String(16), doc="Body: the congress's (人大) or the CPPCC's (政协)"),
        Column("title", String(200), doc="案由"),
        Column("content", Text),
        Column("lead_name", String(100)),
        Column("lead_id", String(64)),
        Column("leads", JSON, doc="领衔者: the leads (joint ones too) and the leads of matters merged into it"),
        Column("topical", Boolean, default=False, doc="专题类"),
        Column("submitter_ids", JSON, doc="lead, co-signers and those of absorbed matters, in order"),
        Column("submitter_names", Text, doc="the same, names joined with 、"),
        Column("channel", String(32)),
        Column("category", String(50)),
        Column("raised_in", String(9)),
        Column("raised_level", String(16), doc="prefecture | county | township"),
        Column("activity_id", String(64)),
        Column("plan_level", String(9), doc="the level whose plan it was collected for"),
        Column("plan_id", String(64)),
        Column("plan_item", String(64), doc="the plan's item (专题、主题活动、工作项目) it was collected for"),
        Column("raised_by_name", String(200), doc="the enterprise or resident to feed back to"),
        Column("raised_by_contact", String(200)),
        Column("raiser_fed_back_on", Date, doc="the last time the outcome was told to whoever raised it"),
        Column("raiser_feedback_way", String(16), doc="FeedbackWay of that time"),
        Column("raiser_rating", String(24), doc="their satisfaction, if they said"),
        Column("attachments", JSON, doc="[{name, ref}]"),
        Column("collected", Boolean, default=False, doc="raised at this level (not received from another)"),
        Column("status", String(16), doc="MatterStatus"),
        Column("registration_no", String(64)),
        Column("registration_year", Integer),
        Column("registration_number", Integer, doc="its number in the book of its body, kind and year"),
        Column("committee", String(100), doc="the committee it was routed to (本级办理)"),
        Column("merged_into", String(64)),
        Column("absorbed_ids", JSON, doc="matters merged into this one"),
        Column("origin_jurisdiction", String(9), doc="received from (MatterReceived)"),
        Column("origin_matter_id", String(64)),
        Column("direction", String(4), doc="up | down, for a received matter"),
        Column("sent_to", String(9), doc="escalated or sent down to"),
        Column("escalated_to", String(9)),
        Column("escalated_at", UtcDateTime),
        Column("forwarded_matter_id", String(64), doc="its id at the level it was sent to"),
        Column("reply_class", String(8), doc="the reply of the level that handles it (答复), here or reported back"),
        Column("reply_text", Text),
        Column("reply_unit", String(200)),
        Column("reply_round", Integer),
        Column("reply_from", String(9), doc="the level that replied"),
        Column("outcome_summary", Text),
        Column("outcome_class", String(8)),
        Column("outcome_unit", String(200)),
        Column("handled_in_jurisdiction", String(9)),
        Column("closed_at", UtcDateTime),
        Column("raised_at", UtcDateTime, doc="提出日期: when it was raised, wherever that was"),
        Column("submitted_at", UtcDateTime, doc="when this level recorded it"),
        Column("updated_at", UtcDateTime),
        Column("version", Integer, doc="sequence of the last event applied"),
        Index(f"ix_{name}_jurisdiction_submitted", "jurisdiction", "submitted_at"),
        Index(f"ix_{name}_kind_raised", "kind", "raised_at"),
        Index(f"ix_{name}_jurisdiction_status", "jurisdiction", "status"),
        Index(f"ix_{name}_kind_submitted", "kind", "submitted_at"),
    )


class MatterRecords(DocumentProjection):
    """One row per matter, changed by each event as the matter itself changes."""

    @staticmethod
    def _stamp(doc: dict[str, Any], envelope: Envelope, **values: Any) -> None:
        doc.update(values)
        doc["jurisdiction"] = doc["jurisdiction"] or envelope.jurisdiction
        doc["updated_at"] = envelope.occurred_at
        doc["version"] = envelope.sequence

    @staticmethod
    def _take(doc: dict[str, Any], data: MatterData, envelope: Envelope, *, collected: bool) -> None:
        submitters = [*data.leads, *data.co_signers]
        doc.update(
            kind=data.kind.value,
            body=data.body.value,
            title=data.title,
            content=data.content,
            lead_name=data.lead.name,
            lead_id=data.lead.id,
            leads=[s.name for s in data.leads],
            topical=data.topical,
            submitter_ids=[s.id for s in submitters],
            submitter_names=SEPARATOR.join(s.name for s in submitters),
            channel=data.channel.value,
            category=data.category,
            raised_in=data.raised_in,
            raised_level=level_of(data.raised_in),
            activity_id=data.activity_id,
            plan_level=data.plan_item.jurisdiction if data.plan_item else None,
            plan_id=data.plan_item.plan_id if data.plan_item else None,
            plan_item=data.plan_item.item_id if data.plan_item else None,
            raised_by_name=data.raised_by.name if data.raised_by else None,
            raised_by_contact=data.raised_by.contact if data.raised_by else None,
            attachments=[a.model_dump(mode="json") for a in data.attachments],
            collected=collected,
            status=MatterStatus.submitted.value,
            absorbed_ids=[],
            raised_at=data.raised_at or envelope.occurred_at,
            submitted_at=envelope.occurred_at,
        )

    @handles(MatterSubmitted)
    def submitted(self, doc, event: MatterSubmitted, envelope: Envelope) -> None:
        self._take(doc, event.matter, envelope, collected=True)
        self._stamp(doc, envelope)

    @handles(MatterReceived)
    def received(self, doc, event: MatterReceived, envelope: Envelope) -> None:
        self._take(doc, event.matter, envelope, collected=False)
        self._stamp(
            doc,
            envelope,
            origin_jurisdiction=event.origin.jurisdiction,
            origin_matter_id=event.origin.matter_id,
            direction=event.direction,
        )

    @handles(MatterRegistered)
    def registered(self, doc, event: MatterRegistered, envelope: Envelope) -> None:
        status = MatterStatus.registered.value
        self._stamp(
            doc,
            envelope,
            status=status,
            registration_no=event.registration_no,
            registration_year=event.year,
            registration_number=event.number,
        )

    @handles(MatterNotRegistered)
    def not_registered(self, doc, event: MatterNotRegistered, envelope: Envelope) -> None:
        self._stamp(doc, envelope, status=MatterStatus.not_registered.value)

    @handles(MatterConverted)
    def converted(self, doc, event: MatterConverted, envelope: Envelope) -> None:
        self._stamp(doc, envelope, kind=event.to_kind.value)

    @handles(MatterTransferred)
    def transferred(self, doc, event: MatterTransferred, envelope: Envelope) -> None:
        self._stamp(doc, envelope, body=event.to_body.value, kind=event.to_kind.value)

    @handles(MatterMerged)
    def merged(self, doc, event: MatterMerged, envelope: Envelope) -> None:
        self._stamp(doc, envelope, status=MatterStatus.merged.value, merged_into=event.into)

    @handles(MatterAbsorbed)
    def absorbed(self, doc, event: MatterAbsorbed, envelope: Envelope) -> None:
        names = [doc["submitter_names"]] if doc["submitter_names"] else []
        self._stamp(
            doc,
            envelope,
            absorbed_ids=[*(doc["absorbed_ids"] or []), event.merged],
            submitter_ids=[*(doc["submitter_ids"] or []), *(s.id for s in event.submitters)],
            submitter_names=SEPARATOR.join([*names, *(s.name for s in event.submitters)]),
            leads=[*(doc["leads"] or []), *(s.name for s in event.leads or event.submitters[:1])],
        )

    @handles(MatterRouted)
    def routed(self, doc, event: MatterRouted, envelope: Envelope) -> None:
        self._stamp(doc, envelope, status=MatterStatus.routed.value, committee=event.committee)

    @handles(MatterEscalated)
    def escalated(self, doc, event: MatterEscalated, envelope: Envelope) -> None:
        status = MatterStatus.escalated.value
        self._stamp(
            doc, envelope, status=status, sent_to=event.to, escalated_to=event.to, escalated_at=envelope.occurred_at
        )

    @handles(MatterSentDown)
    def sent_down(self, doc, event: MatterSentDown, envelope: Envelope) -> None:
        self._stamp(doc, envelope, status=MatterStatus.sent_down.value, sent_to=event.to)

    @handles(MatterForwarded)
    def forwarded(self, doc, event: MatterForwarded, envelope: Envelope) -> None:
        self._stamp(doc, envelope, forwarded_matter_id=event.to.matter_id)

    @handles(ReplyRecorded)
    def reply_recorded(self, doc, event: ReplyRecorded, envelope: Envelope) -> None:
        reply = event.reply
        self._stamp(
            doc,
            envelope,
            reply_class=reply.reply_class,
            reply_text=reply.text,
            reply_unit=reply.unit,
            reply_round=reply.round,
            reply_from=event.handled_in.jurisdiction,
        )

    @handles(SubmitterFeedbackGiven)
    def feedback_given(self, doc, event: SubmitterFeedbackGiven, envelope: Envelope) -> None:
        self._stamp(doc, envelope)  # on the record (history); the row's version moves on

    @handles(SubmitterFeedbackReceived)
    def feedback_received(self, doc, event: SubmitterFeedbackReceived, envelope: Envelope) -> None:
        self._stamp(doc, envelope)

    @handles(RaiserFedBack)
    def raiser_fed_back(self, doc, event: RaiserFedBack, envelope: Envelope) -> None:
        self._stamp(
            doc,
            envelope,
            raiser_fed_back_on=event.fed_back_on,
            raiser_feedback_way=event.way.value,
            raiser_rating=event.rating,
        )

    @handles(OutcomeRecorded)
    def outcome_recorded(self, doc, event: OutcomeRecorded, envelope: Envelope) -> None:
        outcome = event.outcome
        self._stamp(
            doc,
            envelope,
            status=MatterStatus.closed.value,
            outcome_summary=outcome.summary,
            outcome_class=outcome.reply_class,
            outcome_unit=outcome.unit,
            handled_in_jurisdiction=event.handled_in.jurisdiction,
            closed_at=outcome.closed_at or envelope.occurred_at,
        )


# -- activities --------------------------------------------------------------------------------


def activity_table(name: str, metadata: MetaData) -> Table:
    """The table of a row per activity (视察、调研、座谈、联系群众、主题活动) of a level."""
    return Table(
        name,
        metadata,
        Column("id", String(64), primary_key=True),
        Column("jurisdiction", String(9)),
        Column("kind", String(16), doc="inspection | research | discussion | contact | themed"),
        Column("title", String(200)),
        Column("held_on", Date),
        Column("place", String(200)),
        Column("organiser", String(200)),
        Column("organiser_kind", String(32)),
        Column("deputy_ids", JSON),
        Column("deputy_count", Integer, default=0, doc="人次: the deputies listed, of every level"),
        Column("others_count", Integer, default=0, doc="others listed: 街道选民代表 and the public"),
        Column("by_congress", JSON, doc="{congress level or 'unknown': deputies}"),
        Column("matters_collected", Integer, default=0),
        Column("recorded_at", UtcDateTime),
        Index(f"ix_{name}_jurisdiction_held_on", "jurisdiction", "held_on"),
    )


class ActivityRecords(DocumentProjection):
    """One row per activity; each matter submitted with its ``activity_id`` counts as collected there.

    A matter may name its activity before the activity is recorded (entered later, or by another
    system): the row then starts with the count alone and ``ActivityRecorded`` fills in the rest.
    Matters received from another level are counted where they were collected, not here.
    """

    def key_of(self, envelope: Envelope) -> Any:
        if envelope.event_type == MatterSubmitted.event_type:
            return envelope.payload["matter"]["activity_id"]
        return envelope.aggregate_id

    async def apply_batch(self, session: AsyncSession, envelopes: list[Envelope]) -> None:
        await super().apply_batch(
            session,
            [
                e
                for e in envelopes
                if e.event_type != MatterSubmitted.event_type or e.payload.get("matter", {}).get("activity_id")
            ],
        )

    @handles(ActivityRecorded)
    def recorded(self, doc, event: ActivityRecorded, envelope: Envelope) -> None:
        doc.update(
            jurisdiction=envelope.jurisdiction,
            kind=event.kind,
            title=event.title,
            held_on=event.held_on,
            place=event.place,
            organiser=event.organiser,
            organiser_kind=event.organiser_kind,
            deputy_ids=[d.id for d in event.deputies]
            + [p.id for p in event.participants if p.role == "deputy" and p.id],
            deputy_count=len(event.deputies) + sum(1 for p in event.participants if p.role == "deputy"),
            others_count=sum(1 for p in event.participants if p.role != "deputy"),
            by_congress=_by_congress(event),
            matters_collected=doc["matters_collected"] or 0,
            recorded_at=envelope.occurred_at,
        )

    @handles(MatterSubmitted)
    def matter_collected(self, doc, event: MatterSubmitted, envelope: Envelope) -> None:
        doc["jurisdiction"] = doc["jurisdiction"] or envelope.jurisdiction
        doc["deputy_count"] = doc["deputy_count"] or 0
        doc["matters_collected"] = (doc["matters_collected"] or 0) + 1


def _by_congress(event: ActivityRecorded) -> dict[str, int]:
    counts: dict[str, int] = {}
    if event.deputies:
        counts["unknown"] = len(event.deputies)
    for participant in event.participants:
        if participant.role == "deputy":
            key = participant.congress or "unknown"
            counts[key] = counts.get(key, 0) + 1
    return counts


# -- cases -------------------------------------------------------------------------------------


def bars(values: list[str]) -> str:
    """``["a", "b"]`` → ``"|a|b|"``: a text column a ``LIKE '%|a|%'`` finds a member of, on any database."""
    return "|" + "|".join(values) + "|" if values else ""


def case_table(name: str, metadata: MetaData) -> Table:
    """The table of a row per case, named ``name`` in ``metadata``."""
    return Table(
        name,
        metadata,
        Column("id", String(64), primary_key=True),
        Column("jurisdiction", String(9)),
        Column("matter_id", String(64)),
        Column("kind", String(16)),
        Column("body", String(16), doc="Body: the congress's (人大) or the CPPCC's (政协)"),
        Column("title", String(200), doc="案由"),
        Column("leads", JSON, doc="领衔者' names: joint leads and those of merged matters included"),
        Column("merged", Boolean, default=False, doc="合并"),
        Column("topical", Boolean, default=False, doc="专题类"),
        Column("registration_no", String(64)),
        Column("category", String(50)),
        Column("submitter_ids", JSON),
        Column("submitter_names", Text),
        Column("status", String(16), doc="CaseStatus"),
        Column("committee", String(100)),
        Column("leader", String(100)),
        Column("key", Boolean, default=False, doc="重点督办件"),
        Column("lead_unit_id", String(64)),
        Column("lead_unit_name", String(200)),
        Column("co_unit_ids", JSON),
        Column("co_unit_bars", Text, doc="|id|…: a LIKE '%|id|%' finds a co-unit on any database"),
        Column("co_unit_names", Text),
        Column("round", Integer, default=1),
        Column("due_on", Date),
        Column("due_at", UtcDateTime),
        Column("deadline_rule", String(100)),
        Column("deadline_warnings", JSON),
        Column("fired", JSON, doc="thresholds fired, as threshold@deadline-key"),
        Column("last_threshold", String(16)),
        Column("urgings", Integer, default=0),
        Column("escalated_to_leader", Boolean, default=False),
        Column("pending_extension", Date),
        Column("returns", Integer, default=0),
        Column("reply_class", String(8)),
        Column("reply_on_time", Boolean),
        Column("reply_text", Text, doc="the reply as the unit wrote it"),
        Column("summary", Text, doc="办理落实情况摘要: the reply, then the closed case's summary"),
        Column("feedback", JSON, doc="{submitter id: rating} of the current round"),
        Column("feedback_names", JSON, doc="{submitter name: rating} of the current round"),
        Column("commitments", JSON, doc="[{id, text, due_on, delivered}]"),
        Column("open_commitments", Integer, default=0),
        Column("commitment_due_on", Date, doc="the earliest due date of a commitment still to deliver"),
        Column("commitments_through", Integer, doc="the last year a commitment still to deliver is due in"),
        Column("closed_year", Integer, doc="the year (Asia/Shanghai) it was last closed"),
        Column("supervised", Boolean, default=True, doc="on the 督办清单 (contracts.tracking.under_supervision)"),
        Column("year", Integer, doc="the year it was opened"),
        Column("list_year", Integer, doc="the latest year whose lists carry it (跨年度跟踪)"),
        Column("opened_at", UtcDateTime),
        Column("assigned_at", UtcDateTime),
        Column("signed_at", UtcDateTime, doc="签收 by the lead unit of the current assignment"),
        Column("raised_in", String(9), doc="where its matter was raised"),
        Column("plan_id", String(64), doc="the supervision plan it belongs to (工作方案)"),
        Column("plan_item", String(64), doc="the plan's item (专题、主题活动、工作项目)"),
        Column("replied_at", UtcDateTime),
        Column("closed_at", UtcDateTime),
        Column("delivered_at", UtcDateTime, doc="closed with every commitment delivered: on the 成果清单"),
        Column("updated_at", UtcDateTime),
        Column("version", Integer),
        Index(f"ix_{name}_jurisdiction_status", "jurisdiction", "status"),
        Index(f"ix_{name}_jurisdiction_opened", "jurisdiction", "opened_at"),  # the 督办清单's pages
    )


class CaseRecords(DocumentProjection):
    """One row per case, changed by each event as the case itself changes."""

    @staticmethod
    def _stamp(doc: dict[str, Any], envelope: Envelope, **values: Any) -> None:
        doc.update(values)
        doc["jurisdiction"] = doc["jurisdiction"] or envelope.jurisdiction
        doc["supervised"] = under_supervision(doc["status"], doc["open_commitments"])
        due = sorted(
            date.fromisoformat(c["due_on"])
            for c in doc["commitments"] or []
            if not c["delivered"] and c.get("released", True) and c.get("due_on")
        )
        doc["commitment_due_on"] = due[0] if due else None
        doc["commitments_through"] = due[-1].year if due else None
        doc["updated_at"] = envelope.occurred_at
        doc["version"] = envelope.sequence

    @staticmethod
    def _deadline(doc: dict[str, Any], deadline) -> None:
        doc.update(
            due_on=deadline.due_on,
            due_at=deadline.due_at,
            deadline_rule=deadline.rule,
            deadline_warnings=list(deadline.warnings),
        )

    @handles(CaseOpened)
    def opened(self, doc, event: CaseOpened, envelope: Envelope) -> None:
        self._stamp(
            doc,
            envelope,
            matter_id=event.matter_id,
            kind=event.kind.value,
            body=event.body.value,
            title=event.title,
            leads=[s.name for s in event.leads or event.submitters[:1]],
            merged=event.merged,
            topical=event.topical,
            registration_no=event.registration_no,
            category=event.category,
            submitter_ids=[s.id for s in event.submitters],
            submitter_names=SEPARATOR.join(s.name for s in event.submitters),
            status=CaseStatus.opened.value,
            committee=event.committee,
            raised_in=event.raised_in,
            plan_id=event.plan_item.plan_id if event.plan_item else None,
            plan_item=event.plan_item.item_id if event.plan_item else None,
            year=event.year,
            list_year=event.year,
            round=1,
            fired=[],
            urgings=0,
            feedback={},
            feedback_names={},
            commitments=[],
            open_commitments=0,
            returns=0,
            key=False,
            escalated_to_leader=False,
            opened_at=envelope.occurred_at,
        )

    @handles(CaseAssigned)
    def assigned(self, doc, event: CaseAssigned, envelope: Envelope) -> None:
        self._deadline(doc, event.deadline)
        self._stamp(
            doc,
            envelope,
            status=CaseStatus.assigned.value,
            committee=event.committee,
            leader=event.leader,
            key=event.key,
            lead_unit_id=event.lead_unit.id,
            lead_unit_name=event.lead_unit.name,
            co_unit_ids=[u.id for u in event.co_units],
            co_unit_bars=bars([u.id for u in event.co_units]),
            co_unit_names=SEPARATOR.join(u.name for u in event.co_units),
            assigned_at=event.since,
            signed_at=None,
        )

    @handles(CaseSigned)
    def signed(self, doc, event: CaseSigned, envelope: Envelope) -> None:
        self._stamp(doc, envelope, signed_at=envelope.occurred_at)

    @handles(CaseReturned)
    def returned(self, doc, event: CaseReturned, envelope: Envelope) -> None:
        self._stamp(doc, envelope, status=CaseStatus.returned.value, returns=(doc["returns"] or 0) + 1)

    @handles(ExtensionRequested)
    def extension_requested(self, doc, event: ExtensionRequested, envelope: Envelope) -> None:
        self._stamp(doc, envelope, pending_extension=event.until)

    @handles(ExtensionGranted)
    def extension_granted(self, doc, event: ExtensionGranted, envelope: Envelope) -> None:
        self._deadline(doc, event.deadline)
        self._stamp(doc, envelope, pending_extension=None)

    @handles(ExtensionRefused)
    def extension_refused(self, doc, event: ExtensionRefused, envelope: Envelope) -> None:
        self._stamp(doc, envelope, pending_extension=None)

    @handles(ReplySubmitted)
    def reply_submitted(self, doc, event: ReplySubmitted, envelope: Envelope) -> None:
        pending = [c.model_dump(mode="json") | {"delivered": False} for c in event.commitments]
        self._stamp(
            doc,
            envelope,
            status=CaseStatus.in_review.value,
            replied_at=envelope.occurred_at,
            reply_on_time=event.on_time,
            reply_class=event.reply_class,
            reply_text=event.text,
            summary=event.text,
            commitments=[*(doc["commitments"] or []), *(c | {"released": False} for c in pending)],
        )

    @handles(ReplySentBack)
    def reply_sent_back(self, doc, event: ReplySentBack, envelope: Envelope) -> None:
        status = CaseStatus.assigned if (doc["round"] or 1) == 1 else CaseStatus.rehandling
        kept = [c for c in doc["commitments"] or [] if c.get("released", True)]
        self._stamp(doc, envelope, status=status.value, commitments=kept)

    @handles(ReplyReleased)
    def reply_released(self, doc, event: ReplyReleased, envelope: Envelope) -> None:
        commitments = [{k: v for k, v in c.items() if k != "released"} for c in doc["commitments"] or []]
        self._stamp(
            doc,
            envelope,
            status=CaseStatus.replied.value,
            reply_class=event.reply_class,
            commitments=commitments,
            open_commitments=sum(1 for c in commitments if not c["delivered"]),
        )

    @handles(FeedbackGiven)
    def feedback_given(self, doc, event: FeedbackGiven, envelope: Envelope) -> None:
        rating = event.rating.value
        self._stamp(
            doc,
            envelope,
            feedback={**(doc["feedback"] or {}), event.submitter.id: rating},
            feedback_names={**(doc["feedback_names"] or {}), event.submitter.name: rating},
        )

    @handles(CaseReopened)
    def reopened(self, doc, event: CaseReopened, envelope: Envelope) -> None:
        self._deadline(doc, event.deadline)
        self._stamp(
            doc,
            envelope,
            status=CaseStatus.rehandling.value,
            round=event.round,
            feedback={},
            feedback_names={},
            closed_at=None,
            delivered_at=None,
        )

    @handles(CaseClosed)
    def closed(self, doc, event: CaseClosed, envelope: Envelope) -> None:
        self._stamp(
            doc,
            envelope,
            status=CaseStatus.closed.value,
            reply_class=event.reply_class,
            summary=event.summary,
            lead_unit_id=event.unit.id,
            lead_unit_name=event.unit.name,
            closed_at=envelope.occurred_at,
            closed_year=envelope.occurred_at.astimezone(SHANGHAI).year,
            delivered_at=envelope.occurred_at if not doc["open_commitments"] else None,
        )

    @handles(CommitmentDelivered)
    def commitment_delivered(self, doc, event: CommitmentDelivered, envelope: Envelope) -> None:
        commitments = [
            c | {"delivered": True, "note": event.note} if c["id"] == event.commitment_id else c
            for c in doc["commitments"] or []
        ]
        open_commitments = sum(1 for c in commitments if not c["delivered"])
        delivered = open_commitments == 0 and doc["status"] == CaseStatus.closed.value
        self._stamp(
            doc,
            envelope,
            commitments=commitments,
            open_commitments=open_commitments,
            delivered_at=envelope.occurred_at if delivered else doc["delivered_at"],
        )

    @handles(CommitmentsCarriedOver)
    def carried_over(self, doc, event: CommitmentsCarriedOver, envelope: Envelope) -> None:
        self._stamp(doc, envelope, list_year=event.year)

    @handles(CaseUrged)
    def urged(self, doc, event: CaseUrged, envelope: Envelope) -> None:
        self._stamp(
            doc,
            envelope,
            fired=[*(doc["fired"] or []), f"{event.threshold.value}@{event.deadline.key}"],
            last_threshold=event.threshold.value,
            urgings=(doc["urgings"] or 0) + 1,
        )

    @handles(CaseEscalatedToLeader)
    def escalated_to_leader(self, doc, event: CaseEscalatedToLeader, envelope: Envelope) -> None:
        self._stamp(doc, envelope, escalated_to_leader=True)


__all__ = [
    "SEPARATOR",
    "ActivityRecords",
    "CaseRecords",
    "MatterRecords",
    "activity_table",
    "bars",
    "case_table",
    "level_of",
    "matter_table",
]
