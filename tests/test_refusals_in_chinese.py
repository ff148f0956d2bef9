"""Every refusal people can provoke is Chinese, in duban's shape, and never a 500.

A level of all four services runs on a real nats-server; each operation of each service's OpenAPI
(as served: with ``/readyz``, ``/metrics`` and ``/status``) is called with made-up or real ids,
query values, callers of every role or none, and malformed bodies. Every response of every test
in the suite is checked by tests/support/chinese_errors.py; this file checks that check can fail
and gives it the widest input.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.chinese_errors import refusal_problems
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
