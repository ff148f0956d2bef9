"""Supervision plans (工作方案): seeds 000, 001 and 004 as plan files, checked against the seed
text; on one level with a controlled clock (directory, tracking, intake and notify in this
process): seed 004's duties and milestones watched and urged, a project rated below the bar
rectified; seed 001 imported as the items table an office keeps."""

from __future__ import annotations

import io
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from contracts.envelope import SHANGHAI, new_id
from contracts.evaluation import ResultsPublished, SessionDrafted, SessionKind, SubjectRef, SubjectResult
from contracts.plans import RecordPlanMilestone
from contracts.tracking import CaseStatus, RecordGroupActivity, Unit
from services.directory.app import DEMO_FILE, DirectoryService
from services.directory.settings import DirectorySettings
from services.notify.projections import list_deliveries
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.eventstore import EventStore
from services.tracking import projections
from services.tracking.domain import Plan
from services.tracking.plans import PLANS_DIR, load_plan_file, read_plan_file
from tests.support.notify import WENLING, staff, unit, wenling_level
from tests.support.waiting import eventually
from tests.test_notify_evaluation import Session

SEEDS = Path(__file__).parent / "data" / "seeds"
QG = PLANS_DIR / "wenling-2022-qiang-gong-xing-shi.json"  # seed 000
YS = PLANS_DIR / "wenling-2023-business-environment.json"  # seed 001
FZ = PLANS_DIR / "wenling-2022-group-supervision.json"  # seed 004
FZ_CONTENT = FZ.read_bytes()


def seed_text(prefix: str) -> str:
    """The seed's text with all white space and page numbers (- 5 -) removed."""
    text = next(SEEDS.glob(f"{prefix}_*.txt")).read_text(encoding="utf-8")
    return re.sub(r"\s+", "", re.sub(r"\n\s*-\s*\d+\s*-\s*\n", "\n", text))


def flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def missing_from(seed: str, texts: list[str]) -> list[str]:
    return [t for t in texts if flat(t) not in seed]


# -- the plan files against the seeds ----------------------------------------------------------


def test_seed_000_plan_has_the_fourteen_topics_with_their_leaders_committees_phases_and_townships():
    plan = load_plan_file(QG)
    seed = seed_text("000")
    assert (plan.id, plan.jurisdiction, plan.year, plan.source) == ("wl2022qg", "331081", 2022, "温人大办〔2022〕30号")
    topics = [(i.seq, i.title, i.leaders[0].name, i.committees) for i in plan.items]
    assert topics == [
        ("（一）", "产业优化升级方面", "骆立方", ["财经工委"]),
        ("（二）", "产业链强链补链方面", "骆立方", ["财经工委"]),
        ("（三）", "涉企财政性扶持政策方面", "骆立方", ["预算工委"]),
        ("（四）", "知识产权保护方面", "戴美忠", ["教科文卫工委"]),
        ("（五）", "政务服务及中介服务方面", "狄德兴", ["社会建设工委"]),
        ("（六）", "司法环境营造方面", "潘立平", ["法制和监察司法工委"]),
        ("（七）", "行政执法改进方面", "潘立平", ["法制和监察司法工委"]),
        ("（八）", "老旧工业点改造方面", "王振翔", ["城建环资工委"]),
        ("（九）", "产业工人队伍建设方面", "戴美忠", ["教科文卫工委"]),
        ("（十）", "本地企业留驻培育方面", "李海兵", ["代表选任工委"]),
        ("（十一）", "生产性服务业发展方面", "王振翔", ["城建环资工委"]),
        ("（十二）", "金融服务保障方面", "骆立方", ["预算工委"]),
        ("（十三）", "解决企业诉求方面", "李海兵", ["代表选任工委"]),
        ("（十四）", "小微企业园及农村“飞地”开发方面", "狄德兴", ["农业与农村工委"]),
    ]
    assert all(i.kind == "topic" and i.leaders[0].role == "lead" for i in plan.items)
    assert missing_from(seed, [plan.title, *(i.content or "" for i in plan.items)]) == []
    for item in plan.items:  # each topic as the seed heads it
        heading = f"{item.seq}{item.title}牵头领导：{item.leaders[0].name}责任工委：{item.committees[0]}"
        assert heading + flat(item.content or "")[:20] in seed, item.id
    # five phases with the seed's dates, and 10 problems from every township by early July
    assert [(p.name, p.start, p.end) for p in plan.phases] == [
        ("前期准备阶段", date(2022, 5, 1), date(2022, 6, 10)),
        ("调研阶段", date(2022, 6, 11), date(2022, 7, 10)),
        ("询问方案形成阶段", date(2022, 7, 11), date(2022, 7, 31)),
        ("询问阶段", date(2022, 8, 1), date(2022, 8, 31)),
        ("跟踪测评阶段", date(2022, 9, 1), date(2023, 3, 31)),
    ]
    assert missing_from(seed, [p.name for p in plan.phases]) == []
    problems = next(d for _, d in plan.duties() if d.kind == "problems")
    assert (problems.min_count, problems.per_group, problems.due_on) == (10, True, date(2022, 7, 10))
    assert len(plan.groups) == 16 and all(g.kind == "township" for g in plan.groups)


