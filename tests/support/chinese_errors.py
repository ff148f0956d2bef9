"""Every refusal any test provokes is checked: its body is duban's shape and its words Chinese.

The plugin wraps ``httpx.AsyncClient.send`` and ``httpx.Client.send`` for the whole session (the
API tests, the hypothesis fuzz over them, the tests against ``duban up`` through real sockets) and
every NATS command reply the tests decode (:func:`check_reply`). A response of status 400 or more
must be JSON ``{"detail": ...}`` whose every ``message`` holds Chinese and which carries none of
pydantic's English ``msg``; a test that received one that is not fails at its teardown, naming the
request and the body.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

CHINESE = re.compile(r"[\u4e00-\u9fff]")

#: The header of a response from outside duban (the tests' webhook receivers): not checked.
OUTSIDE = {"X-Outside-Duban": "test receiver"}

#: Problems seen during the running test: (what was asked, what was wrong).
_seen: list[str] = []


def refusal_problems(body: Any) -> list[str]:
    """What keeps ``body`` (a decoded error body) from being a Chinese refusal in duban's shape."""
    if isinstance(body, dict) and "reasons" in body:  # /healthz, /readyz: {"status", "reasons"}
        detail = body["reasons"]
    elif isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
    else:
        return ['no "detail"']
    items = detail if isinstance(detail, list) else [detail]
    problems = []
    for item in items:
        if not isinstance(item, dict):
            problems.append(f"detail is not an object: {item!r}")
            continue
        if "msg" in item:
            problems.append(f"English msg: {item['msg']!r}")
        message = item.get("message")
        if not isinstance(message, str) or not CHINESE.search(message):
            problems.append(f"message not Chinese: {message!r}")
    return problems


def _check_response(response: httpx.Response) -> None:
    if response.status_code < 400 or "X-Outside-Duban" in response.headers:
        return
    what = f"{response.request.method} {response.request.url.path} → {response.status_code}"
    try:
        body = json.loads(response.content)
    except ValueError:
        _seen.append(f"{what}: not JSON: {response.content[:200]!r}")
        return
    for problem in refusal_problems(body):
        _seen.append(f"{what}: {problem}")


def check_reply(reply: dict[str, Any], what: str = "NATS command") -> None:
    """A NATS command reply (``{"ok": false, "error": {...}}``) must be as Chinese as an HTTP one."""
    if reply.get("ok") is False:
        for problem in refusal_problems({"detail": reply.get("error")}):
            _seen.append(f"{what} → {reply.get('status')}: {problem}")


_async_send = httpx.AsyncClient.send
_sync_send = httpx.Client.send


async def _checked_async_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
    response = await _async_send(self, request, **kwargs)
    if not kwargs.get("stream"):
        _check_response(response)
    return response


def _checked_sync_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
    response = _sync_send(self, request, **kwargs)
    if not kwargs.get("stream"):
        _check_response(response)
    return response


def pytest_configure(config: pytest.Config) -> None:
    httpx.AsyncClient.send = _checked_async_send  # type: ignore[method-assign]
    httpx.Client.send = _checked_sync_send  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    httpx.AsyncClient.send = _async_send  # type: ignore[method-assign]
    httpx.Client.send = _sync_send  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def every_refusal_is_chinese():
    _seen.clear()
    yield
    problems, _seen[:] = list(_seen), []
    if problems:
        pytest.fail("refusals not in Chinese or not in duban's shape:\n" + "\n".join(problems[:20]), pytrace=False)
