"""Supervision plans (工作方案) at this level: plan files, units from the directory, and the
commands on plans.

A plan is written as staff write it (``contracts.plans.PlanDraft``: units by their directory id
or exact name) and recorded with its units resolved against the level's directory (the
directory's organisations of kind 承办单位, projected into tracking's database like every
service's). Collective names a plan uses for several units at once (各镇（街道）, 市级有关单位)
are kept as written in ``other_units``; any other name the directory does not know is refused.

Plan files are JSON: the draft plus the plan's ``id`` and ``jurisdiction``; the packaged ones
(``data/plans/``) are seeds 000, 001 and 004 as written. Inquiry questions (专题询问) and
rectifications (整改) are cases of kind ``inquiry`` and ``rectification``, opened here and then
handled as any case is; the plan records which are its own.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.bodies import Body
from contracts.envelope import SHANGHAI, Envelope, utcnow
from contracts.evaluation import KIND_NAMES as SESSION_KIND_NAMES
from contracts.evaluation import ResultsPublished, SubjectResult
from contracts.intake import JURISDICTION_CODE, PlanItemLink, Submitter, SubmitterKind
from contracts.jurisdictions import default_registry
from contracts.plans import (
    CreatePlan,
    MarkPlanDutyDone,
    PlanData,
    PlanDraft,
    PlanDutyUrged,
    PlanItem,
    PlanItemEvaluated,
    PlanQuestionSent,
    PlanUnit,
    RecordPlanMilestone,
    RevisePlan,
    SendInquiryQuestion,
    duty_holder,
)
from contracts.tracking import CaseKind, CaseOpened, CaseStatus, Deadline, DeputyGroupRegistered, Unit
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.commands import execute
from services.runtime.http.app import zh_reason
from services.runtime.http.auth import STAFF, Guarded, Principal, Role
from services.runtime.http.bounds import DATE_OUT_OF_RANGE, ZH_REASONS, dates_out_of_range
from services.runtime.read import people

from . import projections
from .deadlines import deadline_on, shift_before
from .domain import Case, DeputyGroup, Plan
from .duties import duty_rows
from .handlers import TrackingHandlers, derived_id
from .plan_tables import read_items

log = logging.getLogger("duban.tracking.plans")

#: The packaged plans: seeds 000 (强工兴市), 001 (营商环境) and 004 (代表分组监督) as written.
PLANS_DIR = Path(__file__).resolve().parent / "data" / "plans"

#: Names that stand for several units at once, kept as written.
COLLECTIVE = re.compile(r"^(各|相关)|有关单位$|各包干责任单位")

MAX_FILE_BYTES = 5 * 1024 * 1024


class PlanFile(PlanDraft):
    """A plan file: the draft with its id and level."""

    id: str
    jurisdiction: str

    def draft(self) -> PlanDraft:
        return PlanDraft.model_validate(self.model_dump(exclude={"id", "jurisdiction"}))


def read_plan_file(content: bytes, name: str = "工作方案文件") -> PlanFile:
    """A plan file's content as a :class:`PlanFile`; refusals (in Chinese) name what is wrong."""
    if len(content) > MAX_FILE_BYTES:
        raise DomainError(f"{name} 超过 5 MB", field="file", code="too_large")
    try:
        document = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DomainError(f"{name} 不是 UTF-8 编码的 JSON 文件：{exc}", field="file", code="bad_file") from None
    if not isinstance(document, dict):
        raise DomainError(f"{name} 的内容应为一个 JSON 对象", field="file", code="bad_file")
    for key, pattern in (("id", r"^[A-Za-z0-9_-]{1,64}$"), ("jurisdiction", JURISDICTION_CODE)):
        if not re.fullmatch(pattern, str(document.get(key, ""))):
            raise DomainError(f"{name} 缺少或写错了 {key}", field=key, code="bad_file")
    try:
        return PlanFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "内容"
        raise DomainError(f"{name} 中 {where} 有误：{zh_reason(first)}", field="file", code="bad_file") from None


def load_plan_file(path: Path | str) -> PlanFile:
    file = Path(path)
    return read_plan_file(file.read_bytes(), file.name)


def packaged_plans() -> list[Path]:
    return sorted(PLANS_DIR.glob("*.json"))