def test_seed_001_plan_has_the_twenty_one_rows_of_the_ten_activities_with_committees_and_windows():
    plan = load_plan_file(YS)
    seed = seed_text("001")
    assert (plan.source, plan.year, len(plan.items)) == ("温人大办〔2023〕14号", 2023, 21)
    assert [i.seq for i in plan.items] == ["1", "2", *["3"] * 7, *["4"] * 3, "5", "6", "7", *["8"] * 4, "9", "10"]
    themes = dict.fromkeys(i.title for i in plan.items)
    assert list(themes) == [
        "广纳民意",
        "配合立法",
        "专项监督",
        "专题调研",
        "专题询问",
        "执法检查",
        "协同监督",
        "助推破难",
        "案例宣传",
        "履职评议",
    ]
    assert (
        missing_from(
            seed, [*themes, *(i.content or "" for i in plan.items), *(c for i in plan.items for c in i.committees)]
        )
        == []
    )
    windows = [(i.committees[0], i.window.start.month, i.window.end.month) for i in plan.items]
    assert windows.count(("代表与选任工委", 3, 12)) == 3
    assert ("预算工委", 6, 8) in windows and ("财经工委", 10, 12) in windows  # 6-8月, 10-12月
    assert ("财经工委", 3, 6) in windows and ("财经工委", 10, 10) in windows  # 专题询问 3-6月, 执法检查 10月
    assert windows[-1] == ("代表与选任工委", 12, 12)  # 履职评议 12月
    assert sum(1 for w in windows if w[1:] == (3, 12)) == 16
    for months in ("3-12月", "6-8月", "10-12月", "3-6月", "10月", "12月"):
        assert months in seed
    # every row as the seed's table has it: its work, then its committee, then its window
    for item in plan.items:
        written = f"{item.window.start.month}-{item.window.end.month}月"
        if item.window.start.month == item.window.end.month:
            written = f"{item.window.start.month}月"
        row = flat(item.content or "") + flat(item.committees[0]) + written
        assert row in seed, item.id
    in_october = [i.id for i in plan.items if i.window.covers_month(2023, 10)]
    assert len(in_october) == 18


def test_seed_004_plan_has_the_sixteen_groups_their_items_units_leaders_and_quarterly_milestones():
    plan = load_plan_file(FZ)
    seed = seed_text("004")
    assert (plan.source, len(plan.groups), len(plan.items)) == ("温人大办〔2022〕20号", 16, 51)
    names = [g.name.removesuffix("代表小组").removesuffix("街道").removesuffix("镇") for g in plan.groups]
    assert names == [
        "太平",
        "城东",
        "城西",
        "城北",
        "横峰",
        "泽国",
        "大溪",
        "松门",
        "箬横",
        "新河",
        "石塘",
        "滨海",
        "温峤",
        "城南",
        "石桥头",
        "坞根",
    ]
    texts = [plan.title, plan.source]
    for group in plan.groups:
        texts += [group.committee or "", group.leader or "", group.responsible_leader or ""]
    for item in plan.items:
        texts += [item.title, *(leader.name for leader in item.leaders), *item.other_units]
        texts += [
            u for u in (*item.lead_units, *item.co_units) if u != "市住房和城乡建设局" or "住房和城乡建设局" in seed
        ]
        texts += [line for m in item.milestones for line in m.target.splitlines()]
    assert missing_from(seed, texts) == []
    projects = [i for i in plan.items if i.kind == "livelihood_project"]
    assert len(projects) == 10
    assert all([m.quarter for m in p.milestones] == [1, 2, 3, 4] for p in projects)
    assert [m.due_on for m in projects[0].milestones] == [
        date(2022, 3, 31),
        date(2022, 6, 30),
        date(2022, 9, 30),
        date(2022, 12, 31),
    ]
    duties = {d.key: d for _, d in plan.duties()}
    assert (duties["group-plan"].due_on, duties["group-plan"].per_group) == (date(2022, 4, 29), True)
    assert (duties["activities"].min_count, duties["activities"].due_on) == (3, date(2022, 11, 30))
    assert duties["summary"].kind == "summary" and duties["summary"].per_group
    assert [p.name for p in plan.phases] == ["组织准备", "跟踪监督", "回顾总结"]


