"""A result tracking already acted on, delivered again: at-least-once delivery can hand tracking the
same ``ResultsPublished`` long after it reopened a case (a dead letter replayed, a consumer reset),
past the stream's de-duplication window, when the case has been re-handled and closed since. It
must stay closed: each result reopens a case at most once, whenever it is delivered."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from contracts.envelope import SHANGHAI
from contracts.evaluation import (
    CastBallots,
    Choice,
    CloseSession,
    DraftSession,
    OpenSession,
    ResultsPublished,
    SessionKind,
    SubjectRef,
    UnitRef,
)
from contracts.tracking import CaseStatus, GiveFeedback, Rating, SubmitReply
from services.evaluation.app import EvaluationService
from services.runtime.http.auth import Principal, Role
from services.runtime.tools.nats_server import EmbeddedNats
from services.tracking.app import TrackingService
from services.tracking.domain import Case
from services.tracking.settings import TrackingSettings
from tests.support.clock import ManualClock
from tests.support.tracking import DEPUTIES, LEAD, STAFF, WENLING, closed_case, deputy, unit
from tests.support.waiting import eventually

START = datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)
WINDOW_S = 1.0  # the streams' de-duplication window here (600 s by default)


@contextlib.asynccontextmanager
async def running(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    clock = ManualClock(START)
    settings = TrackingSettings(
        jurisdiction=WENLING,
        nats_url=server.url,
        data_dir=tmp_path / "data",
        reopen_below_rate=0.6,
        duplicate_window_s=WINDOW_S,
    )
    tracking = TrackingService(settings, clock=clock)
    evaluation = EvaluationService(settings, clock=clock, status_ttl_s=0.0)
    try:
        await tracking.start(sweep=False)
        await evaluation.start(close_by_time=False)
        yield tracking, evaluation
    finally:
        await evaluation.stop()
        await tracking.stop()
        server.stop()


async def rehandled(tracking, case_id: str) -> Case:
    """The lead unit answers again and every submitter is satisfied: closed after round 2."""
    await tracking.handlers.reply(SubmitReply(case_id=case_id, reply_class="A", text="已再次整改"), unit(LEAD))
    for submitter in DEPUTIES:
        case = await tracking.handlers.feedback(
            GiveFeedback(case_id=case_id, rating=Rating.satisfied), deputy(submitter)
        )
    return case


async def rated_unsatisfactory(evaluation, case: Case) -> str:
    """A 满意度测评 in which three of five deputies are dissatisfied with ``case`` (40 %)."""
    electorate = [f"deputy-{i:02d}" for i in range(1, 6)]
    session = await evaluation.handlers.draft(
        DraftSession(
            kind=SessionKind.satisfaction,
            title="2026年代表建议办理满意度测评",
            subjects=[
                SubjectRef(kind="case", id=case.id, title="农村饮水安全", unit=UnitRef(id=LEAD.id, name=LEAD.name))
            ],
            electorate=electorate,
            opens_at=START,
            closes_at=START + timedelta(hours=2),
        ),
        STAFF,
    )
    await evaluation.handlers.open(OpenSession(session_id=session.id), STAFF)
    for i, who in enumerate(electorate):
        voter = Principal(sub=who, name=who, roles=[Role.evaluator], jurisdiction=WENLING)
        option = "dissatisfied" if i < 3 else "satisfied"
        await evaluation.handlers.cast(
            CastBallots(session_id=session.id, choices=[Choice(subject_id=case.id, option=option)]), voter
        )
    await evaluation.handlers.close(CloseSession(session_id=session.id), STAFF)
    return session.id


async def published_message(evaluation, session_id: str):
    """The stored commit of the session's ``ResultsPublished``, as a consumer is handed it."""
    pull = await evaluation.nc.jetstream().pull_subscribe(
        f"duban.evt.evaluation.{WENLING}.{session_id}", stream=evaluation.store.stream
    )
    try:
        for msg in await pull.fetch(10, timeout=5):
            if ResultsPublished.event_type in (msg.headers or {}).get("Duban-Event-Types", "").split(","):
                return msg
    finally:
        await pull.unsubscribe()
    raise AssertionError("no ResultsPublished stored")


def reopenings(history) -> int:
    return sum(1 for e in history if e.event_type == "tracking.CaseReopened")


async def test_a_result_delivered_again_after_the_case_was_rehandled_does_not_reopen_it(tmp_path):
    async with running(tmp_path) as (tracking, evaluation):
        case = await closed_case(tracking)
        session_id = await rated_unsatisfactory(evaluation, case)

        async def reopened():
            found = await tracking.handlers.store.load(Case, case.id)
            return found if found.status == CaseStatus.rehandling else None

        await eventually(reopened)
        await tracking.wait_idle()
        case = await rehandled(tracking, case.id)
        assert case.status == CaseStatus.closed and case.round == 2
        await asyncio.sleep(WINDOW_S * 1.5)  # the stream no longer recognises the reopening's event id
        msg = await published_message(evaluation, session_id)
        for _ in range(2):
            await tracking.evaluations.handle(msg)
        case = await tracking.handlers.store.load(Case, case.id)
        assert case.status == CaseStatus.closed and case.round == 2
        assert reopenings(await tracking.handlers.store.history(case.id)) == 1


async def test_a_result_delivered_twice_at_once_reopens_the_case_once(tmp_path):
    async with running(tmp_path) as (tracking, evaluation):
        case = await closed_case(tracking)
        session_id = await rated_unsatisfactory(evaluation, case)
        msg = await published_message(evaluation, session_id)
        await asyncio.gather(*(tracking.evaluations.handle(msg) for _ in range(3)))
        await tracking.wait_idle()
        case = await tracking.handlers.store.load(Case, case.id)
        assert case.status == CaseStatus.rehandling and case.round == 2
        assert reopenings(await tracking.handlers.store.history(case.id)) == 1
