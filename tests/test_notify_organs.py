"""Everything notify writes is signed by the organ of the body whose case, matter or session it is
(DOMAIN.md "Two bodies at a level"), as the jurisdiction data names it, and greets people by name.

A CPPCC proposal at 温岭市 is signed 政协温岭市委员会 from its assignment to its reply, never by the
people's congress; a 镇 signs with its 人大主席团 and a 街道 with its 人大工委, on notices and in
the monthly XLSX; a 民主评议 invites the standing committee's members by their names in the
level's directory (名册), a member it does not know as 尊敬的委员, never by an id. The 工作台 is
headed with the organ of the body one works for.
"""

from __future__ import annotations

import io
from datetime import datetime

import httpx
import pytest
from openpyxl import load_workbook

from contracts.bodies import Body
from contracts.directory import Person, PersonEnrolled, PersonKind
from contracts.envelope import SHANGHAI, SYSTEM_ACTOR, Envelope, new_id, utcnow
from contracts.evaluation import SessionDrafted, SessionKind, SessionOpened, SubjectRef
from contracts.events import Event
from contracts.intake import Channel, MatterData, MatterKind, RegisterMatter, RouteMatter, SubmitMatter, Submitter
from contracts.jurisdictions import default_registry
from contracts.tracking import AssignCase, SubmitReply, Unit, UrgeCase
from services.intake.app import IntakeService
from services.notify import projections
from services.notify.api import create_api
from services.notify.notices import committee_office, matter_facts
from services.runtime.es.aggregate import Aggregate
from services.runtime.es.eventstore import EventStore
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.read import people
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.tracking.app import TrackingService
from services.web.pages import TEMPLATES, organs_heading
from services.web.sessions import Session as WebSession
from tests.support.clock import ManualClock
from tests.support.notify import WATER, WENLING, eventually, notify_settings, start_notify, unit, wenling_level

ZEGUO, TAIPING = "331081100", "331081001"


class Recorded(Aggregate):
    """Events of another service's aggregate as stored, without that service's rules."""

    context = "directory"
    aggregate_type = "person"

    def apply(self, event: Event) -> None:
        self.sequence += 1


class Session(Recorded):
    context = "evaluation"
    aggregate_type = "session"


async def _inbox(service, recipient_id: str, kind: str) -> list[dict]:
    return [n for n in await projections.inbox(service.engine, [recipient_id]) if n["kind"] == kind]


def _signed(body: str, organ: str) -> bool:
    """The organ signs the notice: it is the line before the date that ends it."""
    lines = body.strip().splitlines()
    return len(lines) >= 2 and lines[-2] == organ and lines[-1].endswith("日")


# -- a CPPCC proposal at 温岭市 ---------------------------------------------------------------------

MEMBER = Submitter(id="cppcc-m-2026-07", name="王永进")


def cppcc_staff() -> Principal:
    return Principal(sub="cppcc-staff-1", name="提案委", roles=[Role.committee], jurisdiction=WENLING, body=Body.cppcc)