def test_a_plan_file_that_is_not_a_plan_is_refused_in_chinese():
    with pytest.raises(DomainError, match="不是 UTF-8 编码的 JSON"):
        read_plan_file(b"\xff\xfe", "a.json")
    with pytest.raises(DomainError, match="缺少或写错了 id"):
        read_plan_file(b'{"jurisdiction": "331081"}', "a.json")
    with pytest.raises(DomainError, match="参与小组不在方案中"):
        read_plan_file(
            b'{"id": "p", "jurisdiction": "331081", "title": "t", "year": 2022,'
            b' "items": [{"id": "i", "kind": "topic", "title": "x", "groups": ["nobody"]}]}'
        )


# -- seed 004 on one level, with a controlled clock --------------------------------------------


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


@pytest.fixture
async def level(tmp_path):
    async with wenling_level(tmp_path) as running:
        settings = DirectorySettings(
            jurisdiction=WENLING,
            nats_url=running.nats.url,
            data_dir=tmp_path / "directory",
            dev_signin=True,
            seed_file=DEMO_FILE,
        )
        directory = DirectoryService(settings)
        await directory.start()
        try:
            yield running
        finally:
            await directory.stop()


async def imported(level, path: Path):
    """Seed 004's plan file imported once its units are in tracking's copy of the directory."""

    async def attempt():
        try:
            return await level.tracking.plans.import_file(FZ_CONTENT, path.name, staff(WENLING))
        except DomainError as exc:
            if exc.code == "unknown_unit":
                return None
            raise

    return await eventually(attempt, timeout=60, interval=0.3)


async def test_seed_004_groups_behind_on_activities_are_flagged_and_urged_once_per_threshold(level):
    level.clock.set(at(date(2022, 11, 20)))
    plan, result = await imported(level, FZ)
    assert result == "created" and len(plan.data.items) == 51
    assert (await level.tracking.plans.import_file(FZ_CONTENT, FZ.name, staff(WENLING)))[1] == "unchanged"
    handlers = level.tracking.handlers
    for n, day in enumerate((date(2022, 5, 10), date(2022, 7, 6), date(2022, 9, 15))):
        command = RecordGroupActivity(group_id="2022-dg-01", held_on=day, kind="inspection", title=f"专题视察{n}")
        await handlers.record_group_activity(command, staff(WENLING))
    command = RecordGroupActivity(group_id="2022-dg-06", held_on=date(2022, 6, 1), kind="discussion", title="走访座谈")
    await handlers.record_group_activity(command, staff(WENLING))
    await level.idle()

    async def activities(now: datetime) -> dict[str, dict]:
        row = await projections.get_plan(level.tracking.engine, "wl2022fz")
        rows = await level.tracking.plans.duties(row, now)
        return {r["group_id"]: r for r in rows if r["duty"] == "activities"}

    rows = await activities(level.clock())
    assert (rows["2022-dg-01"]["have"], rows["2022-dg-01"]["status"]) == (3, "met")
    assert (rows["2022-dg-06"]["have"], rows["2022-dg-06"]["need"], rows["2022-dg-06"]["status"]) == (1, 3, "pending")

    level.clock.set(at(date(2022, 11, 24)))  # within 7 days of 11-30: due soon
    report = await level.tracking.sweeper.sweep_once(level.clock())
    assert report.duties_urged == 15  # every group but 太平, which held three
    level.clock.set(at(date(2022, 12, 1)))  # overdue
    assert (await level.tracking.sweeper.sweep_once(level.clock())).duties_urged == 15
    assert (await level.tracking.sweeper.sweep_once(level.clock())).duties_urged == 0  # once per threshold
    await level.idle()
    rows = await activities(level.clock())
    assert rows["2022-dg-06"]["status"] == "overdue" and rows["2022-dg-06"]["urged"] == ["due_soon", "overdue"]
    assert rows["2022-dg-01"]["urged"] == []

    async def urged_group():
        found = await list_deliveries(level.notify.engine, recipient_id="2022-dg-06", channel="inbox")
        return [d for d in found if d["kind"] == "plan_duty"]

    notices = await eventually(lambda: _at_least(urged_group, 2))
    assert all("集中活动" in n["subject"] for n in notices)


