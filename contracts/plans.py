"""Supervision plans (工作方案): what a standing committee decided to supervise in a year, by whom
and by when (seeds 000, 001 and 004 are three such plans).

A plan has phases with dates and the duties due in them (each deputy group's own plan by 4月29日,
at least three group activities, ten problems per township, a written summary), and items: the
topics of a motion (专题, seed 000), themed activities (主题活动, seed 001), key work and
livelihood projects (重点工作, 民生实事项目, seed 004), each with its leaders (牵头/责任/联系领导),
committees, lead and co-units (units of the level's directory), a window, milestones, and the
deputy groups or townships taking part. Matters name the item they were collected for
(``contracts.intake.PlanItemLink``); inquiry questions and rectifications are cases of tracking.

Plans are tracking's: their events are on ``duban.evt.tracking.<jurisdiction>.<plan_id>``.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .events import Command, Event, command, event, refuse_control_characters
from .intake import ID_PATTERN
from .tracking import EvaluationRecorded

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ItemKind(StrEnum):
    topic = "topic"  # 专题（重点调研内容）
    themed_activity = "themed_activity"  # 主题活动
    key_work = "key_work"  # “一府两院”重点工作
    livelihood_project = "livelihood_project"  # 民生实事项目
    special_campaign = "special_campaign"  # 专项行动（三问一评、检海行动）
    jurisdiction_work = "jurisdiction_work"  # 辖区内强工兴市、全域整治、国资改革工作


ITEM_KIND_NAMES = {
    ItemKind.topic: "专题",
    ItemKind.themed_activity: "主题活动",
    ItemKind.key_work: "重点工作",
    ItemKind.livelihood_project: "民生实事项目",
    ItemKind.special_campaign: "专项行动",
    ItemKind.jurisdiction_work: "辖区工作",
}


class LeaderRole(StrEnum):
    lead = "lead"  # 牵头领导
    responsible = "responsible"  # 责任领导
    contact = "contact"  # 联系领导


LEADER_ROLE_NAMES = {LeaderRole.lead: "牵头领导", LeaderRole.responsible: "责任领导", LeaderRole.contact: "联系领导"}


class DutyKind(StrEnum):
    """What a duty asks for, and so how it is measured."""

    group_plan = "group_plan"  # 小组监督方案 (marked done)
    activities = "activities"  # 集中活动不少于N次 (counted from the group's activities)
    problems = "problems"  # 收集问题建议N条以上 (counted from matters linked to the plan, per township)
    summary = "summary"  # 书面总结 (marked done)
    report = "report"  # 报送/汇报 (marked done)
    other = "other"  # anything else due by a date (marked done)


DUTY_KIND_NAMES = {
    DutyKind.group_plan: "小组监督方案",
    DutyKind.activities: "集中活动",
    DutyKind.problems: "问题建议",
    DutyKind.summary: "书面总结",
    DutyKind.report: "报送",
    DutyKind.other: "工作事项",
}

#: Duties measured from what duty holders record elsewhere; the rest are marked done by staff.
COUNTED_DUTIES = frozenset({DutyKind.activities, DutyKind.problems})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class PlanLeader(_Frozen):
    name: Name
    role: LeaderRole = LeaderRole.lead


class Window(_Frozen):
    """The time an item runs (时限), both days included: 3—10月 is 1 March to 31 October."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end < self.start:
            raise ValueError(f"时限的结束日期（{self.end}）早于开始日期（{self.start}）")
        return self

    def covers_month(self, year: int, month: int) -> bool:
        first, last = date(year, month, 1), date(year, month, monthrange(year, month)[1])
        return self.start <= last and self.end >= first


class PlanMilestone(_Frozen):
    """A milestone (形象进度): the target by a day; quarterly ones give their quarter."""

    key: Id
    target: Text
    due_on: date
    quarter: int | None = Field(default=None, ge=1, le=4)


class PlanDuty(_Frozen):
    """Something due by a day: of the plan as a whole, or of each group taking part (``per_group``)."""

    key: Id
    title: Name
    kind: DutyKind = DutyKind.other
    due_on: date
    min_count: int = Field(default=1, ge=1, le=10_000, description="for counted duties: at least this many")
    per_group: bool = Field(default=False, description="each group (代表小组/镇街道) of the plan owes it")


