"""Tracking's command handlers: load, decide (domain.py), append. Each reads like DOMAIN.md.

Who may do what lives here, with the commands: only committee staff (工委) assign, decide
extensions, review, close and reopen; only the units a case is assigned to report on it, and
only its lead unit (主办) returns it, asks for more time and replies; only its co-units (协办)
give input and countersign; only its submitters give feedback, or staff on their behalf from
a paper form. A unit's staff member's token names their unit (``unit``); a development token of a unit
names the unit itself as its subject.

Deadlines are computed here from the deployment's policy (``deadlines.py``) and the injected
clock, then handed to the pure domain.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from contracts.envelope import SHANGHAI, Envelope, utcnow
from contracts.intake import MatterRouted, SubmitterFeedbackReceived
from contracts.jurisdictions import JurisdictionRegistry
from contracts.tracking import (
    AssignCase,
    CaseOpened,
    CaseReopened,
    CaseStatus,
    CloseCase,
    Deadline,
    DecideExtension,
    DeliverCommitment,
    GiveCoUnitInput,
    GiveFeedback,
    GroupActivityRecorded,
    Rating,
    RecordGroupActivity,
    ReopenCase,
    ReportProgress,
    RequestExtension,
    ReturnCase,
    ReviewReply,
    SignCase,
    SubmitReply,
    Threshold,
    UrgeCase,
)
from services.runtime.bus.reactions import Reactions, reacts_to
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.commands import execute
from services.runtime.es.eventstore import EventStore
from services.runtime.es.ids import id_deriver
from services.runtime.http.auth import STAFF, Guarded, Principal, Role

from .deadlines import (
    DeadlinePolicy,
    DeadlineRules,
    Span,
    WorkingCalendar,
    deadline_after,
    deadline_on,
    shift_after,
    shift_before,
)
from .domain import Case, DeputyGroup, Plan

log = logging.getLogger("duban.tracking")

#: A stable id from its parts: a redelivered message or a second sweeper maps to the same id.
derived_id = id_deriver("0b3c7a44-3f0e-4c55-9d0f-61a2b7f0e6a3")  # namespace of tracking's derived ids


@dataclass
class TrackingConfig:
    """What a deployment configures: deadlines, the working-day calendar, the reply classes."""

    policy: DeadlinePolicy = field(default_factory=DeadlinePolicy)
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    #: The reply classes, best first (A 已解决或采纳, B 正在解决或列入计划, C 留作参考; some places add D).
    reply_classes: tuple[str, ...] = ("A", "B", "C")
    #: Whether the committee reviews a reply before release when the assignment does not say.
    review_replies: bool = False


class TrackingHandlers(Guarded):
    """The commands of one level's tracking."""

    guarded = "办理件"
    #: The level's plans (``plans.PlanHandlers``), set by the service: the API reaches them here.
    plans: Any = None

    def __init__(
        self,
        store: EventStore,
        registry: JurisdictionRegistry,
        config: TrackingConfig | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.here = store.jurisdiction
        self.config = config or TrackingConfig()
        self.clock = clock
        self.rules: DeadlineRules = self.config.policy.rules_for(registry.get(self.here).level.value, self.here)

    # -- who may do what ---------------------------------------------------------------
    def _unit(self, principal: Principal) -> str:
        self._in_scope(principal)
        if not principal.has(Role.unit):
            raise NotAllowed("仅承办单位可以办理")
        return principal.unit or principal.id

    # -- deadlines ---------------------------------------------------------------------
    def deadline(self, start: datetime, span: Span) -> Deadline:
        """The deadline ``span`` after ``start``, as stored on the case (warnings logged by deadlines.py)."""
        computed = deadline_after(start, span, self.config.calendar)
        return Deadline(
            due_on=computed.due_on, due_at=computed.due_at, rule=span.describe(), warnings=list(computed.warnings)
        )

    def answer_deadline(self, since: datetime, kind: str | None, due_on: date | None = None) -> Deadline:
        """The deadline of an assignment at ``since``: the kind's span, or the day a plan or staff set
        (before the next congress session, say): after the day of assignment and at most
        ``max_plan_due`` from it."""
        if due_on is None:
            return self.deadline(since, self.rules.answer_for(kind or "suggestion"))
        start = since.astimezone(SHANGHAI).date()
        latest = deadline_after(since, self.rules.max_plan_due, self.config.calendar).due_on
        if due_on <= start:
            raise DomainError(f"办理期限须晚于交办日期（{start.isoformat()}）", field="due_on", code="due_too_early")
        if due_on > latest:
            raise DomainError(
                f"办理期限不能晚于 {latest.isoformat()}（交办后最长{self.rules.max_plan_due.describe()}）",
                field="due_on",
                code="due_too_late",
            )
        fixed = deadline_on(due_on, rule=f"限{due_on.month}月{due_on.day}日前")
        return Deadline(due_on=fixed.due_on, due_at=fixed.due_at, rule=fixed.rule)

    def thresholds(self, deadline: Deadline) -> dict[Threshold, datetime]:
        """When each urging threshold of ``deadline`` starts."""
        calendar = self.config.calendar
        return {
            Threshold.due_soon: shift_before(deadline, self.rules.due_soon, calendar),
            Threshold.overdue: deadline.due_at,
            Threshold.long_overdue: shift_after(deadline, self.rules.long_overdue, calendar),
        }

    # -- opening, from intake's events ---------------------------------------------------
    async def open_case(self, routed: MatterRouted, envelope: Envelope) -> Case:
        """A matter routed to this level (本级办理) opens its case; a redelivery changes nothing."""
        year = envelope.occurred_at.astimezone(SHANGHAI).year
        opened = CaseOpened(
            matter_id=envelope.aggregate_id,
            kind=routed.kind,
            body=routed.body,
            title=routed.title,
            submitters=routed.submitters,
            leads=routed.leads,
            merged=routed.merged,
            topical=routed.topical,
            registration_no=routed.registration_no,
            category=routed.category,
            committee=routed.committee,
            year=year,
            opened_on=envelope.occurred_at.astimezone(SHANGHAI).date(),
            raised_in=routed.raised_in,
            plan_item=routed.plan_item,
        )
        case, _ = await execute(
            self.store,
            Case,
            envelope.aggregate_id,
            lambda c: c.open(opened),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, "opened", str(i)) for i in range(n)],
        )
        return case

    # -- 4. assigned -------------------------------------------------------------------
    async def plan_due_on(self, case_id: str) -> date | None:
        """The due date the plan sets for the item a case belongs to (this level's plans), if any and
        still ahead (a day already past leaves the kind's span)."""
        case = await self.store.load(Case, case_id)
        link = case.plan_item
        if link is None or link.jurisdiction != self.here:
            return None
        plan = await self.store.load(Plan, link.plan_id)
        item = plan.data.item(link.item_id) if plan.data is not None else None
        today = self.clock().astimezone(SHANGHAI).date()
        return item.due_on if item is not None and item.due_on is not None and item.due_on > today else None

    async def assignment_preview(self, case_id: str, principal: Principal) -> dict:
        """What 交办 now would set: the deadline by the case's kind and the return window, for
        staff to see before they confirm."""
        self._staff(principal, "交办")
        case = await self.store.load(Case, case_id)
        if not case.exists:
            raise DomainError(f"办理件 {case_id} 不存在", field="case_id", code="not_found")
        now = self.clock()
        deadline = self.answer_deadline(now, case.kind, await self.plan_due_on(case_id))
        return {
            "case_id": case_id,
            "due_on": deadline.due_on.isoformat(),
            "rule": deadline.rule,
            "warnings": list(deadline.warnings),
            "return_until": self.deadline(now, self.rules.return_window).due_at.isoformat(),
        }

    async def assign(self, command: AssignCase, principal: Principal) -> Case:
        """交办, or reassignment after a return: the deadline runs from now by the case's kind, or
        from the day of a paper 交办单 entered later (``assigned_on``)."""
        self._staff(principal, "交办")
        now = self.clock()
        today = now.astimezone(SHANGHAI).date()
        if command.assigned_on is not None:
            if command.assigned_on > today:
                raise DomainError("交办日期不能晚于今天", field="assigned_on", code="assigned_in_future")
            if command.assigned_on < today:
                now = datetime.combine(command.assigned_on, time(9, 0), tzinfo=SHANGHAI)

        due_on = command.due_on or await self.plan_due_on(command.case_id)

        def decide(case: Case):
            if command.assigned_on is not None and case.opened_on and command.assigned_on < case.opened_on:
                raise DomainError(
                    f"交办日期不能早于本件受理日期（{case.opened_on.isoformat()}）",
                    field="assigned_on",
                    code="assigned_before_opened",
                )
            return case.assign(
                lead_unit=command.lead_unit,
                co_units=command.co_units,
                committee=command.committee,
                leader=command.leader,
                key=command.key,
                review_reply=self.config.review_replies if command.review_reply is None else command.review_reply,
                since=now,
                deadline=self.answer_deadline(now, case.kind, due_on),
                return_until=self.deadline(now, self.rules.return_window).due_at,
            )

        return await self._run(command.case_id, principal, decide, Role.committee)

    async def urge_by_staff(self, command: UrgeCase, principal: Principal) -> Case:
        """催办 by committee staff."""
        self._staff(principal, "催办")
        return await self._run(command.case_id, principal, lambda c: c.urge(command.note), Role.committee)

    async def sign(self, command: SignCase, principal: Principal) -> Case:
        """签收: the lead unit takes the case as its own (no return after it)."""
        unit = self._unit(principal)
        return await self._run(command.case_id, principal, lambda c: c.sign(unit), Role.unit)

    async def return_case(self, command: ReturnCase, principal: Principal) -> Case:
        unit = self._unit(principal)
        now = self.clock()
        return await self._run(
            command.case_id,
            principal,
            lambda c: c.return_case(unit, command.reason, command.suggested_unit, now),
            Role.unit,
        )

    async def request_extension(self, command: RequestExtension, principal: Principal) -> Case:
        """延期: no later than the maximum answer time (six months for a suggestion) from the
        start of handling of this round."""
        unit = self._unit(principal)

        def decide(case: Case):
            latest = None
            if case.since is not None:
                latest = deadline_after(case.since, self.rules.max_answer, self.config.calendar).due_on
                if case.deadline is not None and case.deadline.due_on > latest:  # a deadline the plan set
                    latest = deadline_after(case.since, self.rules.max_plan_due, self.config.calendar).due_on
            return case.request_extension(unit, command.until, command.reason, latest)

        return await self._run(command.case_id, principal, decide, Role.unit)

    async def decide_extension(self, command: DecideExtension, principal: Principal) -> Case:
        self._staff(principal, "审批延期")

        def decide(case: Case):
            deadline = None
            if command.grant and case.pending_extension is not None:
                until = case.pending_extension
                granted = deadline_on(until, rule=f"延期至{until.isoformat()}")
                deadline = Deadline(due_on=granted.due_on, due_at=granted.due_at, rule=granted.rule)
            return case.decide_extension(command.grant, deadline, command.note)

        return await self._run(command.case_id, principal, decide, Role.committee)

    # -- 5. handled --------------------------------------------------------------------
    async def report_progress(self, command: ReportProgress, principal: Principal) -> Case:
        unit = self._unit(principal)
        return await self._run(
            command.case_id, principal, lambda c: c.report_progress(unit, command.text, command.percent), Role.unit
        )

    async def co_unit_input(self, command: GiveCoUnitInput, principal: Principal) -> Case:
        unit = self._unit(principal)
        return await self._run(
            command.case_id, principal, lambda c: c.co_unit_input(unit, command.text, command.countersign), Role.unit
        )

    async def reply(self, command: SubmitReply, principal: Principal) -> Case:
        unit = self._unit(principal)
        now = self.clock()
        return await self._run(
            command.case_id,
            principal,
            lambda c: c.reply(
                unit,
                reply_class=command.reply_class,
                text=command.text,
                reason=command.reason,
                commitments=command.commitments,
                classes=self.config.reply_classes,
                now=now,
            ),
            Role.unit,
        )

    async def review(self, command: ReviewReply, principal: Principal) -> Case:
        self._staff(principal, "审核答复")
        return await self._run(
            command.case_id,
            principal,
            lambda c: c.review(command.approve, command.reply_class, command.comment, self.config.reply_classes),
            Role.committee,
        )

    # -- 6. feedback -------------------------------------------------------------------
    async def feedback(self, command: GiveFeedback, principal: Principal) -> Case:
        """A submitter's own feedback, or staff entering a paper form (``submitter_id``)."""
        self._in_scope(principal)
        if command.submitter_id is not None and command.submitter_id != principal.id:
            if not principal.has(*STAFF):
                raise NotAllowed("仅工委工作人员可以代为录入纸质反馈")
            submitter_id, on_paper, role = command.submitter_id, True, Role.committee
        else:
            if not principal.has(Role.deputy):
                raise NotAllowed("只有本件的提出人可以反馈意见")
            submitter_id, on_paper, role = principal.id, False, Role.deputy
        now = self.clock()
        rehandling = self.deadline(now, self.rules.rehandling)
        return await self._run(
            command.case_id,
            principal,
            lambda c: c.give_feedback(submitter_id, command.rating, command.comment, on_paper, rehandling, now),
            role,
        )

    async def feedback_from_another_level(self, received: SubmitterFeedbackReceived, envelope: Envelope) -> None:
        """A submitter's own feedback (not a paper form), given at the level where they raised the
        matter and arrived through intake. Refused now (the case reopened or closed meanwhile), it
        stays on the matter's record at both levels and is logged, not retried for ever."""
        case_id = received.handled_in.matter_id
        now = self.clock()
        rehandling = self.deadline(now, self.rules.rehandling)
        rating = Rating(received.rating)
        try:
            await execute(
                self.store,
                Case,
                case_id,
                lambda c: (
                    c.give_feedback(received.submitter.id, rating, received.comment, False, rehandling, now)
                    if c.exists
                    else []
                ),
                actor=envelope.actor,
                correlation_id=envelope.correlation_id,
                causation_id=envelope.event_id,
                event_ids=lambda n: [derived_id(envelope.event_id, "feedback", str(i)) for i in range(n)],
            )
        except DomainError as refused:
            log.warning(
                "feedback from another level not taken",
                extra={"case_id": case_id, "given_in": received.given_in, "reason": refused.message},
            )

    async def close(self, command: CloseCase, principal: Principal) -> Case:
        self._staff(principal, "办结")
        return await self._run(command.case_id, principal, lambda c: c.close(), Role.committee)

    async def reopen(self, command: ReopenCase, principal: Principal) -> Case:
        self._staff(principal, "重新交办")
        now = self.clock()
        deadline = self.deadline(now, self.rules.rehandling)
        return await self._run(
            command.case_id, principal, lambda c: c.reopen(command.reason, deadline, now), Role.committee
        )

    async def reopen_after_evaluation(self, case_id: str, reason: str, envelope: Envelope) -> Case | None:
        """Supervision reopened by an evaluation's result (测评不满意): once per result event,
        and only for a case that was answered (one still being handled stays as it is). "Once"
        holds for a delivery of the same result at any time: the case's history is asked whether
        this result already reopened it, since a redelivery after the case was re-handled and
        closed again (a dead letter replayed, past the stream's de-duplication window) would
        otherwise find it closed and reopen it a second time."""
        history = await self.store.history(case_id)
        if any(e.causation_id == envelope.event_id and e.event_type == CaseReopened.event_type for e in history):
            return None
        now = self.clock()
        deadline = self.deadline(now, self.rules.rehandling)

        def decide(case: Case):
            if not case.exists or case.status not in (CaseStatus.replied, CaseStatus.closed):
                return []
            return case.reopen(reason, deadline, now)

        case, _ = await execute(
            self.store,
            Case,
            case_id,
            decide,
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, case_id, "reopen", str(i)) for i in range(n)],
        )
        return case if case.exists else None

    async def deliver_commitment(self, command: DeliverCommitment, principal: Principal) -> Case:
        """The lead unit (or staff) records a commitment as delivered (承诺事项已落实)."""
        self._in_scope(principal)
        if principal.has(*STAFF):
            role = Role.committee
        else:
            unit = self._unit(principal)
            case = await self.store.load(Case, command.case_id)
            if case.exists and not case.is_lead(unit):
                raise NotAllowed("仅主办单位或工委可以登记承诺事项落实情况")
            role = Role.unit
        return await self._run(
            command.case_id, principal, lambda c: c.deliver(command.commitment_id, command.note), role
        )

    # -- 7. supervised: the sweep ------------------------------------------------------
    async def urge(self, case_id: str, now: datetime | None = None) -> int:
        """Fire every threshold of the case's current deadline reached by ``now`` (once each).

        Safe to run from any number of sweepers at once: the aggregate records what fired, the
        version check lets one writer win, and the event ids derive from case, threshold and
        deadline so even a retried append is stored once."""
        now = now or self.clock()

        def decide(case: Case):
            if case.deadline is None:
                return []
            return case.due_thresholds(self.thresholds(case.deadline), now)

        def ids(case_deadline_key: str) -> Callable[[int], Sequence[str]]:
            return lambda n: [derived_id(case_id, "urge", case_deadline_key, str(i)) for i in range(n)]

        case = await self.store.load(Case, case_id)
        key = f"{case.round}|{case.deadline.key if case.deadline else ''}|{len(case.fired)}"
        _, commit = await execute(self.store, Case, case_id, decide, retries=20, event_ids=ids(key))
        return len(commit.envelopes) if commit is not None else 0

    async def carry_over(self, case_id: str, now: datetime | None = None) -> int:
        """跨年度跟踪: a closed case's open commitments go onto this year's lists."""
        year = (now or self.clock()).astimezone(SHANGHAI).year
        _, commit = await execute(
            self.store,
            Case,
            case_id,
            lambda c: c.carry_over(year),
            retries=20,
            event_ids=lambda n: [derived_id(case_id, "carry", str(year), str(i)) for i in range(n)],
        )
        return 1 if commit is not None else 0

    # -- deputy groups (seed 004): their activities ----------------------------------
    async def record_group_activity(self, command: RecordGroupActivity, principal: Principal) -> DeputyGroup:
        self._in_scope(principal)
        if not principal.has(*STAFF, Role.deputy, Role.liaison_station):
            raise NotAllowed("仅代表小组、联络站或工委可以登记小组活动")
        event = GroupActivityRecorded(
            activity_id=uuid.uuid4().hex,
            held_on=command.held_on,
            kind=command.kind,
            title=command.title,
            participants=command.participants,
        )
        group, _ = await execute(
            self.store,
            DeputyGroup,
            command.group_id,
            lambda g: g.record_activity(event),
            actor=principal.actor(Role.committee, Role.deputy, Role.liaison_station),
        )
        return group

    # ------------------------------------------------------------------------------------
    async def _run(self, case_id: str, principal: Principal, decide, role: Role) -> Case:
        """A decision on a case; staff's (``Role.committee``) by the staff of the case's body only."""

        def checked(case: Case):
            if role is Role.committee and case.exists:
                self._body_staff(principal, case.body, "办理")
            return decide(case)

        case, _ = await execute(self.store, Case, case_id, checked, actor=principal.actor(role))
        return case


class RoutedMatters(Reactions):
    """Intake's events at this level: a matter routed here (本级办理) opens its case."""

    def __init__(self, handlers: TrackingHandlers) -> None:
        self.handlers = handlers

    @reacts_to(MatterRouted)
    async def open_case(self, routed: MatterRouted, envelope: Envelope) -> None:
        await self.handlers.open_case(routed, envelope)
        log.info("case opened", extra={"matter_id": envelope.aggregate_id})

    @reacts_to(SubmitterFeedbackReceived)
    async def feedback_from_another_level(self, received: SubmitterFeedbackReceived, envelope: Envelope) -> None:
        """A submitter's feedback given where they raised the matter, arrived here."""
        if received.handled_in.jurisdiction == self.handlers.here:
            await self.handlers.feedback_from_another_level(received, envelope)