async def test_a_cppcc_proposals_assignment_urging_and_reply_are_signed_by_the_cppcc_not_the_congress(tmp_path):
    async with wenling_level(tmp_path) as level:
        proposal = MatterData(
            kind=MatterKind.proposal,
            title="关于加快建设温岭市科技创新服务平台的提案",
            content="建议整合资源，建设面向中小企业的科技创新服务平台。",
            lead=MEMBER,
            channel=Channel.session,
            raised_in=WENLING,
        )
        member = Principal(sub=MEMBER.id, name=MEMBER.name, roles=[Role.deputy], jurisdiction=WENLING, body=Body.cppcc)
        raised = await level.intake.handlers.submit(SubmitMatter(matter=proposal), member)
        await level.intake.handlers.register(RegisterMatter(matter_id=raised.id), cppcc_staff())
        await level.intake.handlers.route(RouteMatter(matter_id=raised.id, committee="提案委"), cppcc_staff())

        async def opened():
            await level.tracking.wait_idle()
            return await level.tracking.handlers.store.last_sequence(raised.id)

        await eventually(opened, what="the proposal's case opened")
        tracking = level.tracking.handlers
        await tracking.assign(AssignCase(case_id=raised.id, lead_unit=WATER, committee="提案委"), cppcc_staff())
        await tracking.urge_by_staff(UrgeCase(case_id=raised.id, note="请加快办理。"), cppcc_staff())
        text = "已将科技创新服务平台建设列入2026年工作计划。"
        await tracking.reply(SubmitReply(case_id=raised.id, reply_class="A", text=text), unit(WATER))

        [assigned] = await eventually(lambda: _inbox(level.notify, WATER.id, "assignment"), what="the assignment")
        [urged] = await eventually(lambda: _inbox(level.notify, WATER.id, "urging"), what="the urging")
        [replied] = await eventually(lambda: _inbox(level.notify, MEMBER.id, "reply"), what="the reply notice")
        for notice in (assigned, urged, replied):
            assert _signed(notice["body"], "政协温岭市委员会"), notice["body"]
            assert "人大常委会" not in notice["body"] and "人大" not in notice["subject"]
        assert "现将提案《关于加快建设温岭市科技创新服务平台的提案》" in assigned["body"]
        assert "责任专委会：提案委" in assigned["body"]
        assert "温岭市政协催办：请加快办理。" in urged["body"] and urged["subject"].endswith("（温岭市政协催办）")
        assert replied["body"].startswith("王永进：")
        assert "填写纸质征询意见表交政协温岭市委员会提案委。" in replied["body"]


# -- a 镇 and a 街道 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "organ"),
    [(ZEGUO, "泽国镇人大主席团"), (TAIPING, "太平街道人大工委")],
    ids=["town-presidium", "subdistrict-working-committee"],
)
async def test_a_townships_notices_and_monthly_xlsx_carry_its_own_organ(tmp_path, code, organ):
    nats = EmbeddedNats(tmp_path / "nats").start()
    clock = ManualClock(datetime(2026, 9, 10, 10, tzinfo=SHANGHAI))
    base = Settings(jurisdiction=code, nats_url=nats.url, data_dir=tmp_path / "data")
    tracking, intake = TrackingService(base, clock=clock), IntakeService(base)
    services = []
    try:
        await tracking.start(sweep=False)
        services.append(tracking)
        await intake.start()
        services.append(intake)
        settings = notify_settings(code, nats.url, tmp_path / "data")
        notify = await start_notify(settings, clock=clock)
        services.append(notify)

        staff = Principal(sub=f"committee-{code}", name="工作人员", roles=[Role.committee], jurisdiction=code)
        station = Principal(sub=f"station-{code}", name="代表联络站", roles=[Role.liaison_station], jurisdiction=code)
        road = Unit(id="unit-road", name="镇村建办")
        deputy = Submitter(id=f"deputy-{code}-1", name="林代表")
        problem = MatterData(
            kind=MatterKind.problem,
            title="工业园区道路破损",
            content="园区道路破损，影响企业运输。",
            lead=deputy,
            channel=Channel.liaison_station,
            raised_in=code,
        )
        raised = await intake.handlers.submit(SubmitMatter(matter=problem), station)
        await intake.handlers.register(RegisterMatter(matter_id=raised.id), staff)
        await intake.handlers.route(RouteMatter(matter_id=raised.id), staff)

        async def opened():
            await tracking.wait_idle()
            return await tracking.handlers.store.last_sequence(raised.id)

        await eventually(opened, what="the problem's case opened")
        await tracking.handlers.assign(AssignCase(case_id=raised.id, lead_unit=road, committee=organ), staff)
        await tracking.handlers.urge_by_staff(UrgeCase(case_id=raised.id, note="请抓紧修复。"), staff)
        road_staff = Principal(sub=road.id, name=road.name, roles=[Role.unit], jurisdiction=code)
        reply = SubmitReply(case_id=raised.id, reply_class="A", text="已完成道路修复。")
        await tracking.handlers.reply(reply, road_staff)

        [assigned] = await eventually(lambda: _inbox(notify, road.id, "assignment"), what="the assignment")
        [urged] = await eventually(lambda: _inbox(notify, road.id, "urging"), what="the urging")
        [replied] = await eventually(lambda: _inbox(notify, deputy.id, "reply"), what="the reply notice")
        for notice in (assigned, urged, replied):
            assert _signed(notice["body"], organ), notice["body"]
            assert "人大常委会" not in notice["body"]
        assert f"{organ}催办：请抓紧修复。" in urged["body"] and urged["subject"].endswith(f"（{organ}催办）")
        assert "责任工委" not in assigned["body"] and f"并抄送{organ}。" in assigned["body"]
        assert f"填写纸质征询意见表交{organ}。" in replied["body"]

        api = create_api(settings, handlers=notify.handlers, engine=notify.engine)
        secret = settings.jwt_secret
        headers = {"Authorization": f"Bearer {issue_token(staff.id, ['committee'], code, secret=secret)}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://notify") as http:
            answer = await http.get("/summaries/2026-09", params={"format": "xlsx"}, headers=headers)
        assert answer.status_code == 200, answer.text
        sheet = load_workbook(io.BytesIO(answer.content)).active
        assert sheet.cell(row=2, column=1).value == f"填报单位：{organ}"
        assert not any("人大常委会" in str(cell) for row in sheet.iter_rows(values_only=True) for cell in row if cell)
    finally:
        for service in reversed(services):
            await service.stop()
        nats.stop()


