"""一月一小结 over two counties (seed 003 附件): a scripted September at 泽国镇, 温岭市 and 玉环市,
counted from intake's activities and matters and tracking's cases by each level's notify,
reported up through the OUTBOX/INBOX of each level (township → county by the 5th, county →
台州市 by the 10th), and 台州市's view as the 附件's table: one row per county and a total."""

from __future__ import annotations

import io
from datetime import date, datetime

import httpx
import nats
import pytest
from openpyxl import load_workbook

from contracts.envelope import SHANGHAI
from contracts.intake import (
    Channel,
    EscalateMatter,
    MatterData,
    MatterKind,
    RecordActivity,
    RegisterMatter,
    RouteMatter,
    SubmitMatter,
    Submitter,
)
from contracts.jurisdictions import default_registry
from contracts.notify import SummaryFigures
from contracts.plans import CreatePlan, PlanDraft, PlanGroup, PlanItemDraft
from contracts.tracking import AssignCase, GiveFeedback, RecordGroupActivity, SubmitReply, Unit
from services.intake.handlers import IntakeHandlers
from services.notify.api import create_api
from services.notify.domain import MonthlySummary
from services.notify.summary import COLUMNS
from services.runtime.es.eventstore import EventStore
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.tracking.app import TrackingService
from tests.support.clock import ManualClock
from tests.support.notify import eventually, notify_settings, staff, start_notify

TAIZHOU, WENLING, YUHUAN, ZEGUO = "331000", "331081", "331083", "331081100"
UNIT = Unit(id="unit-econ", name="市经信局")


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=SHANGHAI)


def station(code: str) -> Principal:
    return Principal(sub=f"station-{code}", name="代表联络站", roles=[Role.liaison_station], jurisdiction=code)


def deputy_of(code: str, n: int) -> Submitter:
    return Submitter(id=f"deputy-{code}-{n}", name=f"代表{n}")


class County:
    """Intake handlers (on the test's clock) and, where cases are handled, tracking."""

    def __init__(self, code: str, nc, clock: ManualClock) -> None:
        self.code = code
        store = EventStore(nc, context="intake", jurisdiction=code, clock=clock)
        self.store = store
        self.intake = IntakeHandlers(store, default_registry(), clock=clock)
        self.tracking: TrackingService | None = None

    async def activity(self, kind: str, held_on: str, deputies: int) -> None:
        command = RecordActivity(
            kind=kind,
            title=f"{kind}活动",
            held_on=date.fromisoformat(held_on),
            place="联络站",
            organiser="代表联络站",
            organiser_kind="liaison_station",
            deputies=[deputy_of(self.code, i) for i in range(deputies)],
        )
        await self.intake.record_activity(command, station(self.code))

    async def matter(self, title: str, kind: MatterKind = MatterKind.problem) -> str:
        data = MatterData(
            kind=kind,
            title=title,
            content=f"{title}，请予解决。",
            lead=deputy_of(self.code, 1),
            channel=Channel.liaison_station,
            raised_in=self.code,
        )
        return (await self.intake.submit(SubmitMatter(matter=data), station(self.code))).id

    async def escalate(self, matter_id: str) -> None:
        await self.intake.register(RegisterMatter(matter_id=matter_id), staff(self.code))
        await self.intake.escalate(EscalateMatter(matter_id=matter_id, reason="超出本级事权"), staff(self.code))

    async def handle(self, matter_id: str, reply_class: str) -> None:
        """Routed here, assigned, answered, and the deputy satisfied: the case closes."""
        assert self.tracking is not None
        await self.intake.register(RegisterMatter(matter_id=matter_id), staff(self.code))
        await self.intake.route(RouteMatter(matter_id=matter_id, committee="经济工委"), staff(self.code))

        async def opened():
            return await self.tracking.handlers.store.last_sequence(matter_id)

        await eventually(opened)
        h = self.tracking.handlers
        await h.assign(AssignCase(case_id=matter_id, lead_unit=UNIT, committee="经济工委"), staff(self.code))
        unit = Principal(sub=UNIT.id, name=UNIT.name, roles=[Role.unit], jurisdiction=self.code)
        reason = None if reply_class == "A" else "列入明年计划"
        await h.reply(SubmitReply(case_id=matter_id, reply_class=reply_class, text="已办理。", reason=reason), unit)
        lead = deputy_of(self.code, 1)
        voter = Principal(sub=lead.id, name=lead.name, roles=[Role.deputy], jurisdiction=self.code)
        await h.feedback(GiveFeedback(case_id=matter_id, rating="satisfied"), voter)


