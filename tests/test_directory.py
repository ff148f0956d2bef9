"""The directory (名册) of one level: rosters imported from the XLSX files offices keep, once
however often; bad rows reported by number and reason and changing nothing; mobiles masked for
those who do not need them; the export for administrators only; and the groups of the directory
as evaluation's electorates."""

from __future__ import annotations

import io
import random
from datetime import timedelta

import httpx
import openpyxl
import pytest

from contracts.envelope import utcnow
from contracts.evaluation import DraftSession, SessionKind, SubjectRef
from contracts.jurisdictions import default_registry
from services.directory.api import create_api
from services.directory.app import DEMO_FILE, DirectoryService
from services.directory.dev import dev_directory
from services.directory.settings import DirectorySettings
from services.evaluation.app import EvaluationService
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.read import people as directory
from services.runtime.service import operated
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.stores import stored_messages

WENLING = "331081"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
GIVEN = "建国 海燕 志强 秀英 伟 芳 军 丽 勇 敏 杰 静 磊 娟 涛 霞 斌 艳 强 萍 明 红 超 玲 波 华 辉 英 刚 琴".split()
STATIONS = ["太平街道人大代表联络站", "城东街道人大代表联络站", "泽国镇人大代表联络站"]
HEADER = ["姓名", "性别", "证号", "所属代表团/界别", "联络站", "手机"]


def bearer(principal_id: str, role: Role) -> dict[str, str]:
    token = issue_token(principal_id, [role.value], WENLING, secret=Settings().jwt_secret)
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer("admin-331081", Role.admin)
COMMITTEE = bearer("committee-331081", Role.committee)


def roster(rows: list[list]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def three_hundred_rows() -> tuple[list[list], dict[int, str]]:
    """300 rows (sheet rows 2–301): 280 good deputies and 20 bad rows, with what is wrong with each."""
    rng = random.Random(16)
    rows, bad = [], {}
    for index in range(300):
        number = index + 2
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)[:1]
        row = [name, rng.choice("男女"), f"17{index:04d}", f"第{index % 16 + 1}代表小组", STATIONS[index % 3]]
        row.append(f"139{index:08d}")
        if index % 15 == 7 and len(bad) < 7:
            row[0], bad[number] = None, "姓名：必填"
        elif index % 15 == 11 and len(bad) < 14:
            row[4], bad[number] = "不存在的联络站", "联络站：「不存在的联络站」不在名册中，请先登记"
        elif index % 15 == 13 and len(bad) < 20:
            row[2], bad[number] = "17" + f"{index - 13:04d}", "证号 17" + f"{index - 13:04d} 与第 {number - 13} 行重复"
        rows.append(row)
    assert len(bad) == 20
    return rows, bad