# -- a 民主评议 of the CPPCC standing committee -------------------------------------------------------

COMMITTEE_MEMBERS = [("cppcc-sc-2026-31", "陈明华"), ("cppcc-sc-2026-32", "李晓燕")]
STRANGER = "cppcc-sc-2026-99"  # on the electorate, not (yet) in the level's directory


async def test_a_democratic_appraisal_invites_its_electorate_by_their_directory_names_signed_by_the_cppcc(tmp_path):
    async with wenling_level(tmp_path) as level:
        directory = EventStore(level.notify.nc, context="directory", jurisdiction=WENLING)
        for person_id, name in COMMITTEE_MEMBERS:
            person = Person(id=person_id, kind=PersonKind.member, name=name)
            await directory.append(await directory.load(Recorded, person_id), [PersonEnrolled(person=person)])

        async def known():
            return all([await people.find_person(level.notify.engine, pid) for pid, _ in COMMITTEE_MEMBERS])

        await eventually(known, what="the members in notify's copy of the directory")

        store = EventStore(level.notify.nc, context="evaluation", jurisdiction=WENLING)
        session = await store.load(Session, new_id())
        title = "2026年度重点提案办理情况民主评议"
        electorate = [pid for pid, _ in COMMITTEE_MEMBERS] + [STRANGER]
        subject = SubjectRef(kind="proposal", id="proposal-14", title="关于加快建设温岭市科技创新服务平台的提案")
        closes = datetime(2026, 12, 20, 18, tzinfo=SHANGHAI)
        drafted = SessionDrafted(
            kind=SessionKind.democratic,
            title=title,
            subjects=[subject],
            electorate=electorate,
            opens_at=datetime(2026, 12, 10, 9, tzinfo=SHANGHAI),
            closes_at=closes,
            secret=True,
            quorum=0.5,
        )
        await store.append(session, [drafted])
        opened = SessionOpened(
            kind=SessionKind.democratic,
            title=title,
            subjects=[subject],
            electorate=electorate,
            closes_at=closes,
            secret=True,
        )
        await store.append(session, [opened])

        for person_id, name in [*COMMITTEE_MEMBERS, (STRANGER, "尊敬的委员")]:
            [invited] = await eventually(
                lambda pid=person_id: _inbox(level.notify, pid, "evaluation_invitation"), what=person_id
            )
            body = invited["body"]
            assert body.startswith(f"{name}：") and "cppcc-sc-" not in body, body
            assert f"诚邀您参加“{title}”。" in body and "”民主评议" not in body
            assert _signed(body, "政协温岭市委员会") and "人大常委会" not in body


# -- the facts a notice reads: which body, stored before bodies or transferred ---------------------