class PlanPhase(_Frozen):
    key: Id
    name: Name
    start: date
    end: date
    duties: list[PlanDuty] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _ordered(self) -> PlanPhase:
        if self.end < self.start:
            raise ValueError(f"阶段“{self.name}”的结束日期早于开始日期")
        return self


class PlanGroup(_Frozen):
    """A deputy group (代表小组) or a township's congress taking part."""

    id: Id
    name: Name
    kind: str = Field(default="deputy_group", pattern=r"^(deputy_group|township)$")
    township: str | None = Field(default=None, pattern=r"^\d{9}$", description="its township's code")
    responsible_leader: Name | None = None
    committee: Name | None = Field(default=None, description="联系委办")
    leader: Name | None = Field(default=None, description="联系领导")


class _ItemBase(_Frozen):
    id: Id
    kind: ItemKind
    seq: str | None = Field(default=None, max_length=20, description="序号 as the plan prints it, e.g. （三）, 3")
    title: Text
    content: Text | None = None
    leaders: list[PlanLeader] = Field(default_factory=list, max_length=20)
    committees: list[Name] = Field(default_factory=list, max_length=20, description="责任工委/牵头委办")
    other_units: list[Name] = Field(
        default_factory=list, max_length=50, description="collective units as written: 各镇（街道）, 市级有关单位"
    )
    window: Window | None = None
    milestones: list[PlanMilestone] = Field(default_factory=list, max_length=50)
    groups: list[Id] = Field(default_factory=list, max_length=100, description="the groups taking part")
    due_on: date | None = Field(default=None, description="its own deadline (e.g. before the next session)")
    note: Text | None = None


class PlanItemDraft(_ItemBase):
    """An item as staff write it: units by their directory id or exact name."""

    lead_units: list[Name] = Field(default_factory=list, max_length=50, description="主办/牵头单位 (△)")
    co_units: list[Name] = Field(default_factory=list, max_length=100)


class PlanUnit(_Frozen):
    id: Id
    name: Name


class PlanItem(_ItemBase):
    """An item as recorded: units resolved against the level's directory."""

    lead_units: list[PlanUnit] = Field(default_factory=list)
    co_units: list[PlanUnit] = Field(default_factory=list)

    def leaders_of(self, role: LeaderRole) -> list[str]:
        return [leader.name for leader in self.leaders if leader.role is role]


class _PlanBase(_Frozen):
    title: Text
    year: int = Field(ge=2000, le=2100)
    source: Name | None = Field(default=None, description="文号, e.g. 温人大办〔2022〕30号")
    issued_by: Name | None = None
    issued_on: date | None = None
    body: str | None = Field(default=None, max_length=100_000, description="the plan's text")
    motion_id: Id | None = Field(default=None, description="the matter (大会议案) the plan supervises, if any")
    phases: list[PlanPhase] = Field(default_factory=list, max_length=20)
    groups: list[PlanGroup] = Field(default_factory=list, max_length=200)

    def duties(self) -> list[tuple[PlanPhase, PlanDuty]]:
        return [(phase, duty) for phase in self.phases for duty in phase.duties]

    def _check(self, items: list) -> None:
        for label, ids in (
            ("阶段", [p.key for p in self.phases]),
            ("参与小组", [g.id for g in self.groups]),
            ("项目", [i.id for i in items]),
            ("工作节点", [d.key for p in self.phases for d in p.duties]),
        ):
            dup = sorted({x for x in ids if ids.count(x) > 1})
            if dup:
                raise ValueError(f"{label}编号重复：{'、'.join(dup)}")
        groups = {g.id for g in self.groups}
        for item in items:
            unknown = [g for g in item.groups if g not in groups]
            if unknown:
                raise ValueError(f"项目 {item.id} 的参与小组不在方案中：{'、'.join(unknown)}")
            keys = [m.key for m in item.milestones]
            if len(keys) != len(set(keys)):
                raise ValueError(f"项目 {item.id} 的形象进度编号重复")
        per_group = [d for p in self.phases for d in p.duties if d.per_group]
        if per_group and not self.groups:
            raise ValueError(f"工作节点“{per_group[0].title}”要求各小组完成，但方案没有参与小组")


