"""Intake's HTTP API and NATS command subject: who may do what, typed refusals, retries taken once.

Every refusal leaves the event stream as it was; bad input, however malformed, is answered with
a 4xx (HTTP) or an error reply (NATS) naming the field, never with the input echoed back.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from faststream.nats import NatsBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import subjects
from contracts.jurisdictions import default_registry
from services.intake.api import create_api
from services.intake.commands_nats import register_command_subscriber
from services.intake.handlers import IntakeHandlers
from services.runtime.http.auth import issue_token
from services.runtime.read.db import make_engine
from services.runtime.settings import Settings
from tests.support.commands import command_request
from tests.support.stores import event_store, stored_messages

HERE = "331081100"  # 泽国镇
SETTINGS = Settings(jurisdiction=HERE)
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def token(sub: str = "deputy-1", roles: tuple[str, ...] = ("deputy",), jurisdiction: str = HERE) -> str:
    return issue_token(sub, list(roles), jurisdiction, name=sub, secret=SETTINGS.jwt_secret)


DEPUTY = {"Authorization": f"Bearer {token()}"}
STAFF = {"Authorization": f"Bearer {token('staff-1', ('committee',))}"}
STATION = {"Authorization": f"Bearer {token('station-1', ('liaison_station',))}"}
ELSEWHERE = {"Authorization": f"Bearer {token('deputy-9', ('deputy',), '331081001')}"}


def submission(title: str = "关于泽国镇工业园区道路破损的问题", content: str | None = None, **changes) -> dict:
    matter = {
        "kind": "problem",
        "title": title,
        "content": content or f"{title}：园区内道路多处破损，货车通行困难，企业反映强烈。",
        "lead": {"id": "deputy-1", "name": "王代表"},
        "channel": "liaison_station",
        "raised_in": HERE,
        "raised_by": {"name": "泽国某机电有限公司", "contact": "0576-00000000"},
        **changes,
    }
    return {"matter": {k: v for k, v in matter.items() if v is not None}}


@pytest.fixture
async def store(request, unique):
    async for store in event_store(request, context=unique, jurisdiction=HERE):
        yield store


@pytest.fixture
def handlers(store):
    return IntakeHandlers(store, default_registry())


@pytest.fixture
async def read_engine(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}")
    yield engine
    await engine.dispose()


@pytest.fixture
async def projectors(nc, store, read_engine):
    from services.intake.projections import MatterHistoryProjection, MatterListProjection
    from services.runtime.read.projector import Projector

    found = [
        Projector(
            nc,
            projection,
            read_engine,
            stream=store.stream,
            filter_subjects=[subjects.event_wildcard(store.context, HERE)],
            jurisdiction=HERE,
            context=store.context,
            settings=SETTINGS,
        )
        for projection in (MatterListProjection(), MatterHistoryProjection())
    ]
    for projector in found:
        await projector.prepare()
    return found


@pytest.fixture
async def client(handlers, read_engine):
    app = create_api(SETTINGS, handlers=handlers, engine=read_engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield client


@pytest.fixture
async def broker(nats_url, handlers, store):
    broker = NatsBroker(nats_url)
    register_command_subscriber(broker, handlers, SETTINGS, context=store.context)
    await broker.start()
    yield broker
    await broker.stop()


async def request(nc, store, command: str, body, headers: dict[str, str] | None = None) -> dict:
    return await command_request(nc, store.context, HERE, command, body, headers)


# -- retries are taken once -----------------------------------------------------------------------


async def test_a_submission_retried_over_http_with_its_key_is_one_matter(client, nc, store, unique):
    headers = {**DEPUTY, "Idempotency-Key": f"{unique}-1"}
    first = await client.post("/matters", json=submission(), headers=headers)
    again = await client.post("/matters", json=submission(), headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code in (200, 201)
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["status"] == "submitted" and first.json()["status_name"] == "待审查"
    assert "possible_duplicates" in first.json()
    assert await stored_messages(store) == 1


async def test_a_key_reused_for_another_submission_is_refused(client, nc, store, unique):
    headers = {**DEPUTY, "Idempotency-Key": f"{unique}-1"}
    assert (await client.post("/matters", json=submission(), headers=headers)).status_code == 201
    other = await client.post("/matters", json=submission("另一件事"), headers=headers)
    assert other.status_code == 409
    assert other.json()["detail"]["code"] == "idempotency_key_reused"
    assert await stored_messages(store) == 1


async def test_a_submission_retried_over_nats_with_its_key_is_one_matter(broker, nc, store, unique):
    headers = {**DEPUTY, "Idempotency-Key": f"{unique}-nats"}
    first = await request(nc, store, "submit", submission(), headers)
    again = await request(nc, store, "submit", submission(), headers)
    assert first["ok"] is True and again["ok"] is True, first
    assert first["matter"]["id"] == again["matter"]["id"]
    assert await stored_messages(store) == 1
    registered = await request(nc, store, "register", {"matter_id": first["matter"]["id"]}, STAFF)
    assert registered["ok"] is True and registered["matter"]["registration_no"].startswith("泽国问〔")


async def test_the_same_key_over_http_and_nats_is_the_same_matter(client, broker, nc, store, unique):
    headers = {**DEPUTY, "Idempotency-Key": f"{unique}-both"}
    over_http = await client.post("/matters", json=submission(), headers=headers)
    over_nats = await request(nc, store, "submit", submission(), headers)
    assert over_http.json()["id"] == over_nats["matter"]["id"]
    assert await stored_messages(store) == 1


# -- who may do what ------------------------------------------------------------------------------


async def test_without_a_token_nothing_is_read_or_done(client, nc, store):
    for response in (
        await client.post("/matters", json=submission()),
        await client.get("/matters"),
        await client.post("/matters", json=submission(), headers={"Authorization": "Bearer not-a-jwt"}),
        await client.post("/matters/abc/register", headers={"Authorization": "Basic dXNlcjpwdw=="}),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["detail"]["code"] == "not_authenticated"
    assert await stored_messages(store) == 0


async def test_health_needs_no_token(client):
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_another_townships_principal_is_refused(client, nc, store):
    submitted = await client.post("/matters", json=submission(), headers=DEPUTY)
    before = await stored_messages(store)
    matter_id = submitted.json()["id"]
    for response in (
        await client.post("/matters", json=submission(), headers=ELSEWHERE),
        await client.get("/matters", headers=ELSEWHERE),
        await client.get(f"/matters/{matter_id}", headers=ELSEWHERE),
        await client.get("/activities", headers=ELSEWHERE),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["detail"]["code"] == "forbidden"
    assert await stored_messages(store) == before


async def test_a_deputy_cannot_register(client, nc, store):
    matter_id = (await client.post("/matters", json=submission(), headers=DEPUTY)).json()["id"]
    before = await stored_messages(store)
    response = await client.post(f"/matters/{matter_id}/register", headers=DEPUTY)
    assert response.status_code == 403
    assert response.json()["detail"]["message"] == "仅工委工作人员可以审查、并案、交办或上报"
    assert await stored_messages(store) == before


async def test_over_nats_a_missing_or_foreign_token_and_an_unknown_command_are_answered(broker, nc, store):
    unauthenticated = await request(nc, store, "submit", submission())
    foreign = await request(nc, store, "submit", submission(), ELSEWHERE)
    unknown = await request(nc, store, "delete", {"matter_id": "x"}, STAFF)
    deputy_registers = await request(nc, store, "register", {"matter_id": "abc"}, DEPUTY)
    assert (unauthenticated["ok"], unauthenticated["status"]) == (False, 401)
    assert (foreign["status"], foreign["error"]["code"]) == (403, "forbidden")
    assert (unknown["status"], unknown["error"]["code"]) == (404, "unknown_command")
    assert deputy_registers["status"] == 403
    assert await stored_messages(store) == 0


# -- typed refusals -------------------------------------------------------------------------------


def _fields(response: httpx.Response) -> set[str]:
    return {error["field"] for error in response.json()["detail"]}


async def test_bad_input_is_422_naming_the_field_without_echoing_it(client, nc, store):
    missing_title = submission()
    del missing_title["matter"]["title"]
    long_content = "长" * 20_001
    cases = {
        "matter.title": missing_title,
        "matter.content": submission(content=long_content),
        "matter.raised_in": submission(raised_in="999999"),
    }
    for field, body in cases.items():
        response = await client.post("/matters", json=body, headers=DEPUTY)
        assert response.status_code == 422, response.text
        assert field in _fields(response)
        assert all(set(e) == {"loc", "field", "type", "message"} for e in response.json()["detail"])
        assert "长长长长" not in response.text and "泽国某机电" not in response.text
    merge_into_a_bad_id = await client.post("/matters/abc/merge", json={"into": "a.b>"}, headers=STAFF)
    assert merge_into_a_bad_id.status_code == 422 and _fields(merge_into_a_bad_id) == {"into"}
    assert (await client.post("/matters/a.b/register", headers=STAFF)).status_code == 422
    assert await stored_messages(store) == 0


async def test_over_nats_bad_input_is_an_error_reply_naming_the_field(broker, nc, store):
    reply = await request(nc, store, "submit", submission(content="长" * 20_001), DEPUTY)
    assert (reply["ok"], reply["status"], reply["error"]["field"]) == (False, 422, "matter.content")
    assert "长长长长" not in json.dumps(reply, ensure_ascii=False)
    not_json = await request(nc, store, "submit", b"{not json", {**DEPUTY, "content-type": "application/json"})
    assert (not_json["status"], not_json["error"]["code"]) == (422, "invalid")
    assert await stored_messages(store) == 0


async def test_refused_input_never_reaches_the_log(client, broker, nc, store, caplog):
    caplog.set_level(logging.DEBUG)
    marker = "机密内容标记" * 3_400  # over the content limit
    await client.post("/matters", json=submission(content=marker), headers=DEPUTY)
    await client.post("/matters", content=marker.encode(), headers={**DEPUTY, "Content-Type": "application/json"})
    await request(nc, store, "submit", submission(content=marker), DEPUTY)
    await request(nc, store, "submit", marker.encode(), DEPUTY)
    assert "机密内容标记" not in caplog.text


async def test_registering_twice_is_409_and_changes_nothing(client, nc, store):
    matter_id = (await client.post("/matters", json=submission(), headers=DEPUTY)).json()["id"]
    first = await client.post(f"/matters/{matter_id}/register", headers=STAFF)
    assert first.status_code == 200, first.text
    assert first.json()["registration_no"].startswith("泽国问〔")
    before = await stored_messages(store)
    again = await client.post(f"/matters/{matter_id}/register", headers=STAFF)
    assert again.status_code == 409
    assert again.json()["detail"]["code"] == "invalid_transition"
    assert again.json()["detail"]["field"] == "matter_id"
    assert await stored_messages(store) == before


async def test_a_missing_matter_is_404(client, nc, store):
    for response in (
        await client.post("/matters/nosuchmatter/register", headers=STAFF),
        await client.get("/matters/nosuchmatter", headers=STAFF),
        await client.get("/matters/nosuchmatter/duplicates", headers=STAFF),
    ):
        assert response.status_code == 404
        assert response.json()["detail"]["code"] == "not_found"
    assert await stored_messages(store) == 0


# -- malformed input, generated -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
not_a_string = st.none() | st.booleans() | st.integers() | st.lists(st.integers(), max_size=3) | st.just({})
wrong_types = st.fixed_dictionaries(
    {
        "matter": st.fixed_dictionaries(
            {"kind": not_a_string},  # always wrong, so no example is a valid submission
            optional={
                "title": not_a_string | st.text(max_size=300),
                "content": not_a_string,
                "lead": not_a_string | st.fixed_dictionaries({"id": not_a_string, "name": st.text()}),
                "co_signers": st.integers() | st.lists(not_a_string, max_size=3),
                "channel": not_a_string | st.text(max_size=20),
                "raised_in": not_a_string | st.text(max_size=12),
                "attachments": st.text() | st.integers(),
                "extra": json_values,
            },
        )
    }
)
malformed = json_values | wrong_types


@FEW
@given(body=malformed)
async def test_any_malformed_submission_over_http_is_4xx_and_stores_nothing(client, nc, store, body):
    before = await stored_messages(store)
    response = await client.post("/matters", json=body, headers=DEPUTY)
    assert 400 <= response.status_code < 500
    assert await stored_messages(store) == before


@FEW
@given(data=st.binary(max_size=200))
async def test_any_bytes_posted_as_json_are_4xx_and_store_nothing(client, nc, store, data):
    before = await stored_messages(store)
    response = await client.post("/matters", content=data, headers={**DEPUTY, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert await stored_messages(store) == before


@FEW
@given(body=malformed | st.binary(max_size=200))
async def test_any_malformed_submission_over_nats_is_an_error_reply_and_stores_nothing(broker, nc, store, body):
    before = await stored_messages(store)
    reply = await request(nc, store, "submit", body, DEPUTY)
    assert reply["ok"] is False and 400 <= reply["status"] < 500
    assert await stored_messages(store) == before


# -- reads ----------------------------------------------------------------------------------------


async def test_a_matter_is_readable_at_once_and_then_from_the_read_models(client, nc, store, projectors):
    matter_id = (await client.post("/matters", json=submission(), headers=DEPUTY)).json()["id"]
    await client.post(f"/matters/{matter_id}/register", headers=STAFF)

    early = await client.get(f"/matters/{matter_id}", headers=DEPUTY)  # the projectors have not run
    assert early.status_code == 200
    assert early.json()["source"] == "event_store"
    assert early.json()["matter"]["status"] == "registered"
    assert [h["event_type"] for h in early.json()["history"]] == ["intake.MatterSubmitted", "intake.MatterRegistered"]

    for projector in projectors:
        await projector.catch_up()
    detail = (await client.get(f"/matters/{matter_id}", headers=DEPUTY)).json()
    assert detail["source"] == "read_model"
    assert detail["matter"]["status_name"] == "已立案"
    assert [(h["actor_id"], h["actor_role"]) for h in detail["history"]] == [
        ("deputy-1", "deputy"),
        ("staff-1", "committee"),
    ]
    assert all(h["occurred_at"] and h["summary_zh"] for h in detail["history"])
    assert early.json()["history"][1]["summary_zh"] == detail["history"][1]["summary_zh"]


async def test_the_lists_show_the_submitted_matters(client, nc, store, projectors):
    problem = (await client.post("/matters", json=submission(), headers=DEPUTY)).json()["id"]
    suggestion = (
        await client.post(
            "/matters",
            json=submission("关于增设园区公交线路的建议", kind="suggestion", raised_by=None),
            headers=STATION,
        )
    ).json()["id"]
    for projector in projectors:
        await projector.catch_up()

    listed = await client.get("/matters", headers=DEPUTY)
    assert listed.status_code == 200
    assert {m["id"] for m in listed.json()["items"]} == {problem, suggestion}
    by_kind = await client.get("/matters", params={"kind": "suggestion"}, headers=DEPUTY)
    assert [m["id"] for m in by_kind.json()["items"]] == [suggestion]
    found = await client.get("/matters", params={"q": "公交"}, headers=DEPUTY)
    assert [m["id"] for m in found.json()["items"]] == [suggestion]
    problems = await client.get("/matters", params={"kind": ["problem", "demand"]}, headers=DEPUTY)
    assert [m["id"] for m in problems.json()["items"]] == [problem]
    bad_filter = await client.get("/matters", params={"kind": "nonsense", "limit": 0}, headers=DEPUTY)
    assert bad_filter.status_code == 422 and _fields(bad_filter) == {"kind.0", "limit"}


async def test_a_similar_matter_is_shown_as_a_possible_duplicate(client, nc, store, projectors):
    first = (await client.post("/matters", json=submission(), headers=DEPUTY)).json()["id"]
    for projector in projectors:
        await projector.catch_up()
    second = await client.post("/matters", json=submission("泽国镇工业园区道路破损问题"), headers=STATION)
    assert [d["id"] for d in second.json()["possible_duplicates"]] == [first]
    duplicates = await client.get(f"/matters/{second.json()['id']}/duplicates", headers=STAFF)
    assert [d["id"] for d in duplicates.json()["possible_duplicates"]] == [first]


async def test_activities_are_recorded_and_listed(client, nc, store, read_engine):
    from services.intake.projections import ActivityProjection
    from services.runtime.read.projector import Projector

    activity = {
        "kind": "themed",
        "title": "营商环境主题活动",
        "held_on": "2023-04-12",
        "place": "泽国镇代表联络站",
        "organiser": "泽国镇代表联络站",
        "organiser_kind": "liaison_station",
        "deputies": [{"id": "deputy-1", "name": "王代表"}],
    }
    assert (await client.post("/activities", json=activity, headers=DEPUTY)).status_code == 403
    keyed = {**STATION, "Idempotency-Key": "activity-2023-04-12"}
    recorded = await client.post("/activities", json=activity, headers=keyed)
    assert recorded.status_code == 201, recorded.text
    retried = await client.post("/activities", json=activity, headers=keyed)  # a retry: recorded once
    assert retried.status_code == 201 and retried.json()["id"] == recorded.json()["id"]
    projector = Projector(
        nc,
        ActivityProjection(),
        read_engine,
        stream=store.stream,
        filter_subjects=[subjects.event_wildcard(store.context, HERE)],
        jurisdiction=HERE,
        context=store.context,
        settings=SETTINGS,
    )
    await projector.prepare()
    await projector.catch_up()
    listed = await client.get("/activities", params={"since": "2023-04-01"}, headers=DEPUTY)
    assert [a["id"] for a in listed.json()["items"]] == [recorded.json()["id"]]


async def test_the_openapi_document_names_the_service(client):
    document = (await client.get("/openapi.json")).json()
    assert document["info"]["title"].startswith("duban intake 事项受理（")  # and the level, as every service
    assert "/matters/{matter_id}/send-down" in document["paths"]


async def test_what_fastapi_answers_by_itself_is_chinese_too(client):
    missing = await client.get("/no-such-thing", headers=STATION)
    assert missing.status_code == 404
    assert missing.json()["detail"]["code"] == "no_such_route" and "没有这个接口" in missing.json()["detail"]["message"]
    wrong_method = await client.delete("/matters", headers=STATION)
    assert wrong_method.status_code == 405 and "不支持" in wrong_method.json()["detail"]["message"]
    broken = await client.post(
        "/matters/import",
        content=b"--xyz\r\nContent-Disposition: form-data; name=",
        headers={**STATION, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= broken.status_code < 500
    assert all(ord(c) > 127 for c in broken.json()["detail"]["message"][:2]), broken.text  # Chinese first
    not_json = await client.post(
        "/matters", content=b"{not json", headers={**STATION, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert [e["message"] for e in not_json.json()["detail"]] == ["不是有效的 JSON"]
    assert all("msg" not in e for e in not_json.json()["detail"])  # no English beside the Chinese


async def test_the_raiser_is_fed_back_as_a_step_of_its_own_with_no_mail_server(client, store):
    """向企业反馈: recorded by whoever did it (here the deputy who collected it), with the way and
    the enterprise's satisfaction; no SMTP anywhere."""
    matter_id = (await client.post("/matters", json=submission(), headers=DEPUTY)).json()["id"]
    feedback = {"way": "phone", "rating": "satisfied", "note": "电话告知园区道路已修复，企业表示满意"}
    early = await client.post(f"/matters/{matter_id}/raiser-feedback", json=feedback, headers=DEPUTY)
    assert early.status_code == 409 and early.json()["detail"]["code"] == "invalid_transition"  # no outcome yet
    assert (await client.post(f"/matters/{matter_id}/register", headers=STAFF)).status_code == 200
    assert (await client.post(f"/matters/{matter_id}/route", json={}, headers=STAFF)).status_code == 200
    outcome = {"outcome": {"summary": "园区道路已修复", "reply_class": "A", "unit": "泽国镇城建办"}}
    assert (await client.post(f"/matters/{matter_id}/outcome", json=outcome, headers=STAFF)).status_code == 200
    before = await stored_messages(store)
    stranger = {"Authorization": f"Bearer {token('unit-1', ('unit',))}"}
    refused = await client.post(f"/matters/{matter_id}/raiser-feedback", json=feedback, headers=stranger)
    assert refused.status_code == 403
    future = {**feedback, "fed_back_on": "2099-01-01"}
    late = await client.post(f"/matters/{matter_id}/raiser-feedback", json=future, headers=DEPUTY)
    assert late.status_code == 409 and late.json()["detail"]["field"] == "fed_back_on"
    assert await stored_messages(store) == before
    done = await client.post(f"/matters/{matter_id}/raiser-feedback", json=feedback, headers=DEPUTY)
    assert done.status_code == 200, done.text
    assert done.json()["raiser_fed_back"] == 1
    detail = (await client.get(f"/matters/{matter_id}", headers=STAFF)).json()
    assert (
        "向反映主体反馈（电话" in detail["history"][-1]["summary_zh"] and "满意" in detail["history"][-1]["summary_zh"]
    )
    assert detail["matter"]["raiser_feedback_way"] == "phone" and detail["matter"]["raiser_rating"] == "satisfied"

    nobody = (await client.post("/matters", json=submission("无反映主体的建议", raised_by=None), headers=DEPUTY)).json()
    for step, body in (("register", None), ("route", {}), ("outcome", outcome)):
        await client.post(f"/matters/{nobody['id']}/{step}", json=body, headers=STAFF)
    no_raiser = await client.post(f"/matters/{nobody['id']}/raiser-feedback", json=feedback, headers=DEPUTY)
    assert no_raiser.status_code == 409 and no_raiser.json()["detail"]["code"] == "no_raiser"
