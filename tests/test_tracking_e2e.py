"""Intake and tracking on one NATS server, talking only through events: a township's problem is
escalated to Wenling, routed there, which opens a case in Wenling's tracking; the case is
handled and closed, and the outcome reaches intake at Wenling and, through it, the township."""

from __future__ import annotations

import httpx
import pytest

from contracts.intake import (
    Channel,
    EscalateMatter,
    MatterData,
    MatterKind,
    MatterStatus,
    RaisedBy,
    RegisterMatter,
    RouteMatter,
    SubmitMatter,
    Submitter,
)
from contracts.tracking import CaseStatus
from services.intake.app import IntakeService
from services.intake.domain import Matter
from services.intake.handlers import derived_id
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.tracking.api import create_api
from services.tracking.app import TrackingService
from services.tracking.domain import Case
from tests.support.tracking import LEAD
from tests.support.waiting import eventually

WENLING, ZEGUO = "331081", "331081100"


def staff(code: str) -> Principal:
    return Principal(sub=f"committee-{code}", name="工委", roles=[Role.committee], jurisdiction=code)


@pytest.fixture
async def system(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    running = []
    try:
        settings = {
            code: Settings(jurisdiction=code, nats_url=server.url, data_dir=tmp_path / "data")
            for code in (WENLING, ZEGUO)
        }
        tracking = TrackingService(settings[WENLING])  # tracking first: it must not need intake to be up
        await tracking.start(sweep=False)
        running.append(tracking)
        intake = {}
        for code in (WENLING, ZEGUO):
            intake[code] = IntakeService(settings[code])
            await intake[code].start()
            running.append(intake[code])
        yield intake, tracking, settings[WENLING]
    finally:
        for service in reversed(running):
            await service.stop()
        server.stop()


async def test_a_routed_matter_opens_a_case_and_the_closed_case_is_its_outcome_down_to_the_township(system):
    intake, tracking, settings = system
    problem = MatterData(
        kind=MatterKind.problem,
        title="泽国镇工业园区道路破损影响企业运输",
        content="园区主干道多处破损，货车通行困难，需市交通部门修复。",
        lead=Submitter(id="deputy-1", name="王代表"),
        channel=Channel.liaison_station,
        raised_in=ZEGUO,
        raised_by=RaisedBy(name="温岭某机械有限公司"),
    )
    station = Principal(sub="station-1", name="泽国镇代表联络站", roles=[Role.liaison_station], jurisdiction=ZEGUO)
    raised = await intake[ZEGUO].handlers.submit(SubmitMatter(matter=problem), station)
    await intake[ZEGUO].handlers.register(RegisterMatter(matter_id=raised.id), staff(ZEGUO))
    await intake[ZEGUO].handlers.escalate(EscalateMatter(matter_id=raised.id, reason="超出镇级事权"), staff(ZEGUO))

    at_wenling = derived_id(ZEGUO, raised.id, WENLING)
    wenling = intake[WENLING].handlers

    async def received():
        return (await wenling.store.load(Matter, at_wenling)).exists

    await eventually(received)
    await wenling.register(RegisterMatter(matter_id=at_wenling), staff(WENLING))
    await wenling.route(RouteMatter(matter_id=at_wenling, committee="城建环资工委"), staff(WENLING))

    async def case_opened():
        case = await tracking.handlers.store.load(Case, at_wenling)
        return case if case.exists else None

    case = await eventually(case_opened)
    assert case.status == CaseStatus.opened and case.matter_id == at_wenling
    assert case.kind == "problem" and [s.id for s in case.submitters] == ["deputy-1"]

    # the units and staff work through the HTTP API, as people do
    secret = settings.jwt_secret

    def token(sub: str, role: str, name: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(sub, [role], WENLING, name=name, secret=secret)}"}

    api = create_api(settings, handlers=tracking.handlers, engine=tracking.engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://tracking") as http:
        committee = token("committee-1", "committee")
        answer = await http.post(
            f"/cases/{case.id}/assign",
            json={"lead_unit": LEAD.model_dump(), "committee": "城建环资工委", "key": True, "leader": "陈主任"},
            headers=committee,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["deadline"]["rule"] == "1个月"  # a problem: one month by the default policy

        refused = await http.post(
            f"/cases/{case.id}/reply",
            json={"reply_class": "A", "text": "已修复"},
            headers=token("unit-other", "unit"),
        )
        assert refused.status_code == 403 and refused.json()["detail"]["code"] == "forbidden"
        bad = await http.post(f"/cases/{case.id}/reply", json={"reply_class": "A"}, headers=token(LEAD.id, "unit"))
        assert bad.status_code == 422

        replied = await http.post(
            f"/cases/{case.id}/reply",
            json={"reply_class": "A", "text": "已完成园区主干道修复，货车通行恢复正常。"},
            headers=token(LEAD.id, "unit", LEAD.name),
        )
        assert replied.status_code == 200, replied.text
        closed = await http.post(
            f"/cases/{case.id}/feedback", json={"rating": "satisfied"}, headers=token("deputy-1", "deputy")
        )
        assert closed.json()["status"] == "closed"

        await tracking.wait_idle()
        detail = (await http.get(f"/cases/{case.id}", headers=committee)).json()
        assert [h["event_type"] for h in detail["history"]][-1] == "tracking.CaseClosed"
        closed_cases = (await http.get("/cases", params={"status": "closed"}, headers=committee)).json()["items"]
        assert [r["id"] for r in closed_cases] == [case.id]
        # the 督办清单's filters are applied, not ignored
        for params, found in (({"leader": "陈主任"}, [case.id]), ({"leader": "周主任"}, [])):
            listed = (await http.get("/cases", params=params, headers=committee)).json()["items"]
            assert [r["id"] for r in listed] == found, params
        other_category = (await http.get("/cases", params={"category": "不存在的分类"}, headers=committee)).json()
        assert other_category["items"] == []
        workload = (await http.get("/units/workload", headers=committee)).json()["items"]
        assert workload == [
            {
                "unit_id": LEAD.id,
                "unit_name": LEAD.name,
                "assigned": 1,
                "open": 0,
                "overdue": 0,
                "closed": 1,
                "replied": 1,
                "on_time": 1,
                "on_time_rate": 1.0,
            }
        ]

    async def outcome_at(code: str, matter_id: str):
        matter = await intake[code].handlers.store.load(Matter, matter_id)
        return matter if matter.status == MatterStatus.closed else None

    here = await eventually(lambda: outcome_at(WENLING, at_wenling))
    assert here.outcome.reply_class == "A" and here.outcome.unit == LEAD.name
    down = await eventually(lambda: outcome_at(ZEGUO, raised.id))
    assert down.outcome.summary == "已完成园区主干道修复，货车通行恢复正常。"
    assert down.handled_in.jurisdiction == WENLING
