"""A liaison station's collected list (收集整理相关的问题、意见和建议，10条以上) imported in bulk.

Good rows are taken, each bad row is reported with its row number and a reason, and uploading the
same file again takes nothing twice.
"""

from __future__ import annotations

import csv
import io

import httpx
import openpyxl
import pytest

from contracts.intake import Channel, MatterKind
from contracts.jurisdictions import default_registry
from services.intake import imports
from services.intake.api import create_api
from services.intake.domain import Matter
from services.intake.handlers import IntakeHandlers
from services.runtime.es.eventstore import EventStore
from services.runtime.http.auth import issue_token
from services.runtime.settings import Settings

HERE = "331081100"  # 泽国镇
SETTINGS = Settings(jurisdiction=HERE)
STATION = {
    "Authorization": "Bearer "
    + issue_token("station-1", ["liaison_station"], HERE, name="泽国镇代表联络站", secret=SETTINGS.jwt_secret)
}
UNIT = {"Authorization": "Bearer " + issue_token("unit-1", ["unit"], HERE, secret=SETTINGS.jwt_secret)}

HEADER = ["类别", "案由", "内容", "领衔人", "领衔人编号", "附议人", "渠道", "分类", "反映主体", "联系方式"]
GOOD = [
    [
        "问题",
        f"园区道路破损{i}",
        f"泽国镇工业园区第{i}号路段破损，货车通行困难。",
        "王代表",
        "d-1",
        "",
        "",
        "营商环境",
        "",
        "",
    ]
    for i in range(1, 9)
] + [
    [
        "建议",
        "增设园区公交线路",
        "建议增设工业园区至镇区的公交线路。",
        "李代表",
        "d-2",
        "张三:d-3、赵四:d-4",
        "主题活动",
        "",
        "",
        "",
    ],
    [
        "企业诉求",
        "用电增容审批慢",
        "企业申请用电增容已三个月未获批复。",
        "王代表",
        "1001",
        "",
        "代表联络站",
        "",
        "泽国某机电有限公司",
        "0576-0000",
    ],
]
BAD = {
    # row content → (column reported, a word of the reason)
    "unknown kind": (["投诉", "某事", "内容", "王代表", "d-1", "", "", "", "", ""], "类别", "之一"),
    "missing title": (["问题", "", "没有案由的内容", "王代表", "d-1", "", "", "", "", ""], "案由", "不能为空"),
    "content too long": (["问题", "很长的问题", "长" * 20_001, "王代表", "d-1", "", "", "", "", ""], "内容", "过长"),
    "bad co-signer": (["建议", "附议人写错", "内容", "王代表", "d-1", "张三", "", "", "", ""], "附议人", "姓名:编号"),
}


def table() -> list[list[str]]:
    """Two good rows, then a bad one, and so on: 14 rows, 10 good."""
    good, bad = list(GOOD), [row for row, _, _ in BAD.values()]
    rows: list[list[str]] = []
    while good or bad:
        rows += [good.pop(0) for _ in range(2) if good] + ([bad.pop(0)] if bad else [])
    return rows