async def _at_least(query, count: int):
    found = await query()
    return found if len(found) >= count else None


async def test_a_seed_004_project_rated_below_the_bar_opens_rectification_and_every_unit_hears(level):
    level.clock.set(at(date(2022, 8, 20)))
    plan, _ = await imported(level, FZ)
    project = next(i for i in plan.data.items if i.kind == "livelihood_project" and len(i.lead_units) > 1)
    other = next(i for i in plan.data.items if i.kind == "livelihood_project" and i.id != project.id)
    await level.idle()
    store = EventStore(level.notify.nc, context="evaluation", jurisdiction=WENLING)
    session = await store.load(Session, new_id())
    subjects = [SubjectRef(kind="plan_item", id=i.id, title=i.title[:300]) for i in (project, other)]
    opens = at(date(2022, 8, 20))
    drafted = SessionDrafted(
        kind=SessionKind.satisfaction,
        title="2022年民生实事项目进展情况满意度测评",
        subjects=subjects,
        electorate=[f"deputy-331081-{n:03d}" for n in range(1, 21)],
        opens_at=opens,
        closes_at=opens + timedelta(hours=2),
        secret=True,
        quorum=0.5,
    )
    await store.append(session, [drafted])

    def result(subject, satisfied, basically, dissatisfied):
        valid = satisfied + basically + dissatisfied
        counts = {"satisfied": satisfied, "basically_satisfied": basically, "dissatisfied": dissatisfied}
        rate = (satisfied + basically) / valid
        return SubjectResult(
            subject=subject,
            counts=counts,
            valid=valid,
            rate=rate,
            turnout=valid / 20,
            quorum_met=True,
            dissatisfied_dominates=dissatisfied > satisfied + basically,
        )

    published = ResultsPublished(
        kind=SessionKind.satisfaction,
        title=drafted.title,
        electorate_size=20,
        voters=18,
        results=[result(subjects[0], 4, 3, 11), result(subjects[1], 15, 3, 0)],
    )
    await store.append(session, [published])

    async def rectifications():
        await level.tracking.wait_idle()
        rows = await projections.list_cases(
            level.tracking.engine, jurisdiction=WENLING, now=level.clock(), plan="wl2022fz", kind="rectification"
        )
        return rows if rows and rows[0]["status"] != CaseStatus.opened else None

    rows = await eventually(rectifications, timeout=30)
    assert len(rows) == 1
    case = rows[0]
    assert case["plan_item"] == project.id and case["status"] == CaseStatus.assigned
    assert case["lead_unit_id"] == project.lead_units[0].id  # the first △ unit leads the rectification
    assert case["title"] == f"整改：{project.title}"

    async def both_recorded():
        row = await projections.get_plan(level.tracking.engine, "wl2022fz")
        return row if len(row["evaluations"]) == 2 else None

    row = await eventually(both_recorded)
    assert row["evaluations"][project.id][0]["below_bar"] is True
    assert row["evaluations"][project.id][0]["rectification_id"] == case["id"]
    assert row["evaluations"][other.id][0]["below_bar"] is False

    units = [u.id for u in (*project.lead_units, *project.co_units)]

    async def every_unit_heard():
        found = {}
        for unit_id in units:
            heard = await list_deliveries(level.notify.engine, recipient_id=unit_id, channel="inbox")
            found[unit_id] = [d["kind"] for d in heard]
        return found if all("plan_item_results" in kinds for kinds in found.values()) else None

    heard = await eventually(every_unit_heard, timeout=30)
    assert "assignment" in heard[project.lead_units[0].id]  # and the lead unit got the 交办通知 of the rectification
    # the results are recorded once, however often they are delivered: a second sweep of the stream changes nothing
    await level.idle()
    assert len(await rectifications()) == 1


