"""公示 (seed 002): the public page shows nothing until staff release a closed key matter, then
exactly what was released (案由, 领衔者, 主办单位, 办理落实情况摘要, 测评结果); a comment from the
public comes back in as a matter of intake, through intake's command subject."""

from __future__ import annotations

import httpx
import pytest

from contracts.intake import MatterStatus
from services.intake.domain import Matter
from services.notify import projections
from services.notify.api import create_api
from services.runtime.http.auth import issue_token
from tests.support.notify import WATER, WENLING, eventually, wenling_level_taking_commands

FIRST, SECOND, ORDINARY, OPEN = "农村饮水安全一户一表改造", "山区道路安全防护", "社区停车位规划", "老旧小区加装电梯"


@pytest.fixture
async def level(tmp_path):
    async with wenling_level_taking_commands(tmp_path) as running:
        yield running


def token(level, sub: str, role: str) -> dict[str, str]:
    secret = level.notify_settings.jwt_secret
    return {"Authorization": f"Bearer {issue_token(sub, [role], WENLING, name=sub, secret=secret)}"}


async def test_the_disclosure_page_shows_nothing_until_released_then_exactly_the_released_matters(level):
    first = await level.closed_case(FIRST)
    second = await level.closed_case(SECOND)
    ordinary = await level.closed_case(ORDINARY, key=False)
    still_open = await level.closed_case(OPEN, close=False)
    await level.idle()
    api = create_api(level.notify_settings, handlers=lambda: level.notify.handlers, engine=lambda: level.notify.engine)
    committee = token(level, "committee-1", "committee")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://notify") as http:

        async def public() -> tuple[list[dict], str]:
            await level.notify.wait_idle()
            items = (await http.get("/public/disclosures")).json()["items"]
            page = await http.get("/public/disclosures.html")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            return items, page.text

        items, page = await public()
        assert items == [] and "暂无公示内容" in page
        assert "温岭市人大常委会重点建议办理落实情况公示" in page  # the congress's heading, its organ's name
        assert all(title not in page for title in (FIRST, SECOND, ORDINARY, OPEN))

        # only staff release, and only closed key matters
        assert (await http.post("/disclosures", json={"case_id": first})).status_code == 401
        deputy = token(level, "deputy-1", "deputy")
        assert (await http.post("/disclosures", json={"case_id": first}, headers=deputy)).status_code == 403
        refused = await http.post("/disclosures", json={"case_id": ordinary}, headers=committee)
        assert refused.status_code == 409 and refused.json()["detail"]["code"] == "not_key"
        refused = await http.post("/disclosures", json={"case_id": still_open}, headers=committee)
        assert refused.status_code == 409 and refused.json()["detail"]["code"] == "not_closed"
        items, page = await public()
        assert items == []

        released = await http.post(
            "/disclosures", json={"case_id": first, "evaluation_result": "满意"}, headers=committee
        )
        assert released.status_code == 200, released.text
        items, page = await public()
        assert [item["id"] for item in items] == [first]
        item = items[0]
        assert item["title"] == FIRST and item["leads"] == ["王代表"] and item["unit"] == WATER.name
        assert item["summary"].startswith("已将一户一表改造列入2026年民生实事项目")
        assert item["evaluation_result"] == "满意"
        assert set(item) == {
            "id", "body", "title", "leads", "marks", "unit", "summary", "evaluation_result", "kind", "registration_no",
            "year", "number", "released_at",
        }  # fmt: skip
        assert item["body"] == "congress" and item["marks"] == []
        assert item["registration_no"] == f"温岭建〔{item['year']}〕{item['number']}号"
        assert FIRST in page and WATER.name in page and "满意" in page
        assert all(title not in page for title in (SECOND, ORDINARY, OPEN))
        assert (await http.get(f"/public/disclosures/{second}")).status_code == 404

        await http.post("/disclosures", json={"case_id": second}, headers=committee)
        items, _ = await public()
        assert sorted(item["title"] for item in items) == sorted([FIRST, SECOND])
        withdrawn = await http.post(f"/disclosures/{first}/withdraw", json={"reason": "内容需更新"}, headers=committee)
        assert withdrawn.status_code == 200
        items, page = await public()
        assert [item["title"] for item in items] == [SECOND] and FIRST not in page


async def test_a_public_comment_on_a_disclosure_comes_back_in_as_a_matter(level):
    case_id = await level.closed_case(FIRST)
    await level.idle()
    api = create_api(level.notify_settings, handlers=lambda: level.notify.handlers, engine=lambda: level.notify.engine)
    committee = token(level, "committee-1", "committee")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://notify") as http:
        nowhere = await http.post(f"/public/disclosures/{case_id}/comments", json={"name": "张三", "content": "好"})
        assert nowhere.status_code == 404  # not released yet
        await http.post("/disclosures", json={"case_id": case_id}, headers=committee)
        body = {"name": "张三", "contact": "13800000000", "content": "建议同步改造村里的老旧管网。"}
        sent = await http.post(
            f"/public/disclosures/{case_id}/comments", json=body, headers={"Idempotency-Key": "form-1"}
        )
        again = await http.post(
            f"/public/disclosures/{case_id}/comments", json=body, headers={"Idempotency-Key": "form-1"}
        )
        assert sent.status_code == 202 and again.json()["id"] == sent.json()["id"]

    async def forwarded():
        await level.notify.wait_idle()
        row = await projections.get_row(level.notify.engine, projections.comments, sent.json()["id"])
        return row if row and row["matter_id"] else None

    row = await eventually(forwarded)
    matter = await level.intake.handlers.store.load(Matter, row["matter_id"])
    assert matter.status == MatterStatus.submitted  # in intake's review like any other matter
    assert matter.data.title == f"对公示事项《{FIRST}》的意见"
    assert matter.data.content == "建议同步改造村里的老旧管网。"
    assert matter.data.raised_by.name == "张三" and matter.data.category == "公示意见"
    comments = await projections.list_deliveries(level.notify.engine)  # no notice is made of a comment
    assert all(d["source_event_type"] != "notify.PublicCommentReceived" for d in comments)
