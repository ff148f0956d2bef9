"""A case's life at one level under a controlled clock: assignment and deadlines, refusals that
append nothing, replies, feedback, re-handling, commitments across years, the urging sweep."""

from __future__ import annotations

import asyncio
from datetime import date, datetime

import pytest

from contracts.envelope import SHANGHAI
from contracts.jurisdictions import default_registry
from contracts.tracking import (
    CaseStatus,
    CloseCase,
    Commitment,
    DecideExtension,
    DeliverCommitment,
    GiveCoUnitInput,
    GiveFeedback,
    Rating,
    ReportProgress,
    RequestExtension,
    ReturnCase,
    ReviewReply,
    SubmitReply,
)
from services.notify import lists
from services.notify.projections import CaseProjection as NotifyCases
from services.notify.projections import MatterProjection as NotifyMatters
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.read.projector import Projector
from services.tracking.deadlines import DeadlinePolicy, SpanUnit
from services.tracking.domain import Case
from services.tracking.handlers import TrackingConfig, TrackingHandlers
from services.tracking.projections import (
    CaseHistoryProjection,
    CaseListProjection,
    case_history,
    list_cases,
)
from services.tracking.sweep import Sweeper
from tests.support.clock import ManualClock
from tests.support.stores import event_store, stored_messages
from tests.support.tracking import CO, DEPUTIES, LEAD, OTHER, STAFF, WENLING, assignment, deputy, routed, unit

