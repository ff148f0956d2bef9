"""Tracking's language: cases under supervision (督办), their deadlines, replies and feedback, and
the government's key work items supervised by deputy groups (seed 004).

A *case* (办理件) is opened when intake routes a registered matter to this level (本级办理); its
id is the matter's id, so each level has at most one case per matter. Its events are stored on
``duban.evt.tracking.<jurisdiction>.<case_id>``; work items and deputy groups on the same stream
under their own ids. The loop is seed 001 四(二): 交办 → 落实 → 反馈, then 测评.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .bodies import Body
from .events import Command, Event, command, event
from .intake import ID_PATTERN, KIND_NAMES, PlanItemLink, Submitter

MAX_TEXT = 20_000


class CaseKind(StrEnum):
    """What a case is: a matter's kind when intake routed a matter here, or what tracking opened
    itself: a question of a special inquiry (专题询问) sent to a unit in writing, or the
    rectification (整改) a plan item rated below the bar calls for."""

    motion = "motion"
    suggestion = "suggestion"
    proposal = "proposal"
    problem = "problem"
    demand = "demand"
    inquiry = "inquiry"  # 询问问题
    rectification = "rectification"  # 整改


CASE_KIND_NAMES: dict[str, str] = {
    **{kind.value: name for kind, name in KIND_NAMES.items()},
    CaseKind.inquiry.value: "询问问题",
    CaseKind.rectification.value: "整改",
}

#: The kinds tracking opens itself, without a matter of intake behind them.
OWN_KINDS = frozenset({CaseKind.inquiry.value, CaseKind.rectification.value})


class CaseStatus(StrEnum):
    opened = "opened"  # 待交办
    assigned = "assigned"  # 办理中
    returned = "returned"  # 已退回，待重新交办
    in_review = "in_review"  # 答复待审核
    replied = "replied"  # 已答复，待反馈
    rehandling = "rehandling"  # 重新办理
    closed = "closed"  # 已办结


def under_supervision(status: CaseStatus | str | None, open_commitments: int | None) -> bool:
    """督办清单's rule, the one place it is written: a case is on the supervision list while it
    is not closed, and after it closed while commitments of its answer are still to deliver
    (跨年度跟踪). Tracking's cases and every list of them ask this."""
    return status is not None and (status != CaseStatus.closed or bool(open_commitments))


STATUS_NAMES = {
    CaseStatus.opened: "待交办",
    CaseStatus.assigned: "办理中",
    CaseStatus.returned: "已退回",
    CaseStatus.in_review: "答复待审核",
    CaseStatus.replied: "已答复",
    CaseStatus.rehandling: "重新办理",
    CaseStatus.closed: "已办结",
}


class Rating(StrEnum):
    """A submitter's feedback on a reply (征询意见)."""

    satisfied = "satisfied"  # 满意
    basically_satisfied = "basically_satisfied"  # 基本满意
    dissatisfied = "dissatisfied"  # 不满意


RATING_NAMES = {Rating.satisfied: "满意", Rating.basically_satisfied: "基本满意", Rating.dissatisfied: "不满意"}


class Threshold(StrEnum):
    """The urging thresholds of a deadline (催办)."""

    due_soon = "due_soon"  # 即将到期
    overdue = "overdue"  # 已超期
    long_overdue = "long_overdue"  # 严重超期


THRESHOLD_NAMES = {Threshold.due_soon: "即将到期", Threshold.overdue: "已超期", Threshold.long_overdue: "严重超期"}


class Unit(BaseModel):
    """A handling unit (承办单位): a department, court, procuratorate or township government.

    ``id`` is the principal id the unit signs in with; ``name`` is what people read."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)


class Deadline(BaseModel):
    """A deadline as computed when it was set: the Shanghai day, the instant it ends (UTC), the
    rule it came from and any warning about how it was counted (a year without a holiday
    schedule is counted by weekends only, and says so here)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    due_on: date = Field(description="the last day, in Asia/Shanghai")
    due_at: AwareDatetime = Field(description="the instant the deadline passes (UTC)")
    rule: str = Field(max_length=100, description="e.g. 3个月, 15个工作日")
    warnings: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        """Identifies this deadline among a case's deadlines: each threshold fires once per key."""
        return self.due_at.isoformat()