@pytest.fixture
async def level(tmp_path):
    nats = EmbeddedNats(tmp_path / "nats").start()
    settings = Settings(jurisdiction=WENLING, nats_url=nats.url, data_dir=tmp_path / "data", dev_signin=True)
    service = DirectoryService(settings)
    try:
        await service.start()
        api = operated(create_api(service.settings, handlers=service.handlers, engine=service.engine), service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://directory") as http:
            yield service, http
    finally:
        await service.stop()
        nats.stop()


async def enrol_stations(service, http) -> dict[str, str]:
    ids = {}
    for index, name in enumerate(STATIONS):
        org = {"id": f"station-{index + 1}", "kind": "station", "name": name}
        answer = await http.post("/orgs", json={"org": org}, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        ids[name] = org["id"]
    await service.wait_idle()
    return ids


async def test_a_roster_of_300_becomes_280_people_once_and_its_20_bad_rows_are_reported(level):
    service, http = level
    await enrol_stations(service, http)
    rows, bad = three_hundred_rows()
    data = roster(rows)

    first = await http.post("/rosters/import", files={"file": ("代表名册.xlsx", data)}, headers=ADMIN)
    assert first.status_code == 200, first.text
    report = first.json()
    assert report["rows"] == 300 and len(report["enrolled"]) == 280 and report["again"] is False
    assert {r["row"]: r["reasons"] for r in report["rejected"]} == {n: [why] for n, why in bad.items()}
    await service.wait_idle()
    # (besides the development people this level has with development sign-in on)
    people = [p for p in await directory.list_people(service.engine) if p["credential_no"]]
    assert len(people) == 280 and all(p["kind"] == "deputy" and p["congress"] == "county" for p in people)
    assert {p["credential_no"] for p in people} == {r[2] for n, r in enumerate(rows, 2) if n not in bad}
    assert not any("不存在的联络站" in str(p["orgs"]) for p in people)
    groups = await directory.list_orgs(service.engine, kind="group")
    assert len(groups) == 16  # 第1…16代表小组, enrolled as the roster names them

    # the same file again: nothing at all is stored
    stored = await stored_messages(service.store)
    again = await http.post("/rosters/import", files={"file": ("代表名册.xlsx", data)}, headers=ADMIN)
    assert again.status_code == 200 and again.json()["again"] is True
    assert await stored_messages(service.store) == stored
    # the same people in another file (a row moved): nobody twice, nobody changed, only the import recorded
    moved = await http.post(
        "/rosters/import", files={"file": ("名册-复制.xlsx", roster(rows[-1:] + rows[:-1]))}, headers=ADMIN
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["enrolled"] == [] and moved.json()["changed"] == [] and moved.json()["unchanged"] == 280
    assert await stored_messages(service.store) == stored + 1
    await service.wait_idle()
    assert len([p for p in await directory.list_people(service.engine) if p["credential_no"]]) == 280


async def test_mobiles_are_masked_for_staff_and_the_export_is_for_administrators_only(level):
    service, http = level
    await enrol_stations(service, http)
    rows, _ = three_hundred_rows()
    assert (await http.post("/rosters/import", files={"file": ("m.xlsx", roster(rows[:5]))}, headers=ADMIN)).is_success
    await service.wait_idle()
    for_staff = (await http.get("/people", headers=COMMITTEE)).json()["items"]
    dev_people = len(dev_directory(default_registry().get(WENLING))["people"])
    assert len(for_staff) == 5 + dev_people  # and the development people
    assert all(p["mobile"][3:7] == "****" and p["mobile"][7:].isdigit() for p in for_staff)
    for_admin = (await http.get("/people", headers=ADMIN)).json()["items"]
    assert all(len(p["mobile"]) == 11 and p["mobile"].isdigit() for p in for_admin)
    refused = await http.get("/people/export", headers=COMMITTEE)
    assert refused.status_code == 403 and "仅系统管理员" in refused.json()["detail"]["message"]
    exported = await http.get("/people/export", headers=ADMIN)
    sheet = openpyxl.load_workbook(io.BytesIO(exported.content)).active
    assert sheet.max_row == 1 + 5 + dev_people and sheet.cell(1, 2).value == "姓名"
    assert {row[7] for row in sheet.iter_rows(min_row=2, values_only=True)} >= {r[5] for r in rows[:5]}
    deputy = bearer("deputy-x", Role.deputy)
    assert (await http.get("/people", headers=deputy)).status_code == 403
    bad = await http.post("/rosters/import", files={"file": ("x.xlsx", b"not a spreadsheet")}, headers=ADMIN)
    assert bad.status_code == 422 and "缺少必需的列" in bad.json()["detail"]["message"]


async def test_an_evaluation_electorate_taken_from_a_directory_group_is_exactly_its_members(tmp_path):
    nats = EmbeddedNats(tmp_path / "nats").start()
    settings = DirectorySettings(
        jurisdiction=WENLING, nats_url=nats.url, data_dir=tmp_path / "data", dev_signin=True, seed_file=DEMO_FILE
    )
    directory_service = DirectoryService(settings)
    evaluation = EvaluationService(Settings(jurisdiction=WENLING, nats_url=nats.url, data_dir=tmp_path / "data"))
    try:
        await directory_service.start()  # seed 004's 16 groups and 30 deputies (demo_directory.json)
        await evaluation.start(close_by_time=False)
        await directory_service.wait_idle()
        await evaluation.wait_idle()
        taiping = await directory.members_of(directory_service.engine, "2022-dg-01")
        assert len(taiping) == 8
        staff = Principal(sub="committee-331081", roles=[Role.committee], jurisdiction=WENLING)
        opens = utcnow() + timedelta(days=1)
        session = await evaluation.handlers.draft(
            DraftSession(
                kind=SessionKind.satisfaction,
                title="太平街道代表小组民生实事项目满意度测评",
                subjects=[SubjectRef(kind="project", id="2022-lp-09", title="太平街道老旧小区改造")],
                roster="2022-dg-01",
                opens_at=opens,
                closes_at=opens + timedelta(hours=2),
            ),
            staff,
        )
        assert sorted(session.electorate) == sorted(p["id"] for p in taiping)
        everyone = {p["id"] for p in await directory.list_people(directory_service.engine)}
        # others of the directory (other groups, the development people) are not in it
        assert len(everyone) > 8 + len(dev_directory(default_registry().get(WENLING))["people"])
    finally:
        await evaluation.stop()
        await directory_service.stop()
        nats.stop()
