"""Public comments (公示意见, sent without signing in) are limited per client address: at most 5 a
minute on one disclosure and 30 an hour on all (notify's settings), beyond that 429 in Chinese
with ``Retry-After``. A burst of 50 from one address makes 5 matters, not 50; another disclosure,
or another address, is not held back by it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from services.intake.projections import matters
from services.notify import projections
from services.notify.api import create_api
from services.runtime.http.auth import issue_token
from services.runtime.http.limits import Limiter, Rate, TooManyRequests
from tests.support.chinese_errors import refusal_problems
from tests.support.notify import WENLING, eventually, wenling_level_taking_commands

COMMENT = {"name": "张三", "contact": "13800000000", "content": "建议同步改造村里的老旧管网。"}


# -- the limiter ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_target_takes_five_a_minute_from_an_address_and_the_window_slides():
    clock = Clock()
    limiter = Limiter("公示意见", per_target=Rate(5, 60), per_address=Rate(30, 3600), clock=clock)
    for second in range(5):
        clock.now = 1000.0 + second
        limiter.take("10.0.0.1", "case-1")
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("10.0.0.1", "case-1")
    # the first of the five leaves the window 60 s after it came (at 1060), 56 s from now
    assert refused.value.retry_after_s == 56
    assert refused.value.message == "公示意见提交过于频繁（同一来源对同一事项每 1 分钟至多 5 次），请 56 秒后再试"
    limiter.take("10.0.0.1", "case-2")  # another disclosure
    limiter.take("10.0.0.2", "case-1")  # another address
    clock.now = 1060.0
    limiter.take("10.0.0.1", "case-1")  # one has left the window: one more, not five
    with pytest.raises(TooManyRequests):
        limiter.take("10.0.0.1", "case-1")


def test_an_address_takes_thirty_an_hour_on_all_targets_together():
    clock = Clock()
    limiter = Limiter("公示意见", per_target=Rate(5, 60), per_address=Rate(30, 3600), clock=clock)
    for n in range(30):
        clock.now = 1000.0 + n
        limiter.take("10.0.0.1", f"case-{n}")
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("10.0.0.1", "case-99")
    assert refused.value.message == "公示意见提交过于频繁（同一来源每 1 小时至多 30 次），请 3571 秒后再试"
    assert refused.value.retry_after_s == 3571
    limiter.take("10.0.0.2", "case-99")
    clock.now = 1000.0 + 3600
    limiter.take("10.0.0.1", "case-99")


def test_a_refused_write_is_not_counted_and_quiet_addresses_are_forgotten():
    clock = Clock()
    limiter = Limiter("公示意见", per_target=Rate(1, 60), per_address=Rate(2, 60), clock=clock)
    limiter.take("10.0.0.1", "case-1")
    for _ in range(10):
        with pytest.raises(TooManyRequests):
            limiter.take("10.0.0.1", "case-1")
    limiter.take("10.0.0.1", "case-2")  # the ten refused did not use up the address's two
    for n in range(100):
        limiter.take(f"10.0.1.{n}", "case-1")
    clock.now += 61
    limiter.take("10.0.0.9", "case-1")
    assert len(limiter.by_address._hits) == 1 and len(limiter.by_target._hits) == 1


# -- over HTTP, against a level ---------------------------------------------------------------------


@pytest.fixture
async def level(tmp_path):
    async with wenling_level_taking_commands(tmp_path) as running:
        yield running


def public(api, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://notify")


async def released(level, api, *titles: str) -> list[str]:
    """Closed key matters, released for 公示 by staff."""
    secret = level.notify_settings.jwt_secret
    staff = {"Authorization": f"Bearer {issue_token('committee-1', ['committee'], WENLING, secret=secret)}"}
    ids = [await level.closed_case(title) for title in titles]
    await level.idle()
    async with public(api, "127.0.0.1") as http:
        for case_id in ids:
            answer = await http.post("/disclosures", json={"case_id": case_id}, headers=staff)
            assert answer.status_code == 200, answer.text
    return ids


async def comment_matters(level) -> int:
    async with level.intake.engine.connect() as db:
        return await db.scalar(select(func.count()).select_from(matters).where(matters.c.category == "公示意见"))


async def test_fifty_comments_in_a_burst_from_one_address_make_five_matters_and_hold_back_no_one_else(level):
    api = create_api(level.notify_settings, handlers=lambda: level.notify.handlers, engine=lambda: level.notify.engine)
    first, second = await released(level, api, "农村饮水安全一户一表改造", "山区道路安全防护")
    async with public(api, "203.0.113.7") as attacker:
        burst = await asyncio.gather(
            *(attacker.post(f"/public/disclosures/{first}/comments", json=COMMENT) for _ in range(50))
        )
        assert sorted(r.status_code for r in burst) == [202] * 5 + [429] * 45
        for refused in (r for r in burst if r.status_code == 429):
            assert refusal_problems(refused.json()) == []
            assert refused.json()["detail"]["code"] == "too_many_requests"
            assert "同一来源对同一事项每 1 分钟至多 5 次" in refused.json()["detail"]["message"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        other_disclosure = await attacker.post(f"/public/disclosures/{second}/comments", json=COMMENT)
        assert other_disclosure.status_code == 202
    async with public(api, "198.51.100.20") as neighbour:
        other_address = await neighbour.post(f"/public/disclosures/{first}/comments", json=COMMENT)
        assert other_address.status_code == 202

    async def all_forwarded():
        await level.notify.wait_idle()
        await level.intake.wait_idle()
        async with level.notify.engine.connect() as db:
            rows = (await db.execute(select(projections.comments))).mappings().all()
        return len(rows) == 7 and all(row["matter_id"] for row in rows) and await comment_matters(level) == 7

    assert await eventually(all_forwarded)
    await asyncio.sleep(0.5)  # nothing more arrives
    assert await comment_matters(level) == 7


async def test_the_limits_are_settings(level):
    settings = level.notify_settings.model_copy(update={"public_comments_per_minute": 1, "public_comments_per_hour": 2})
    api = create_api(settings, handlers=lambda: level.notify.handlers, engine=lambda: level.notify.engine)
    first, second, third = await released(level, api, "甲", "乙", "丙")
    async with public(api, "203.0.113.8") as http:
        assert (await http.post(f"/public/disclosures/{first}/comments", json=COMMENT)).status_code == 202
        again = await http.post(f"/public/disclosures/{first}/comments", json=COMMENT)
        assert again.status_code == 429 and "每 1 分钟至多 1 次" in again.json()["detail"]["message"]
        assert (await http.post(f"/public/disclosures/{second}/comments", json=COMMENT)).status_code == 202
        third_one = await http.post(f"/public/disclosures/{third}/comments", json=COMMENT)
        assert third_one.status_code == 429 and "同一来源每 1 小时至多 2 次" in third_one.json()["detail"]["message"]
