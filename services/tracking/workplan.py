"""The annual plan of deputy-group supervision (代表分组监督方案), loaded from a data file.

Seed 004 (温人大办〔2022〕20号) assigns each of Wenling's 16 deputy groups (代表小组, one per
township) a few work items to supervise from April to December: the government's key work
(重点工作), the livelihood projects voted at the congress session (民生实事项目, with quarterly
milestones 形象进度), special campaigns (三问一评, 检海行动) and the work within the group's own
township (辖区内强工兴市、全域整治、国资改革工作). Each group has a contact committee (联系工委)
and a contact leader (联系领导); each item has lead units (牵头单位, marked △ in the seed) and
co-units.

The plan is data, not code: :func:`load_workplan` reads a JSON file of the shape of
``data/workplan_2022_wenling.json`` and validates it into a :class:`WorkPlan`; another year or
county is another file. The models are pure (no I/O); the loader additionally checks every
group's township against the jurisdiction registry.
"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from contracts.jurisdictions import JurisdictionRegistry, Level, default_registry

__all__ = [
    "DEFAULT_WORKPLAN_FILE",
    "DeputyGroupSpec",
    "Milestone",
    "Phase",
    "WorkItemKind",
    "WorkItemSpec",
    "WorkPlan",
    "WorkPlanError",
    "load_workplan",
]

#: The packaged plan of 2022 for 温岭市 (seed 004).
DEFAULT_WORKPLAN_FILE = Path(__file__).resolve().parent / "data" / "workplan_2022_wenling.json"

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkPlanError(ValueError):
    """A work-plan file that cannot be read or is not a valid plan; the message names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"invalid work plan file {path}: {reason}")
        self.path = path
        self.reason = reason


class WorkItemKind(StrEnum):
    """What a supervised work item is."""

    #: 民生实事项目: voted by the deputies at the congress session; quarterly milestones (附件2).
    LIVELIHOOD_PROJECT = "livelihood_project"
    #: "一府两院"重点工作: a key task of the government, court or procuratorate.
    KEY_WORK = "key_work"
    #: 专项行动, e.g. 三问一评（…专项整治） or 检海行动; the seed names no responsible unit.
    SPECIAL_CAMPAIGN = "special_campaign"
    #: 辖区内强工兴市、全域整治、国资改革工作: the work within the supervising group's own township.
    JURISDICTION_WORK = "jurisdiction_work"


#: Kinds whose items must name at least one lead unit.
KINDS_WITH_LEAD_UNIT = frozenset({WorkItemKind.LIVELIHOOD_PROJECT, WorkItemKind.KEY_WORK})


class Milestone(_Frozen):
    """形象进度: the target for the end of one quarter, verbatim from the plan."""

    quarter: int = Field(ge=1, le=4)
    target: Text


class Phase(_Frozen):
    """A step of the supervision (组织准备, 跟踪监督, 回顾总结) with its dates, both included."""

    key: Id = Field(description="English slug, e.g. preparation, tracking, review")
    name: Name = Field(description="Chinese name, e.g. 组织准备")
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Phase:
        if self.end < self.start:
            raise ValueError(f"phase {self.key!r} ends ({self.end}) before it starts ({self.start})")
        return self


