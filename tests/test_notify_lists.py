"""四张清单 on SQLite and PostgreSQL: notify's own projections of intake's and tracking's events,
filtered by level, jurisdiction, unit, committee and period, exported as CSV and XLSX with
Chinese headers.

The events are the real ones, stored with the real event store on streams of the test's own
(unique contexts), which notify's projections read as they read INTAKE and TRACKING.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
from openpyxl import load_workbook

from contracts import subjects
from contracts.envelope import SHANGHAI, new_id
from contracts.events import Event
from contracts.intake import (
    ActivityRecorded,
    Channel,
    Hop,
    MatterData,
    MatterEscalated,
    MatterKind,
    MatterReceived,
    MatterRegistered,
    MatterRouted,
    MatterSubmitted,
    RaisedBy,
    Submitter,
)
from contracts.jurisdictions import default_registry
from contracts.tracking import (
    CaseAssigned,
    CaseClosed,
    CaseOpened,
    Deadline,
    FeedbackGiven,
    Rating,
    ReplyReleased,
    ReplySubmitted,
    Unit,
)
from services.notify import lists
from services.notify.projections import ActivityProjection, CaseProjection, GroupActivityProjection, MatterProjection
from services.notify.summary import own_figures
from services.runtime.es.aggregate import Aggregate
from services.runtime.es.eventstore import EventStore
from services.runtime.read.projector import Projector
from services.runtime.settings import Settings
from tests.support.clock import ManualClock

WENLING, ZEGUO = "331081", "331081100"
WATER = Unit(id="unit-water", name="市农业农村和水利局")
HOUSING = Unit(id="unit-housing", name="市住房和城乡建设局")
ECON = Unit(id="unit-econ", name="市经信局")
WANG = Submitter(id="deputy-1", name="王代表")


class Recorded(Aggregate):
    """Any aggregate: the test stores real events without the producing service's rules."""

    context = "test"
    aggregate_type = "matter"

    def apply(self, event: Event) -> None:
        self.sequence += 1


def place(code: str | None) -> str:
    return default_registry().get(code).name if code else ""


def data(
    kind: MatterKind, title: str, raised_in: str, raised_by: str | None = None, raised_at: datetime | None = None
) -> MatterData:
    return MatterData(
        kind=kind,
        title=title,
        content=f"{title}的具体情况。",
        lead=WANG,
        channel=Channel.liaison_station,
        raised_in=raised_in,
        raised_at=raised_at,
        raised_by=RaisedBy(name=raised_by) if raised_by else None,
    )


def deadline(day: date) -> Deadline:
    return Deadline(
        due_on=day, due_at=datetime.combine(day + timedelta(days=1), datetime.min.time(), SHANGHAI), rule="1个月"
    )


