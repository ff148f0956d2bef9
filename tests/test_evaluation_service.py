"""The evaluation service as it runs: a session open past its closing time is closed by the
service's periodic check (against the injected clock, not the wall clock) and its results are
published; none is closed before its time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from contracts.envelope import SHANGHAI
from contracts.evaluation import CastBallots, Choice, DraftSession, OpenSession, SessionKind, SubjectRef
from services.evaluation.app import EvaluationService
from services.evaluation.domain import Session
from services.evaluation.settings import EvaluationSettings
from services.runtime.es.aggregate import DomainError
from services.runtime.es.commands import execute
from services.runtime.http.auth import Principal, Role
from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.clock import ManualClock
from tests.support.waiting import eventually

HERE = "331081"
OPENS = datetime(2026, 12, 10, 9, 0, tzinfo=SHANGHAI)
STAFF = Principal(sub="committee-1", name="代表工委", roles=[Role.committee], jurisdiction=HERE)
CHECK_S = 0.1


def voter(sub: str) -> Principal:
    return Principal(sub=sub, name=sub, roles=[Role.evaluator], jurisdiction=HERE)


async def published(service, session_id: str) -> Session | None:
    session = await service.store.load(Session, session_id)
    return session if session.status == "published" else None


@pytest.fixture
async def service(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    clock = ManualClock(OPENS)
    settings = EvaluationSettings(
        jurisdiction=HERE, nats_url=server.url, data_dir=tmp_path / "data", session_check_interval_s=CHECK_S
    )
    service = EvaluationService(settings, clock=clock, status_ttl_s=0.0)
    try:
        await service.start(close_by_time=True)
        yield service, clock
    finally:
        await service.stop()
        server.stop()


async def test_a_session_past_its_closing_time_is_closed_and_published_by_the_service(service):
    service, clock = service
    handlers = service.handlers
    session = await handlers.draft(
        DraftSession(
            kind=SessionKind.feasibility,
            title="2026年重点工作可行性测评",
            subjects=[SubjectRef(kind="work_item", id="wi-1", title="城市更新三年行动")],
            electorate=["deputy-01", "deputy-02", "deputy-03"],
            opens_at=OPENS,
            closes_at=OPENS + timedelta(hours=1),
        ),
        STAFF,
    )
    await handlers.open(OpenSession(session_id=session.id), STAFF)
    for who, option in (("deputy-01", "feasible"), ("deputy-02", "infeasible")):
        await handlers.cast(
            CastBallots(session_id=session.id, choices=[Choice(subject_id="wi-1", option=option)]), voter(who)
        )

    clock.set(OPENS + timedelta(minutes=59))
    await service.wait_idle()
    await asyncio.sleep(CHECK_S * 5)  # several checks: none closes a session before its time
    assert (await service.store.load(Session, session.id)).status == "opened"

    clock.set(OPENS + timedelta(hours=1))
    closed = await eventually(lambda: published(service, session.id))
    history = await service.store.history(session.id)
    assert [e.event_type for e in history][-2:] == ["evaluation.SessionClosed", "evaluation.ResultsPublished"]
    assert history[-2].payload["by"] == "time"
    [result] = closed.results
    assert result.counts == {"feasible": 1, "basically_feasible": 0, "infeasible": 1}
    assert result.rate == 0.5 and result.turnout == round(2 / 3, 4) and result.quorum_met
    with pytest.raises(DomainError) as refused:
        await handlers.cast(
            CastBallots(session_id=session.id, choices=[Choice(subject_id="wi-1", option="feasible")]),
            voter("deputy-03"),
        )
    assert refused.value.code == "closed"
    await asyncio.sleep(CHECK_S * 3)  # later checks leave the published session alone
    assert len(await service.store.history(session.id)) == len(history)


async def test_a_session_closed_but_not_published_is_published_by_the_next_check(service):
    """A process that died between the close and the publication (simulated: the close alone is
    appended) leaves the results to the periodic check."""
    service, _ = service
    handlers = service.handlers
    session = await handlers.draft(
        DraftSession(
            kind=SessionKind.satisfaction,
            title="2026年民生实事项目满意度测评",
            subjects=[SubjectRef(kind="project", id="p1", title="农村饮水安全")],
            electorate=["deputy-01", "deputy-02"],
            opens_at=OPENS,
            closes_at=OPENS + timedelta(hours=1),
        ),
        STAFF,
    )
    await handlers.open(OpenSession(session_id=session.id), STAFF)
    await handlers.cast(
        CastBallots(session_id=session.id, choices=[Choice(subject_id="p1", option="satisfied")]), voter("deputy-01")
    )
    await execute(service.store, Session, session.id, lambda s: s.close("staff"), actor=STAFF.actor(Role.committee))
    closed = await eventually(lambda: published(service, session.id))
    [result] = closed.results
    assert result.counts == {"satisfied": 1, "basically_satisfied": 0, "dissatisfied": 0} and closed.voters == 1
    history = await service.store.history(session.id)
    assert [e.event_type for e in history].count("evaluation.ResultsPublished") == 1
