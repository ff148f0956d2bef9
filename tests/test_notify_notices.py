"""The notices of DOMAIN.md beyond assignment and urging, and the in-app inbox and the directory
over HTTP: escalation notices to the receiving level, the feedback to the enterprise that raised
a problem, the inbox (list, read, mark read: one's own only), and directory edits that survive a
restart."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from openpyxl import load_workbook

from contracts.intake import (
    Channel,
    EscalateMatter,
    MatterData,
    MatterKind,
    RaisedBy,
    RegisterMatter,
    RouteMatter,
    SubmitMatter,
    Submitter,
)
from contracts.tracking import AssignCase, GiveFeedback, SubmitReply
from services.intake.app import IntakeService
from services.notify import projections
from services.notify.api import create_api
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.settings import Settings
from tests.support.notify import (
    HOUSING,
    TITLE,
    WATER,
    WENLING,
    deputy,
    eventually,
    staff,
    unit,
    wenling_level,
)

ZEGUO = "331081100"


@pytest.fixture
async def level(tmp_path):
    async with wenling_level(tmp_path) as running:
        yield running


def headers(level, sub: str, role: str, name: str = "") -> dict[str, str]:
    secret = level.notify_settings.jwt_secret
    return {"Authorization": f"Bearer {issue_token(sub, [role], WENLING, name=name, secret=secret)}"}


def client(level) -> httpx.AsyncClient:
    api = create_api(level.notify_settings, handlers=lambda: level.notify.handlers, engine=lambda: level.notify.engine)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://notify")


async def test_the_inbox_lists_ones_own_notices_and_only_the_recipient_marks_them_read(level):
    case_id = await level.routed_suggestion()
    await level.assign(case_id, co_units=[])
    await level.idle()
    async with client(level) as http:
        water = headers(level, WATER.id, "unit")
        mine = (await http.get("/inbox", headers=water)).json()["items"]
        assert [(item["kind"], item["subject"]) for item in mine] == [("assignment", f"【交办通知】{TITLE}")]
        assert mine[0]["kind_name"] == "交办通知" and mine[0]["read_at"] is None
        assert (await http.get("/inbox", headers=headers(level, HOUSING.id, "unit"))).json()["items"] == []
        assert (await http.get("/inbox")).status_code == 401

        notice = mine[0]["id"]
        other = await http.post(f"/inbox/{notice}/read", headers=headers(level, HOUSING.id, "unit"))
        assert other.status_code == 403
        read = await http.post(f"/inbox/{notice}/read", headers=water)
        assert read.status_code == 200 and read.json()["read_by"] == WATER.id
        await level.notify.wait_idle()
        assert (await http.get("/inbox", params={"unread": True}, headers=water)).json()["items"] == []
        assert (await http.get("/inbox", headers=water)).json()["items"][0]["read_by"] == WATER.id

        # the same case on the 督办清单, over HTTP, for staff and leaders only
        committee = headers(level, "committee-1", "committee")
        listed = (await http.get("/lists/supervision", headers=committee)).json()
        assert listed["title"] == "温岭市督办清单" and [row[4] for row in listed["rows"]] == [TITLE]
        assert listed["headers"][1] == "编号" and [row[1] for row in listed["rows"]] == [case_id]
        sheet = await http.get("/lists/supervision", params={"format": "xlsx", "unit": WATER.id}, headers=committee)
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("application/vnd.openxml")
        assert "filename*=UTF-8''" in sheet.headers["content-disposition"]
        rows = list(load_workbook(io.BytesIO(sheet.content)).active.iter_rows(values_only=True))
        assert rows[0][:5] == ("序号", "编号", "登记号", "类别", "案由") and rows[1][4] == TITLE
        assert (await http.get("/lists/supervision", headers=water)).status_code == 403


async def test_directory_edits_through_the_api_take_effect_and_survive_a_restart(level):
    async with client(level) as http:
        committee = headers(level, "committee-1", "committee")
        listed = (await http.get("/directory", headers=committee)).json()["items"]
        assert {entry["id"] for entry in listed} >= {WATER.id, HOUSING.id, "leader-chen"}
        assert (await http.get("/directory", headers=headers(level, WATER.id, "unit"))).status_code == 403
        entry = {"id": HOUSING.id, "name": HOUSING.name, "kind": "unit", "email": "housing@wl.example.cn",
                 "channels": ["email"]}  # fmt: skip
        assert (await http.put(f"/directory/{HOUSING.id}", json=entry, headers=committee)).status_code == 200
        bad = await http.put(f"/directory/{HOUSING.id}", json=entry | {"email": "not-an-address"}, headers=committee)
        assert bad.status_code == 422
    await level.notify.wait_idle()
    await level.stop_notify()
    await level.start_notify()  # the data file is applied again: unchanged, it does not undo the edit
    await level.idle()
    case_id = await level.routed_suggestion()
    await level.assign(case_id, co_units=[HOUSING])
    mails = await eventually(lambda: _to(level, "housing@wl.example.cn"))
    assert mails[0].subject == f"【交办通知】{TITLE}"
    assert level.receiver.endpoint("housing").requests == 0


async def _to(level, address):
    return level.smtp.to(address)


async def test_a_closed_problem_is_fed_back_to_the_enterprise_and_to_the_deputy_who_collected_it(level):
    problem = MatterData(
        kind=MatterKind.problem,
        title="工业园区供水压力不足",
        content="园区企业反映供水压力不足，影响生产。",
        lead=Submitter(id="deputy-1", name="王代表"),
        channel=Channel.liaison_station,
        raised_in=WENLING,
        raised_by=RaisedBy(name="温岭某泵业有限公司", contact="boss@pump.example.cn"),
    )
    station = Principal(sub="station-1", name="联络站", roles=[Role.liaison_station], jurisdiction=WENLING)
    raised = await level.intake.handlers.submit(SubmitMatter(matter=problem), station)
    await level.intake.handlers.register(RegisterMatter(matter_id=raised.id), staff(WENLING))
    await level.intake.handlers.route(RouteMatter(matter_id=raised.id, committee="城建环资工委"), staff(WENLING))

    async def opened():
        return await level.tracking.handlers.store.last_sequence(raised.id)

    await eventually(opened)
    h = level.tracking.handlers
    await h.assign(AssignCase(case_id=raised.id, lead_unit=WATER, committee="城建环资工委"), staff(WENLING))
    text = "已完成园区加压泵站改造，供水压力恢复正常。"
    await h.reply(SubmitReply(case_id=raised.id, reply_class="A", text=text), unit(WATER))
    await h.feedback(GiveFeedback(case_id=raised.id, rating="satisfied"), deputy(problem.lead))

    enterprise = (await eventually(lambda: _to(level, "boss@pump.example.cn")))[0]
    assert enterprise.subject == "【办理结果反馈】工业园区供水压力不足"
    assert enterprise.body.startswith("温岭某泵业有限公司：") and "您反映的问题" in enterprise.body
    assert text in enterprise.body and WATER.name in enterprise.body

    async def to_deputy():
        return [m for m in level.smtp.to("wang@wl.example.cn") if "办理结果反馈" in m.subject]

    collector = (await eventually(to_deputy))[0]
    assert "请向温岭某泵业有限公司反馈办理结果" in collector.body
    await level.idle()
    assert len(level.smtp.to("boss@pump.example.cn")) == 1


async def test_a_matter_escalated_from_a_township_is_announced_to_the_receiving_levels_committee(level, tmp_path):
    zeguo = IntakeService(Settings(jurisdiction=ZEGUO, nats_url=level.nats.url, data_dir=tmp_path / "zeguo"))
    await zeguo.start()
    try:
        problem = MatterData(
            kind=MatterKind.problem,
            title="泽国镇工业园区道路破损",
            content="需市交通部门修复。",
            lead=Submitter(id="deputy-9", name="林代表"),
            channel=Channel.liaison_station,
            raised_in=ZEGUO,
        )
        station = Principal(sub="station-zg", name="泽国镇联络站", roles=[Role.liaison_station], jurisdiction=ZEGUO)
        raised = await zeguo.handlers.submit(SubmitMatter(matter=problem), station)
        await zeguo.handlers.escalate(EscalateMatter(matter_id=raised.id, reason="超出镇级事权"), staff(ZEGUO))

        async def announced():
            await level.notify.wait_idle()
            return await projections.inbox(level.notify.engine, ["role:committee"])

        notices = await eventually(announced)
        assert [n["subject"] for n in notices] == ["【上报事项】泽国镇工业园区道路破损"]
        assert (
            "泽国镇上报问题《泽国镇工业园区道路破损》（提出人：林代表），上报理由：超出镇级事权" in notices[0]["body"]
        )
        async with client(level) as http:
            staff_inbox = (await http.get("/inbox", headers=headers(level, "committee-7", "committee"))).json()
        assert [n["id"] for n in staff_inbox["items"]] == [notices[0]["id"]]  # any committee member reads it
    finally:
        await zeguo.stop()


async def test_metrics_count_appends_handled_messages_and_deliveries_where_the_work_happens(level):
    from prometheus_client.parser import text_string_to_metric_families

    from services.runtime.service import operated

    case_id = await level.routed_suggestion()
    await level.assign(case_id, co_units=[])
    await level.idle()
    api = operated(
        create_api(level.notify_settings, handlers=level.notify.handlers, engine=level.notify.engine), level.notify
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://notify") as http:
        text = (await http.get("/metrics")).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    assert total("duban_events_appended_total", context="intake", event_type="intake.MatterRouted") >= 1
    assert total("duban_events_appended_total", context="tracking", event_type="tracking.CaseAssigned") >= 1
    assert total("duban_events_appended_total", context="notify", event_type="notify.DeliveryPlanned") >= 1
    assert total("duban_messages_handled_total", consumer="tracking_intake_events", outcome="ok") >= 1  # a reaction
    assert total("duban_messages_handled_total", consumer="proj_notify_deliveries", outcome="ok") >= 1  # a projection
    assert total("duban_handler_seconds_count", consumer="tracking_intake_events") >= 1
    assert total("duban_deliveries_total", channel="inbox", outcome="sent") >= 1


async def test_a_report_includes_the_typical_case_added_just_before_it_was_asked_for(level):
    from services.notify.domain import MonthlySummary

    committee = headers(level, "committee-1", "committee")
    month = level.notify.handlers.today().isoformat()[:7]
    # the summaries' read model stopped: it lags as far behind as it may under load
    [summaries] = [p for p in level.notify.projectors if p.projection.name == "notify_summaries"]
    summaries.stop()
    await asyncio.sleep(1.0)  # its fetch in hand ends
    async with client(level) as http:
        added = await http.post(
            f"/summaries/{month}/typical-cases", json={"title": "代表牵线三天修复园区道路"}, headers=committee
        )
        assert added.status_code == 200, added.text
        reported = await http.post(f"/summaries/{month}/report", headers=committee)  # at once, no wait
        assert reported.status_code == 200, reported.text
        assert reported.json()["revision"] == 1
    summary = await level.notify.handlers.store.load(MonthlySummary, MonthlySummary.id_for(month))
    assert [c.title for c in summary.reported_cases] == ["代表牵线三天修复园区道路"]