def _stored(event_type: str, sequence: int, payload: dict, version: int = 1) -> Envelope:
    return Envelope(
        event_id=new_id(),
        event_type=event_type,
        schema_version=version,
        aggregate_type="matter",
        aggregate_id="m-1",
        sequence=sequence,
        jurisdiction=WENLING,
        occurred_at=utcnow(),
        actor=SYSTEM_ACTOR,
        correlation_id="c-1",
        payload=payload,
    )


def test_a_matter_stored_before_bodies_is_read_by_its_kind_and_a_transfer_moves_it_to_the_other_body():
    old = {
        "title": "关于科技创新平台的提案",
        "kind": "proposal",
        "lead": {"id": MEMBER.id, "name": MEMBER.name},
        "raised_in": WENLING,
    }
    history = [_stored("intake.MatterSubmitted", 1, {"matter": old})]  # no body: a 提案 is the CPPCC's
    assert matter_facts(history, 1)["body"] is Body.cppcc
    transferred = {"from_body": "cppcc", "to_body": "congress", "from_kind": "proposal", "to_kind": "suggestion"}
    history.append(_stored("intake.MatterTransferred", 2, transferred | {"reason": "属人大代表建议"}))
    facts = matter_facts(history, 2)
    assert (facts["body"], facts["kind_name"]) == (Body.congress, "建议")
    assert matter_facts(history, 1)["body"] is Body.cppcc  # as it was when its first event happened


def test_the_committee_a_submitter_hands_a_form_to_is_named_with_its_organ():
    registry = default_registry()
    cppcc, congress = registry.organ(WENLING, Body.cppcc), registry.organ(WENLING, Body.congress)
    assert committee_office(cppcc) == committee_office(cppcc, "提案委") == "政协温岭市委员会提案委"
    assert committee_office(congress, "农业农村工委") == "温岭市人大常委会农业农村工委"
    assert committee_office(congress, "温岭市人大常委会农业农村工委") == "温岭市人大常委会农业农村工委"
    assert committee_office(congress) == "温岭市人大常委会相关工委"
    assert committee_office(registry.organ(ZEGUO, Body.congress)) == "泽国镇人大主席团"
    assert committee_office(registry.organ(TAIPING, Body.congress), "太平街道人大工委") == "太平街道人大工委"


# -- the 工作台's heading ----------------------------------------------------------------------------


def _session(roles: list[str], body: str | None) -> WebSession:
    token = issue_token("p-1", roles, WENLING, secret="a-test-secret-of-at-least-32-bytes", body=body)
    return WebSession("s-1", "p-1", "某人", roles, None, token, 0, None, "csrf")


def test_the_workbench_is_headed_with_the_organ_of_the_body_one_works_for():
    registry = default_registry()
    wenling, zeguo = registry.get(WENLING), registry.get(ZEGUO)
    assert organs_heading(wenling, _session(["committee"], "cppcc")) == "政协温岭市委员会"
    assert organs_heading(wenling, _session(["deputy", "evaluator"], "congress")) == "温岭市人大常委会"
    assert organs_heading(wenling, _session(["committee"], None)) == "温岭市人大常委会"  # a token from before bodies
    both = "温岭市人大常委会、政协温岭市委员会"
    assert organs_heading(wenling, _session(["unit"], "congress")) == both  # units handle both bodies' cases
    assert organs_heading(wenling, None) == both
    assert (
        organs_heading(zeguo, _session(["committee"], "congress")) == organs_heading(zeguo, None) == "泽国镇人大主席团"
    )
    page = TEMPLATES.env.get_template("login.html").render(
        level=wenling, organs=both, session=None, nav=[], path="/login", people=[], csrf="x", error=None
    )
    assert f"<h1>登录{both}督办工作台</h1>" in page and "温岭市人大督办" not in page


def test_a_performance_appraisal_is_reported_to_the_levels_own_party_committee():
    from services.notify.notices import party_committee

    registry = default_registry()
    offices = {code: party_committee(registry.get(code)) for code in ("331000", "331081", "331002", "331022")}
    assert offices == {
        "331000": "台州市委办公室",
        "331081": "温岭市委办公室",
        "331002": "椒江区委办公室",
        "331022": "三门县委办公室",
    }
    assert party_committee(registry.get("331081100")) == "泽国镇党委"
    assert party_committee(registry.get("331081001")) == "太平街道党工委"
