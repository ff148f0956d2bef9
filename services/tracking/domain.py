"""Tracking's aggregates: the Case, the supervision plan, the deputy group. Pure: no I/O.

Command methods check the rules of DOMAIN.md ("The life of a matter", steps 4–7) and return the
events to store; ``@applies`` methods are the only place state changes. Deadlines and the
current time are computed by the caller (``handlers.py``) and passed in, so the rules here are
the same under a controlled clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from contracts.bodies import Body
from contracts.intake import PlanItemLink, Submitter
from contracts.plans import (
    PlanCreated,
    PlanData,
    PlanDuty,
    PlanDutyDone,
    PlanDutyUrged,
    PlanItem,
    PlanItemEvaluated,
    PlanMilestoneRecorded,
    PlanQuestionSent,
    PlanRevised,
    duty_holder,
)
from contracts.tracking import (
    STATUS_NAMES,
    CaseAssigned,
    CaseClosed,
    CaseEscalatedToLeader,
    CaseEvaluated,
    CaseOpened,
    CaseReopened,
    CaseReturned,
    CaseSigned,
    CaseStatus,
    CaseUrged,
    CaseUrgedByStaff,
    Commitment,
    CommitmentDelivered,
    CommitmentsCarriedOver,
    CoUnitInputGiven,
    Countersigned,
    Deadline,
    DeputyGroupRegistered,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    FeedbackGiven,
    GroupActivityRecorded,
    ProgressReported,
    Rating,
    ReplyReleased,
    ReplySentBack,
    ReplySubmitted,
    Threshold,
    Unit,
    under_supervision,
)
from services.runtime.es.aggregate import Aggregate, DomainError, NotAllowed, applies

#: States in which the units are handling the case (and its deadline runs).
HANDLING = (CaseStatus.assigned, CaseStatus.rehandling)


class Case(Aggregate):
    """A matter handled at this level, from assignment (交办) to closure (办结) and beyond, while
    commitments of its reply are still open."""

    context = "tracking"
    aggregate_type = "case"

    status: CaseStatus | None = None
    matter_id: str | None = None
    kind: str | None = None
    #: The body whose case it is (人大 / 政协): its staff handle it.
    body: Body = Body.congress
    title: str | None = None
    submitters: list[Submitter] = []
    committee: str | None = None
    year: int | None = None
    list_year: int | None = None
    opened_on: date | None = None
    lead_unit: Unit | None = None
    #: 签收 by the lead unit of this assignment (a new assignment after a return is signed anew).
    signed: bool = False
    co_units: list[Unit] = []
    leader: str | None = None
    key: bool = False
    review_reply: bool = False
    deadline: Deadline | None = None
    since: datetime | None = None
    return_until: datetime | None = None
    round: int = 1
    countersigned: list[str] = []
    pending_extension: date | None = None
    draft: ReplySubmitted | None = None
    reply_class: str | None = None
    reply_text: str | None = None
    replied_on_time: bool = False
    feedback: dict[str, Rating] = {}
    commitments: dict[str, Commitment] = {}
    delivered: list[str] = []
    fired: list[str] = []
    evaluations: list[str] = []  # sessions whose result is recorded
    plan_item: PlanItemLink | None = None

    # -- checks ------------------------------------------------------------------------
    def _require(self, *allowed: CaseStatus, action: str) -> None:
        if not self.exists:
            raise DomainError(f"办理件 {self.id} 不存在", field="case_id", code="not_found")
        if self.status not in allowed:
            names = "、".join(STATUS_NAMES[s] for s in allowed)
            raise DomainError(
                f"办理件当前状态为「{STATUS_NAMES[self.status]}」，不能{action}（仅限：{names}）",
                field="case_id",
                code="invalid_transition",
            )

    def is_lead(self, unit_id: str) -> bool:
        return self.lead_unit is not None and self.lead_unit.id == unit_id

    def is_co_unit(self, unit_id: str) -> bool:
        return any(u.id == unit_id for u in self.co_units)

    def unit(self, unit_id: str) -> Unit | None:
        if self.is_lead(unit_id):
            return self.lead_unit
        return next((u for u in self.co_units if u.id == unit_id), None)

    def _lead_only(self, unit_id: str, action: str) -> Unit:
        if not self.exists:
            raise DomainError(f"办理件 {self.id} 不存在", field="case_id", code="not_found")
        if not self.is_lead(unit_id):
            who = "协办单位" if self.is_co_unit(unit_id) else "未交办的单位"
            raise NotAllowed(f"{who}不能{action}，仅主办单位可以")
        assert self.lead_unit is not None
        return self.lead_unit

    @property
    def open_commitments(self) -> list[Commitment]:
        return [c for c in self.commitments.values() if c.id not in self.delivered]

    @property
    def supervised(self) -> bool:
        """On the 督办清单 (``contracts.tracking.under_supervision``)."""
        return self.exists and under_supervision(self.status, len(self.open_commitments))

    # -- 4. assigned -------------------------------------------------------------------
    def open(self, event: CaseOpened) -> list[CaseOpened]:
        return [] if self.exists else [event]

    def assign(
        self,
        *,
        lead_unit: Unit,
        co_units: Sequence[Unit],
        committee: str,
        leader: str | None,
        key: bool,
        review_reply: bool,
        since: datetime,
        deadline: Deadline,
        return_until: datetime,
    ) -> list[CaseAssigned]:
        self._require(CaseStatus.opened, CaseStatus.returned, action="交办")
        ids = [lead_unit.id, *(u.id for u in co_units)]
        if len(ids) != len(set(ids)):
            raise DomainError("主办单位和协办单位不能重复", field="co_units", code="duplicate_unit")
        if key and not leader:
            raise DomainError("重点督办件须指定领衔督办领导", field="leader", code="leader_required")
        return [
            CaseAssigned(
                lead_unit=lead_unit,
                co_units=list(co_units),
                committee=committee,
                leader=leader,
                key=key,
                review_reply=review_reply,
                since=since,
                deadline=deadline,
                return_until=return_until,
                reassignment=self.status == CaseStatus.returned,
            )
        ]

    def urge(self, note: str) -> list[CaseUrgedByStaff]:
        """催办 by staff: while the case is being handled."""
        self._require(*HANDLING, action="催办")
        return [CaseUrgedByStaff(note=note)]

    def sign(self, unit_id: str) -> list[CaseSigned]:
        """签收: once; a case being handled again (重新办理) was signed for in its first round."""
        unit = self._lead_only(unit_id, "签收")
        self._require(*HANDLING, action="签收")
        return [] if self.signed else [CaseSigned(unit=unit)]

    def return_case(self, unit_id: str, reason: str, suggested_unit: str | None, now: datetime) -> list[CaseReturned]:
        unit = self._lead_only(unit_id, "退回")
        self._require(CaseStatus.assigned, action="退回")
        if self.signed:
            raise DomainError("已签收的办理件不能退回", field="case_id", code="invalid_transition")
        if self.round > 1:
            raise DomainError("重新办理的办理件不能退回", field="case_id", code="invalid_transition")
        assert self.return_until is not None
        if now > self.return_until:
            raise DomainError("已超过退回期限，不能退回", field="case_id", code="return_window_passed")
        return [CaseReturned(unit=unit, reason=reason, suggested_unit=suggested_unit)]

    def request_extension(
        self, unit_id: str, until: date, reason: str, latest: date | None
    ) -> list[ExtensionRequested]:
        unit = self._lead_only(unit_id, "申请延期")
        self._require(*HANDLING, action="申请延期")
        assert self.deadline is not None
        if self.pending_extension is not None:
            raise DomainError("已有待审批的延期申请", field="until", code="extension_pending")
        if until <= self.deadline.due_on:
            raise DomainError("延期后的期限须晚于当前期限", field="until", code="not_later")
        if latest is not None and until > latest:
            raise DomainError(f"延期不能超过最长办理期限（{latest.isoformat()}）", field="until", code="too_late")
        return [ExtensionRequested(unit=unit, until=until, reason=reason)]

    def decide_extension(self, grant: bool, deadline: Deadline | None, note: str | None) -> list:
        self._require(*HANDLING, action="审批延期")
        if self.pending_extension is None:
            raise DomainError("没有待审批的延期申请", field="case_id", code="no_extension")
        if grant:
            assert deadline is not None
            return [ExtensionGranted(deadline=deadline, note=note)]
        return [ExtensionRefused(reason=note or "不予延期")]

    # -- 5. handled --------------------------------------------------------------------
    def report_progress(self, unit_id: str, text: str, percent: int | None) -> list[ProgressReported]:
        if not self.exists:
            raise DomainError(f"办理件 {self.id} 不存在", field="case_id", code="not_found")
        unit = self.unit(unit_id)
        if unit is None:
            raise NotAllowed("只有交办给本单位的办理件才能报送进展")
        if not self.supervised:
            raise DomainError("办理件已办结，无需报送进展", field="case_id", code="invalid_transition")
        return [ProgressReported(unit=unit, text=text, percent=percent)]

    def co_unit_input(self, unit_id: str, text: str, countersign: bool) -> list:
        if not self.exists:
            raise DomainError(f"办理件 {self.id} 不存在", field="case_id", code="not_found")
        unit = next((u for u in self.co_units if u.id == unit_id), None)
        if unit is None:
            raise NotAllowed("只有本件的协办单位可以提出协办意见或会签")
        self._require(*HANDLING, action="提出协办意见")
        events: list = [CoUnitInputGiven(unit=unit, text=text)]
        if countersign and unit.id not in self.countersigned:
            events.append(Countersigned(unit=unit))
        return events

    def reply(
        self,
        unit_id: str,
        *,
        reply_class: str,
        text: str,
        reason: str | None,
        commitments: Sequence[Commitment],
        classes: Sequence[str],
        now: datetime,
    ) -> list:
        """答复 by the lead unit, countersigned by every co-unit; released at once unless reviewed."""
        unit = self._lead_only(unit_id, "答复")
        self._require(*HANDLING, action="答复")
        if reply_class not in classes:
            raise DomainError(f"答复类别须为 {'/'.join(classes)} 之一", field="reply_class", code="unknown_reply_class")
        if reply_class != classes[0] and not reason:
            raise DomainError(f"{reply_class}类答复须说明理由", field="reason", code="reason_required")
        missing = [u.name for u in self.co_units if u.id not in self.countersigned]
        if missing:
            raise DomainError(f"协办单位尚未会签：{'、'.join(missing)}", field="case_id", code="countersign_missing")
        ids = [c.id for c in commitments]
        if len(ids) != len(set(ids)) or set(ids) & set(self.commitments):
            raise DomainError("承诺事项编号重复", field="commitments", code="duplicate_commitment")
        assert self.deadline is not None
        submitted = ReplySubmitted(
            unit=unit,
            reply_class=reply_class,
            text=text,
            reason=reason,
            commitments=list(commitments),
            addressed_to=self.submitters,
            round=self.round,
            on_time=now < self.deadline.due_at,  # due_at is the exclusive end of the last day
        )
        if self.review_reply:
            return [submitted]
        return [submitted, *self._release(submitted, reply_class, None)]

    def review(self, approve: bool, reply_class: str | None, comment: str | None, classes: Sequence[str]) -> list:
        """督办审核: approve (maybe changing the class) and release, or send back to the unit."""
        self._require(CaseStatus.in_review, action="审核答复")
        assert self.draft is not None
        if not approve:
            return [ReplySentBack(comment=comment or "请修改后重新答复")]
        final = reply_class or self.draft.reply_class
        if final not in classes:
            raise DomainError(f"答复类别须为 {'/'.join(classes)} 之一", field="reply_class", code="unknown_reply_class")
        return self._release(self.draft, final, comment)

    def _release(self, draft: ReplySubmitted, reply_class: str, comment: str | None) -> list:
        previous = draft.reply_class if reply_class != draft.reply_class else None
        events: list = [
            ReplyReleased(reply_class=reply_class, previous_class=previous, comment=comment, round=self.round)
        ]
        if self.round > 1:  # the answer after re-handling is final (still supervised while commitments are open)
            open_after = len(self.open_commitments) + len(draft.commitments)
            events.append(self._closed(reply_class, draft.text, draft.on_time, open_after))
        return events

    def _closed(self, reply_class: str, summary: str, on_time: bool, open_commitments: int) -> CaseClosed:
        assert self.lead_unit is not None
        return CaseClosed(
            reply_class=reply_class,
            summary=summary,
            unit=self.lead_unit,
            round=self.round,
            on_time=on_time,
            open_commitments=open_commitments,
        )

    # -- 6. feedback -------------------------------------------------------------------
    def give_feedback(
        self,
        submitter_id: str,
        rating: Rating,
        comment: str | None,
        on_paper: bool,
        rehandling: Deadline | None,
        now: datetime,
    ) -> list:
        """满意 / 基本满意 / 不满意 of one submitter. 不满意 on the first answer reopens the case
        (``rehandling`` is its new deadline); when every submitter is satisfied it closes."""
        if not self.exists:
            raise DomainError(f"办理件 {self.id} 不存在", field="case_id", code="not_found")
        submitter = next((s for s in self.submitters if s.id == submitter_id), None)
        if submitter is None:
            raise NotAllowed("只有本件的提出人可以反馈意见")
        final_round = self.round > 1 and self.status == CaseStatus.closed
        if self.status != CaseStatus.replied and not final_round:
            self._require(CaseStatus.replied, action="反馈意见")
        if submitter_id in self.feedback:
            raise DomainError(f"{submitter.name}已反馈过本次答复", field="rating", code="feedback_given")
        given = FeedbackGiven(submitter=submitter, rating=rating, comment=comment, on_paper=on_paper, round=self.round)
        if final_round:
            return [given]
        if rating == Rating.dissatisfied:
            assert rehandling is not None
            reason = f"{submitter.name}不满意" + (f"：{comment}" if comment else "")
            return [given, CaseReopened(reason=reason, since=now, deadline=rehandling, round=self.round + 1)]
        if len(self.feedback) + 1 == len(self.submitters):
            assert self.reply_class is not None and self.reply_text is not None
            return [
                given,
                self._closed(self.reply_class, self.reply_text, self.replied_on_time, len(self.open_commitments)),
            ]
        return [given]

    def close(self) -> list[CaseClosed]:
        """Committee staff close a replied case whose feedback is not coming."""
        self._require(CaseStatus.replied, action="办结")
        assert self.reply_class is not None and self.reply_text is not None
        return [self._closed(self.reply_class, self.reply_text, self.replied_on_time, len(self.open_commitments))]

    def reopen(self, reason: str, deadline: Deadline, now: datetime) -> list[CaseReopened]:
        """Supervision reopened (an evaluation below the bar, or staff's decision)."""
        self._require(CaseStatus.replied, CaseStatus.closed, action="重新办理")
        return [CaseReopened(reason=reason, since=now, deadline=deadline, round=self.round + 1)]

    def deliver(self, commitment_id: str, note: str) -> list[CommitmentDelivered]:
        if not self.exists:
            raise DomainError(f"办理件 {self.id} 不存在", field="case_id", code="not_found")
        if commitment_id not in self.commitments:
            raise DomainError("没有该承诺事项", field="commitment_id", code="not_found")
        if commitment_id in self.delivered:
            return []
        return [CommitmentDelivered(commitment_id=commitment_id, note=note)]

    # -- 7. supervised -----------------------------------------------------------------
    def due_thresholds(self, instants: dict[Threshold, datetime], now: datetime) -> list:
        """催办: every threshold of the current deadline reached by ``now`` and not fired yet.

        ``instants`` says when each threshold starts for this deadline. Idempotent by state:
        a threshold that fired for this deadline never fires again, whoever sweeps."""
        if self.status not in HANDLING or self.deadline is None:
            return []
        events: list = []
        for threshold in Threshold:
            at = instants.get(threshold)
            if at is None or now < at or self.fired_key(threshold) in self.fired:
                continue
            events.append(CaseUrged(threshold=threshold, deadline=self.deadline, round=self.round))
            if self.key and self.leader and threshold == Threshold.overdue:
                events.append(CaseEscalatedToLeader(leader=self.leader, threshold=threshold, deadline=self.deadline))
        return events

    def fired_key(self, threshold: Threshold) -> str:
        assert self.deadline is not None
        return f"{threshold.value}@{self.deadline.key}"

    def carry_over(self, year: int) -> list[CommitmentsCarriedOver]:
        """跨年度跟踪: commitments still open when ``year`` begins go onto that year's lists."""
        if self.status != CaseStatus.closed or not self.open_commitments:
            return []
        if self.list_year is not None and self.list_year >= year:
            return []
        return [CommitmentsCarriedOver(year=year, commitment_ids=[c.id for c in self.open_commitments])]

    # -- state -------------------------------------------------------------------------
    @applies(CaseOpened)
    def _opened(self, event: CaseOpened) -> None:
        self.status = CaseStatus.opened
        self.matter_id = event.matter_id
        self.kind = event.kind.value
        self.body = event.body
        self.title = event.title
        self.submitters = list(event.submitters)
        self.committee = event.committee
        self.year = self.list_year = event.year
        self.opened_on = event.opened_on
        self.plan_item = event.plan_item

    @applies(CaseAssigned)
    def _assigned(self, event: CaseAssigned) -> None:
        self.status = CaseStatus.assigned
        self.lead_unit = event.lead_unit
        self.co_units = list(event.co_units)
        self.committee = event.committee
        self.leader = event.leader
        self.key = event.key
        self.review_reply = event.review_reply
        self.deadline = event.deadline
        self.since = event.since
        self.return_until = event.return_until
        self.countersigned = []
        self.signed = False

    @applies(CaseUrgedByStaff)
    def _urged_by_staff(self, event: CaseUrgedByStaff) -> None:
        pass  # a fact for the record and the lead unit's notice; nothing of the state changes

    @applies(CaseSigned)
    def _signed(self, event: CaseSigned) -> None:
        self.signed = True

    @applies(CaseReturned)
    def _returned(self, event: CaseReturned) -> None:
        self.status = CaseStatus.returned

    @applies(ExtensionRequested)
    def _extension_requested(self, event: ExtensionRequested) -> None:
        self.pending_extension = event.until

    @applies(ExtensionGranted)
    def _extension_granted(self, event: ExtensionGranted) -> None:
        self.pending_extension = None
        self.deadline = event.deadline

    @applies(ExtensionRefused)
    def _extension_refused(self, event: ExtensionRefused) -> None:
        self.pending_extension = None

    @applies(ProgressReported)
    def _progress(self, event: ProgressReported) -> None:
        pass

    @applies(CoUnitInputGiven)
    def _co_unit_input(self, event: CoUnitInputGiven) -> None:
        pass

    @applies(Countersigned)
    def _countersigned(self, event: Countersigned) -> None:
        self.countersigned = [*self.countersigned, event.unit.id]

    @applies(ReplySubmitted)
    def _reply_submitted(self, event: ReplySubmitted) -> None:
        self.status = CaseStatus.in_review
        self.draft = event

    @applies(ReplySentBack)
    def _reply_sent_back(self, event: ReplySentBack) -> None:
        self.status = CaseStatus.assigned if self.round == 1 else CaseStatus.rehandling
        self.draft = None

    @applies(ReplyReleased)
    def _reply_released(self, event: ReplyReleased) -> None:
        assert self.draft is not None
        self.status = CaseStatus.replied
        self.reply_class = event.reply_class
        self.reply_text = self.draft.text
        self.replied_on_time = self.draft.on_time
        self.commitments = {**self.commitments, **{c.id: c for c in self.draft.commitments}}
        self.draft = None

    @applies(FeedbackGiven)
    def _feedback(self, event: FeedbackGiven) -> None:
        self.feedback = {**self.feedback, event.submitter.id: event.rating}

    @applies(CaseReopened)
    def _reopened(self, event: CaseReopened) -> None:
        self.status = CaseStatus.rehandling
        self.round = event.round
        self.since = event.since
        self.deadline = event.deadline
        self.feedback = {}
        self.countersigned = []

    @applies(CaseClosed)
    def _closed_applied(self, event: CaseClosed) -> None:
        self.status = CaseStatus.closed

    @applies(CommitmentDelivered)
    def _delivered(self, event: CommitmentDelivered) -> None:
        self.delivered = [*self.delivered, event.commitment_id]

    @applies(CommitmentsCarriedOver)
    def _carried_over(self, event: CommitmentsCarriedOver) -> None:
        self.list_year = event.year

    @applies(CaseUrged)
    def _urged(self, event: CaseUrged) -> None:
        self.fired = [*self.fired, f"{event.threshold.value}@{event.deadline.key}"]

    @applies(CaseEscalatedToLeader)
    def _escalated(self, event: CaseEscalatedToLeader) -> None:
        pass

    def record_evaluation(self, event: CaseEvaluated) -> list[CaseEvaluated]:
        """An evaluation's result, once per session."""
        if not self.exists or event.session_id in self.evaluations:
            return []
        return [event]

    @applies(CaseEvaluated)
    def _evaluated(self, event: CaseEvaluated) -> None:
        self.evaluations = [*self.evaluations, event.session_id]


class DeputyGroup(Aggregate):
    """A deputy group (代表小组) supervising work items, with its group activities (≥3 required)."""

    context = "tracking"
    aggregate_type = "deputy_group"

    name: str | None = None
    activities: list[str] = []

    def register(self, event: DeputyGroupRegistered) -> list[DeputyGroupRegistered]:
        return [] if self.exists else [event]

    def record_activity(self, event: GroupActivityRecorded) -> list[GroupActivityRecorded]:
        if not self.exists:
            raise DomainError(f"代表小组 {self.id} 不存在", field="group_id", code="not_found")
        return [] if event.activity_id in self.activities else [event]

    @applies(DeputyGroupRegistered)
    def _registered(self, event: DeputyGroupRegistered) -> None:
        self.name = event.name

    @applies(GroupActivityRecorded)
    def _activity(self, event: GroupActivityRecorded) -> None:
        self.activities = [*self.activities, event.activity_id]


class Plan(Aggregate):
    """A supervision plan (工作方案): its items and phases as last revised, the milestones reported,
    the duties done or urged, the questions sent and the evaluations recorded on its items."""

    context = "tracking"
    aggregate_type = "plan"

    data: PlanData | None = None
    progress: dict[str, bool] = {}  # "<item>/<milestone>" -> met
    done: list[str] = []  # "<duty>" or "<duty>@<group>"
    fired: list[str] = []  # "<duty>@<group>@<threshold>"
    questions: list[str] = []  # case ids
    evaluated: list[str] = []  # "<item>@<session>"

    def _need(self) -> PlanData:
        if not self.exists or self.data is None:
            raise DomainError(f"工作方案 {self.id} 不存在", field="plan_id", code="not_found")
        return self.data

    def item(self, item_id: str) -> PlanItem:
        item = self._need().item(item_id)
        if item is None:
            raise DomainError(f"工作方案中没有项目 {item_id}", field="item_id", code="not_found")
        return item

    def create(self, data: PlanData) -> list[PlanCreated]:
        if self.exists:
            if self.data == data:
                return []
            raise DomainError(f"工作方案 {self.id} 已存在，修改请用修订", field="plan_id", code="exists")
        return [PlanCreated(plan=data)]

    def revise(self, data: PlanData) -> list[PlanRevised]:
        old = self._need()
        changes = plan_changes(old, data)
        return [PlanRevised(plan=data, changes=changes)] if changes else []

    def record_milestone(self, item_id: str, key: str, text: str, met: bool, unit: str | None) -> list:
        item = self.item(item_id)
        if not any(m.key == key for m in item.milestones):
            raise DomainError(f"项目 {item_id} 没有形象进度节点 {key}", field="milestone", code="no_milestone")
        return [PlanMilestoneRecorded(item_id=item_id, milestone=key, text=text, met=met, unit=unit)]

    def duty(self, key: str) -> PlanDuty:
        duty = next((d for _, d in self._need().duties() if d.key == key), None)
        if duty is None:
            raise DomainError(f"工作方案中没有工作节点 {key}", field="duty", code="not_found")
        return duty

    def mark_done(self, key: str, group_id: str | None, done_on: date, note: str | None) -> list:
        duty = self.duty(key)
        if duty.per_group and group_id is None:
            raise DomainError(f"“{duty.title}”由各小组分别完成，请指明小组", field="group_id", code="group_required")
        if group_id is not None and (not duty.per_group or self._need().group(group_id) is None):
            raise DomainError(f"小组 {group_id} 不承担“{duty.title}”", field="group_id", code="not_found")
        if duty_holder(key, group_id) in self.done:
            return []
        return [PlanDutyDone(duty=key, group_id=group_id, done_on=done_on, note=note)]

    def urge(self, event: PlanDutyUrged) -> list[PlanDutyUrged]:
        mark = f"{duty_holder(event.duty, event.group_id)}@{event.threshold}"
        return [] if not self.exists or mark in self.fired else [event]

    def send_question(self, event: PlanQuestionSent) -> list[PlanQuestionSent]:
        if event.item_id is not None:
            self.item(event.item_id)
        return [] if event.case_id in self.questions else [event]

    def evaluate(self, event: PlanItemEvaluated) -> list[PlanItemEvaluated]:
        self.item(event.item_id)
        return [] if f"{event.item_id}@{event.session_id}" in self.evaluated else [event]

    @applies(PlanCreated)
    def _created(self, event: PlanCreated) -> None:
        self.data = event.plan

    @applies(PlanRevised)
    def _revised(self, event: PlanRevised) -> None:
        self.data = event.plan

    @applies(PlanMilestoneRecorded)
    def _milestone(self, event: PlanMilestoneRecorded) -> None:
        self.progress = {**self.progress, f"{event.item_id}/{event.milestone}": event.met}

    @applies(PlanDutyDone)
    def _done(self, event: PlanDutyDone) -> None:
        self.done = [*self.done, duty_holder(event.duty, event.group_id)]

    @applies(PlanDutyUrged)
    def _urged(self, event: PlanDutyUrged) -> None:
        self.fired = [*self.fired, f"{duty_holder(event.duty, event.group_id)}@{event.threshold}"]

    @applies(PlanQuestionSent)
    def _question(self, event: PlanQuestionSent) -> None:
        self.questions = [*self.questions, event.case_id]

    @applies(PlanItemEvaluated)
    def _evaluated(self, event: PlanItemEvaluated) -> None:
        self.evaluated = [*self.evaluated, f"{event.item_id}@{event.session_id}"]


def plan_changes(old: PlanData, new: PlanData) -> list[str]:
    """What a revision changes, as people read it: 新增项目 x, 修改项目 y, 删除项目 z, 阶段, 参与小组…"""
    changes: list[str] = []
    for field_name, label in (
        ("title", "标题"),
        ("year", "年度"),
        ("source", "文号"),
        ("body", "正文"),
        ("motion_id", "所督办议案"),
    ):
        if getattr(old, field_name) != getattr(new, field_name):
            changes.append(f"修改{label}")
    if old.phases != new.phases:
        changes.append("修改阶段与工作节点")
    if old.groups != new.groups:
        changes.append("修改参与小组")
    before = {i.id: i for i in old.items}
    after = {i.id: i for i in new.items}
    changes += [f"新增项目 {i}" for i in after if i not in before]
    changes += [f"修改项目 {i}" for i in after if i in before and before[i] != after[i]]
    changes += [f"删除项目 {i}" for i in before if i not in after]
    return changes
