"""Bad input is refused 4xx in Chinese, never answered 500 (issue 19's findings, each as the attacker
sent it).

Each request goes over a socket to the service as ``duban serve`` runs it (uvicorn), on one
keep-alive connection per service: after a refusal the same connection answers the next request
(a 500 used to reset it). The findings: days far outside any matter's (``until=9999-12-31``,
``since=0001-01-01``) on intake's matters and activities and notify's four lists; offsets past
SQLite's integers (``offset=2**63``, ``1e20``) on tracking's cases and notify's inbox and
deliveries; months no summary has (``0001-01``, ``9999-12``); a ballot naming a subject twice (over
HTTP and over the hall's NATS subject); a 20 MB chunked body (413, not 400). Then what the fuzz over
the services' OpenAPI found (tests/test_refusals_in_chinese.py), and days beyond the bounds in
command bodies and plan files, which were taken as they came.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import nats
import pytest
from faststream.nats import NatsBroker

from contracts.envelope import utcnow
from services.evaluation.commands_nats import register_command_subscriber
from services.intake.commands_nats import register_command_subscriber as register_intake_commands
from services.runtime.http.bounds import MAX_OFFSET
from tests.support.chinese_errors import refusal_problems
from tests.support.commands import command_request
from tests.support.notify import WENLING
from tests.support.served import PLAN, SERVICES, listening, served_level

served = pytest.fixture(scope="module")(served_level)

DATES = "日期超出范围（应在 2000-01-01 至 2100-12-31 之间）"
MONTHS = "月份无效（应为 2000-01 至 2100-12 之间的年月，如 2026-09）"
OFFSETS = f"数值超出范围（应不大于 {MAX_OFFSET}）"
LISTS = ("problems", "suggestions", "supervision", "results")

#: (service, method, path, query, the field refused, its message): every one answered 500 before.
FINDINGS = [
    ("intake", "GET", "/matters", {"until": "9999-12-31"}, "until", DATES),
    ("intake", "GET", "/matters", {"since": "0001-01-01"}, "since", DATES),
    ("intake", "GET", "/matters", {"since": "0001-01-01T00:00:00"}, "since", DATES),
    ("intake", "GET", "/matters", {"until": "9999-12-31T23:59:59+14:00"}, "until", DATES),
    ("intake", "GET", "/activities", {"since": "0001-01-01"}, "since", DATES),
    ("intake", "GET", "/activities", {"until": "9999-12-31"}, "until", DATES),
    *(("notify", "GET", f"/lists/{name}", {"until": "9999-12-31"}, "until", DATES) for name in LISTS),
    *(("notify", "GET", f"/lists/{name}", {"since": "0001-01-01"}, "since", DATES) for name in LISTS),
    ("tracking", "GET", "/cases", {"offset": str(2**63)}, "offset", OFFSETS),
    ("tracking", "GET", "/cases", {"offset": str(10**20)}, "offset", OFFSETS),
    ("notify", "GET", "/inbox", {"offset": str(10**20)}, "offset", OFFSETS),
    ("notify", "GET", "/inbox", {"offset": str(2**63)}, "offset", OFFSETS),
    ("notify", "GET", "/deliveries", {"offset": str(10**20)}, "offset", OFFSETS),
    ("notify", "GET", "/deliveries", {"offset": str(2**63)}, "offset", OFFSETS),
    ("intake", "GET", "/matters", {"offset": str(2**63)}, "offset", OFFSETS),
    ("notify", "GET", "/summaries/0001-01", {}, "month", MONTHS),
    ("notify", "GET", "/summaries/9999-12", {}, "month", MONTHS),
    ("notify", "GET", "/summaries/1999-12", {"format": "xlsx"}, "month", MONTHS),
    ("notify", "POST", "/summaries/9999-12/report", {}, "month", MONTHS),
    ("notify", "POST", "/summaries/0001-01/report", {}, "month", MONTHS),
    ("tracking", "GET", "/plan-items", {"month": "0000-01"}, "month", MONTHS),  # with a plan of windows
    ("tracking", "GET", "/plan-items", {"month": "9999-12"}, "month", MONTHS),
]


@pytest.fixture(scope="module")
async def over_sockets(served) -> AsyncIterator[dict[str, str]]:
    """Each service's base URL, served by uvicorn."""
    urls: dict[str, str] = {}
    servers = [listening(served.apps[name]) for name in SERVICES]
    try:
        for name, server in zip(SERVICES, servers, strict=True):
            urls[name] = await server.__aenter__()
        yield urls
    finally:
        for server in reversed(servers[: len(urls)]):
            await server.__aexit__(None, None, None)