class PlanDraft(_PlanBase):
    """A plan as staff write it or import it from a file (no control characters in its text)."""

    items: list[PlanItemDraft] = Field(default_factory=list, max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        return refuse_control_characters(data)

    @model_validator(mode="after")
    def _consistent(self) -> PlanDraft:
        self._check(self.items)
        return self


class PlanData(_PlanBase):
    """A plan as recorded."""

    items: list[PlanItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> PlanData:
        self._check(self.items)
        return self

    def item(self, item_id: str) -> PlanItem | None:
        return next((i for i in self.items if i.id == item_id), None)

    def group(self, group_id: str) -> PlanGroup | None:
        return next((g for g in self.groups if g.id == group_id), None)


def duty_holder(duty: str, group_id: str | None) -> str:
    """How a duty's holder is named wherever it is kept: the duty for the plan as a whole,
    ``duty@group`` for a group."""
    return duty if group_id is None else f"{duty}@{group_id}"


# -- events ------------------------------------------------------------------------------------


@event("tracking.PlanCreated")
class PlanCreated(Event):
    plan: PlanData


@event("tracking.PlanRevised")
class PlanRevised(Event):
    """The plan as it now reads, and what changed (items added, changed or removed; phases)."""

    plan: PlanData
    changes: list[str]


@event("tracking.PlanMilestoneRecorded")
class PlanMilestoneRecorded(Event):
    """形象进度 of an item against one of its milestones."""

    item_id: str
    milestone: str
    text: str
    met: bool
    unit: str | None = None


@event("tracking.PlanDutyDone")
class PlanDutyDone(Event):
    """A duty marked done (a group's plan received, a summary handed in), for the plan or a group."""

    duty: str
    group_id: str | None = None
    done_on: date
    note: str | None = None


@event("tracking.PlanDutyUrged")
class PlanDutyUrged(Event):
    """A duty, or an item's milestone, due soon or overdue and not yet met: its holder (the group,
    the item's lead units) is urged (notify)."""

    duty: str
    title: str
    threshold: str = Field(pattern=r"^(due_soon|overdue)$")
    due_on: date
    group_id: str | None = None
    group_name: str | None = None
    have: int = 0
    need: int = 1
    committee: str | None = None
    leader: str | None = None
    item_id: str | None = Field(default=None, description="for a milestone (形象进度): its item")
    units: list[PlanUnit] = Field(default_factory=list, description="for a milestone: the item's lead units")


@event("tracking.PlanQuestionSent")
class PlanQuestionSent(Event):
    """An inquiry question (专题询问) sent to a unit in writing: the case that tracks its answer."""

    case_id: str
    item_id: str | None = None
    title: str
    unit: PlanUnit
    due_on: date


@event("tracking.PlanItemEvaluated")
class PlanItemEvaluated(EvaluationRecorded):
    """An evaluation's result recorded on the item; below the bar it opened a rectification."""

    item_id: str
    rectification_id: str | None = None


# -- commands ----------------------------------------------------------------------------------


@command("tracking.CreatePlan")
class CreatePlan(Command):
    plan_id: str = Field(pattern=ID_PATTERN)
    plan: PlanDraft


@command("tracking.RevisePlan")
class RevisePlan(Command):
    plan_id: str = Field(pattern=ID_PATTERN)
    plan: PlanDraft


@command("tracking.RecordPlanMilestone")
class RecordPlanMilestone(Command):
    plan_id: str = Field(pattern=ID_PATTERN)
    item_id: str = Field(pattern=ID_PATTERN)
    milestone: str = Field(pattern=ID_PATTERN)
    text: str = Field(min_length=1, max_length=4000)
    met: bool


@command("tracking.MarkPlanDutyDone")
class MarkPlanDutyDone(Command):
    plan_id: str = Field(pattern=ID_PATTERN)
    duty: str = Field(pattern=ID_PATTERN)
    group_id: str | None = Field(default=None, pattern=ID_PATTERN)
    done_on: date | None = None
    note: str | None = Field(default=None, max_length=2000)


@command("tracking.SendInquiryQuestion")
class SendInquiryQuestion(Command):
    """询问问题书面交办: the question goes to a unit, to be answered in writing by ``due_on``."""

    plan_id: str = Field(pattern=ID_PATTERN)
    item_id: str | None = Field(default=None, pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=20_000)
    unit: str = Field(min_length=1, max_length=200, description="the unit's directory id or name")
    due_on: date
    committee: str | None = Field(default=None, max_length=100, description="default: the item's first committee")
