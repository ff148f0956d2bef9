"""Intake's aggregates: the Matter, the registration book, the activity. Pure: no I/O.

Command methods check the rules of DOMAIN.md ("The life of a matter", steps 1–3 and 8) and
return the events to store; ``@applies`` methods are the only place state changes.
"""

from __future__ import annotations

from datetime import date

from contracts.bodies import BODY_NAMES, Body, default_body, kind_allowed
from contracts.intake import (
    KIND_NAMES,
    STATUS_NAMES,
    ActivityRecorded,
    FeedbackWay,
    HandlingReply,
    Hop,
    MatterAbsorbed,
    MatterConverted,
    MatterData,
    MatterEscalated,
    MatterForwarded,
    MatterKind,
    MatterMerged,
    MatterNotRegistered,
    MatterReceived,
    MatterRegistered,
    MatterRouted,
    MatterSentDown,
    MatterStatus,
    MatterSubmitted,
    MatterTransferred,
    Outcome,
    OutcomeRecorded,
    RaiserFedBack,
    RegistrationNumberAssigned,
    ReplyRecorded,
    Submitter,
    SubmitterFeedbackGiven,
    SubmitterFeedbackReceived,
)
from contracts.jurisdictions import JurisdictionRegistry
from services.runtime.es.aggregate import Aggregate, DomainError, NotAllowed, applies

#: States from which a matter can still be reviewed, merged or sent on.
OPEN_FOR_REVIEW = (MatterStatus.submitted, MatterStatus.registered)
KIND_ABBREVIATIONS = {
    MatterKind.motion: "议",
    MatterKind.suggestion: "建",
    MatterKind.proposal: "提",
    MatterKind.problem: "问",
    MatterKind.demand: "诉",
}


