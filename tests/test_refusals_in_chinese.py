"""Every refusal people can provoke is Chinese, in duban's shape, and never a 500.

A level of all five services runs on a real nats-server; each operation of each service's OpenAPI
(as served: with ``/readyz``, ``/metrics`` and ``/status``) is called with made-up or real ids,
query values, callers of every role or none, and malformed bodies. Every response of every test
in the suite is checked by tests/support/chinese_errors.py; this file checks that check can fail
and gives it the widest input.

Then the fuzz of issue 19: requests drawn from each service's OpenAPI document by its schemas
(tests/support/openapi_cases.py), sent as committee staff (with the administrator's role at the
directory, whose writes are an administrator's), so most get past validation and reach the
handlers, the event store and the read models: none may be answered 5xx. How many each service
took, and what it answered, is printed with ``-s`` and kept in .duban/fuzz/openapi.json.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.chinese_errors import refusal_problems
from tests.support.openapi_cases import ID, Cases
from tests.support.served import SERVICES, served_level


def test_the_check_refuses_english_and_foreign_shapes():
    assert refusal_problems({"detail": "Not Found"}) == ["detail is not an object: 'Not Found'"]
    assert refusal_problems({"detail": {"code": "x", "message": "Field required"}}) == [
        "message not Chinese: 'Field required'"
    ]
    assert refusal_problems({"detail": [{"msg": "Field required", "message": "必填"}]}) == [
        "English msg: 'Field required'"
    ]
    assert refusal_problems({"error": "bad signature"}) == ['no "detail"']
    assert refusal_problems({"detail": {"code": "not_found", "message": "事项不存在", "field": None}}) == []
    assert refusal_problems({"status": "unavailable", "reasons": [{"code": "nats", "message": "消息总线不可用"}]}) == []


served = pytest.fixture(scope="module")(served_level)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:泽国镇年月%", min_size=1, max_size=16)
query_names = ["since", "until", "year", "month", "status", "kind", "limit", "offset", "format", "last_day", "level"]
query_names += ["org", "q", "code", "state", "error"]


@pytest.mark.parametrize("service", SERVICES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), body=json_values | st.binary(max_size=80))
async def test_every_operation_refuses_bad_calls_in_chinese_and_never_with_a_500(served, service, data, body):
    app = served.apps[service]
    method, template = data.draw(st.sampled_from(served.operations[service]), label="operation")
    ids = words | st.just(served.case_id)
    path = re.sub(r"\{[^}]+\}", lambda _: data.draw(ids, label="path value"), template)
    params = data.draw(st.dictionaries(st.sampled_from(query_names), words, max_size=3), label="query")
    caller = data.draw(st.sampled_from(served.callers), label="caller")
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}") as http:
        response = await http.request(
            method, path, params=params, content=content, headers={**caller, "Content-Type": "application/json"}
        )
    assert response.status_code < 500, (method, path, params, response.text)
    if response.status_code >= 400:
        assert refusal_problems(response.json()) == [], (method, path, response.text)


# -- the fuzz over each service's OpenAPI, as committee staff ----------------------------------------

#: Requests per service: 800 took 16 to 41 s a service beside the rest of ``make test`` (120 s of
#: its 1,290 worker-seconds), 400 half that, so the suite stays under ten minutes on two cores
#: (the figures of a run are printed with ``-s`` and written to .duban/fuzz/openapi.json);
#: ``DUBAN_FUZZ_EXAMPLES`` asks for more (4,000 a service found nothing more than 800).
FUZZ_EXAMPLES = int(os.environ.get("DUBAN_FUZZ_EXAMPLES", "400"))
FIGURES = Path(__file__).resolve().parents[1] / ".duban" / "fuzz" / "openapi.json"


@pytest.fixture(scope="module")
def fuzz_figures():
    """How many requests the fuzz sent to each service, how many were answered what, and in what time."""
    figures: dict[str, dict] = {}
    yield figures
    for seen in figures.values():
        seen.pop("started", None)
    if figures:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8")
        for service, seen in figures.items():
            print(f"\nfuzz {service}: {seen['cases']} requests in {seen['seconds']:.1f} s, statuses {seen['statuses']}")


@pytest.fixture(scope="module")
def openapi(served):
    """Each service's requests as its OpenAPI describes them, and the ids the services answered with."""
    found: list[str] = [served.case_id, served.plan_id]
    return {name: Cases(app.openapi(), lambda: found) for name, app in served.apps.items()}, found


def ids_in(body, found: list[str]) -> None:
    """Remember the ids an answer names (``id``, ``…_id``), for later requests' paths and bodies."""
    if isinstance(body, dict):
        for key, value in body.items():
            if (key == "id" or key.endswith("_id")) and isinstance(value, str) and ID.match(value):
                if value not in found:
                    found.append(value)
                    del found[:-200]
            else:
                ids_in(value, found)
    elif isinstance(body, list):
        for value in body[:20]:
            ids_in(value, found)


@pytest.mark.parametrize("service", SERVICES)
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
async def test_requests_drawn_from_each_services_openapi_by_committee_staff_never_get_a_500(
    served, openapi, fuzz_figures, service, data
):
    cases, found = openapi
    roles = ("committee", "admin") if service == "directory" else ("committee",)  # the directory's writes: admin
    staff = served.bearer("committee-fuzz", *roles, name="模糊测试工委")
    request = cases[service].request(data)
    seen = fuzz_figures.setdefault(service, {"cases": 0, "seconds": 0.0, "statuses": {}, "started": time.monotonic()})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served.apps[service]), base_url="http://x") as http:
        response = await http.request(
            request["method"],
            request["path"],
            params=request["params"],
            headers={**request["headers"], **staff},
            **{k: request[k] for k in ("json", "files", "data") if k in request},
        )
    seen["cases"] += 1
    seen["seconds"] = time.monotonic() - seen["started"]
    seen["statuses"][str(response.status_code)] = seen["statuses"].get(str(response.status_code), 0) + 1
    shown = (request["method"], request["path"], request["params"], request.get("json"), response.text[:500])
    assert response.status_code < 500, shown
    if response.status_code >= 400:
        assert refusal_problems(response.json()) == [], shown
    elif response.headers.get("content-type", "").startswith("application/json"):
        ids_in(response.json(), found)