def as_csv(rows: list[list[str]], *, encoding: str = "utf-8-sig") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def as_xlsx(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for row in rows:
        sheet.append([int(v) if v.isdigit() else v for v in row])  # an id typed as a number in Excel
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def expected_refusals(rows: list[list[str]]) -> dict[int, tuple[str, str]]:
    by_row = {}
    for number, row in enumerate(rows, start=2):
        for bad_row, column, word in BAD.values():
            if row == bad_row:
                by_row[number] = (column, word)
    return by_row


@pytest.fixture
async def store(nc, unique):
    store = EventStore(nc, context=unique, jurisdiction=HERE)
    await store.ensure_streams()
    return store


@pytest.fixture
async def client(store):
    app = create_api(SETTINGS, handlers=IntakeHandlers(store, default_registry()), engine=lambda: None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield client


async def stored(nc, store) -> int:
    return (await nc.jetstream().stream_info(store.stream)).state.messages


async def upload(client, data: bytes, name: str, headers=STATION) -> httpx.Response:
    return await client.post("/matters/import", files={"file": (name, data)}, headers=headers)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_good_rows_are_taken_and_bad_rows_reported_by_number(client, nc, store, fmt):
    rows = table()
    data = as_csv(rows) if fmt == "csv" else as_xlsx(rows)
    response = await upload(client, data, f"泽国联络站问题清单.{fmt}")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["total"] == len(GOOD) + len(BAD) == 14
    assert len(report["taken"]) == len(GOOD)
    refused = {r["row"]: (r["field"], r["reason"]) for r in report["refused"]}
    expected = expected_refusals(rows)
    assert set(refused) == set(expected)
    for number, (column, word) in expected.items():
        assert refused[number][0] == column and word in refused[number][1], (number, refused[number])
    assert "长长长长" not in response.text  # the reason names the rule, not the content

    by_row = {t["row"]: t["matter_id"] for t in report["taken"]}
    demand = await store.load(Matter, by_row[next(n for n, r in enumerate(rows, 2) if r[0] == "企业诉求")])
    assert demand.data.kind == MatterKind.demand and demand.data.lead.id == "1001"
    assert demand.data.raised_by.name == "泽国某机电有限公司" and demand.data.raised_by.contact == "0576-0000"
    suggestion = await store.load(Matter, by_row[next(n for n, r in enumerate(rows, 2) if r[1] == "增设园区公交线路")])
    assert [s.id for s in suggestion.submitters] == ["d-2", "d-3", "d-4"]
    assert suggestion.data.channel == Channel.themed_activity
    assert {(await store.load(Matter, m)).data.raised_in for m in by_row.values()} == {HERE}
    assert await stored(nc, store) == len(GOOD)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_uploading_the_same_file_again_takes_nothing_twice(client, nc, store, fmt):
    data = as_csv(table()) if fmt == "csv" else as_xlsx(table())
    first = (await upload(client, data, f"list.{fmt}")).json()
    before = await stored(nc, store)
    again = (await upload(client, data, f"list-copy.{fmt}")).json()
    assert again["taken"] == first["taken"]
    assert await stored(nc, store) == before == len(GOOD)


async def test_a_file_key_makes_an_edited_file_add_only_its_new_rows(client, nc, store, unique):
    headers = {**STATION, "Idempotency-Key": unique}
    first = (await upload(client, as_csv(GOOD[:5]), "list.csv", headers)).json()
    grown = (await upload(client, as_csv(GOOD), "list.csv", headers)).json()
    assert grown["taken"][:5] == first["taken"]
    assert await stored(nc, store) == len(GOOD)


async def test_a_gbk_csv_with_english_headers_is_read(client, nc, store):
    text = (
        "kind,title,content,lead_name,lead_id,co_signers\n"
        "问题,路灯不亮,镇区路灯多处不亮。,王代表,d-1,张三：d-3；赵四:d-4\n"
    )
    response = await upload(client, text.encode("gb18030"), "list.csv")
    assert response.status_code == 200, response.text
    assert len(response.json()["taken"]) == 1 and response.json()["refused"] == []
    matter = await store.load(Matter, response.json()["taken"][0]["matter_id"])
    assert [s.name for s in matter.data.co_signers] == ["张三", "赵四"]


@pytest.mark.parametrize(
    ("data", "word"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "不是 CSV 或 XLSX"),
        (b"PK\x03\x04 not really a zip", "Excel"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1old excel", ".xls"),
        ("名称,说明\n某事,某说明\n".encode(), "缺少必需的列"),
        (b"", "空"),
    ],
)
async def test_a_file_that_is_not_a_list_is_422_with_the_reason(client, nc, store, data, word):
    response = await upload(client, data, "upload.bin")
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "file" and word in response.json()["detail"]["message"]
    assert await stored(nc, store) == 0


async def test_too_large_a_file_or_too_many_rows_is_refused_whole(client, nc, store):
    too_many = as_csv([GOOD[0]] * (imports.MAX_ROWS + 1))
    response = await upload(client, too_many, "big.csv")
    assert response.status_code == 413 and response.json()["detail"]["code"] == "too_many_rows"
    too_big = as_csv([["问题", "大", "长" * 15_000, "王代表", "d-1", "", "", "", "", ""]] * 120)
    assert len(too_big) > imports.MAX_BYTES
    response = await upload(client, too_big, "big.csv")
    assert response.status_code == 413 and response.json()["detail"]["code"] == "too_large"
    far_too_big = too_big * 2  # larger than any request the API reads: refused before it is parsed
    response = await upload(client, far_too_big, "big.csv")
    assert response.status_code == 413 and response.json()["detail"]["code"] == "too_large"
    assert await stored(nc, store) == 0


async def test_who_may_not_submit_may_not_import(client, nc, store):
    response = await upload(client, as_csv(GOOD), "list.csv", UNIT)
    assert response.status_code == 403
    assert (await client.post("/matters/import", files={"file": ("l.csv", as_csv(GOOD))})).status_code == 401
    assert await stored(nc, store) == 0


async def test_a_request_without_a_file_is_422(client):
    response = await client.post("/matters/import", data={"other": "x"}, headers=STATION)
    assert response.status_code == 422 and response.json()["detail"]["field"] == "file"


def _formula_sheet() -> bytes:
    """An XLSX written by a program: a formula in 案由, its result never computed nor saved."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    row = list(GOOD[0])
    row[HEADER.index("案由")] = '=CONCATENATE("园区","道路")'
    sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "word"),
    [
        (_formula_sheet(), "list.xlsx", "公式"),
        (as_csv([list(GOOD[0])]) + '"没有闭合的引号,内容\n'.encode(), "list.csv", "引号"),
    ],
)
async def test_a_formula_without_its_result_or_an_open_quote_is_refused_for_what_it_is(
    client, nc, store, data, name, word
):
    response = await upload(client, data, name)
    assert response.status_code == 422, response.text
    assert word in response.json()["detail"]["message"]
    assert await stored(nc, store) == 0


async def test_joint_leads_a_group_lead_and_the_body_come_from_their_columns(client, nc, store):
    text = (
        "类别,案由,内容,领衔人,领衔人编号,领衔人类型,联名领衔人,专题类,所属机关\n"
        "问题,园区道路专题,园区道路多处破损。,泽国镇代表小组,g-1,团体,王代表:d-1,是,\n"
        "提案,镇里的提案,内容。,王委员,m-1,个人,,否,政协\n"
        "问题,路灯不亮,镇区路灯多处不亮。,王代表,d-1,个人,,也许,\n"
        "问题,河道淤积,河道淤积。,王代表,d-1,小组长,,,\n"
    )
    response = await upload(client, text.encode(), "list.csv")
    assert response.status_code == 200, response.text
    report = response.json()
    assert [t["row"] for t in report["taken"]] == [2]
    matter = await store.load(Matter, report["taken"][0]["matter_id"])
    assert [(s.name, s.kind.value) for s in matter.leads] == [("泽国镇代表小组", "group"), ("王代表", "person")]
    assert matter.data.topical and matter.data.body.value == "congress"
    refused = {r["row"]: (r["field"], r["reason"]) for r in report["refused"]}
    assert "泽国镇没有政协" in refused[3][1]
    assert refused[4] == ("专题类", "应为 是 或 否") and refused[5][0] == "领衔人类型"