class WorkItemSpec(_Frozen):
    """A supervised work item: a key work item, a livelihood project, a campaign or a township's own work."""

    id: Id = Field(description='stable slug, e.g. "2022-lp-08" (livelihood project 8) or "2022-kw-03"')
    kind: WorkItemKind
    title: Text = Field(description="verbatim from the plan (项目名称 or 工作内容)")
    content: Text | None = None
    lead_units: list[Name] = Field(default_factory=list, description="牵头单位 (△ in the seed)")
    co_units: list[Name] = Field(default_factory=list, description="other responsible units (实施单位 in 附件2)")
    milestones: list[Milestone] = Field(default_factory=list, description="形象进度 by quarter, ascending")
    groups: list[Id] = Field(min_length=1, description="ids of the deputy groups supervising the item")
    note: Text | None = Field(default=None, description="how an unclear cell of the source was read")

    @model_validator(mode="after")
    def _consistent(self) -> WorkItemSpec:
        if self.kind in KINDS_WITH_LEAD_UNIT and not self.lead_units:
            raise ValueError(f"work item {self.id!r}: a {self.kind} needs at least one lead unit")
        for label, values in (("lead_units", self.lead_units), ("co_units", self.co_units), ("groups", self.groups)):
            if len(set(values)) != len(values):
                raise ValueError(f"work item {self.id!r}: duplicate entries in {label}")
        both = sorted(set(self.lead_units) & set(self.co_units))
        if both:
            raise ValueError(f"work item {self.id!r}: {both} listed both as lead unit and as co-unit")
        quarters = [m.quarter for m in self.milestones]
        if quarters != sorted(set(quarters)):
            raise ValueError(f"work item {self.id!r}: milestone quarters must be unique and ascending, got {quarters}")
        return self

    def milestone(self, quarter: int) -> Milestone | None:
        """The milestone of ``quarter``, or ``None`` when the plan sets none."""
        return next((m for m in self.milestones if m.quarter == quarter), None)


class DeputyGroupSpec(_Frozen):
    """A deputy group (代表小组) of the plan, named after its township."""

    id: Id = Field(description='stable slug, e.g. "2022-dg-01" (序号 1)')
    name: Name = Field(description="e.g. 太平街道代表小组")
    short_name: Name = Field(description="as the plan's 代表小组 column names it, e.g. 太平")
    township: str = Field(pattern=r"^\d{9}$", description="9-digit code of the township in the jurisdiction registry")
    responsible_leader: Name | None = Field(default=None, description="责任领导, as printed on the group's first row")
    committee: Name = Field(description="联系工委 (the plan's 联系委办 column), e.g. 城建环资工委")
    leader: Name = Field(description="联系领导")
    items: list[Id] = Field(min_length=1, description="ids of the work items the group supervises, in plan order")

    @model_validator(mode="after")
    def _unique_items(self) -> DeputyGroupSpec:
        if len(set(self.items)) != len(self.items):
            raise ValueError(f"deputy group {self.id!r}: duplicate work items")
        return self


