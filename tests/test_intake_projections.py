"""Intake's read side on SQLite and PostgreSQL: the matter list, the history, activities, duplicates.

Matters are built through ``domain.Matter`` and stored with the real event store; each test has a
stream of its own (a unique context), which the projections read like the intake stream.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from contracts import subjects
from contracts.envelope import SHANGHAI, Actor, new_id, utcnow
from contracts.intake import (
    ActivityRecorded,
    Channel,
    Hop,
    MatterData,
    MatterKind,
    MatterStatus,
    Outcome,
    Participant,
    RaisedBy,
    Submitter,
)
from contracts.jurisdictions import default_registry
from services.intake.domain import Activity, Matter
from services.intake.projections import (
    ActivityProjection,
    MatterHistoryProjection,
    MatterListProjection,
    get_matter,
    list_activities,
    list_matters,
    matter_history,
    title_grams,
    title_texts,
)
from services.intake.similarity import ngrams, possible_duplicates, similarity, title_ngrams
from services.runtime.es.eventstore import EventStore
from services.runtime.read.db import make_engine
from services.runtime.read.projector import Projector
from services.runtime.settings import Settings
from tests.support.matter_corpus import title_index, title_index_expected

JURISDICTION = "331081"  # 温岭市
PARENT = "331000"  # 台州市
TOWNSHIP = "331081100"  # 泽国镇
REGISTRY = default_registry()
STAFF = Actor(principal_id="staff-1", role="staff", name="王干事", jurisdiction=JURISDICTION)
ZHANG = Submitter(id="d-zhang", name="张三")
LI = Submitter(id="d-li", name="李四")
WANG = Submitter(id="d-wang", name="王五")


@pytest.fixture
async def store(nc, unique):
    store = EventStore(nc, context=unique, jurisdiction=JURISDICTION)
    await store.ensure_streams()
    return store


def projector_for(nc, store, engine, projection, *, batch: int = 50) -> Projector:
    return Projector(
        nc,
        projection,
        engine,
        stream=store.stream,
        filter_subjects=[subjects.event_wildcard(store.context, JURISDICTION)],
        jurisdiction=JURISDICTION,
        context=store.context,
        settings=Settings(jurisdiction=JURISDICTION, projector_batch=batch),
    )


async def project(nc, store, engine, *projections, batch: int = 50) -> None:
    """Bring every intake read model up to date with the stream, as three projectors would."""
    for projection in projections or (MatterListProjection(), MatterHistoryProjection(), ActivityProjection()):
        projector = projector_for(nc, store, engine, projection, batch=batch)
        await projector.prepare()
        await projector.catch_up()
        await projector.close()


def matter_data(
    title: str,
    content: str = "请有关部门尽快研究解决。",
    *,
    kind: MatterKind = MatterKind.suggestion,
    lead: Submitter = ZHANG,
    co_signers: tuple[Submitter, ...] = (),
    channel: Channel = Channel.liaison_station,
    category: str | None = None,
    activity_id: str | None = None,
    raised_by: RaisedBy | None = None,
) -> MatterData:
    return MatterData(
        kind=kind,
        title=title,
        content=content,
        lead=lead,
        co_signers=list(co_signers),
        channel=channel,
        raised_in=JURISDICTION,
        category=category,
        activity_id=activity_id,
        raised_by=raised_by,
    )


async def submit(store, data: MatterData) -> Matter:
    matter = Matter(id=new_id())
    await store.append(matter, matter.submit(data), actor=STAFF)
    return matter


async def register(store, matter: Matter, number: int) -> None:
    await store.append(matter, matter.register(2026, number, "温岭"), actor=STAFF)


# -- the matter list ---------------------------------------------------------------------------


async def test_the_list_filters_by_kind_status_channel_category_text_and_period(nc, store, engine):
    road = await submit(store, matter_data("关于泽国镇工业园区道路破损的问题", kind=MatterKind.problem))
    await register(store, road, 1)
    await asyncio.sleep(0.02)
    cut = utcnow()
    await asyncio.sleep(0.02)
    power = await submit(
        store,
        matter_data(
            "企业用电报装周期过长",
            "某公司反映 100%_负荷 报装需两个月。",
            kind=MatterKind.demand,
            channel=Channel.survey,
            category="营商环境",
            raised_by=RaisedBy(name="温岭某泵业有限公司"),
        ),
    )
    water = await submit(store, matter_data("关于加强农村饮用水安全保障的建议", kind=MatterKind.suggestion))
    await project(nc, store, engine)

    def ids(rows):
        return {r["id"] for r in rows}

    assert ids(await list_matters(engine, jurisdiction=JURISDICTION)) == {road.id, power.id, water.id}
    assert ids(await list_matters(engine, jurisdiction="331082")) == set()
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, kind=MatterKind.demand)) == {power.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, status=MatterStatus.registered)) == {road.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, status=["submitted"])) == {power.id, water.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, channel=Channel.survey)) == {power.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, category="营商环境")) == {power.id}
    # text: title or content; LIKE's wildcards are taken literally
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, text="饮用水")) == {water.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, text="两个月")) == {power.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, text="100%_")) == {power.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, text="%")) == {power.id}
    # period: an instant splits the matters; a date is a whole day in Asia/Shanghai
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, since=cut)) == {power.id, water.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, until=cut)) == {road.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, until=cut.astimezone(SHANGHAI))) == {road.id}
    today = cut.astimezone(SHANGHAI).date()
    assert len(await list_matters(engine, jurisdiction=JURISDICTION, since=today, until=today)) == 3
    assert await list_matters(engine, jurisdiction=JURISDICTION, until=today - timedelta(days=1)) == []
    # newest first, paged, and light unless the content is asked for
    rows = await list_matters(engine, jurisdiction=JURISDICTION)
    assert [r["id"] for r in rows] == [water.id, power.id, road.id]
    assert "content" not in rows[0]
    assert [r["id"] for r in await list_matters(engine, jurisdiction=JURISDICTION, limit=1, offset=1)] == [power.id]
    assert (await list_matters(engine, jurisdiction=JURISDICTION, with_content=True, limit=1))[0]["content"]
    # by kind and status (the four lists themselves are notify's)
    problems = ("problem", "demand")
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, kind=problems)) == {road.id, power.id}
    assert ids(await list_matters(engine, jurisdiction=JURISDICTION, kind=problems, status="submitted")) == {power.id}


async def test_a_registered_and_routed_matter_shows_its_number_and_where_it_stands(nc, store, engine):
    data = matter_data("关于完善城区停车设施的建议", co_signers=(LI,), channel=Channel.session, category="政务环境")
    matter = await submit(store, data)
    await register(store, matter, 3)
    await store.append(matter, matter.route("代表工委", None), actor=STAFF)
    await project(nc, store, engine)

    row = await get_matter(engine, matter.id)
    assert row is not None
    assert row["jurisdiction"] == JURISDICTION
    assert row["kind"] == "suggestion"
    assert row["title"] == "关于完善城区停车设施的建议"
    assert row["content"] == data.content
    assert (row["lead_id"], row["lead_name"]) == ("d-zhang", "张三")
    assert row["submitter_ids"] == ["d-zhang", "d-li"]
    assert row["submitter_names"] == "张三、李四"
    assert (row["channel"], row["category"], row["raised_in"]) == ("session", "政务环境", JURISDICTION)
    assert row["status"] == MatterStatus.routed
    assert row["registration_no"] == "温岭建〔2026〕3号"
    assert row["registration_year"] == 2026
    assert row["version"] == 3
    assert row["submitted_at"].tzinfo is not None and row["updated_at"].tzinfo is not None
    assert row["submitted_at"] <= row["updated_at"] <= datetime.now(UTC)
    assert row["merged_into"] is None and row["sent_to"] is None
    assert await get_matter(engine, "no-such-matter") is None


async def test_merging_keeps_every_submitter_on_the_matter_that_remains(nc, store, engine):
    duplicate = await submit(store, matter_data("泽国镇工业园区道路破损严重", lead=LI, co_signers=(WANG,)))
    kept = await submit(store, matter_data("关于泽国镇工业园区道路破损的问题"))
    await register(store, kept, 1)
    await store.append(duplicate, duplicate.merge_into(kept, "同一事项"), actor=STAFF)
    await store.append(kept, kept.absorb(duplicate), actor=STAFF)
    await project(nc, store, engine)

    merged = await get_matter(engine, duplicate.id)
    assert merged["status"] == MatterStatus.merged
    assert merged["merged_into"] == kept.id
    remaining = await get_matter(engine, kept.id)
    assert remaining["status"] == MatterStatus.registered
    assert remaining["submitter_ids"] == ["d-zhang", "d-li", "d-wang"]
    assert remaining["submitter_names"] == "张三、李四、王五"
    assert remaining["absorbed_ids"] == [duplicate.id]


async def test_an_escalated_matter_records_where_it_went_and_the_outcome_reported_back(nc, store, engine):
    matter = await submit(store, matter_data("关于104国道温岭段拓宽改造的建议"))
    await register(store, matter, 7)
    await store.append(matter, matter.escalate(REGISTRY, JURISDICTION, "超出本级事权"), actor=STAFF)
    there = Hop(jurisdiction=PARENT, matter_id=new_id())
    await store.append(matter, matter.forwarded(there))
    outcome = Outcome(summary="已列入2027年省道改造计划。", reply_class="B", unit="台州市交通运输局")
    await store.append(matter, matter.outcome_reported_back(outcome, there))
    down = await submit(store, matter_data("泽国镇菜市场周边占道经营", kind=MatterKind.problem))
    await store.append(down, down.send_down(REGISTRY, JURISDICTION, TOWNSHIP, "属镇级事权"), actor=STAFF)
    await project(nc, store, engine)

    row = await get_matter(engine, matter.id)
    assert row["status"] == MatterStatus.closed
    assert row["sent_to"] == PARENT
    assert row["forwarded_matter_id"] == there.matter_id
    assert (row["outcome_summary"], row["outcome_class"], row["outcome_unit"]) == (
        "已列入2027年省道改造计划。",
        "B",
        "台州市交通运输局",
    )
    assert row["handled_in_jurisdiction"] == PARENT
    assert row["closed_at"] is not None
    sent = await get_matter(engine, down.id)
    assert (sent["status"], sent["sent_to"]) == (MatterStatus.sent_down, TOWNSHIP)


async def test_a_received_matter_remembers_where_it_came_from(nc, store, engine):
    origin = Hop(jurisdiction=TOWNSHIP, matter_id=new_id())
    matter = Matter(id=new_id())
    await store.append(matter, matter.receive(matter_data("镇区积水点改造"), origin, "up", [], "超出镇级事权"))
    await project(nc, store, engine)

    row = await get_matter(engine, matter.id)
    assert row["status"] == MatterStatus.submitted
    assert (row["origin_jurisdiction"], row["origin_matter_id"], row["direction"]) == (
        TOWNSHIP,
        origin.matter_id,
        "up",
    )
    history = await matter_history(engine, matter.id)
    assert history[0]["summary_zh"] == "收到泽国镇（331081100）上报的建议：镇区积水点改造"


# -- history -----------------------------------------------------------------------------------


async def test_the_history_reads_back_every_change_in_order_in_chinese(nc, store, engine):
    matter = await submit(store, matter_data("关于规范校外培训机构的议案", kind=MatterKind.motion, co_signers=(LI,)))
    await store.append(matter, matter.convert(MatterKind.suggestion, "不符合议案条件"), actor=STAFF)
    await register(store, matter, 3)
    await store.append(matter, matter.escalate(REGISTRY, JURISDICTION, "需市级统筹"), actor=STAFF)
    rejected = await submit(store, matter_data("希望多种树"))
    await store.append(rejected, rejected.reject("内容不具体"), actor=STAFF)
    await project(nc, store, engine)

    rows = await matter_history(engine, matter.id)
    assert [r["sequence"] for r in rows] == [1, 2, 3, 4]
    assert [r["event_type"] for r in rows] == [
        "intake.MatterSubmitted",
        "intake.MatterConverted",
        "intake.MatterRegistered",
        "intake.MatterEscalated",
    ]
    assert [r["summary_zh"] for r in rows] == [
        "张三等2人提出议案：关于规范校外培训机构的议案",
        "由议案转为建议：不符合议案条件",
        "立案：温岭建〔2026〕3号",
        "上报至 台州市（331000）：需市级统筹",
    ]
    assert {(r["actor_id"], r["actor_role"], r["actor_name"]) for r in rows} == {("staff-1", "staff", "王干事")}
    assert all(r["occurred_at"].tzinfo is not None for r in rows)
    assert rows[2]["payload"]["registration_no"] == "温岭建〔2026〕3号"
    assert rows[0]["payload"]["matter"]["lead"]["name"] == "张三"
    assert [r["summary_zh"] for r in await matter_history(engine, rejected.id)] == [
        "张三提出建议：希望多种树",
        "不予立案：内容不具体",
    ]
    assert await matter_history(engine, "no-such-matter") == []


async def test_rebuilding_one_read_model_leaves_the_others_alone(nc, store, engine):
    matter = await submit(store, matter_data("关于完善城区停车设施的建议"))
    await register(store, matter, 1)
    await project(nc, store, engine)

    class MatterListV2(MatterListProjection):
        version = MatterListProjection.version + 1

    await project(nc, store, engine, MatterListV2())  # the projector drops and rebuilds its tables
    assert (await get_matter(engine, matter.id))["registration_no"] == "温岭建〔2026〕1号"
    assert len(await matter_history(engine, matter.id)) == 2


# -- activities --------------------------------------------------------------------------------


async def test_an_activity_counts_the_matters_collected_at_it(nc, store, engine):
    held_on = date(2026, 5, 12)
    visit = Activity(id=new_id())
    recorded = ActivityRecorded(
        kind="themed",
        title="“助企纾困”主题活动",
        held_on=held_on,
        place="泽国镇代表联络站",
        organiser="泽国镇代表联络站",
        organiser_kind="liaison_station",
        deputies=[ZHANG, LI, WANG],
    )
    await store.append(visit, visit.record(recorded), actor=STAFF)
    quiet = Activity(id=new_id())
    await store.append(
        quiet,
        quiet.record(
            recorded.model_copy(update={"title": "座谈会", "kind": "discussion", "held_on": date(2026, 4, 1)})
        ),
    )
    for title in ("企业用工难", "企业融资难"):
        await submit(store, matter_data(title, kind=MatterKind.demand, activity_id=visit.id))
    await submit(store, matter_data("与活动无关的建议"))
    await project(nc, store, engine)

    rows = await list_activities(engine, JURISDICTION)
    assert [r["id"] for r in rows] == [visit.id, quiet.id]  # latest first
    theme = rows[0]
    assert theme["title"] == "“助企纾困”主题活动"
    assert (theme["kind"], theme["kind_name"]) == ("themed", "主题活动")
    assert theme["held_on"] == held_on
    assert (theme["deputy_count"], theme["deputy_ids"]) == (3, ["d-zhang", "d-li", "d-wang"])
    assert theme["matters_collected"] == 2
    assert rows[1]["matters_collected"] == 0
    may = await list_activities(engine, JURISDICTION, since=date(2026, 5, 1), until=date(2026, 5, 12))
    assert [r["id"] for r in may] == [visit.id]
    assert await list_activities(engine, "331082") == []


async def test_matters_collected_before_their_activity_is_recorded_still_count(nc, store, engine):
    activity_id = new_id()
    await submit(store, matter_data("村道路灯不亮", kind=MatterKind.problem, activity_id=activity_id))
    await project(nc, store, engine, ActivityProjection())
    activity = Activity(id=activity_id)
    await store.append(
        activity,
        activity.record(
            ActivityRecorded(
                kind="contact",
                title="进村入户联系群众",
                held_on=date(2026, 5, 20),
                place="新河镇",
                organiser="新河镇代表联络站",
                organiser_kind="liaison_station",
                deputies=[ZHANG],
            )
        ),
    )
    await project(nc, store, engine, ActivityProjection())

    [row] = await list_activities(engine, JURISDICTION)
    assert (row["id"], row["matters_collected"], row["deputy_count"]) == (activity_id, 1, 1)


async def test_participants_count_deputies_of_every_level_and_not_the_voter_representatives(nc, store, engine):
    """人次 counts the deputies listed, of whatever congress, and not the 街道选民代表 beside them."""
    activity = Activity(id=new_id())
    await store.append(
        activity,
        activity.record(
            ActivityRecorded(
                kind="contact",
                title="代表进站接待选民",
                held_on=date(2026, 6, 3),
                place="太平街道代表联络站",
                organiser="太平街道代表联络站",
                organiser_kind="liaison_station",
                deputies=[],
                participants=[
                    Participant(id="d-zhang", name="张三", congress="county"),
                    Participant(name="王五", congress="prefecture"),
                    Participant(name="赵六", role="voter_representative"),
                ],
            )
        ),
    )
    await project(nc, store, engine, ActivityProjection())

    [row] = await list_activities(engine, JURISDICTION)
    assert (row["deputy_count"], row["others_count"]) == (2, 1)
    assert row["by_congress"] == {"county": 1, "prefecture": 1}
    assert row["deputy_ids"] == ["d-zhang"]


# -- possible duplicates -----------------------------------------------------------------------


def test_ngrams_ignore_spaces_punctuation_and_latin_case():
    assert ngrams("泽国 镇，ＡＢc！") == {"泽国", "国镇", "镇a", "ab", "bc"}
    assert ngrams("路") == {"路"}
    assert ngrams(" 。") == set()


def test_a_near_copy_reads_alike_and_an_unrelated_matter_does_not():
    road = ("关于泽国镇工业园区道路破损的问题", "园区主干道路面破损，货车通行困难。")
    near = ("泽国镇工业园区道路破损严重", "工业园区道路路面破损，影响企业货车通行。")
    water = ("关于加强农村饮用水安全保障的建议", "部分村庄饮用水水质不达标。")
    assert similarity(road, road) == pytest.approx(1.0)
    assert similarity(road, near) > 0.6
    assert similarity(road, water) < 0.1
    # the frame of an official title (关于……的建议/问题) alone makes nothing alike
    assert similarity(("关于甲的建议", "x"), ("关于乙的建议", "y")) == 0


async def test_possible_duplicates_finds_a_near_copy_among_open_matters_only(nc, store, engine):
    road = await submit(store, matter_data("关于泽国镇工业园区道路破损的问题", "园区主干道路面破损，货车通行困难。"))
    await register(store, road, 1)
    water = await submit(store, matter_data("关于加强农村饮用水安全保障的建议", "部分村庄饮用水水质不达标。"))
    closed = await submit(store, matter_data("泽国镇工业园区道路破损", "园区道路破损。"))
    await store.append(closed, closed.reject("已在办理"))
    await project(nc, store, engine, MatterListProjection())

    found = await possible_duplicates(
        engine,
        jurisdiction=JURISDICTION,
        title="泽国镇工业园区道路破损严重",
        content="工业园区道路路面破损，影响企业货车通行。",
    )
    assert [f["id"] for f in found] == [road.id]  # not the unrelated one, nor the one no longer open
    assert found[0]["status"] == MatterStatus.registered
    assert found[0]["registration_no"] == "温岭建〔2026〕1号"
    assert found[0]["title"] == "关于泽国镇工业园区道路破损的问题"
    assert 0.6 < found[0]["score"] <= 1
    assert water.id not in {f["id"] for f in found}
    assert (
        await possible_duplicates(
            engine, jurisdiction=JURISDICTION, title=road.data.title, content=road.data.content, exclude_id=road.id
        )
        == []
    )
    assert await possible_duplicates(engine, jurisdiction="331082", title=road.data.title, content="x") == []


async def test_the_title_index_holds_the_open_matters_and_follows_their_status(nc, store, engine, tmp_path):
    """The duplicate check's index: a matter is in it while it is open (待审查, 已立案), as it is
    submitted or received, and leaves it when it is not registered, merged, routed, escalated or
    sent down; the counts of its grams follow. Checked against the matter list after each step."""
    kept = await submit(store, matter_data("关于泽国镇工业园区道路破损的问题"))
    waiting = await submit(store, matter_data("泽国镇小微企业园停车位不足"))
    rejected = await submit(store, matter_data("关于泽国镇工业园区道路破损的建议"))
    merged = await submit(store, matter_data("泽国镇工业园区道路破损严重"))
    routed = await submit(store, matter_data("关于解决东部新区企业用电容量不足的建议"))
    escalated = await submit(store, matter_data("泽国镇企业反映跨区域货运通道拥堵"))
    sent_down = await submit(store, matter_data("泽国镇菜市场周边占道经营", kind=MatterKind.problem))
    received = Matter(id=new_id())
    origin = Hop(jurisdiction=TOWNSHIP, matter_id=new_id())
    await store.append(
        received, received.receive(matter_data("箬横镇农产品冷链物流设施缺乏"), origin, "up", [], "超出本级事权")
    )
    unsayable = await submit(store, matter_data("？？！"))  # no gram to be found by
    await register(store, kept, 1)
    await register(store, routed, 2)
    await project(nc, store, engine, MatterListProjection())

    texts, grams, counts = await title_index(engine)
    assert texts.keys() == {
        kept.id,
        waiting.id,
        rejected.id,
        merged.id,
        routed.id,
        escalated.id,
        sent_down.id,
        received.id,
    }
    # as its grams are taken: no frame; its content's grams, normalised (no punctuation), sorted
    content_grams = "关部 尽快 快研 有关 研究 究解 解决 请有 部门 门尽"  # of 请有关部门尽快研究解决
    assert texts[kept.id] == (JURISDICTION, "泽国镇工业园区道路破损", content_grams)
    assert grams[kept.id] == dict.fromkeys(title_ngrams(kept.data.title), 10)
    assert counts[JURISDICTION, "破损"] == 3
    assert (texts, grams, counts) == await title_index_expected(engine)

    await store.append(rejected, rejected.reject("不属于人大工作范围"), actor=STAFF)
    await store.append(merged, merged.merge_into(kept, "同一事项"), actor=STAFF)
    await store.append(kept, kept.absorb(merged), actor=STAFF)
    await store.append(routed, routed.route("财经工委", None), actor=STAFF)
    await store.append(escalated, escalated.escalate(REGISTRY, JURISDICTION, "超出本级事权"), actor=STAFF)
    await store.append(sent_down, sent_down.send_down(REGISTRY, JURISDICTION, TOWNSHIP, "属镇级事权"), actor=STAFF)
    await project(nc, store, engine, MatterListProjection())

    texts, grams, counts = await title_index(engine)
    assert texts.keys() == grams.keys() == {kept.id, waiting.id, received.id}
    assert counts[JURISDICTION, "破损"] == 1
    assert (JURISDICTION, "用电") not in counts
    assert (texts, grams, counts) == await title_index_expected(engine)
    assert (await get_matter(engine, unsayable.id))["status"] == MatterStatus.submitted
    found = await possible_duplicates(
        engine, jurisdiction=JURISDICTION, title="泽国镇工业园区道路破损", content="园区道路破损。"
    )
    assert [f["id"] for f in found] == [kept.id]  # neither the one rejected nor the one merged into it

    # Row for row the same index from the stream applied one event at a time (above: two
    # batches; a rebuild's are others again): a matter's number does not depend on its batches.
    one_by_one = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'one_by_one.sqlite3'}")
    try:
        await project(nc, store, one_by_one, MatterListProjection(), batch=1)
        assert await index_rows(one_by_one) == await index_rows(engine)
    finally:
        await one_by_one.dispose()


async def index_rows(engine) -> dict[str, list[tuple]]:
    """The title index's tables as stored, every column, rows sorted."""
    async with engine.connect() as conn:
        return {
            table.name: sorted(tuple(row) for row in await conn.execute(select(table)))
            for table in (title_texts, title_grams)
        }