class Matter(Aggregate):
    """A matter raised at, or received by, this level (事项)."""

    context = "intake"
    aggregate_type = "matter"

    status: MatterStatus | None = None
    data: MatterData | None = None
    submitters: list[Submitter] = []
    #: 领衔者: the leads (joint ones too) and those of the matters merged into it, in order.
    leads: list[Submitter] = []
    registration_no: str | None = None
    registration_year: int | None = None
    merged_into: str | None = None
    merged: list[str] = []
    origin: Hop | None = None
    direction: str | None = None
    path: list[Hop] = []
    sent_to: str | None = None
    forwarded_as: Hop | None = None
    routed: bool = False
    outcome: Outcome | None = None
    handled_in: Hop | None = None
    idempotency_key: str | None = None
    #: How many times the outcome was told to whoever raised the problem (向企业/群众反馈).
    raiser_fed_back: int = 0
    #: The reply of the level that handles the matter (here, or reported back from there).
    reply: HandlingReply | None = None
    reply_from: Hop | None = None

    # -- decisions ---------------------------------------------------------------------
    def _require(self, *allowed: MatterStatus, action: str) -> None:
        if not self.exists:
            raise DomainError(f"事项 {self.id} 不存在", field="matter_id", code="not_found")
        if self.status not in allowed:
            names = "、".join(STATUS_NAMES[s] for s in allowed)
            now = STATUS_NAMES.get(self.status, self.status) if self.status else "未知"
            raise DomainError(
                f"事项当前状态为{now}，不能{action}（仅限{names}的事项）",
                field="matter_id",
                code="invalid_transition",
            )

    def submit(self, data: MatterData, *, idempotency_key: str | None = None) -> list[MatterSubmitted]:
        if self.exists:
            raise DomainError("事项已存在", field="matter_id", code="exists")
        return [MatterSubmitted(matter=data, idempotency_key=idempotency_key)]

    def receive(self, data: MatterData, origin: Hop, direction: str, path: list[Hop], reason: str) -> list:
        if self.exists:
            return []  # a redelivered hand-over: already taken in
        return [MatterReceived(matter=data, origin=origin, direction=direction, path=path, reason=reason)]

    def check_registrable(self) -> None:
        self._require(MatterStatus.submitted, action="立案")

    def register(self, year: int, number: int, prefix: str) -> list[MatterRegistered]:
        """立案 with ``number`` of its body's book: ``{prefix}{kind}〔{year}〕{number}号`` (温岭建〔2026〕3号;
        the prefix is the level's short name for the congress, the CPPCC's own for its 提案)."""
        self.check_registrable()
        assert self.data is not None
        registration_no = f"{prefix}{KIND_ABBREVIATIONS[self.data.kind]}〔{year}〕{number}号"
        return [MatterRegistered(year=year, number=number, registration_no=registration_no)]

    def transfer(self, to_body: Body, to_kind: MatterKind | None, reason: str) -> list[MatterTransferred]:
        """转交 to the level's other body before it is registered: a CPPCC 提案 that is really for
        the congress becomes a 建议 there (and the other way round); other kinds stay what they are."""
        self._require(MatterStatus.submitted, action="转交")
        assert self.data is not None
        if to_body is self.data.body:
            raise DomainError(f"事项已属于{BODY_NAMES[to_body]}", field="to_body", code="no_change")
        kind = to_kind or _TRANSFERRED_KIND.get((self.data.kind, to_body), self.data.kind)
        if not kind_allowed(to_body, kind):
            raise DomainError(f"{BODY_NAMES[to_body]}不受理{KIND_NAMES[kind]}", field="to_kind", code="wrong_kind")
        return [
            MatterTransferred(
                from_body=self.data.body, to_body=to_body, from_kind=self.data.kind, to_kind=kind, reason=reason
            )
        ]

    def reject(self, reason: str) -> list[MatterNotRegistered]:
        self._require(MatterStatus.submitted, action="不予立案")
        return [MatterNotRegistered(reason=reason)]

    def convert(self, to_kind: MatterKind, reason: str) -> list[MatterConverted]:
        self._require(*OPEN_FOR_REVIEW, action="转换类别")
        assert self.data is not None
        if to_kind == self.data.kind:
            raise DomainError(f"事项已是{KIND_NAMES[to_kind]}", field="to_kind", code="no_change")
        if not kind_allowed(self.data.body, to_kind):
            body = BODY_NAMES[self.data.body]
            raise DomainError(
                f"{body}不受理{KIND_NAMES[to_kind]}；需要时请转交另一机关", field="to_kind", code="wrong_kind"
            )
        return [MatterConverted(from_kind=self.data.kind, to_kind=to_kind, reason=reason)]

    def merge_into(self, target: Matter, reason: str | None) -> list[MatterMerged]:
        self._require(*OPEN_FOR_REVIEW, action="并案")
        if target.id == self.id:
            raise DomainError("不能与自身并案", field="into", code="invalid")
        if not target.exists or target.status not in OPEN_FOR_REVIEW:
            raise DomainError("并入的事项须为待审查或已立案", field="into", code="invalid_transition")
        assert self.data is not None and target.data is not None
        if target.data.body is not self.data.body:
            raise DomainError("不同机关（人大、政协）的事项不能并案", field="into", code="other_body")
        return [MatterMerged(into=target.id, reason=reason)]

    def absorb(self, other: Matter) -> list[MatterAbsorbed]:
        if other.id in self.merged:
            return []  # already absorbed (a retried merge)
        self._require(*OPEN_FOR_REVIEW, action="并入其他事项")
        if other.id == self.id:
            raise DomainError("不能与自身并案", field="into", code="invalid")
        known = {s.id for s in self.submitters}
        leads = [s for s in other.leads if s.id not in {lead.id for lead in self.leads}]
        return [
            MatterAbsorbed(merged=other.id, submitters=[s for s in other.submitters if s.id not in known], leads=leads)
        ]

    def route(self, committee: str | None, note: str | None) -> list[MatterRouted]:
        self._require(MatterStatus.registered, action="本级办理")
        assert self.data is not None
        return [
            MatterRouted(
                kind=self.data.kind,
                body=self.data.body,
                title=self.data.title,
                submitters=self.submitters,
                leads=self.leads,
                merged=bool(self.merged),
                topical=self.data.topical,
                registration_no=self.registration_no,
                category=self.data.category,
                committee=committee,
                note=note,
                raised_in=self.data.raised_in,
                plan_item=self.data.plan_item,
            )
        ]

    def escalate(self, registry: JurisdictionRegistry, here: str, reason: str) -> list[MatterEscalated]:
        self._require(*OPEN_FOR_REVIEW, action="上报")
        parent = registry.parent_of(here)
        if parent is None:
            raise DomainError("本级没有上级，无法上报", field="matter_id", code="no_parent")
        return [MatterEscalated(to=parent.code, reason=reason)]

    def send_down(self, registry: JurisdictionRegistry, here: str, to: str, reason: str) -> list[MatterSentDown]:
        self._require(*OPEN_FOR_REVIEW, action="交下级办理")
        if to not in registry or registry.parent_of(to) is None or registry.parent_of(to).code != here:
            raise DomainError(f"{to} 不是本级的下级", field="to", code="not_a_child")
        return [MatterSentDown(to=to, reason=reason)]

    def forwarded(self, to: Hop) -> list[MatterForwarded]:
        if self.forwarded_as == to:
            return []
        self._require(MatterStatus.escalated, MatterStatus.sent_down, action="记录去向")
        return [MatterForwarded(to=to)]

    def record_outcome(self, outcome: Outcome, here: Hop) -> list[OutcomeRecorded]:
        """The outcome of handling at this level (a staff command, or tracking's closed case)."""
        self._require(MatterStatus.routed, action="记录办理结果")
        return [OutcomeRecorded(outcome=outcome, handled_in=here)]

    def case_closed(self, outcome: Outcome, here: Hop) -> list[OutcomeRecorded]:
        """Tracking closed this level's case of the matter: its outcome is the matter's. A
        redelivery changes nothing; a case reopened and closed again records its new outcome."""
        if self.outcome is not None and self.outcome == outcome:
            return []
        self._require(MatterStatus.routed, MatterStatus.closed, action="记录办理结果")
        return [OutcomeRecorded(outcome=outcome, handled_in=here)]

    def outcome_reported_back(self, outcome: Outcome, handled_in: Hop) -> list[OutcomeRecorded]:
        if self.outcome is not None and self.handled_in == handled_in:
            return []  # redelivered
        self._require(MatterStatus.escalated, MatterStatus.sent_down, action="接收办理结果")
        return [OutcomeRecorded(outcome=outcome, handled_in=handled_in, reported_back=True)]

    def feed_back_to_raiser(
        self, way: FeedbackWay, rating: str | None, note: str | None, on: date
    ) -> list[RaiserFedBack]:
        """向企业/群众反馈: only a problem raised by someone, once its outcome is known (at the
        level it was raised, whoever handled it). Recorded again each time it is done."""
        self._require(MatterStatus.closed, action="向反映主体反馈")
        if self.data is None or self.data.raised_by is None:
            raise DomainError("该事项没有记录反映主体（企业或群众）", field="matter_id", code="no_raiser")
        return [RaiserFedBack(way=way, rating=rating, note=note, fed_back_on=on)]

    # -- replies down, feedback up (a submitter answers where they raised the matter) ----
    def reply_released(self, reply: HandlingReply, here: Hop) -> list[ReplyRecorded]:
        """This level's case released its reply: recorded on the matter, so the relay reports it
        back to the levels it came from. A redelivery changes nothing."""
        if self.reply == reply and self.reply_from == here:
            return []
        return [ReplyRecorded(reply=reply, handled_in=here)]

    def reply_reported_back(self, reply: HandlingReply, handled_in: Hop) -> list[ReplyRecorded]:
        if self.reply == reply and self.reply_from == handled_in:
            return []  # redelivered
        self._require(MatterStatus.escalated, MatterStatus.sent_down, action="接收答复")
        return [ReplyRecorded(reply=reply, handled_in=handled_in, reported_back=True)]

    def give_feedback_on_reply(
        self, submitter_id: str, rating: str, comment: str | None
    ) -> list[SubmitterFeedbackGiven]:
        """A submitter's feedback on the reply of the level that handles the matter, given here."""
        self._require(MatterStatus.escalated, MatterStatus.sent_down, action="反馈满意度")
        if self.reply is None or self.reply_from is None:
            raise DomainError("办理单位尚未答复，暂不能反馈满意度", field="matter_id", code="no_reply_yet")
        submitter = next((s for s in self.submitters if s.id == submitter_id), None)
        if submitter is None:
            raise NotAllowed("只有本件的提出人可以反馈意见")
        return [
            SubmitterFeedbackGiven(
                submitter=submitter,
                rating=rating,
                comment=comment,
                round=self.reply.round,
                handled_in=self.reply_from,
            )
        ]

    def feedback_received(
        self, submitter: Submitter, rating: str, comment: str | None, given_in: str, handled_in: Hop, round: int
    ) -> list[SubmitterFeedbackReceived]:
        if not self.exists:
            raise DomainError(f"事项 {self.id} 不存在", field="matter_id", code="not_found")
        return [
            SubmitterFeedbackReceived(
                submitter=submitter,
                rating=rating,
                comment=comment,
                round=round,
                given_in=given_in,
                handled_in=handled_in,
            )
        ]

    # -- state -------------------------------------------------------------------------
    @applies(MatterSubmitted)
    def _submitted(self, event: MatterSubmitted) -> None:
        self.status = MatterStatus.submitted
        self.data = event.matter
        self.submitters = [*event.matter.leads, *event.matter.co_signers]
        self.leads = event.matter.leads
        self.idempotency_key = event.idempotency_key

    @applies(MatterReceived)
    def _received(self, event: MatterReceived) -> None:
        self.status = MatterStatus.submitted
        self.data = event.matter
        self.submitters = [*event.matter.leads, *event.matter.co_signers]
        self.leads = event.matter.leads
        self.origin = event.origin
        self.direction = event.direction
        self.path = [*event.path, event.origin]

    @applies(MatterRegistered)
    def _registered(self, event: MatterRegistered) -> None:
        self.status = MatterStatus.registered
        self.registration_no = event.registration_no
        self.registration_year = event.year

    @applies(MatterNotRegistered)
    def _not_registered(self, event: MatterNotRegistered) -> None:
        self.status = MatterStatus.not_registered

    @applies(MatterConverted)
    def _converted(self, event: MatterConverted) -> None:
        assert self.data is not None
        self.data = self.data.model_copy(update={"kind": event.to_kind})

    @applies(MatterTransferred)
    def _transferred(self, event: MatterTransferred) -> None:
        assert self.data is not None
        self.data = self.data.model_copy(update={"body": event.to_body, "kind": event.to_kind})

    @applies(MatterMerged)
    def _merged(self, event: MatterMerged) -> None:
        self.status = MatterStatus.merged
        self.merged_into = event.into

    @applies(MatterAbsorbed)
    def _absorbed(self, event: MatterAbsorbed) -> None:
        self.merged = [*self.merged, event.merged]
        self.submitters = [*self.submitters, *event.submitters]
        self.leads = [*self.leads, *(event.leads or event.submitters[:1])]

    @applies(MatterRouted)
    def _routed(self, event: MatterRouted) -> None:
        self.status = MatterStatus.routed
        self.routed = True

    @applies(MatterEscalated)
    def _escalated(self, event: MatterEscalated) -> None:
        self.status = MatterStatus.escalated
        self.sent_to = event.to

    @applies(MatterSentDown)
    def _sent_down(self, event: MatterSentDown) -> None:
        self.status = MatterStatus.sent_down
        self.sent_to = event.to

    @applies(MatterForwarded)
    def _forwarded(self, event: MatterForwarded) -> None:
        self.forwarded_as = event.to

    @applies(OutcomeRecorded)
    def _outcome(self, event: OutcomeRecorded) -> None:
        self.status = MatterStatus.closed
        self.outcome = event.outcome
        self.handled_in = event.handled_in

    @applies(RaiserFedBack)
    def _raiser_fed_back(self, event: RaiserFedBack) -> None:
        self.raiser_fed_back += 1

    @applies(ReplyRecorded)
    def _reply(self, event: ReplyRecorded) -> None:
        self.reply = event.reply
        self.reply_from = event.handled_in

    @applies(SubmitterFeedbackGiven)
    def _feedback_given(self, event: SubmitterFeedbackGiven) -> None:
        pass  # on the record; the relay sends it on its way

    @applies(SubmitterFeedbackReceived)
    def _feedback_received(self, event: SubmitterFeedbackReceived) -> None:
        pass  # on the record; tracking (here) takes it, or the relay passes it on