class PlanHandlers(Guarded):
    """The commands on this level's plans."""

    guarded = "工作方案"

    def __init__(
        self,
        cases: TrackingHandlers,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.cases = cases
        self.store = cases.store
        self.here = cases.here
        self.engine = engine
        self.clock = clock
        #: The congress's organ here, whose plans these are (温岭市人大常委会, 泽国镇人大主席团).
        self.congress = default_registry().organ(self.here, Body.congress).name

    # -- units -----------------------------------------------------------------------------
    async def _units(self) -> tuple[dict[str, PlanUnit], dict[str, PlanUnit]]:
        orgs = await people.list_orgs(self.engine, kind="unit")
        units = [PlanUnit(id=o["id"], name=o["name"]) for o in orgs]
        return {u.id: u for u in units}, {u.name: u for u in units}

    async def unit(self, ref: str) -> PlanUnit:
        by_id, by_name = await self._units()
        found = by_id.get(ref) or by_name.get(ref)
        if found is None:
            raise DomainError(f"名册中没有承办单位“{ref}”", field="unit", code="unknown_unit")
        return found

    async def resolve(self, draft: PlanDraft) -> PlanData:
        """The draft with every unit named by its directory record; unknown units refused, all at once."""
        by_id, by_name = await self._units()
        unknown: list[str] = []
        items: list[PlanItem] = []
        for spec in draft.items:
            resolved: dict[str, list] = {"lead_units": [], "co_units": [], "other_units": list(spec.other_units)}
            for label in ("lead_units", "co_units"):
                for ref in getattr(spec, label):
                    unit = by_id.get(ref) or by_name.get(ref)
                    if unit is not None:
                        resolved[label].append(unit)
                    elif COLLECTIVE.search(ref):
                        resolved["other_units"].append(ref)
                    else:
                        unknown.append(ref)
            fields = spec.model_dump(exclude={"lead_units", "co_units", "other_units"})
            items.append(PlanItem.model_validate({**fields, **resolved}))
        if unknown:
            names = "、".join(dict.fromkeys(unknown))
            raise DomainError(
                f"名册中没有这些承办单位：{names}（请先在名册中登记）", field="plan.items", code="unknown_unit"
            )
        fields = draft.model_dump(exclude={"items"})
        return PlanData.model_validate({**fields, "items": [i.model_dump() for i in items]})

    async def _check_item_ids(self, plan_id: str, data: PlanData) -> None:
        """An item id names one item of this level (evaluations and matters refer to it alone)."""
        taken = await projections.plan_item_owners(self.engine, [i.id for i in data.items])
        clash = sorted(item for item, owner in taken.items() if owner != plan_id)
        if clash:
            raise DomainError(
                f"项目编号已被其他工作方案使用：{'、'.join(clash)}", field="plan.items", code="item_id_taken"
            )

    # -- plans -----------------------------------------------------------------------------
    async def create(self, command: CreatePlan, principal: Principal) -> Plan:
        """A new plan; the same plan again changes nothing."""
        self._staff(principal, "制定工作方案")
        return await self._record(command.plan_id, command.plan, Plan.create, principal)

    async def revise(self, command: RevisePlan, principal: Principal) -> Plan:
        """The plan as it now reads, replacing the last version; what changed is recorded."""
        self._staff(principal, "修订工作方案")
        return await self._record(command.plan_id, command.plan, Plan.revise, principal)

    async def _record(self, plan_id: str, draft: PlanDraft, decide, principal: Principal) -> Plan:
        # a plan file or table comes in past the command routes' check (``http.bounds``)
        for error in dates_out_of_range(draft, ("plan",))[:1]:
            where = ".".join(str(part) for part in error["loc"])
            raise DomainError(f"{where}：{ZH_REASONS[DATE_OUT_OF_RANGE]}", field=where, code=DATE_OUT_OF_RANGE)
        data = await self.resolve(draft)
        await self._check_item_ids(plan_id, data)
        plan, commit = await execute(
            self.store, Plan, plan_id, lambda p: decide(p, data), actor=principal.actor(Role.committee)
        )
        await self._register_groups(plan, principal)
        if commit is not None:
            log.info("plan recorded", extra={"plan_id": plan_id, "items": len(data.items), "version": plan.version})
        return plan

    async def import_file(
        self,
        content: bytes,
        name: str,
        principal: Principal,
        *,
        plan_id: str | None = None,
        title: str | None = None,
        year: int | None = None,
    ) -> tuple[Plan, str]:
        """A plan file: created if new, revised if it changed, nothing if it is the same. A JSON
        file is a whole plan; a spreadsheet (XLSX, CSV) is its table of items (``plan_tables``),
        replacing the items of plan ``plan_id`` or starting it with ``title`` and ``year``."""
        self._staff(principal, "导入工作方案")
        if not content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
            return await self._import_table(content, principal, plan_id=plan_id, title=title, year=year)
        file = read_plan_file(content, name)
        if file.jurisdiction != self.here:
            raise DomainError(
                f"该工作方案属于 {file.jurisdiction}，不能导入本级（{self.here}）",
                field="jurisdiction",
                code="wrong_jurisdiction",
            )
        existing = await self.store.load(Plan, file.id)
        before = existing.version
        if existing.exists:
            plan = await self.revise(RevisePlan(plan_id=file.id, plan=file.draft()), principal)
            return plan, ("revised" if plan.version != before else "unchanged")
        plan = await self.create(CreatePlan(plan_id=file.id, plan=file.draft()), principal)
        return plan, "created"

    async def _import_table(
        self, content: bytes, principal: Principal, *, plan_id: str | None, title: str | None, year: int | None
    ) -> tuple[Plan, str]:
        if not plan_id:
            raise DomainError("导入项目表须指明工作方案编号（plan_id）", field="plan_id", code="plan_required")
        items = read_items(content)
        existing = await self.store.load(Plan, plan_id)
        if existing.exists and existing.data is not None:
            base = existing.data.model_dump(exclude={"items"})
        elif title and year:
            base = {"title": title, "year": year}
        else:
            raise DomainError("新的工作方案须给出标题（title）和年度（year）", field="title", code="title_required")
        try:
            draft = PlanDraft.model_validate(base | {"items": [i.model_dump() for i in items]})
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            raise DomainError(f"项目表与工作方案不符：{zh_reason(first)}", field="file", code="bad_rows") from None
        before = existing.version
        if existing.exists:
            plan = await self.revise(RevisePlan(plan_id=plan_id, plan=draft), principal)
            return plan, ("revised" if plan.version != before else "unchanged")
        return await self.create(CreatePlan(plan_id=plan_id, plan=draft), principal), "created"

    async def _register_groups(self, plan: Plan, principal: Principal) -> None:
        """The plan's deputy groups, so their activities can be recorded (集中活动)."""
        assert plan.data is not None
        minimum = max((d.min_count for _, d in plan.data.duties() if d.kind == "activities"), default=3)
        for group in plan.data.groups:
            if group.kind != "deputy_group" or group.township is None:
                continue
            registered = DeputyGroupRegistered(
                year=plan.data.year,
                name=group.name,
                township=group.township,
                committee=group.committee or "",
                leader=group.leader or "",
                items=[i.id for i in plan.data.items if group.id in i.groups],
                min_activities=minimum,
            )
            await execute(
                self.store,
                DeputyGroup,
                group.id,
                lambda g, e=registered: g.register(e),
                actor=principal.actor(Role.committee),
            )

    async def record_milestone(self, command: RecordPlanMilestone, principal: Principal) -> Plan:
        """形象进度: by staff, or by a unit responsible for the item."""
        self._in_scope(principal)
        if principal.has(*STAFF):
            unit, role = None, Role.committee
        else:
            unit = self.cases._unit(principal)
            plan = await self.store.load(Plan, command.plan_id)
            item = plan.item(command.item_id)
            if unit not in {u.id for u in (*item.lead_units, *item.co_units)}:
                raise NotAllowed("只有该项目的责任单位可以报送形象进度")
            role = Role.unit
        plan, _ = await execute(
            self.store,
            Plan,
            command.plan_id,
            lambda p: p.record_milestone(command.item_id, command.milestone, command.text, command.met, unit),
            actor=principal.actor(role),
        )
        return plan

    async def mark_done(self, command: MarkPlanDutyDone, principal: Principal) -> Plan:
        self._staff(principal, "登记工作节点完成情况")
        today = self.clock().astimezone(SHANGHAI).date()
        done_on = command.done_on or today
        if done_on > today:
            raise DomainError("完成日期不能晚于今天", field="done_on", code="in_future")
        plan, _ = await execute(
            self.store,
            Plan,
            command.plan_id,
            lambda p: p.mark_done(command.duty, command.group_id, done_on, command.note),
            actor=principal.actor(Role.committee),
        )
        return plan

    # -- inquiry questions -----------------------------------------------------------------
    async def send_question(self, command: SendInquiryQuestion, principal: Principal) -> Case:
        """询问问题书面交办: a case of kind ``inquiry`` opened and assigned to the unit with the
        plan's deadline, recorded on the plan. The same question again opens nothing new."""
        self._staff(principal, "交办询问问题")
        plan = await self.store.load(Plan, command.plan_id)
        item = plan.item(command.item_id) if command.item_id is not None else None
        data = plan._need()
        unit = await self.unit(command.unit)
        committee = command.committee or (item.committees[0] if item and item.committees else None)
        if committee is None:
            raise DomainError("请指明负责跟踪的工委", field="committee", code="committee_required")
        case_id = derived_id(command.plan_id, "question", command.title)
        now = self.clock()
        deadline = self.cases.answer_deadline(
            now, CaseKind.inquiry, command.due_on
        )  # refused before anything is stored
        opened = CaseOpened(
            matter_id=case_id,
            kind=CaseKind.inquiry,
            body=Body.congress,
            title=command.title,
            content=command.content,
            submitters=[
                Submitter(id=f"committee-{self.here}", name=data.issued_by or self.congress, kind=SubmitterKind.group)
            ],
            committee=committee,
            year=now.astimezone(SHANGHAI).year,
            opened_on=now.astimezone(SHANGHAI).date(),
            plan_item=PlanItemLink(jurisdiction=self.here, plan_id=command.plan_id, item_id=command.item_id)
            if command.item_id
            else None,
        )
        actor = principal.actor(Role.committee)
        case = await self._open_own_case(opened, [unit], committee, None, deadline, now, actor=actor)
        sent = PlanQuestionSent(
            case_id=case_id, item_id=command.item_id, title=command.title, unit=unit, due_on=command.due_on
        )
        await execute(self.store, Plan, command.plan_id, lambda p: p.send_question(sent), actor=actor)
        log.info("inquiry question sent", extra={"plan_id": command.plan_id, "case_id": case_id, "unit": unit.id})
        return case

    # -- evaluations -----------------------------------------------------------------------
    async def item_evaluated(
        self, result: SubjectResult, published: ResultsPublished, envelope: Envelope, *, below_bar: bool
    ) -> Plan | None:
        """An evaluation's result on a plan item: recorded on the item; below the bar, a
        rectification (整改) is opened for its lead unit (assigned at once when the item names
        one, else left for staff to assign). Once per result, however often it is delivered."""
        plan_id = (await projections.plan_item_owners(self.engine, [result.subject.id])).get(result.subject.id)
        if plan_id is None:
            log.warning("evaluated plan item unknown here", extra={"item_id": result.subject.id})
            return None
        plan = await self.store.load(Plan, plan_id)
        item = plan.item(result.subject.id)
        session_id = envelope.aggregate_id
        rectification_id = derived_id(envelope.event_id, item.id, "rectification") if below_bar else None
        if rectification_id is not None:
            await self._open_rectification(rectification_id, plan_id, item, published, result, envelope)
        evaluated = PlanItemEvaluated(
            item_id=item.id,
            session_id=session_id,
            session_title=published.title,
            session_kind=str(published.kind),
            counts=result.counts,
            valid=result.valid,
            rate=result.rate,
            below_bar=below_bar,
            rectification_id=rectification_id,
        )
        plan, _ = await execute(
            self.store,
            Plan,
            plan_id,
            lambda p: p.evaluate(evaluated),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, item.id, "evaluated", str(i)) for i in range(n)],
        )
        return plan

    async def _open_rectification(
        self,
        case_id: str,
        plan_id: str,
        item: PlanItem,
        published: ResultsPublished,
        result: SubjectResult,
        envelope: Envelope,
    ) -> None:
        now = self.clock()
        rate = f"{result.rate:.0%}" if result.rate is not None else "—"
        kind_name = SESSION_KIND_NAMES[published.kind]
        committee = item.committees[0] if item.committees else None
        opened = CaseOpened(
            matter_id=case_id,
            kind=CaseKind.rectification,
            body=Body.congress,
            title=f"整改：{item.title}"[:200],
            content=f"{published.title}（{kind_name}）：{item.title} 满意率 {rate}，未达要求，须整改。",
            submitters=[Submitter(id=f"committee-{self.here}", name=self.congress, kind=SubmitterKind.group)],
            committee=committee,
            year=now.astimezone(SHANGHAI).year,
            opened_on=now.astimezone(SHANGHAI).date(),
            plan_item=PlanItemLink(jurisdiction=self.here, plan_id=plan_id, item_id=item.id),
        )
        options = {
            "actor": envelope.actor,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.event_id,
        }
        units = [*item.lead_units, *item.co_units] if item.lead_units else []  # a △ unit leads, or staff assign
        leaders = item.leaders_of("lead") or item.leaders_of("responsible") or item.leaders_of("contact")
        deadline = self.cases.deadline(now, self.cases.rules.answer_for(CaseKind.rectification))
        await self._open_own_case(opened, units, committee, leaders[0] if leaders else None, deadline, now, **options)
        log.info(
            "rectification opened",
            extra={"case_id": case_id, "item_id": item.id, "unit": units[0].id if units else None},
        )

    async def _open_own_case(
        self,
        opened: CaseOpened,
        units: list[PlanUnit],
        committee: str | None,
        leader: str | None,
        deadline: Deadline,
        now: datetime,
        **options: Any,
    ) -> Case:
        """A case tracking opens itself (an inquiry question, a rectification), assigned at once to
        the first of ``units`` with the others as co-units, or left 待交办 for staff without a unit
        or a committee; the same again (a retried command, a redelivered result) changes nothing."""
        case_id = opened.matter_id
        await execute(self.store, Case, case_id, lambda c: c.open(opened), **options)
        if not units or committee is None:
            return await self.store.load(Case, case_id)
        lead, *co = units

        def assign(case: Case):
            if case.status != CaseStatus.opened:
                return []
            return case.assign(
                lead_unit=Unit(id=lead.id, name=lead.name),
                co_units=[Unit(id=u.id, name=u.name) for u in co],
                committee=committee,
                leader=leader,
                key=False,
                review_reply=False,
                since=now,
                deadline=deadline,
                return_until=self.cases.deadline(now, self.cases.rules.return_window).due_at,
            )

        case, _ = await execute(self.store, Case, case_id, assign, **options)
        return case

    # -- duties: what they stand at, and the sweep that urges them ------------------------------
    async def duties(self, row: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """The duties of the plan ``row`` (a ``tracking_plans`` row) and its items' milestones, as
        they stand at ``now``."""
        plan = PlanData.model_validate(row["data"])
        calendar, soon = self.cases.config.calendar, self.cases.rules.due_soon
        days = {duty.due_on for _, duty in plan.duties()} | {m.due_on for i in plan.items for m in i.milestones}
        due_soon_from = {
            day: shift_before(deadline_on(day), soon, calendar).astimezone(SHANGHAI).date() for day in days
        }
        return duty_rows(
            row,
            today=now.astimezone(SHANGHAI).date(),
            due_soon_from=due_soon_from,
            activity_days=await projections.group_activity_days(self.engine, [g.id for g in plan.groups]),
            matter_counts=await projections.plan_matter_counts(self.engine, row["id"]),
        )

    async def sweep_duties(self, now: datetime) -> int:
        """Urge every duty due soon or overdue and not met, once per holder and threshold; duties
        already past when the plan was recorded are shown as overdue but not urged."""
        urged = 0
        for row in await projections.list_plans(self.engine, jurisdiction=self.here):
            created_on = row["created_at"].astimezone(SHANGHAI).date() if row["created_at"] else None
            for duty in await self.duties(row, now):
                threshold = duty["status"]
                if threshold not in ("due_soon", "overdue") or threshold in duty["urged"]:
                    continue
                if created_on is not None and duty["due_on"] < created_on:
                    continue
                event = PlanDutyUrged(
                    duty=duty["duty"],
                    title=duty["title"],
                    threshold=threshold,
                    due_on=duty["due_on"],
                    group_id=duty["group_id"],
                    group_name=duty["group_name"],
                    have=duty["have"],
                    need=duty["need"],
                    committee=duty["committee"],
                    leader=duty["leader"],
                    item_id=duty["item_id"],
                    units=duty["units"],
                )
                urged += await self.urge_duty(row["id"], event)
        return urged

    async def urge_duty(self, plan_id: str, urged: PlanDutyUrged) -> bool:
        holder = duty_holder(urged.duty, urged.group_id)
        _, commit = await execute(
            self.store,
            Plan,
            plan_id,
            lambda p: p.urge(urged),
            retries=20,
            event_ids=lambda n: [derived_id(plan_id, holder, urged.threshold, str(i)) for i in range(n)],
        )
        return commit is not None