class Commitment(BaseModel):
    """What a B or C reply promises to deliver later (承诺事项), tracked until delivered, across years."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=ID_PATTERN)
    text: str = Field(min_length=1, max_length=2000)
    due_on: date | None = None


# -- case events -------------------------------------------------------------------------------


@event("tracking.CaseOpened", 2)
class CaseOpened(Event):
    """A matter routed to this level (intake's ``MatterRouted``) opened a case here."""

    matter_id: str
    kind: CaseKind
    body: Body = Field(description="the body whose case it is (人大 / 政协): whose staff handle it, who signs")
    title: str
    submitters: list[Submitter]
    leads: list[Submitter] = Field(default_factory=list, description="领衔者, joint and merged ones included")
    merged: bool = Field(default=False, description="合并")
    topical: bool = Field(default=False, description="专题类")
    registration_no: str | None = None
    category: str | None = None
    committee: str | None = None
    year: int = Field(description="the Asia/Shanghai year it was opened: the year of its lists")
    opened_on: date | None = Field(default=None, description="the Asia/Shanghai day it was opened")
    raised_in: str | None = Field(default=None, description="where its matter was raised (the 督办清单's 乡镇 filter)")
    plan_item: PlanItemLink | None = Field(default=None, description="the plan item it belongs to, if any")
    content: str | None = Field(default=None, description="the text of a case tracking opened itself (a question)")


@event("tracking.CaseAssigned")
class CaseAssigned(Event):
    """交办: one lead unit, any co-units, the responsible committee, a supervising leader, a deadline."""

    lead_unit: Unit
    co_units: list[Unit] = Field(default_factory=list)
    committee: str
    leader: str | None = None
    key: bool = Field(default=False, description="重点督办件: supervised by the leader (领衔督办)")
    review_reply: bool = Field(default=False, description="the committee reviews the reply before release")
    since: AwareDatetime = Field(description="when handling starts: deadlines count from here")
    deadline: Deadline
    return_until: AwareDatetime = Field(description="the lead unit may return the case until then (退回)")
    reassignment: bool = False


@event("tracking.CaseReturned")
class CaseReturned(Event):
    """退回: the lead unit says the matter is not its business, with a reason and a suggested unit."""

    unit: Unit
    reason: str
    suggested_unit: str | None = None


@event("tracking.CaseSigned")
class CaseSigned(Event):
    """签收: the lead unit acknowledges the case as its own; it can no longer return it."""

    unit: Unit


@event("tracking.ExtensionRequested")
class ExtensionRequested(Event):
    """延期申请 by the lead unit."""

    unit: Unit
    until: date
    reason: str


@event("tracking.ExtensionGranted")
class ExtensionGranted(Event):
    deadline: Deadline
    note: str | None = None


@event("tracking.ExtensionRefused")
class ExtensionRefused(Event):
    reason: str


@event("tracking.ProgressReported")
class ProgressReported(Event):
    """进展: a unit assigned to the case reports how far it has got."""

    unit: Unit
    text: str
    percent: int | None = None


@event("tracking.CoUnitInputGiven")
class CoUnitInputGiven(Event):
    """A co-unit's contribution to the lead unit's reply (协办意见)."""

    unit: Unit
    text: str


@event("tracking.Countersigned")
class Countersigned(Event):
    """会签: a co-unit signs the reply off."""

    unit: Unit


@event("tracking.ReplySubmitted")
class ReplySubmitted(Event):
    """答复: the lead unit's written reply, classed (A/B/C… configuration), to every submitter."""

    unit: Unit
    reply_class: str
    text: str
    reason: str | None = None
    commitments: list[Commitment] = Field(default_factory=list)
    addressed_to: list[Submitter]
    round: int = 1
    on_time: bool = Field(description="submitted before the deadline of its round")


@event("tracking.ReplySentBack")
class ReplySentBack(Event):
    """The committee's review sends the reply back to the lead unit to be redone."""

    comment: str


@event("tracking.ReplyReleased")
class ReplyReleased(Event):
    """The reply goes to the submitters, with its final class (the review may have changed it)."""

    reply_class: str
    previous_class: str | None = None
    comment: str | None = None
    round: int = 1


@event("tracking.FeedbackGiven")
class FeedbackGiven(Event):
    """A submitter's 满意 / 基本满意 / 不满意, online or entered by staff from paper."""

    submitter: Submitter
    rating: Rating
    comment: str | None = None
    on_paper: bool = False
    round: int = 1


@event("tracking.CaseReopened")
class CaseReopened(Event):
    """重新办理: back to the lead unit with its own deadline (不满意, or an evaluation below the bar)."""

    reason: str
    since: AwareDatetime
    deadline: Deadline
    round: int


@event("tracking.CaseClosed")
class CaseClosed(Event):
    """办结: the outcome intake reports back down and notify feeds back to whoever raised it."""

    reply_class: str
    summary: str = Field(description="办理落实情况摘要")
    unit: Unit
    round: int
    on_time: bool
    open_commitments: int = 0


@event("tracking.CommitmentDelivered")
class CommitmentDelivered(Event):
    """A commitment of a B or C reply was delivered (承诺事项已落实)."""

    commitment_id: str
    note: str


@event("tracking.CommitmentsCarriedOver")
class CommitmentsCarriedOver(Event):
    """跨年度跟踪: commitments still open at year end go onto the next year's 督办清单."""

    year: int
    commitment_ids: list[str]


@event("tracking.CaseUrged")
class CaseUrged(Event):
    """催办: a deadline threshold was reached. Fires once per case, deadline and threshold."""

    threshold: Threshold
    deadline: Deadline
    round: int


@event("tracking.CaseUrgedByStaff")
class CaseUrgedByStaff(Event):
    """催办 by committee staff, whenever they see fit (the sweep's ``CaseUrged`` is by deadline)."""

    note: str


@event("tracking.CaseEscalatedToLeader")
class CaseEscalatedToLeader(Event):
    """An overdue key item is escalated to its supervising leader (领衔督办)."""

    leader: str
    threshold: Threshold
    deadline: Deadline


class EvaluationRecorded(Event):
    """What tracking records of an evaluation's result for one subject (not an event of its own)."""

    session_id: str
    session_title: str
    session_kind: str
    counts: dict[str, int]
    valid: int
    rate: float | None = None
    below_bar: bool = False


@event("tracking.CaseEvaluated")
class CaseEvaluated(EvaluationRecorded):
    """An evaluation's result for this case (a motion's 满意度测评 at the next session, say),
    recorded on it; below the bar the case is also reopened (``CaseReopened``)."""


# -- work items and deputy groups (seed 004) -------------------------------------------------


class MilestoneTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quarter: int = Field(ge=1, le=4)
    target: str = Field(min_length=1, max_length=2000)


class Supervisor(BaseModel):
    """A deputy group supervising a work item, with its contact committee and leader (seed 004 附件1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_id: str = Field(pattern=ID_PATTERN)
    group_name: str
    committee: str
    leader: str


@event("tracking.WorkItemRegistered")
class WorkItemRegistered(Event):
    """A key work item or livelihood project (重点工作 / 民生实事项目) under deputy-group supervision."""

    year: int
    kind: str
    title: str
    content: str | None = None
    lead_units: list[str]
    co_units: list[str] = Field(default_factory=list)
    supervisors: list[Supervisor] = Field(default_factory=list, description="the deputy groups supervising it")
    note: str | None = None
    milestones: list[MilestoneTarget] = Field(default_factory=list)


@event("tracking.MilestoneProgressRecorded")
class MilestoneProgressRecorded(Event):
    """形象进度: progress against a quarter's milestone."""

    quarter: int
    text: str
    met: bool
    unit: str | None = None


@event("tracking.DeputyGroupRegistered")
class DeputyGroupRegistered(Event):
    year: int
    name: str
    township: str
    committee: str
    leader: str
    items: list[str]
    min_activities: int = 3


@event("tracking.GroupActivityRecorded")
class GroupActivityRecorded(Event):
    """A group activity (集中活动: 专题视察、走访座谈、听取汇报、明察暗访)."""

    activity_id: str
    held_on: date
    kind: str
    title: str
    participants: int = 0


# -- commands ------------------------------------------------------------------------------


class _CaseCommand(Command):
    case_id: str = Field(pattern=ID_PATTERN)


@command("tracking.AssignCase")
class AssignCase(_CaseCommand):
    """交办 (and reassignment after a return)."""

    lead_unit: Unit
    co_units: list[Unit] = Field(default_factory=list, max_length=50)
    committee: str = Field(min_length=1, max_length=100)
    leader: str | None = Field(default=None, max_length=100)
    key: bool = False
    review_reply: bool | None = Field(default=None, description="default: the deployment's setting")
    assigned_on: date | None = Field(
        default=None,
        description="交办日期 of a paper 交办单 entered later: its deadlines run from that day; today when not "
        "given. Not in the future, not before the case was opened.",
    )
    due_on: date | None = Field(
        default=None,
        description="办理期限 set by a plan or by staff (e.g. before the next congress session) instead of the "
        "kind's span: after the day of assignment, within the policy's longest (max_plan_due)",
    )


@command("tracking.ReturnCase")
class ReturnCase(_CaseCommand):
    reason: str = Field(min_length=1, max_length=2000)
    suggested_unit: str | None = Field(default=None, max_length=200)


@command("tracking.SignCase")
class SignCase(_CaseCommand):
    """签收 (the lead unit, within the return window, instead of returning it)."""


@command("tracking.UrgeCase")
class UrgeCase(_CaseCommand):
    """催办 (committee staff): the lead unit is told at once, with the note."""

    note: str = Field(min_length=1, max_length=500)


@command("tracking.RequestExtension")
class RequestExtension(_CaseCommand):
    until: date
    reason: str = Field(min_length=1, max_length=2000)


@command("tracking.DecideExtension")
class DecideExtension(_CaseCommand):
    grant: bool
    note: str | None = Field(default=None, max_length=2000)


@command("tracking.ReportProgress")
class ReportProgress(_CaseCommand):
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    percent: int | None = Field(default=None, ge=0, le=100)


@command("tracking.GiveCoUnitInput")
class GiveCoUnitInput(_CaseCommand):
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    countersign: bool = False


@command("tracking.SubmitReply")
class SubmitReply(_CaseCommand):
    reply_class: str = Field(min_length=1, max_length=8)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    reason: str | None = Field(default=None, max_length=2000)
    commitments: list[Commitment] = Field(default_factory=list, max_length=50)


@command("tracking.ReviewReply")
class ReviewReply(_CaseCommand):
    approve: bool
    reply_class: str | None = Field(default=None, max_length=8, description="change the class on approval")
    comment: str | None = Field(default=None, max_length=2000)


@command("tracking.GiveFeedback")
class GiveFeedback(_CaseCommand):
    rating: Rating
    comment: str | None = Field(default=None, max_length=2000)
    submitter_id: str | None = Field(
        default=None, max_length=64, description="staff entering a paper form name the submitter; deputies omit it"
    )


@command("tracking.CloseCase")
class CloseCase(_CaseCommand):
    """Committee staff close a replied case (e.g. feedback not returned in time)."""

    note: str | None = Field(default=None, max_length=2000)


@command("tracking.ReopenCase")
class ReopenCase(_CaseCommand):
    """Reopen supervision (an evaluation below the bar, or staff's decision)."""

    reason: str = Field(min_length=1, max_length=2000)


@command("tracking.DeliverCommitment")
class DeliverCommitment(_CaseCommand):
    commitment_id: str = Field(pattern=ID_PATTERN)
    note: str = Field(min_length=1, max_length=2000)


@command("tracking.RecordMilestoneProgress")
class RecordMilestoneProgress(Command):
    item_id: str = Field(pattern=ID_PATTERN)
    quarter: int = Field(ge=1, le=4)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    met: bool


@command("tracking.RecordGroupActivity")
class RecordGroupActivity(Command):
    group_id: str = Field(pattern=ID_PATTERN)
    held_on: date
    kind: str = Field(pattern=r"^(inspection|discussion|hearing|unannounced|meeting)$")
    title: str = Field(min_length=1, max_length=200)
    participants: int = Field(default=0, ge=0, le=10_000)


GROUP_ACTIVITY_NAMES = {
    "inspection": "专题视察",
    "discussion": "走访座谈",
    "hearing": "听取汇报",
    "unannounced": "明察暗访",
    "meeting": "小组会议",
}


# Cases opened before the bodies (人大 / 政协) existed are read through the upcaster there.
from . import tracking_v1  # noqa: E402,F401
