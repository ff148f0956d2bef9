"""Evaluation over its two doors: the HTTP API (staff and evaluators, roles enforced) and the NATS
ballot subject of the hall's terminals. A second ballot is answered 409 with the reason in
Chinese however many arrive at once; a refused ballot appends nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import httpx
import pytest
from faststream.nats import NatsBroker

from contracts.envelope import SHANGHAI
from contracts.evaluation import DraftSession, SessionKind, SubjectRef, UnitRef
from services.evaluation.api import create_api
from services.evaluation.commands_nats import register_command_subscriber
from services.evaluation.domain import BallotSheet
from services.evaluation.handlers import EvaluationHandlers
from services.evaluation.projections import SessionProjection
from services.runtime.es.aggregate import DomainError
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.read.projector import Projector
from services.runtime.settings import Settings
from tests.support.clock import ManualClock
from tests.support.commands import command_request
from tests.support.stores import event_store, stored_messages

HERE = "331081"
SETTINGS = Settings(jurisdiction=HERE)
STAFF = Principal(sub="committee-1", name="代表工委", roles=[Role.committee], jurisdiction=HERE)
OPENS = datetime(2026, 12, 10, 9, 0, tzinfo=SHANGHAI)
ELECTORATE = [f"deputy-{i:02d}" for i in range(1, 6)]
SUBJECTS = [
    SubjectRef(kind="project", id="p1", title="农村饮水安全", unit=UnitRef(id="unit-water", name="市农业农村和水利局")),
    SubjectRef(kind="project", id="p2", title="老旧小区改造"),
]


def evaluator(sub: str) -> Principal:
    return Principal(sub=sub, name=sub, roles=[Role.evaluator], jurisdiction=HERE)


def bearer(principal: Principal) -> dict[str, str]:
    token = issue_token(
        principal.id, [r.value for r in principal.roles], principal.jurisdiction, secret=SETTINGS.jwt_secret
    )
    return {"Authorization": f"Bearer {token}"}


def ballot(*pairs: tuple[str, str], evaluator_id: str | None = None) -> dict:
    body: dict = {"choices": [{"subject_id": s, "option": o} for s, o in pairs]}
    return body | ({"evaluator_id": evaluator_id} if evaluator_id else {})


@pytest.fixture
def clock():
    return ManualClock(OPENS + timedelta(minutes=1))


@pytest.fixture
async def store(request, unique, clock):
    async for store in event_store(request, context=unique, jurisdiction=HERE, clock=clock):
        yield store


@pytest.fixture
def handlers(store, clock):
    return EvaluationHandlers(store, ballot_key=b"test-key", clock=clock, status_ttl_s=0.0)


@pytest.fixture
async def http(handlers):
    api = create_api(SETTINGS, handlers=handlers, engine=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://evaluation") as client:
        yield client


def draft_body(*, secret: bool = False) -> dict:
    return DraftSession(
        kind=SessionKind.satisfaction,
        title="2026年民生实事项目满意度测评",
        subjects=SUBJECTS,
        electorate=ELECTORATE,
        opens_at=OPENS,
        closes_at=OPENS + timedelta(hours=2),
        secret=secret,
    ).model_dump(mode="json", exclude_none=True)


async def opened(http, *, secret: bool = False) -> str:
    created = await http.post("/sessions", json=draft_body(secret=secret), headers=bearer(STAFF))
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    assert (await http.post(f"/sessions/{session_id}/open", headers=bearer(STAFF))).status_code == 200
    return session_id


# -- exactly once, over HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize("secret", [False, True], ids=["open", "secret"])
async def test_twenty_concurrent_ballots_over_http_one_is_taken_the_others_are_409_with_the_reason(
    http,
    nc,
    store,
    handlers,
    secret,  # nc: on the real server, whose version check decides the race
):
    session_id = await opened(http, secret=secret)
    before = await stored_messages(store)
    options = ["satisfied", "dissatisfied", "basically_satisfied", "satisfied"] * 5
    answers = await asyncio.gather(
        *(
            http.post(f"/sessions/{session_id}/ballots", json=ballot(("p1", o)), headers=bearer(evaluator("deputy-01")))
            for o in options
        )
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 19
    for refused in (a for a in answers if a.status_code == 409):
        detail = refused.json()["detail"]
        assert detail["code"] == "already_voted" and "每人每项只能投一次" in detail["message"]
    [taken] = [a.json() for a in answers if a.status_code == 200]
    assert taken["accepted"] == ["p1"] and "option" not in json.dumps(taken)
    # one sheet commit (and, in a secret session, the turnout record beside it): nothing of the 19
    assert await stored_messages(store) == before + (2 if secret else 1)
    session = await handlers.session(session_id)
    assert list((await store.load(BallotSheet, handlers.sheet_id(session, "deputy-01"))).choices) == ["p1"]


async def test_the_other_subject_can_still_be_scored_on_a_later_sheet(http, handlers, store):
    session_id = await opened(http)
    voter = bearer(evaluator("deputy-02"))
    assert (
        await http.post(f"/sessions/{session_id}/ballots", json=ballot(("p1", "satisfied")), headers=voter)
    ).is_success
    again = await http.post(
        f"/sessions/{session_id}/ballots", json=ballot(("p1", "dissatisfied"), ("p2", "satisfied")), headers=voter
    )
    assert again.status_code == 409 and again.json()["detail"]["code"] == "already_voted"  # the sheet as a whole
    later = await http.post(
        f"/sessions/{session_id}/ballots", json=ballot(("p2", "basically_satisfied")), headers=voter
    )
    assert later.status_code == 200
    sheet = await store.load(BallotSheet, handlers.sheet_id(await handlers.session(session_id), "deputy-02"))
    assert sheet.choices == {"p1": "satisfied", "p2": "basically_satisfied"}


# -- roles -----------------------------------------------------------------------------------------


async def test_roles_staff_run_sessions_evaluators_vote(http, store):
    session_id = await opened(http)
    deputy = bearer(evaluator("deputy-01"))
    outsider = bearer(evaluator("deputy-99"))
    before = await stored_messages(store)
    for refused in (
        await http.post("/sessions", json=draft_body(), headers=deputy),
        await http.post(f"/sessions/{session_id}/open", headers=deputy),
        await http.post(f"/sessions/{session_id}/close", headers=deputy),
        await http.post(f"/sessions/{session_id}/publish", headers=deputy),
        await http.get(f"/sessions/{session_id}/turnout", headers=deputy),
        # staff do not vote as themselves; they enter paper ballots naming the evaluator
        await http.post(f"/sessions/{session_id}/ballots", json=ballot(("p1", "satisfied")), headers=bearer(STAFF)),
        # nor does an evaluator enter a ballot for someone else
        await http.post(
            f"/sessions/{session_id}/ballots",
            json=ballot(("p1", "satisfied"), evaluator_id="deputy-02"),
            headers=deputy,
        ),
    ):
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"]["code"] == "forbidden" and refused.json()["detail"]["message"]
    elsewhere = Principal(sub="committee-9", name="外地", roles=[Role.committee], jurisdiction="331000")
    assert (await http.post(f"/sessions/{session_id}/open", headers=bearer(elsewhere))).status_code == 403
    outside = await http.post(f"/sessions/{session_id}/ballots", json=ballot(("p1", "satisfied")), headers=outsider)
    assert outside.status_code == 409 and outside.json()["detail"]["code"] == "not_in_electorate"
    assert "参评人员名单" in outside.json()["detail"]["message"]
    assert await stored_messages(store) == before
    # an evaluator sees the session they are called to, without the electorate; an outsider does not see it
    mine = await http.get(f"/sessions/{session_id}", headers=deputy)
    assert mine.status_code == 200 and "electorate" not in mine.json()["session"]
    assert (await http.get(f"/sessions/{session_id}", headers=outsider)).status_code == 404
    staff_view = await http.get(f"/sessions/{session_id}", headers=bearer(STAFF))
    assert staff_view.json()["session"]["electorate"] == ELECTORATE


async def test_an_evaluator_lists_only_the_sessions_they_are_called_to(http, nc, store, handlers, engine):
    session_id = await opened(http)
    projector = Projector(
        nc,
        SessionProjection(),
        engine,
        stream=store.stream,
        filter_subjects=[f"duban.evt.{store.context}.{HERE}.*"],
        jurisdiction=HERE,
        context=store.context,
        settings=store.settings,
    )
    await projector.prepare()
    await projector.catch_up(timeout=30)
    await projector.close()
    api = create_api(SETTINGS, handlers=handlers, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://evaluation") as client:
        mine = (await client.get("/sessions", headers=bearer(evaluator("deputy-01")))).json()["items"]
        theirs = (await client.get("/sessions", headers=bearer(evaluator("deputy-99")))).json()["items"]
        staff = (await client.get("/sessions", headers=bearer(STAFF))).json()["items"]
    assert [s["id"] for s in mine] == [session_id] and "electorate" not in mine[0]
    assert mine[0]["status_name"] == "测评中" and mine[0]["kind_name"] == "满意度测评"
    assert theirs == []
    assert [s["id"] for s in staff] == [session_id] and staff[0]["electorate"] == ELECTORATE


async def test_a_session_from_a_roster_takes_its_members_as_the_electorate(handlers):
    command = DraftSession(
        kind=SessionKind.performance,
        title="2026年市政府组成部门负责人履职评议",
        subjects=[SubjectRef(kind="department_head", id="head-water", title="市水利局局长")],
        roster="taiping-group-demo",
        opens_at=OPENS,
        closes_at=OPENS + timedelta(hours=2),
    )
    session = await handlers.draft(command, STAFF)
    assert session.electorate == handlers.rosters["taiping-group-demo"]["members"]
    assert session.report_to_party_committee  # 履职评议: 抄报市委 by default
    with pytest.raises(DomainError) as refused:
        await handlers.draft(command.model_copy(update={"roster": "no-such-roster"}), STAFF)
    assert refused.value.code == "unknown_roster"


# -- the hall's ballot terminals over NATS ---------------------------------------------------------


@pytest.fixture
async def terminals(nats_url, handlers, store):
    broker = NatsBroker(nats_url)
    register_command_subscriber(broker, lambda: handlers, SETTINGS, context=store.context)
    await broker.start()
    yield broker
    await broker.stop()


async def request(nc, store, command: str, body, headers: dict[str, str] | None = None) -> dict:
    return await command_request(nc, store.context, HERE, command, body, headers)


async def test_ballot_terminals_over_nats(http, terminals, nc, store, handlers):
    session_id = await opened(http)
    sheet = ballot(("p1", "satisfied"), ("p2", "dissatisfied")) | {"session_id": session_id}
    first = await request(nc, store, "cast", sheet, bearer(evaluator("deputy-03")))
    assert first == {"ok": True, "session_id": session_id, "accepted": ["p1", "p2"], "on_paper": False}
    after = await stored_messages(store)
    again = await request(nc, store, "cast", sheet, bearer(evaluator("deputy-03")))
    assert (again["ok"], again["status"], again["error"]["code"]) == (False, 409, "already_voted")
    assert "只能投一次" in again["error"]["message"]
    outsider = await request(nc, store, "cast", sheet, bearer(evaluator("deputy-99")))
    assert (outsider["status"], outsider["error"]["code"]) == (409, "not_in_electorate")
    anonymous = await request(nc, store, "cast", sheet)
    assert (anonymous["ok"], anonymous["status"]) == (False, 401)
    unknown = await request(nc, store, "erase", sheet, bearer(STAFF))
    assert (unknown["status"], unknown["error"]["code"]) == (404, "unknown_command")
    bad = await request(nc, store, "cast", {"session_id": session_id, "choices": []}, bearer(evaluator("deputy-04")))
    assert (bad["status"], bad["error"]["code"]) == (422, "invalid")
    assert await stored_messages(store) == after
    paper = await request(nc, store, "cast", sheet | {"evaluator_id": "deputy-05"}, bearer(STAFF))
    assert paper["ok"] is True and paper["on_paper"] is True
    session = await handlers.session(session_id)
    assert (await store.load(BallotSheet, handlers.sheet_id(session, "deputy-05"))).on_paper


async def test_a_window_that_ends_before_it_opens_is_refused_naming_closes_at(http):
    body = {
        "kind": "satisfaction",
        "title": "结束早于开始的测评",
        "subjects": [{"kind": "case", "id": "case-1", "title": "某件"}],
        "electorate": ["deputy-01"],
        "opens_at": "2026-12-01T09:00:00+08:00",
        "closes_at": "2026-12-01T08:00:00+08:00",
    }
    refused = await http.post("/sessions", json=body, headers=bearer(STAFF))
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert (error["field"], error["message"]) == ("closes_at", "结束时间须晚于开始时间")
    nobody = await http.post(
        "/sessions", json={**body, "electorate": [], "closes_at": "2026-12-02T09:00:00+08:00"}, headers=bearer(STAFF)
    )
    [error] = nobody.json()["detail"]
    assert (error["field"], error["message"]) == ("roster", "须给出参评人员名单或名册")


async def test_ballot_options_are_listed_in_openapi(http):
    schema = (await http.get("/openapi.json")).json()["components"]["schemas"]["Choice"]["properties"]["option"]
    assert set(schema["enum"]) == {
        "satisfied",
        "basically_satisfied",
        "dissatisfied",
        "feasible",
        "basically_feasible",
        "infeasible",
    }
    assert "满意" in schema["description"]