@pytest.fixture
async def read_models(nc, unique, engine):
    clock = ManualClock(datetime(2026, 9, 1, 9, tzinfo=SHANGHAI))
    intake = EventStore(nc, context=f"{unique}i", jurisdiction=WENLING, clock=clock)
    tracking = EventStore(nc, context=f"{unique}t", jurisdiction=WENLING, clock=clock)
    await intake.ensure_streams()
    await tracking.ensure_streams()

    async def record(store: EventStore, aggregate_id: str, *events: Event) -> None:
        state = await store.load(Recorded, aggregate_id)
        await store.append(state, list(events))

    m1, m2, m3, m4 = (new_id() for _ in range(4))
    # M1: a problem raised at 泽国镇, escalated to 温岭市, handled here by 水利局 with 住建局; still open
    clock.set(datetime(2026, 9, 2, 9, tzinfo=SHANGHAI))
    origin = Hop(jurisdiction=ZEGUO, matter_id=new_id())
    await record(
        intake,
        m1,
        MatterReceived(
            matter=data(
                MatterKind.problem, "园区道路破损", ZEGUO, raised_at=datetime(2026, 8, 28, 10, tzinfo=SHANGHAI)
            ),
            origin=origin,
            direction="up",
        ),
    )
    await record(intake, m1, MatterRegistered(year=2026, number=1, registration_no="温岭问〔2026〕1号"))
    await record(
        intake,
        m1,
        MatterRouted(
            kind=MatterKind.problem, body="congress", title="园区道路破损", submitters=[WANG], committee="城建环资工委"
        ),
    )
    await record(
        tracking,
        m1,
        CaseOpened(
            matter_id=m1, kind=MatterKind.problem, body="congress", title="园区道路破损", submitters=[WANG], year=2026
        ),
    )
    await record(
        tracking,
        m1,
        CaseAssigned(
            lead_unit=WATER, co_units=[HOUSING], committee="城建环资工委", leader="陈主任", key=True,
            since=clock(), deadline=deadline(date(2026, 10, 2)), return_until=clock() + timedelta(days=10),
        ),
    )  # fmt: skip
    # M2: an enterprise's demand raised at 温岭市, answered A by 经信局 and closed
    clock.set(datetime(2026, 9, 12, 9, tzinfo=SHANGHAI))
    await record(
        intake, m2, MatterSubmitted(matter=data(MatterKind.demand, "企业用电扩容", WENLING, "温岭某泵业有限公司"))
    )
    await record(
        intake,
        m2,
        MatterRouted(
            kind=MatterKind.demand, body="congress", title="企业用电扩容", submitters=[WANG], committee="经济工委"
        ),
    )
    await record(
        tracking,
        m2,
        CaseOpened(
            matter_id=m2, kind=MatterKind.demand, body="congress", title="企业用电扩容", submitters=[WANG], year=2026
        ),
    )
    await record(
        tracking,
        m2,
        CaseAssigned(
            lead_unit=ECON, committee="经济工委", since=clock(), deadline=deadline(date(2026, 10, 12)),
            return_until=clock() + timedelta(days=10),
        ),
    )  # fmt: skip
    clock.set(datetime(2026, 9, 20, 9, tzinfo=SHANGHAI))
    await record(
        tracking,
        m2,
        ReplySubmitted(unit=ECON, reply_class="A", text="已完成扩容。", addressed_to=[WANG], on_time=True),
        ReplyReleased(reply_class="A"),
    )
    await record(
        tracking,
        m2,
        FeedbackGiven(submitter=WANG, rating=Rating.satisfied),
        CaseClosed(reply_class="A", summary="已完成扩容，企业用电恢复正常。", unit=ECON, round=1, on_time=True),
    )
    # M3: a suggestion in September; M4: a proposal in October
    await record(intake, m3, MatterSubmitted(matter=data(MatterKind.suggestion, "增设公交线路", WENLING)))
    await record(intake, m3, MatterEscalated(to="331000", reason="涉及跨县公交"))
    await record(intake, new_id(), ActivityRecorded(
        kind="research", title="企业走访", held_on=date(2026, 9, 18), place="泽国", organiser="联络站",
        organiser_kind="liaison_station", deputies=[WANG, Submitter(id="deputy-2", name="李代表")],
    ))  # fmt: skip
    clock.set(datetime(2026, 10, 8, 9, tzinfo=SHANGHAI))
    await record(intake, m4, MatterSubmitted(matter=data(MatterKind.proposal, "加强非遗保护", WENLING)))

    for store, projection in (
        (intake, MatterProjection()),
        (intake, ActivityProjection()),
        (tracking, CaseProjection()),
        (tracking, GroupActivityProjection()),
    ):
        projector = Projector(
            nc,
            projection,
            engine,
            stream=store.stream,
            filter_subjects=[subjects.event_wildcard(store.context, WENLING)],
            jurisdiction=WENLING,
            context=store.context,
            settings=Settings(jurisdiction=WENLING),
        )
        await projector.prepare()
        await projector.catch_up()
    return {"m1": m1, "m2": m2, "m3": m3, "m4": m4}


async def titles(engine, name: str, **filters) -> list[str]:
    rows = await lists.list_rows(engine, name, lists.Filters(**filters), place)
    return [row["title"] for row in rows]