ASSIGNED = datetime(2026, 9, 24, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def clock():
    return ManualClock(ASSIGNED)


@pytest.fixture
async def store(request, unique, clock):
    # events stamped by the clock; in memory unless the test reads the stream
    async for store in event_store(request, context=unique, jurisdiction=WENLING, clock=clock):
        yield store


@pytest.fixture
def handlers(store, clock):
    return TrackingHandlers(store, default_registry(), clock=clock)


@pytest.fixture
async def read_models(nc, store, engine):
    """The case list and history over this test's stream, on SQLite and on PostgreSQL (the
    ``engine`` fixture); ``await catch_up()`` brings them up to date."""
    projectors = [
        Projector(
            nc,
            projection,
            engine,
            stream=store.stream,
            filter_subjects=[f"duban.evt.{store.context}.{WENLING}.*"],
            jurisdiction=WENLING,
            context=store.context,
            settings=store.settings,
        )
        # and notify's, whose 督办清单 and 成果清单 are the lists of these cases (its matters stay
        # empty here: no intake stream)
        for projection in (CaseListProjection(), CaseHistoryProjection(), NotifyCases(), NotifyMatters())
    ]
    for projector in projectors:
        await projector.prepare()

    async def catch_up():
        for projector in projectors:
            await projector.catch_up(timeout=30)

    yield engine, catch_up
    for projector in projectors:
        await projector.close()


async def listed(engine, name: str, **filters) -> list[dict]:
    """A row per case of notify's list ``name`` (the one place the lists are defined)."""
    return await lists.list_rows(engine, name, lists.Filters(**filters), lambda code: code or "")


async def opened(handlers, **kwargs) -> Case:
    event, envelope = routed(**kwargs)
    return await handlers.open_case(event, envelope)


async def assigned(handlers, **overrides) -> Case:
    case = await opened(handlers)
    return await handlers.assign(assignment(case.id, **overrides), STAFF)


# -- deadlines -----------------------------------------------------------------------------------


async def test_a_paper_assignment_entered_the_next_day_runs_from_its_own_date_and_no_other(handlers, store):
    event, envelope = routed(when=datetime(2026, 9, 23, 10, 0, tzinfo=SHANGHAI))
    case = await handlers.open_case(event, envelope)
    before = await stored_messages(store)
    for day, code in ((date(2026, 9, 25), "assigned_in_future"), (date(2026, 9, 22), "assigned_before_opened")):
        with pytest.raises(DomainError) as refused:
            await handlers.assign(assignment(case.id, assigned_on=day), STAFF)
        assert (refused.value.code, refused.value.field) == (code, "assigned_on")
    assert await stored_messages(store) == before
    case = await handlers.assign(assignment(case.id, assigned_on=date(2026, 9, 23)), STAFF)  # entered on 9-24
    assert case.deadline.due_on == date(2026, 12, 23)  # three months from the 交办单's date, not from today
    assert case.since.astimezone(SHANGHAI).date() == date(2026, 9, 23)


async def test_a_suggestion_assigned_on_24_september_is_due_on_24_december(handlers):
    case = await assigned(handlers)
    assert case.deadline.due_on == date(2026, 12, 24)
    assert case.deadline.rule == "3个月" and case.deadline.warnings == []
    assert case.deadline.due_at.utcoffset().total_seconds() == 0  # stored in UTC
    assert case.deadline.due_at.astimezone(SHANGHAI) == datetime(2026, 12, 25, 0, 0, tzinfo=SHANGHAI)


async def test_fifteen_working_days_skip_the_holidays_and_count_the_adjusted_saturday(store, clock):
    policy = DeadlinePolicy.model_validate(
        {"default": {"answer": {"suggestion": {"amount": 15, "unit": SpanUnit.working_days}}}}
    )
    handlers = TrackingHandlers(store, default_registry(), TrackingConfig(policy=policy), clock=clock)
    case = await assigned(handlers)
    assert case.deadline.due_on == date(2026, 10, 22)
    assert case.deadline.rule == "15个工作日"


async def test_a_deadline_running_into_2027_without_a_schedule_carries_the_warning(store, clock, read_models, caplog):
    engine, catch_up = read_models
    policy = DeadlinePolicy.model_validate(
        {"default": {"answer": {"suggestion": {"amount": 40, "unit": SpanUnit.working_days}}}}
    )
    handlers = TrackingHandlers(store, default_registry(), TrackingConfig(policy=policy), clock=clock)
    clock.set(datetime(2026, 12, 1, 9, 0))
    case = await assigned(handlers)
    assert case.deadline.warnings == ["2027年法定节假日安排未载入，期限仅按周末计算，请核对"]
    assert "2027" in caplog.text
    await catch_up()
    rows = await list_cases(engine, jurisdiction=WENLING, now=clock())
    assert rows[0]["deadline_warnings"] == case.deadline.warnings  # shown on the case
    history = await case_history(engine, case.id)
    assert "2027年法定节假日安排未载入" in history[-1]["summary_zh"]


# -- who may do what -----------------------------------------------------------------------------


async def test_a_co_units_reply_and_an_unassigned_units_progress_are_refused_and_append_nothing(handlers, store):
    case = await assigned(handlers, co_units=[CO])
    before = (await store.load(Case, case.id)).version
    with pytest.raises(NotAllowed):
        await handlers.reply(SubmitReply(case_id=case.id, reply_class="A", text="已解决"), unit(CO))
    with pytest.raises(NotAllowed):
        await handlers.report_progress(ReportProgress(case_id=case.id, text="我们也在办"), unit(OTHER))
    with pytest.raises(NotAllowed):
        await handlers.assign(assignment(case.id), unit(LEAD))  # only committee staff assign
    with pytest.raises(NotAllowed):
        await handlers.feedback(GiveFeedback(case_id=case.id, rating=Rating.satisfied), deputy(DEPUTIES[0], "331000"))
    assert (await store.load(Case, case.id)).version == before
    # the assigned units may
    await handlers.report_progress(ReportProgress(case_id=case.id, text="已完成摸底", percent=30), unit(LEAD))
    await handlers.report_progress(ReportProgress(case_id=case.id, text="配合摸底"), unit(CO))


async def test_a_transition_not_allowed_now_is_refused_and_appends_nothing(handlers, store):
    case = await opened(handlers)
    with pytest.raises(DomainError) as refused:
        await handlers.reply(SubmitReply(case_id=case.id, reply_class="A", text="已解决"), unit(LEAD))
    assert refused.value.status == 403  # not assigned to anyone yet: no lead unit
    case = await handlers.assign(assignment(case.id), STAFF)
    with pytest.raises(DomainError) as refused:
        await handlers.close(CloseCase(case_id=case.id), STAFF)
    assert refused.value.code == "invalid_transition"
    with pytest.raises(DomainError) as refused:
        await handlers.reply(SubmitReply(case_id=case.id, reply_class="E", text="已解决"), unit(LEAD))
    assert refused.value.code == "unknown_reply_class"
    with pytest.raises(DomainError) as refused:
        await handlers.reply(SubmitReply(case_id=case.id, reply_class="B", text="列入计划"), unit(LEAD))
    assert refused.value.code == "reason_required"
    assert (await store.load(Case, case.id)).version == case.version


async def test_the_reply_waits_for_every_co_units_countersign(handlers):
    case = await assigned(handlers, co_units=[CO])
    reply = SubmitReply(case_id=case.id, reply_class="A", text="已完成一户一表改造")
    with pytest.raises(DomainError) as refused:
        await handlers.reply(reply, unit(LEAD))
    assert refused.value.code == "countersign_missing" and CO.name in refused.value.message
    await handlers.co_unit_input(GiveCoUnitInput(case_id=case.id, text="同意", countersign=True), unit(CO))
    case = await handlers.reply(reply, unit(LEAD))
    assert case.status == CaseStatus.replied and case.replied_on_time


# -- return, extension -----------------------------------------------------------------------------


async def test_a_unit_returns_within_the_window_and_the_committee_reassigns(handlers, clock):
    case = await assigned(handlers)
    clock.advance(days=11)
    with pytest.raises(DomainError) as refused:
        await handlers.return_case(ReturnCase(case_id=case.id, reason="不属本单位职责"), unit(LEAD))
    assert refused.value.code == "return_window_passed"

    case = await assigned(handlers)
    clock.advance(days=9)
    case = await handlers.return_case(
        ReturnCase(case_id=case.id, reason="属市场监管职责", suggested_unit=OTHER.name), unit(LEAD)
    )
    assert case.status == CaseStatus.returned
    case = await handlers.assign(assignment(case.id, lead_unit=OTHER), STAFF)
    assert case.status == CaseStatus.assigned and case.lead_unit == OTHER
    assert case.deadline.due_on == date(2027, 1, 14)  # three months from the reassignment on 10-14


async def test_an_extension_is_granted_up_to_six_months_or_refused(handlers):
    case = await assigned(handlers)
    with pytest.raises(DomainError) as refused:
        await handlers.request_extension(
            RequestExtension(case_id=case.id, until=date(2027, 4, 1), reason="需要更多时间"), unit(LEAD)
        )
    assert refused.value.code == "too_late"  # six months from 2026-09-24 is 2027-03-24
    await handlers.request_extension(
        RequestExtension(case_id=case.id, until=date(2027, 2, 28), reason="需跨年度施工"), unit(LEAD)
    )
    case = await handlers.decide_extension(DecideExtension(case_id=case.id, grant=True), STAFF)
    assert case.deadline.due_on == date(2027, 2, 28) and case.pending_extension is None
    await handlers.request_extension(
        RequestExtension(case_id=case.id, until=date(2027, 3, 20), reason="再延"), unit(LEAD)
    )
    case = await handlers.decide_extension(DecideExtension(case_id=case.id, grant=False, note="不予延期"), STAFF)
    assert case.deadline.due_on == date(2027, 2, 28)


# -- reply, feedback, re-handling ------------------------------------------------------------------


async def test_dissatisfied_feedback_reopens_with_one_month_and_the_second_reply_closes(handlers, clock, read_models):
    engine, catch_up = read_models
    case = await assigned(handlers)
    clock.set(datetime(2026, 11, 2, 9, 0))
    case = await handlers.reply(
        SubmitReply(case_id=case.id, reply_class="B", text="已列入明年计划", reason="资金需年度预算安排"),
        unit(LEAD),
    )
    assert case.status == CaseStatus.replied
    await handlers.feedback(GiveFeedback(case_id=case.id, rating=Rating.satisfied), deputy(DEPUTIES[0]))
    clock.set(datetime(2026, 11, 5, 9, 0))
    case = await handlers.feedback(
        GiveFeedback(case_id=case.id, rating=Rating.dissatisfied, comment="进度太慢", submitter_id=DEPUTIES[1].id),
        STAFF,  # a paper form entered by staff
    )
    assert case.status == CaseStatus.rehandling and case.round == 2
    assert case.deadline.due_on == date(2026, 12, 5) and case.deadline.rule == "1个月"

    case = await handlers.reply(
        SubmitReply(case_id=case.id, reply_class="A", text="已提前完成改造"),
        unit(LEAD),
    )
    assert case.status == CaseStatus.closed
    await catch_up()
    summaries = [row["summary_zh"] for row in await case_history(engine, case.id)]
    assert any("第1轮答复" in s for s in summaries)
    assert any("李代表反馈不满意（纸质反馈代录）" in s for s in summaries)
    assert any("重新办理（第2轮）" in s for s in summaries)
    assert any("第2轮答复" in s for s in summaries)
    assert "办结" in summaries[-1]


async def test_a_reviewed_reply_is_released_by_the_committee_which_may_change_its_class(handlers):
    case = await assigned(handlers, review_reply=True)
    case = await handlers.reply(
        SubmitReply(case_id=case.id, reply_class="A", text="已解决"),
        unit(LEAD),
    )
    assert case.status == CaseStatus.in_review
    case = await handlers.review(ReviewReply(case_id=case.id, approve=False, comment="请补充数据"), STAFF)
    assert case.status == CaseStatus.assigned
    await handlers.reply(SubmitReply(case_id=case.id, reply_class="A", text="已解决，附数据"), unit(LEAD))
    case = await handlers.review(ReviewReply(case_id=case.id, approve=True, reply_class="B"), STAFF)
    assert case.status == CaseStatus.replied and case.reply_class == "B"


async def test_every_satisfied_submitter_closes_the_case(handlers):
    case = await assigned(handlers)
    await handlers.reply(SubmitReply(case_id=case.id, reply_class="A", text="已解决"), unit(LEAD))
    case = await handlers.feedback(GiveFeedback(case_id=case.id, rating=Rating.satisfied), deputy(DEPUTIES[0]))
    assert case.status == CaseStatus.replied
    with pytest.raises(DomainError) as refused:
        await handlers.feedback(GiveFeedback(case_id=case.id, rating=Rating.satisfied), deputy(DEPUTIES[0]))
    assert refused.value.code == "feedback_given"
    case = await handlers.feedback(
        GiveFeedback(case_id=case.id, rating=Rating.basically_satisfied), deputy(DEPUTIES[1])
    )
    assert case.status == CaseStatus.closed


# -- commitments across years ------------------------------------------------------------------------


async def test_an_open_b_commitment_goes_onto_next_years_supervision_list_then_the_results_list(
    handlers, clock, read_models
):
    engine, catch_up = read_models
    case = await assigned(handlers)
    clock.set(datetime(2026, 11, 20, 9, 0))
    await handlers.reply(
        SubmitReply(
            case_id=case.id,
            reply_class="B",
            text="已列入2027年计划",
            reason="需年度预算",
            commitments=[Commitment(id="c1", text="2027年完成剩余20个村改造", due_on=date(2027, 11, 30))],
        ),
        unit(LEAD),
    )
    case = await handlers.close(CloseCase(case_id=case.id), STAFF)
    assert case.status == CaseStatus.closed and case.supervised
    sweeper = Sweeper(handlers, engine)
    await catch_up()
    assert (await sweeper.sweep_once(clock())).carried_over == 0  # still 2026
    # in December already, next year's list holds the commitment due then (no sweep needed), and
    # this year's keeps it: it was under supervision in both
    for year in (2026, 2027):
        [row] = await listed(engine, "supervision", year=year)
        assert row["id"] == case.id and row["commitment_due_on"] == date(2027, 11, 30)
    assert await listed(engine, "supervision", year=2028) == []
    [exported] = lists.table("supervision", await listed(engine, "supervision", year=2027))[1]
    assert date(2027, 11, 30).isoformat() in exported  # 办理期限: the commitment's due date

    clock.set(datetime(2027, 1, 2, 9, 0))
    assert (await sweeper.sweep_once(clock())).carried_over == 1
    await catch_up()
    assert (await sweeper.sweep_once(clock())).carried_over == 0  # once
    on_2027 = await listed(engine, "supervision", year=2027)
    assert [row["id"] for row in on_2027] == [case.id]
    assert on_2027[0]["open_commitments"] == 1
    assert [row["id"] for row in await listed(engine, "supervision", year=2026)] == [case.id]  # still there
    assert await listed(engine, "results") == []

    clock.set(datetime(2027, 10, 8, 9, 0))
    await handlers.deliver_commitment(
        DeliverCommitment(case_id=case.id, commitment_id="c1", note="20个村全部完成"), unit(LEAD)
    )
    await catch_up()
    assert await listed(engine, "supervision", year=2027) == []
    results = await listed(engine, "results", year=2027)
    assert [row["id"] for row in results] == [case.id]
    assert await listed(engine, "results", year=2026) == []


# -- the sweep -------------------------------------------------------------------------------------


async def test_ten_sweeps_and_two_sweepers_at_once_fire_exactly_one_overdue_event_per_case(
    handlers, store, clock, read_models
):
    engine, catch_up = read_models
    overdue = [await assigned(handlers) for _ in range(3)]
    clock.set(datetime(2026, 10, 20, 9, 0))
    on_time = await assigned(handlers)  # due 2027-01-20
    await catch_up()
    clock.set(datetime(2026, 12, 26, 9, 0))  # the first three are overdue since 12-25 00:00
    first = Sweeper(handlers, engine)
    second = Sweeper(TrackingHandlers(store, default_registry(), clock=clock), engine)
    for _ in range(10):
        await asyncio.gather(first.sweep_once(), second.sweep_once())
        await catch_up()
    for case in overdue:
        types = [(e.event_type, e.payload.get("threshold")) for e in await store.history(case.id)]
        assert types.count(("tracking.CaseUrged", "overdue")) == 1, types
        assert types.count(("tracking.CaseUrged", "due_soon")) == 1, types
        assert types.count(("tracking.CaseUrged", "long_overdue")) == 0, types
    types = [(e.event_type, e.payload.get("threshold")) for e in await store.history(on_time.id)]
    assert types.count(("tracking.CaseUrged", "overdue")) == 0
    assert types.count(("tracking.CaseUrged", "due_soon")) == 0  # due soon from 2027-01-14

    rows = await listed(engine, "supervision")
    assert [row["due_at"] < clock() for row in rows] == [True, True, True, False]  # overdue first


async def test_an_overdue_key_item_is_escalated_to_its_leader_once(handlers, store, clock, read_models):
    engine, catch_up = read_models
    case = await assigned(handlers, key=True, leader="陈主任")
    await catch_up()
    clock.set(datetime(2027, 1, 30, 9, 0))  # long overdue too
    sweeper = Sweeper(handlers, engine)
    for _ in range(3):
        await sweeper.sweep_once()
        await catch_up()
    types = [e.event_type for e in await store.history(case.id)]
    assert types.count("tracking.CaseEscalatedToLeader") == 1
    assert types.count("tracking.CaseUrged") == 3  # due soon, overdue, long overdue: each once


async def test_an_extension_is_a_new_deadline_whose_thresholds_fire_again(handlers, store, clock, read_models):
    engine, catch_up = read_models
    case = await assigned(handlers)
    await catch_up()
    clock.set(datetime(2026, 12, 20, 9, 0))
    sweeper = Sweeper(handlers, engine)
    await sweeper.sweep_once()  # due soon
    await handlers.request_extension(
        RequestExtension(case_id=case.id, until=date(2027, 1, 31), reason="施工受天气影响"), unit(LEAD)
    )
    await handlers.decide_extension(DecideExtension(case_id=case.id, grant=True), STAFF)
    await catch_up()
    await sweeper.sweep_once()
    clock.set(datetime(2027, 1, 28, 9, 0))
    await sweeper.sweep_once()
    urged = [
        e.payload["deadline"]["due_on"] for e in await store.history(case.id) if e.event_type == "tracking.CaseUrged"
    ]
    assert urged == ["2026-12-24", "2027-01-31"]
