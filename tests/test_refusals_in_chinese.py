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
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.directory.api import create_api as directory_api
from services.directory.app import DirectoryService
from services.directory.settings import DirectorySettings
from services.evaluation.api import create_api as evaluation_api
from services.evaluation.app import EvaluationService
from services.intake.api import create_api as intake_api
from services.notify.api import create_api as notify_api
from services.runtime.http.auth import issue_token
from services.runtime.service import operated
from services.tracking.api import create_api as tracking_api
from tests.support.chinese_errors import refusal_problems
from tests.support.notify import WENLING, wenling_level


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


class Served:
    """The five services of 温岭市 as their processes serve them, and a real matter and case."""

    def __init__(self, level, evaluation: EvaluationService, directory: DirectoryService, case_id: str) -> None:
        self.case_id = case_id
        self.apps: dict[str, FastAPI] = {
            "intake": operated(
                intake_api(level.intake.settings, handlers=level.intake.handlers, engine=level.intake.engine),
                level.intake,
            ),
            "tracking": operated(
                tracking_api(level.tracking.settings, handlers=level.tracking.handlers, engine=level.tracking.engine),
                level.tracking,
            ),
            "notify": operated(
                notify_api(level.notify.settings, handlers=level.notify.handlers, engine=level.notify.engine),
                level.notify,
            ),
            "evaluation": operated(
                evaluation_api(evaluation.settings, handlers=evaluation.handlers, engine=evaluation.engine), evaluation
            ),
            "directory": operated(
                directory_api(directory.settings, handlers=directory.handlers, engine=directory.engine), directory
            ),
        }
        secret = level.intake.settings.jwt_secret
        roles = ["deputy", "committee", "unit", "liaison_station", "evaluator", "leader", "admin"]
        self.callers = [{}, {"Authorization": "Bearer x.y.z"}, {"Authorization": "Basic Zm9vOmJhcg=="}]
        self.callers += [
            {"Authorization": f"Bearer {issue_token(f'{role}-1', [role], WENLING, name=role, secret=secret)}"}
            for role in roles
        ]
        other = issue_token("deputy-9", ["deputy"], "331081100", name="泽国镇代表", secret=secret)
        self.callers.append({"Authorization": f"Bearer {other}"})
        self.operations = {
            name: sorted((method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item)
            for name, app in self.apps.items()
        }


@pytest.fixture(scope="module")
async def served(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("level")
    async with wenling_level(tmp_path) as level:
        evaluation = EvaluationService(level.intake.settings, status_ttl_s=0.0)
        directory = DirectoryService(
            level.intake.settings.as_(DirectorySettings).model_copy(update={"dev_signin": True})
        )
        await evaluation.start(close_by_time=False)
        await directory.start()
        try:
            case_id = await level.routed_suggestion()
            await level.idle()
            yield Served(level, evaluation, directory, case_id)
        finally:
            await directory.stop()
            await evaluation.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:泽国镇年月%", min_size=1, max_size=16)
query_names = ["since", "until", "year", "month", "status", "kind", "limit", "offset", "format", "last_day", "level"]
query_names += ["org", "q", "code", "state", "error"]


@pytest.mark.parametrize("service", ["intake", "tracking", "notify", "evaluation", "directory"])
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