@pytest.fixture
def staff(served) -> dict[str, str]:
    return served.bearer("committee-1", "committee", name="陈工委")


def local_port(response: httpx.Response) -> int:
    """The client's port of the connection a response came on: the same port, the same connection."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


async def refused_then_answered(http: httpx.AsyncClient, method: str, path: str, **kwargs) -> httpx.Response:
    """Send a bad request and then ``GET /healthz`` on the same keep-alive connection."""
    refused = await http.request(method, path, **kwargs)
    after = await http.get("/healthz")
    assert after.status_code == 200, after.text
    assert local_port(after) == local_port(refused), "the connection was closed after the refusal"
    return refused


def the_error(response: httpx.Response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert refusal_problems(body) == []
    return body["detail"][0] if isinstance(body["detail"], list) else body["detail"]


@pytest.mark.parametrize(
    ("service", "method", "path", "params", "field", "message"),
    FINDINGS,
    ids=[f"{s}-{m}-{p}-{'&'.join(f'{k}={v}' for k, v in q.items())}" for s, m, p, q, *_ in FINDINGS],
)
async def test_what_answered_500_is_refused_422_naming_the_parameter_and_the_connection_stays(
    served, over_sockets, staff, service, method, path, params, field, message
):
    async with httpx.AsyncClient(base_url=over_sockets[service], headers=staff) as http:
        refused = await refused_then_answered(http, method, path, params=params)
    assert refused.status_code == 422
    error = the_error(refused)
    assert (error["field"], error["message"]) == (field, message)


async def test_days_and_months_within_the_bounds_are_still_answered(served, staff):
    transport = httpx.ASGITransport(app=served.apps["intake"])
    async with httpx.AsyncClient(transport=transport, base_url="http://intake", headers=staff) as http:
        found = await http.get("/matters", params={"since": "2000-01-01", "until": "2100-12-31"})
        assert found.status_code == 200 and [m["id"] for m in found.json()["items"]] == [served.case_id]
        instants = {"since": "2000-01-01T00:00:00+08:00", "until": "2100-12-31T23:59:59+08:00"}
        assert [m["id"] for m in (await http.get("/matters", params=instants)).json()["items"]] == [served.case_id]
        assert (await http.get("/matters", params={"offset": MAX_OFFSET})).json()["items"] == []
    transport = httpx.ASGITransport(app=served.apps["notify"])
    async with httpx.AsyncClient(transport=transport, base_url="http://notify", headers=staff) as http:
        listed = await http.get("/lists/problems", params={"since": "2000-01-01", "until": "2100-12-31"})
        assert listed.status_code == 200
        for month in ("2000-01", "2100-12"):
            assert (await http.get(f"/summaries/{month}")).status_code == 200
    transport = httpx.ASGITransport(app=served.apps["tracking"])
    async with httpx.AsyncClient(transport=transport, base_url="http://tracking", headers=staff) as http:
        items = (await http.get("/plan-items", params={"month": "2023-10"})).json()["items"]
        assert items and {item["plan_id"] for item in items} == {served.plan_id}


# -- a ballot naming a subject twice ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def session_id(served) -> str:
    """An open satisfaction session of two subjects, deputy-01 … deputy-03 called to it."""
    now = utcnow()
    draft = {
        "kind": "satisfaction",
        "title": "重复测评对象的测评",
        "subjects": [
            {"kind": "project", "id": "p1", "title": "农村饮水"},
            {"kind": "project", "id": "p2", "title": "道路"},
        ],
        "electorate": ["deputy-01", "deputy-02", "deputy-03"],
        "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=2)).isoformat(),
    }
    staff = served.bearer("committee-1", "committee")
    transport = httpx.ASGITransport(app=served.apps["evaluation"])
    async with httpx.AsyncClient(transport=transport, base_url="http://evaluation", headers=staff) as http:
        created = await http.post("/sessions", json=draft)
        assert created.status_code == 201, created.text
        opened = await http.post(f"/sessions/{created.json()['id']}/open")
        assert opened.status_code == 200, opened.text
    return created.json()["id"]


TWICE = [{"subject_id": "p1", "option": "satisfied"}, {"subject_id": "p1", "option": "dissatisfied"}]
TWICE_SAME = [{"subject_id": "p2", "option": "satisfied"}, {"subject_id": "p2", "option": "satisfied"}]


@pytest.mark.parametrize("choices", [TWICE, TWICE_SAME], ids=["other-option", "same-option"])
async def test_a_ballot_naming_a_subject_twice_is_refused_over_http_and_nothing_is_taken(
    served, over_sockets, session_id, choices
):
    voter = served.bearer("deputy-01", "evaluator")
    async with httpx.AsyncClient(base_url=over_sockets["evaluation"], headers=voter) as http:
        refused = await refused_then_answered(
            http, "POST", f"/sessions/{session_id}/ballots", json={"choices": choices}
        )
        assert refused.status_code == 422
        assert the_error(refused)["message"] == "同一测评对象在一张票上出现两次"
        # nothing of it was taken: the sheet without the repetition is (a second one would be 409)
        taken = await http.post(f"/sessions/{session_id}/ballots", json={"choices": choices[:1]})
        assert taken.status_code == 200 and taken.json()["accepted"] == [choices[0]["subject_id"]]


async def test_a_ballot_naming_a_subject_twice_is_refused_over_the_halls_nats_subject(served, session_id):
    broker = NatsBroker(served.level.nats.url)
    register_command_subscriber(broker, lambda: served.evaluation.handlers, served.evaluation.settings)
    await broker.start()
    nc = await nats.connect(served.level.nats.url)
    try:
        sheet = {"session_id": session_id, "choices": TWICE}
        voter = served.bearer("deputy-02", "evaluator")
        refused = await command_request(nc, "evaluation", WENLING, "cast", sheet, voter)
        assert (refused["ok"], refused["status"], refused["error"]["code"]) == (False, 422, "invalid")
        assert "同一测评对象在一张票上出现两次" in json.dumps(refused["error"], ensure_ascii=False)
        taken = await command_request(nc, "evaluation", WENLING, "cast", sheet | {"choices": TWICE[:1]}, voter)
        assert taken["ok"] is True and taken["accepted"] == ["p1"]
    finally:
        await nc.close()
        await broker.stop()


async def test_publishing_the_results_of_a_session_that_does_not_exist_is_404(served, over_sockets, staff):
    async with httpx.AsyncClient(base_url=over_sockets["evaluation"], headers=staff) as http:
        refused = await refused_then_answered(http, "POST", "/sessions/no-such-session/publish")
    assert refused.status_code == 404
    assert the_error(refused) == {"code": "not_found", "message": "测评 no-such-session 不存在", "field": "session_id"}


# -- bodies past the limit -------------------------------------------------------------------------


async def twenty_megabytes() -> AsyncIterator[bytes]:
    """A JSON body of 20 MB sent in chunks (``Transfer-Encoding: chunked``, no ``Content-Length``)."""
    yield b'{"content": "'
    for _ in range(20 * 16):
        yield b"x" * 65536
    yield b'"}'


@pytest.mark.parametrize(
    ("service", "path", "auth"),
    [
        ("intake", "/matters", True),
        ("notify", "/public/disclosures/case-1/comments", False),
        ("tracking", "/plans", True),
        ("evaluation", "/sessions", True),
        ("directory", "/people", True),
    ],
)
async def test_a_chunked_body_past_the_limit_is_answered_413_in_chinese(
    served, over_sockets, staff, service, path, auth
):
    headers = {"Content-Type": "application/json", **(staff if auth else {})}
    async with httpx.AsyncClient(base_url=over_sockets[service], timeout=30) as http:
        refused = await http.post(path, content=twenty_megabytes(), headers=headers)
        assert "content-length" not in refused.request.headers
        assert refused.request.headers["transfer-encoding"] == "chunked"
        assert refused.status_code == 413, refused.text
        error = the_error(refused)
        assert error["code"] == "too_large" and error["message"].startswith("请求内容过大（上限")
        # a new connection is answered at once
        assert (await http.get("/healthz")).status_code == 200


async def test_a_body_past_the_limit_by_its_content_length_is_answered_413_in_chinese(served, over_sockets):
    async with httpx.AsyncClient(base_url=over_sockets["notify"]) as http:
        refused = await http.post("/public/disclosures/case-1/comments", content=b"x" * 300_000)
        assert refused.status_code == 413 and the_error(refused)["code"] == "too_large"


# -- found by the fuzz over the services' OpenAPI (tests/test_refusals_in_chinese.py) -----------------


async def test_an_id_of_another_kind_of_record_is_refused_409_naming_it(served, staff):
    """A case's id given as a plan's; an organisation's given as a person's (one context keeps
    both kinds under one space of ids): nothing of it loads as what was asked for."""
    transport = httpx.ASGITransport(app=served.apps["tracking"])
    async with httpx.AsyncClient(transport=transport, base_url="http://tracking", headers=staff) as http:
        refused = await http.post(f"/plans/{served.case_id}/duties/duty-1/done", json={})
    assert refused.status_code == 409
    assert the_error(refused) == {
        "code": "other_kind",
        "message": f"编号 {served.case_id} 已用于另一类记录，不能在此使用",
        "field": None,
    }
    admin = served.bearer("admin-1", "admin", name="管理员")
    transport = httpx.ASGITransport(app=served.apps["directory"])
    async with httpx.AsyncClient(transport=transport, base_url="http://directory", headers=admin) as http:
        org = {"id": "unit-kind-test", "kind": "unit", "name": "市水利局"}
        assert (await http.post("/orgs", json={"org": org})).status_code == 201
        person = {"id": "unit-kind-test", "kind": "deputy", "name": "王五"}
        refused = await http.post("/people", json={"person": person})
        assert refused.status_code == 409 and the_error(refused)["code"] == "other_kind"
        as_org = await http.post(
            "/people", json={"person": {**person, "id": "deputy-kind-test", "orgs": [served.case_id]}}
        )
        assert as_org.status_code == 403  # not an organisation of the directory (another context's id)
        assert (await http.post("/people/unit-kind-test/disable", json={"reason": "调离"})).status_code == 409


async def test_a_persons_organisation_that_no_id_could_name_is_refused_422(served):
    admin = served.bearer("admin-1", "admin", name="管理员")
    transport = httpx.ASGITransport(app=served.apps["directory"])
    async with httpx.AsyncClient(transport=transport, base_url="http://directory", headers=admin) as http:
        for org in ("", "单位 甲", "x" * 65):
            person = {"id": "deputy-orgs-test", "kind": "deputy", "name": "赵六", "orgs": [org]}
            refused = await http.post("/people", json={"person": person})
            assert refused.status_code == 422, refused.text
            assert the_error(refused) == {
                "code": "invalid_id",
                "message": "所属组织的编号只能包含字母、数字、下划线和连字符（1 至 64 位）",
                "field": "person.orgs",
            }


# -- days in command bodies -------------------------------------------------------------------------

MATTER = {
    "kind": "problem",
    "title": "村道路灯损坏",
    "content": "村道路灯损坏多日，夜间出行不便。",
    "lead": {"id": "committee-1", "name": "陈工委"},
    "channel": "session",
    "raised_in": WENLING,
}
ACTIVITY = {
    "kind": "research",
    "title": "调研",
    "place": "泽国镇",
    "organiser": "联络站",
    "organiser_kind": "committee",
}
UNIT = {"lead_unit": {"id": "unit-water", "name": "市农业农村和水利局"}, "committee": "农业农村工委"}
SESSION = {
    "kind": "satisfaction",
    "title": "测评",
    "subjects": [{"kind": "project", "id": "p1", "title": "农村饮水"}],
    "electorate": ["deputy-01"],
    "opens_at": "2026-12-01T09:00:00+08:00",
    "closes_at": "2026-12-01T11:00:00+08:00",
}

#: (service, path, body, the field refused): days no command of duban's can mean, accepted before.
BODIES = [
    ("intake", "/matters", {"matter": {**MATTER, "raised_at": "0001-01-01T00:00:00+14:00"}}, "matter.raised_at"),
    ("intake", "/activities", {**ACTIVITY, "held_on": "9999-12-31"}, "held_on"),
    ("intake", "/activities", {**ACTIVITY, "held_on": "1999-12-31"}, "held_on"),
    ("tracking", "/cases/{case_id}/assign", {**UNIT, "due_on": "9999-12-31"}, "due_on"),
    ("tracking", "/plans/{plan_id}/duties/d1/done", {"done_on": "0001-01-01"}, "done_on"),
    ("evaluation", "/sessions", {**SESSION, "closes_at": "9999-12-31T23:59:59-12:00"}, "closes_at"),
]


@pytest.mark.parametrize(("service", "path", "body", "field"), BODIES, ids=[f"{s}-{f}" for s, _, _, f in BODIES])
async def test_a_day_beyond_the_bounds_in_a_command_is_refused_422_naming_it(served, staff, service, path, body, field):
    path = path.format(case_id=served.case_id, plan_id=served.plan_id)
    transport = httpx.ASGITransport(app=served.apps[service])
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{service}", headers=staff) as http:
        refused = await http.post(path, json=body)
    assert refused.status_code == 422, refused.text
    assert the_error(refused) | {"loc": None} == {
        "loc": None,
        "field": field,
        "type": "date_out_of_range",
        "message": DATES,
    }


async def test_a_day_beyond_the_bounds_is_refused_over_intakes_nats_command_subject_too(served):
    broker = NatsBroker(served.level.nats.url)
    register_intake_commands(broker, lambda: served.level.intake.handlers, served.level.intake.settings)
    await broker.start()
    nc = await nats.connect(served.level.nats.url)
    try:
        body = {"matter": {**MATTER, "raised_at": "9999-12-31T23:59:59-12:00"}}
        deputy = served.bearer("committee-1", "committee", "deputy")
        refused = await command_request(nc, "intake", WENLING, "submit", body, deputy)
        assert (refused["ok"], refused["status"], refused["error"]["field"]) == (False, 422, "matter.raised_at")
        assert refused["error"]["message"] == f"matter.raised_at：{DATES}"
    finally:
        await nc.close()
        await broker.stop()


async def test_a_plan_file_with_a_day_beyond_the_bounds_is_refused_naming_it(served, staff):
    plan = json.loads(PLAN.read_text(encoding="utf-8"))
    plan["id"] = "plan-bounds-test"
    plan["items"] = [{**item, "id": f"plan-bounds-test-{n}"} for n, item in enumerate(plan["items"])]
    plan["phases"][0]["end"] = "9999-12-31"
    transport = httpx.ASGITransport(app=served.apps["tracking"])
    async with httpx.AsyncClient(transport=transport, base_url="http://tracking", headers=staff) as http:
        content = json.dumps(plan, ensure_ascii=False).encode()
        refused = await http.post("/plans/import", files={"file": ("plan.json", content)})
    assert refused.status_code == 409
    assert the_error(refused) == {
        "code": "date_out_of_range",
        "message": f"plan.phases.0.end：{DATES}",
        "field": "plan.phases.0.end",
    }
