"""Evaluation, tracking and notify on one NATS server, talking only through events: a closed case
rated unsatisfactory in a 满意度测评 is reopened for re-handling in tracking, and its lead unit
gets the 重新办理 notice."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contracts.envelope import SHANGHAI
from contracts.evaluation import (
    CastBallots,
    Choice,
    CloseSession,
    DraftSession,
    OpenSession,
    SessionKind,
    SubjectRef,
    UnitRef,
)
from contracts.tracking import CaseStatus
from services.evaluation.app import EvaluationService
from services.notify.app import NotifyService
from services.notify.projections import inbox
from services.notify.settings import NotifySettings
from services.runtime.http.auth import Principal, Role
from services.runtime.tools.nats_server import EmbeddedNats
from services.tracking.app import TrackingService
from services.tracking.domain import Case
from services.tracking.settings import TrackingSettings
from tests.support.clock import ManualClock
from tests.support.tracking import LEAD, STAFF, WENLING, closed_case
from tests.support.waiting import eventually

START = datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture
async def levels(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    clock = ManualClock(START)
    settings = TrackingSettings(
        jurisdiction=WENLING, nats_url=server.url, data_dir=tmp_path / "data", reopen_below_rate=0.6
    )
    tracking = TrackingService(settings, clock=clock)
    evaluation = EvaluationService(settings, clock=clock, status_ttl_s=0.0)
    notify = NotifyService(NotifySettings(jurisdiction=WENLING, nats_url=server.url, data_dir=tmp_path / "data"))
    try:
        await tracking.start(sweep=False)
        await evaluation.start(close_by_time=False)
        await notify.start(sweep=False)
        yield tracking, evaluation, notify
    finally:
        await notify.stop()
        await evaluation.stop()
        await tracking.stop()
        server.stop()


async def test_a_case_rated_unsatisfactory_is_reopened_in_tracking(levels):
    tracking, evaluation, notify = levels
    poor, good = await closed_case(tracking), await closed_case(tracking)
    unit_ref = UnitRef(id=LEAD.id, name=LEAD.name)
    electorate = [f"deputy-{i:02d}" for i in range(1, 6)]
    session = await evaluation.handlers.draft(
        DraftSession(
            kind=SessionKind.satisfaction,
            title="2026年代表建议办理满意度测评",
            subjects=[
                SubjectRef(kind="case", id=poor.id, title="农村饮水安全", unit=unit_ref),
                SubjectRef(kind="case", id=good.id, title="农村饮水安全（二）", unit=unit_ref),
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
        choices = [
            Choice(subject_id=poor.id, option="dissatisfied" if i < 3 else "satisfied"),
            Choice(subject_id=good.id, option="satisfied"),
        ]
        await evaluation.handlers.cast(CastBallots(session_id=session.id, choices=choices), voter)
    await evaluation.handlers.close(CloseSession(session_id=session.id), STAFF)

    async def reopened():
        case = await tracking.handlers.store.load(Case, poor.id)
        return case if case.status == CaseStatus.rehandling else None

    case = await eventually(reopened)
    assert case.round == 2 and case.deadline.rule == "1个月"
    history = await tracking.handlers.store.history(poor.id)
    assert "满意率 40%" in history[-1].payload["reason"]
    await tracking.wait_idle()
    assert (await tracking.handlers.store.load(Case, good.id)).status == CaseStatus.closed  # 100 %: left alone
    reopened_once = [e for e in history if e.event_type == "tracking.CaseReopened"]
    assert len(reopened_once) == 1

    async def rehandling_notice():
        notices = await inbox(notify.engine, [LEAD.id])
        return [n for n in notices if n["kind"] == "rehandling" and n["topic_id"] == poor.id]

    [notice] = await eventually(rehandling_notice)
    assert "重新办理" in notice["subject"] + notice["body"]