async def test_the_four_lists_filter_by_level_jurisdiction_unit_committee_and_period(engine, read_models):
    assert await titles(engine, "problems") == ["园区道路破损", "企业用电扩容"]
    assert await titles(engine, "problems", level="township") == ["园区道路破损"]
    assert await titles(engine, "problems", level="county") == ["企业用电扩容"]
    assert await titles(engine, "problems", jurisdiction=ZEGUO) == ["园区道路破损"]
    assert await titles(engine, "problems", jurisdiction=WENLING) == ["园区道路破损", "企业用电扩容"]  # and below
    assert await titles(engine, "problems", unit=HOUSING.id) == ["园区道路破损"]  # a co-unit
    assert await titles(engine, "problems", unit=ECON.name) == ["企业用电扩容"]
    assert await titles(engine, "problems", committee="经济工委") == ["企业用电扩容"]
    assert await titles(engine, "problems", since=date(2026, 9, 10)) == ["企业用电扩容"]
    assert await titles(engine, "problems", until=date(2026, 8, 28)) == ["园区道路破损"]  # the whole last day
    # raised at 泽国镇 on 8-28, received here on 9-02: the list says when it was raised
    assert await titles(engine, "problems", until=date(2026, 8, 27)) == []
    assert await titles(engine, "suggestions") == ["增设公交线路", "加强非遗保护"]
    assert await titles(engine, "suggestions", since=date(2026, 10, 1), until=date(2026, 10, 31)) == ["加强非遗保护"]
    assert await titles(engine, "supervision") == ["园区道路破损"]
    assert await titles(engine, "supervision", unit=ECON.id) == []
    assert await titles(engine, "supervision", key=True) == ["园区道路破损"]  # 重点督办件
    assert await titles(engine, "supervision", key=False) == []
    assert await titles(engine, "supervision", year=2026) == ["园区道路破损"]
    assert await titles(engine, "supervision", year=2025) == []  # opened after that year's list
    assert await titles(engine, "results", year=2026) == ["企业用电扩容"]
    assert await titles(engine, "results", year=2027) == []
    assert await titles(engine, "results") == ["企业用电扩容"]
    assert await titles(engine, "results", since=date(2026, 9, 21)) == []
    assert await titles(engine, "results", level="township") == []


async def test_lists_export_as_csv_and_xlsx_with_chinese_headers(engine, read_models):
    rows = await lists.list_rows(engine, "results", lists.Filters(), place)
    headers, values = lists.table("results", rows)
    assert headers[:5] == ["序号", "编号", "登记号", "类别", "案由"] and "办理落实情况摘要" in headers
    assert values == [
        [
            1, read_models["m2"], "", "企业诉求", "企业用电扩容", "王代表", "温岭市", ECON.name, "", "经济工委", "",
            "否", "A", "已完成扩容，企业用电恢复正常。", "王代表：满意", "2026-09-20",
        ]
    ]  # fmt: skip

    content = lists.to_csv("supervision", await lists.list_rows(engine, "supervision", lists.Filters(), place))
    assert content.startswith("\ufeff".encode())  # Excel reads UTF-8 CSV with a BOM
    table = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert table[0][:5] == ["序号", "编号", "登记号", "类别", "案由"] and table[0][-5:] == [
        "交办日期", "办理期限", "状态", "催办情况", "未落实承诺事项",
    ]  # fmt: skip
    record = dict(zip(table[0], table[1], strict=True))
    assert record["案由"] == "园区道路破损" and record["提出地"] == "泽国镇" and record["协办单位"] == HOUSING.name
    assert record["牵头领导"] == "陈主任" and record["重点督办"] == "是" and record["办理期限"] == "2026-10-02"
    assert record["编号"] == read_models["m1"]
    headers, values = lists.table("problems", await lists.list_rows(engine, "problems", lists.Filters(), place))
    raised = dict(zip(headers, values[0], strict=True))
    assert (raised["案由"], raised["提出日期"]) == ("园区道路破损", "2026-08-28")
    assert record["状态"] == "办理中"

    problems = await lists.list_rows(engine, "problems", lists.Filters(), place)
    book = load_workbook(io.BytesIO(lists.to_xlsx("problems", problems)))
    sheet = book.active
    assert sheet.title == "问题清单"
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert cells[0] == lists.table("problems", problems)[0]
    assert [row[4] for row in cells[1:]] == ["园区道路破损", "企业用电扩容"]
    assert cells[2][7] == "温岭某泵业有限公司" and cells[1][13] == WATER.name and cells[1][14] == "城建环资工委"
    assert cells[0][16] == "反馈企业（群众）" and (cells[1][16], cells[2][16]) == (None, "未反馈")  # none raised M1


async def test_the_monthly_figures_come_from_the_same_read_models(engine, read_models):
    """一月一小结's own figures on SQLite and PostgreSQL: a received matter was collected elsewhere;
    only the A answer counts as solved; only the escalation to 台州市 counts as reported up."""
    september = await own_figures(engine, default_registry(), "2026-09")
    assert september.model_dump() == {
        "activities": 1, "participations": 2, "collected": 2, "solved": 1, "escalated": 1,
    }  # fmt: skip
    october = await own_figures(engine, default_registry(), "2026-10")  # M4 is a 提案: the 政协's, not counted
    assert october.model_dump() == {"activities": 0, "participations": 0, "collected": 0, "solved": 0, "escalated": 0}