async def test_seed_004_milestones_are_reported_by_their_units_and_those_missing_are_urged(level):
    level.clock.set(at(date(2022, 6, 20)))
    plan, _ = await imported(level, FZ)
    projects = [i for i in plan.data.items if i.kind == "livelihood_project"]
    first, second = projects[0], projects[1]
    lead = first.lead_units[0]
    clerk = unit(Unit(id=lead.id, name=lead.name))
    progress = RecordPlanMilestone(
        plan_id="wl2022fz", item_id=first.id, milestone="q2", text="完成筛查任务的32%。", met=True
    )
    await level.tracking.plans.record_milestone(progress, clerk)
    other = unit(Unit(id=second.lead_units[0].id, name=second.lead_units[0].name))
    if second.lead_units[0].id not in {u.id for u in (*first.lead_units, *first.co_units)}:
        with pytest.raises(NotAllowed, match="只有该项目的责任单位"):
            await level.tracking.plans.record_milestone(progress, other)
    with pytest.raises(DomainError, match="没有形象进度节点"):
        await level.tracking.plans.record_milestone(progress.model_copy(update={"milestone": "q9"}), clerk)
    await level.idle()

    level.clock.set(at(date(2022, 6, 24)))  # the second quarter's milestones are due within 7 days
    assert (await level.tracking.sweeper.sweep_once(level.clock())).duties_urged == 9  # every project but the first
    await level.idle()
    row = await projections.get_plan(level.tracking.engine, "wl2022fz")
    rows = {r["duty"]: r for r in await level.tracking.plans.duties(row, level.clock())}
    assert rows[f"{first.id}/q2"]["status"] == "met" and rows[f"{first.id}/q2"]["done"]["text"] == "完成筛查任务的32%。"
    assert rows[f"{second.id}/q2"]["status"] == "due_soon" and rows[f"{second.id}/q2"]["urged"] == ["due_soon"]

    async def told(unit_id):
        found = await list_deliveries(level.notify.engine, recipient_id=unit_id, channel="inbox")
        return [d for d in found if d["kind"] == "plan_duty"] or None

    for lead_unit in second.lead_units:
        notice = (await eventually(lambda u=lead_unit.id: told(u)))[0]
        assert "第2季度形象进度" in notice["subject"]
    # the first project's unit is not urged for it (it may be for another project it leads)
    assert not [n for n in await told(lead.id) or [] if f"{first.title[:60]}：" in n["subject"]]


def items_table(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["编号", "序号", "类别", "活动主题", "具体工作", "牵头委办", "开始", "结束"])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_seed_001_imported_as_the_items_table_an_office_keeps(level):
    written = load_plan_file(YS)
    rows = [
        [
            f"ys-{n:02d}",
            i.seq,
            "主题活动",
            i.title,
            i.content,
            "、".join(i.committees),
            f"{i.window.start.year}-{i.window.start.month:02d}",
            f"{i.window.end.year}年{i.window.end.month}月",
        ]
        for n, i in enumerate(written.items, start=1)
    ]
    plans = level.tracking.plans
    with pytest.raises(DomainError, match="标题"):
        await plans.import_file(items_table(rows), "附件1.xlsx", staff(WENLING), plan_id="ys-table")
    plan, result = await plans.import_file(
        items_table(rows), "附件1.xlsx", staff(WENLING), plan_id="ys-table", title=written.title, year=2023
    )
    assert result == "created" and len(plan.data.items) == 21
    for mine, theirs in zip(plan.data.items, written.items, strict=True):
        assert (mine.seq, mine.title, mine.content, mine.committees, mine.window) == (
            theirs.seq,
            theirs.title,
            theirs.content,
            theirs.committees,
            theirs.window,
        )
    again = await plans.import_file(items_table(rows), "附件1.xlsx", staff(WENLING), plan_id="ys-table")
    assert again[1] == "unchanged" and again[0].version == plan.version
    # a table with bad rows changes nothing, and says which rows and why
    bad = [*rows[:1], ["ys-02", "2", "调研活动", "配合立法", "x", "法制和监察司法工委", "2023-03", "2023-12"]]
    bad.append(["ys-03", "3", "主题活动", "专项监督", "y", "财经工委", "三月", "2023-12"])
    with pytest.raises(DomainError) as refused:
        await plans.import_file(items_table(bad), "附件1.xlsx", staff(WENLING), plan_id="ys-table")
    assert "第 3 行：类别「调研活动」" in refused.value.message and "第 4 行：「三月」不是日期" in refused.value.message
    assert (await level.tracking.handlers.store.load(Plan, "ys-table")).version == plan.version