class WorkPlan(_Frozen):
    """One year's plan of deputy-group supervision for one county-level jurisdiction."""

    year: int = Field(ge=2000, le=2100)
    jurisdiction: str = Field(pattern=r"^\d{6}$", description="county code, e.g. 331081 温岭市")
    title: Text
    source: Name = Field(description="document number, e.g. 温人大办〔2022〕20号")
    issued_by: Name | None = None
    issued_on: date | None = None
    phases: list[Phase] = Field(default_factory=list)
    group_plan_due: date | None = Field(default=None, description="groups send their own plans by this day")
    hearing_month: int | None = Field(
        default=None, ge=1, le=12, description="month of the hearing with satisfaction and feasibility evaluation"
    )
    min_group_activities: int = Field(default=3, ge=0, description="集中活动不少于N次")
    groups: list[DeputyGroupSpec] = Field(min_length=1)
    items: list[WorkItemSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> WorkPlan:
        group_ids = [g.id for g in self.groups]
        item_ids = [i.id for i in self.items]
        for label, ids in (("deputy group", group_ids), ("work item", item_ids)):
            duplicates = sorted({x for x in ids if ids.count(x) > 1})
            if duplicates:
                raise ValueError(f"duplicate {label} ids: {duplicates}")
        townships = [g.township for g in self.groups]
        duplicates = sorted({x for x in townships if townships.count(x) > 1})
        if duplicates:
            raise ValueError(f"more than one deputy group for township {duplicates}")
        for group in self.groups:
            if not group.township.startswith(self.jurisdiction):
                raise ValueError(
                    f"deputy group {group.id!r}: township {group.township!r} is not under {self.jurisdiction!r}"
                )
        items = {i.id: i for i in self.items}
        groups = {g.id: g for g in self.groups}
        for group in self.groups:
            for item_id in group.items:
                if item_id not in items:
                    raise ValueError(f"deputy group {group.id!r}: unknown work item {item_id!r}")
                if group.id not in items[item_id].groups:
                    raise ValueError(
                        f"deputy group {group.id!r} lists work item {item_id!r}, but the item does not list the group"
                    )
        for item in self.items:
            for group_id in item.groups:
                if group_id not in groups:
                    raise ValueError(f"work item {item.id!r}: unknown deputy group {group_id!r}")
                if item.id not in groups[group_id].items:
                    raise ValueError(
                        f"work item {item.id!r} lists deputy group {group_id!r}, but the group does not list the item"
                    )
        for phase in self.phases:
            if phase.start.year != self.year or phase.end.year != self.year:
                raise ValueError(f"phase {phase.key!r} is not within {self.year}")
        return self

    # -- look-ups -------------------------------------------------------------------------

    def group(self, group_id: str) -> DeputyGroupSpec:
        """The deputy group ``group_id``; raises :class:`KeyError` if there is none."""
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(group_id)

    def item(self, item_id: str) -> WorkItemSpec:
        """The work item ``item_id``; raises :class:`KeyError` if there is none."""
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def group_of_township(self, township: str) -> DeputyGroupSpec | None:
        """The deputy group of ``township`` (9-digit code), or ``None``."""
        return next((g for g in self.groups if g.township == township), None)

    def items_of(self, group_id: str) -> list[WorkItemSpec]:
        """The work items supervised by ``group_id``, in plan order."""
        return [self.item(item_id) for item_id in self.group(group_id).items]

    def items_of_kind(self, kind: WorkItemKind | str) -> list[WorkItemSpec]:
        """The work items of ``kind``, in file order."""
        kind = WorkItemKind(kind)
        return [item for item in self.items if item.kind is kind]


def _check_townships(plan: WorkPlan, registry: JurisdictionRegistry) -> None:
    county = registry.get(plan.jurisdiction)
    for group in plan.groups:
        if group.township not in registry:
            raise ValueError(f"deputy group {group.id!r}: township {group.township!r} is not in the registry")
        township = registry.get(group.township)
        if township.level is not Level.TOWNSHIP or township.parent != county.code:
            raise ValueError(
                f"deputy group {group.id!r}: {group.township!r} ({township.name}) is not a township of "
                f"{county.code!r} ({county.name})"
            )


def _describe(exc: ValidationError) -> str:
    """The errors of ``exc``, joined by "; ", each with its location in the file (without the input)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{where}: {error['msg']}")
    return "; ".join(lines)


def load_workplan(path: Path | str | None = None, *, registry: JurisdictionRegistry | None = None) -> WorkPlan:
    """Load and validate a work-plan file (default: the packaged 2022 plan of 温岭市).

    Besides the model's own checks, every group's township must be a township of the plan's
    jurisdiction in ``registry`` (default: :func:`contracts.jurisdictions.default_registry`).
    Any problem -- a missing or unreadable file, bad JSON, invalid content -- raises
    :class:`WorkPlanError` naming the file.
    """
    file = Path(path) if path is not None else DEFAULT_WORKPLAN_FILE
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkPlanError(file, f"cannot read it: {exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkPlanError(file, f"not valid UTF-8 JSON: {exc}") from exc
    try:
        plan = WorkPlan.model_validate(document)
    except ValidationError as exc:
        raise WorkPlanError(file, _describe(exc)) from exc
    try:
        _check_townships(plan, registry if registry is not None else default_registry())
    except (KeyError, ValueError) as exc:
        raise WorkPlanError(file, str(exc)) from exc
    return plan