#: What a matter becomes when transferred to the other body (提案 ↔ 建议).
_TRANSFERRED_KIND = {
    (MatterKind.proposal, Body.congress): MatterKind.suggestion,
    (MatterKind.suggestion, Body.cppcc): MatterKind.proposal,
    (MatterKind.motion, Body.cppcc): MatterKind.proposal,
}


class RegistrationBook(Aggregate):
    """The numbers of one jurisdiction, body, kind and year: unique and gapless (立案编号)."""

    context = "intake"
    aggregate_type = "registration_book"
    has_journey = False  # shared by every registration of its year (see Aggregate.has_journey)

    assigned: dict[str, int] = {}
    last_number: int = 0

    @staticmethod
    def id_for(body: Body, kind: MatterKind, year: int) -> str:
        """The book of a kind in the body it belongs to keeps the id it had when a level had one
        body (``regbook-suggestion-2026``, the 提案's ``regbook-proposal-2026``): numbers go on
        where they were. A body's book of a kind both take (问题, 企业诉求) is its own."""
        if body is default_body(kind):
            return f"regbook-{kind.value}-{year}"
        return f"regbook-{body.value}-{kind.value}-{year}"

    def assign(self, matter_id: str) -> list[RegistrationNumberAssigned]:
        if matter_id in self.assigned:
            return []  # a retried registration keeps its number
        return [RegistrationNumberAssigned(matter_id=matter_id, number=self.last_number + 1)]

    @applies(RegistrationNumberAssigned)
    def _assigned(self, event: RegistrationNumberAssigned) -> None:
        self.assigned = {**self.assigned, event.matter_id: event.number}
        self.last_number = event.number


class Activity(Aggregate):
    """An activity where deputies collect matters (视察、调研、座谈、联系群众、主题活动)."""

    context = "intake"
    aggregate_type = "activity"

    kind: str | None = None
    title: str | None = None
    held_on: date | None = None

    def record(self, event: ActivityRecorded) -> list[ActivityRecorded]:
        if self.exists:
            raise DomainError("活动已记录", code="exists")
        return [event]

    @applies(ActivityRecorded)
    def _recorded(self, event: ActivityRecorded) -> None:
        self.kind, self.title, self.held_on = event.kind, event.title, event.held_on