@pytest.fixture
async def levels(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    clock = ManualClock(at("2026-08-30"))
    nc = await nats.connect(server.url)
    services = []
    try:
        counties = {code: County(code, nc, clock) for code in (ZEGUO, WENLING, YUHUAN, TAIZHOU)}
        for code in (WENLING, YUHUAN, TAIZHOU):
            tracking = TrackingService(Settings(jurisdiction=code, nats_url=server.url, data_dir=tmp_path), clock=clock)
            await tracking.start(sweep=False)
            services.append(tracking)
            counties[code].tracking = tracking
        notifies = {}
        for code in (ZEGUO, WENLING, YUHUAN, TAIZHOU):
            notifies[code] = await start_notify(notify_settings(code, server.url, tmp_path), clock=clock)
            services.append(notifies[code])
        yield counties, notifies, clock
    finally:
        for service in reversed(services):
            await service.stop()
        await nc.close()
        server.stop()


async def _idle(counties, notifies) -> None:
    for county in counties.values():
        if county.tracking is not None:
            await county.tracking.wait_idle()
    for service in notifies.values():
        await service.wait_idle()


def token(code: str) -> dict[str, str]:
    secret = Settings().jwt_secret
    return {"Authorization": f"Bearer {issue_token(f'committee-{code}', ['committee'], code, secret=secret)}"}


async def test_the_monthly_summary_of_two_counties_has_the_exact_numbers_and_taizhous_xlsx_the_annex_layout(levels):
    counties, notifies, clock = levels
    zeguo, wenling, yuhuan = counties[ZEGUO], counties[WENLING], counties[YUHUAN]

    # August, which September's summary must leave out
    await zeguo.activity("research", "2026-08-28", 5)
    await zeguo.matter("八月反映的问题")
    await wenling.matter("八月的建议", MatterKind.suggestion)

    clock.set(at("2026-09-10"))
    # 泽国镇: 2 activities (3 + 2 deputies), 3 matters collected, one escalated to 温岭市 (not to 台州市)
    await zeguo.activity("research", "2026-09-03", 3)
    await zeguo.activity("discussion", "2026-09-15", 2)
    up = await zeguo.matter("园区道路破损")
    await zeguo.matter("企业用工难")
    await zeguo.matter("物流成本高", MatterKind.demand)
    await zeguo.escalate(up)
    # 温岭市: an inspection (4 deputies) and a deputy group's activity (6), 3 matters: one
    # reported up to 台州市, one answered A (solved), one answered B (in the plan: not solved)
    await wenling.activity("inspection", "2026-09-20", 4)
    group = PlanGroup(id="2022-dg-01", name="太平街道代表小组", township="331081001", committee="城建环资工委")
    item = PlanItemDraft(id="wl2026-jw", kind="jurisdiction_work", title="辖区内工作", groups=[group.id])
    plan = PlanDraft(title="代表分组监督方案", year=2026, groups=[group], items=[item])
    await wenling.tracking.plans.create(CreatePlan(plan_id="wl2026fz", plan=plan), staff(WENLING))
    group = RecordGroupActivity(
        group_id="2022-dg-01", held_on=date(2026, 9, 22), kind="inspection", title="专题视察", participants=6
    )
    await wenling.tracking.handlers.record_group_activity(group, staff(WENLING))
    to_taizhou = await wenling.matter("跨县域交通规划")
    solved = await wenling.matter("工业园区供水不足")
    planned = await wenling.matter("人才公寓建设", MatterKind.suggestion)
    await wenling.escalate(to_taizhou)
    await wenling.handle(solved, "A")
    await wenling.handle(planned, "B")
    # 玉环市: one contact activity (7 deputies), 2 matters: one to 台州市, one solved
    await yuhuan.activity("contact", "2026-09-05", 7)
    await yuhuan.escalate(await yuhuan.matter("港区集疏运"))
    await yuhuan.handle(await yuhuan.matter("渔港码头维修"), "A")
    # 台州市 itself (市本级): one research visit (2 deputies), one matter raised and solved there
    taizhou = counties[TAIZHOU]
    await taizhou.activity("research", "2026-09-08", 2)
    await taizhou.handle(await taizhou.matter("市级重点企业用地指标"), "A")
    wenling_api = create_api(
        notifies[WENLING].settings, handlers=notifies[WENLING].handlers, engine=notifies[WENLING].engine
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wenling_api), base_url="http://notify") as http:
        typical = "/summaries/2026-09/typical-cases"
        case = {"title": "泽国镇园区道路三天修复", "text": "代表牵线，交通局三天修复。"}
        keyed = {**token(WENLING), "Idempotency-Key": "typical-1"}
        added = await http.post(typical, json=case, headers=keyed)
        assert added.status_code == 200, added.text
        again = await http.post(typical, json=case, headers=keyed)  # a retry: added once
        assert again.json() == added.json() and added.json()["month"] == "2026-09"
        mistaken = await http.post(typical, json={"title": "重复录入"}, headers=token(WENLING))
        [_, wrong] = mistaken.json()["typical_cases"]
        removed = await http.delete(f"{typical}/{wrong['id']}", headers=token(WENLING))
        assert [c["title"] for c in removed.json()["typical_cases"]] == ["泽国镇园区道路三天修复"]
        bad = await http.post("/summaries/2026-13/typical-cases", json={"title": "x"}, headers=token(WENLING))
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "month"
    await _idle(counties, notifies)

    # nothing is reported before the report day
    clock.set(at("2026-10-04"))
    assert await notifies[ZEGUO].sweep_once() is None
    # the 5th: 泽国镇 reports to 温岭市; the 10th: the counties report to 台州市
    clock.set(at("2026-10-05"))
    assert await notifies[ZEGUO].sweep_once() == 1
    assert await notifies[WENLING].sweep_once() is None
    await _idle(counties, notifies)
    clock.set(at("2026-10-10"))
    assert await notifies[WENLING].sweep_once() == 1
    assert await notifies[YUHUAN].sweep_once() == 1
    assert await notifies[WENLING].sweep_once() == 1  # nothing changed: no new revision
    await _idle(counties, notifies)
    # 温岭市's report: its 本级, 泽国镇 as reported, and its other 15 townships 未报送
    reported = await notifies[WENLING].handlers.store.load(MonthlySummary, MonthlySummary.id_for("2026-09"))
    [own, *townships] = reported.rows
    assert own.jurisdiction == WENLING and len(townships) == 16
    assert {row.jurisdiction for row in townships if row.reported} == {ZEGUO}
    assert all(row.figures == SummaryFigures() for row in townships if not row.reported)

    api = create_api(notifies[TAIZHOU].settings, handlers=notifies[TAIZHOU].handlers, engine=notifies[TAIZHOU].engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://notify") as http:
        view = (await http.get("/summaries/2026-09", headers=token(TAIZHOU))).json()
        counties_of_taizhou = [j.code for j in default_registry().children_of(TAIZHOU)]
        # 市本级 first, then one row per county
        assert [row["jurisdiction"] for row in view["rows"]] == [TAIZHOU, *counties_of_taizhou]
        assert view["rows"][0]["name"] == "台州市本级"
        rows = {row["jurisdiction"]: row for row in view["rows"]}
        figures = ("activities", "participations", "collected", "solved", "escalated")
        assert [rows[TAIZHOU]["figures"][f] for f in figures] == [1, 2, 1, 1, 0]
        assert [rows[WENLING]["figures"][f] for f in figures] == [4, 15, 6, 1, 1]  # with 泽国镇's 2, 5, 3, 0, 0
        assert [rows[YUHUAN]["figures"][f] for f in figures] == [1, 7, 2, 1, 1]
        assert [view["total"][f] for f in figures] == [6, 24, 9, 3, 2]
        assert view["reported"] == 2 and not rows["331002"]["reported"]
        assert [c["title"] for c in rows[WENLING]["typical_cases"]] == ["泽国镇园区道路三天修复"]

        answer = await http.get("/summaries/2026-09", params={"format": "xlsx"}, headers=token(TAIZHOU))
        assert answer.status_code == 200
        assert "attachment" in answer.headers["content-disposition"]
        sheet = load_workbook(io.BytesIO(answer.content)).active
        table = [list(row) for row in sheet.iter_rows(values_only=True)]
        header_at = next(i for i, row in enumerate(table) if row[0] == "地区")
        assert table[header_at] == ["地区", *(label for _, label in COLUMNS)]
        assert table[0][0] == "三级人大万名代表助力“稳企助企、稳进提质”活动情况汇总表"
        assert table[1][0] == "填报单位：台州市人大常委会"  # the congress organ, from the jurisdiction data
        body = table[header_at + 1 : header_at + 2 + len(counties_of_taizhou)]
        by_name = {row[0]: row for row in body}
        assert body[0][:6] == ["台州市本级", 1, 2, 1, 1, 0]
        assert by_name["温岭市"][1:6] == [4, 15, 6, 1, 1] and "泽国镇园区道路三天修复" in by_name["温岭市"][6]
        assert by_name["玉环市"][1:6] == [1, 7, 2, 1, 1]
        assert by_name["椒江区（未报送）"][1:6] == [0, 0, 0, 0, 0]
        total = table[header_at + 2 + len(counties_of_taizhou)]
        assert total[:6] == ["合计", 6, 24, 9, 3, 2]

    # a late activity at 泽国镇: its new revision reaches 温岭市, whose new revision reaches 台州市
    clock.set(at("2026-10-12"))
    await zeguo.activity("contact", "2026-09-30", 4)
    await _idle(counties, notifies)
    assert await notifies[ZEGUO].sweep_once() == 2
    await _idle(counties, notifies)
    assert await notifies[WENLING].sweep_once() == 2
    await _idle(counties, notifies)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://notify") as http:
        view = (await http.get("/summaries/2026-09", headers=token(TAIZHOU))).json()
    rows = {row["jurisdiction"]: row for row in view["rows"]}
    assert rows[WENLING]["revision"] == 2
    assert [rows[WENLING]["figures"][f] for f in figures] == [5, 19, 6, 1, 1]
    assert [view["total"][f] for f in figures] == [7, 28, 9, 3, 2]
