"""满意度测评 and its relatives at one level: ballots counted exactly once, refusals that append
nothing, exact results with paper ballots, and a secret session that never links an evaluator
to a choice."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

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
from services.evaluation.api import create_api
from services.evaluation.domain import BallotSheet, Session
from services.evaluation.handlers import EvaluationHandlers
from services.evaluation.projections import SessionProjection, TurnoutProjection, sessions, turnout
from services.runtime.es.aggregate import DomainError
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.read.projector import Projector
from services.runtime.settings import Settings
from tests.support.clock import ManualClock
from tests.support.stores import event_store, stored_messages

HERE = "331081"
STAFF = Principal(sub="committee-1", name="代表工委", roles=[Role.committee], jurisdiction=HERE)
OPENS = datetime(2026, 12, 10, 9, 0, tzinfo=SHANGHAI)
ELECTORATE = [f"deputy-{i:02d}" for i in range(1, 11)]
SUBJECTS = [
    SubjectRef(
        kind="case", id="case-1", title="农村饮水安全", unit=UnitRef(id="unit-water", name="市农业农村和水利局")
    ),
    SubjectRef(
        kind="case", id="case-2", title="老旧小区改造", unit=UnitRef(id="unit-housing", name="市住房和城乡建设局")
    ),
]


def evaluator(sub: str) -> Principal:
    return Principal(sub=sub, name=f"代表{sub[-2:]}", roles=[Role.evaluator], jurisdiction=HERE)


def sheet(session_id: str, *pairs: tuple[str, str], evaluator_id: str | None = None) -> CastBallots:
    return CastBallots(
        session_id=session_id, choices=[Choice(subject_id=s, option=o) for s, o in pairs], evaluator_id=evaluator_id
    )


@pytest.fixture
def clock():
    return ManualClock(OPENS - timedelta(hours=1))


@pytest.fixture
async def store(request, unique, clock):
    async for store in event_store(request, context=unique, jurisdiction=HERE, clock=clock):
        yield store


@pytest.fixture
def handlers(store, clock):
    return EvaluationHandlers(store, ballot_key=b"test-key", clock=clock, status_ttl_s=0.0)


async def drafted(handlers, *, secret=False, kind=SessionKind.satisfaction, electorate=ELECTORATE, quorum=0.5):
    command = DraftSession(
        kind=kind,
        title="2026年民生实事项目办理满意度测评",
        subjects=SUBJECTS,
        electorate=electorate,
        opens_at=OPENS,
        closes_at=OPENS + timedelta(hours=2),
        secret=secret,
        quorum=quorum,
    )
    return await handlers.draft(command, STAFF)


async def opened(handlers, clock, **kwargs) -> Session:
    session = await drafted(handlers, **kwargs)
    clock.set(OPENS + timedelta(minutes=1))
    return await handlers.open(OpenSession(session_id=session.id), STAFF)


async def test_twenty_concurrent_ballots_of_one_evaluator_for_one_subject_are_taken_once(handlers, clock):
    session = await opened(handlers, clock)
    voter = evaluator("deputy-01")
    options = ["satisfied", "dissatisfied", "basically_satisfied", "satisfied"] * 5
    outcomes = await asyncio.gather(
        *(handlers.cast(sheet(session.id, ("case-1", option)), voter) for option in options), return_exceptions=True
    )
    accepted = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(accepted) == 1 and len(refused) == 19
    assert all(r.code == "already_voted" and "只能投一次" in r.message for r in refused)
    stored_sheet = await handlers.store.load(BallotSheet, handlers.sheet_id(session, "deputy-01"))
    assert len(stored_sheet.choices) == 1


async def test_ballots_outside_the_electorate_before_opening_and_after_closing_are_refused_and_append_nothing(
    store, handlers, clock
):
    session = await drafted(handlers)
    before = await stored_messages(store)
    with pytest.raises(DomainError) as refused:
        await handlers.cast(sheet(session.id, ("case-1", "satisfied")), evaluator("deputy-01"))
    assert refused.value.code == "not_open"
    clock.set(OPENS + timedelta(minutes=1))
    await handlers.open(OpenSession(session_id=session.id), STAFF)
    before = await stored_messages(store)
    for command, who, code in (
        (sheet(session.id, ("case-1", "satisfied")), evaluator("deputy-99"), "not_in_electorate"),
        (sheet(session.id, ("case-9", "satisfied")), evaluator("deputy-01"), "unknown_subject"),
        (sheet(session.id, ("case-1", "feasible")), evaluator("deputy-01"), "unknown_option"),
    ):
        with pytest.raises(DomainError) as refused:
            await handlers.cast(command, who)
        assert refused.value.code == code
    clock.set(OPENS + timedelta(hours=2))  # the closing time
    with pytest.raises(DomainError) as refused:
        await handlers.cast(sheet(session.id, ("case-1", "satisfied")), evaluator("deputy-01"))
    assert refused.value.code == "closed" and "已结束" in refused.value.message
    assert await stored_messages(store) == before


async def test_results_counts_rates_turnout_and_quorum_match_a_scripted_session_with_paper_ballots(handlers, clock):
    session = await opened(handlers, clock, quorum=0.6)
    script = {  # evaluator: (case-1, case-2); None = not scored
        "deputy-01": ("satisfied", "dissatisfied"),
        "deputy-02": ("satisfied", "dissatisfied"),
        "deputy-03": ("basically_satisfied", "dissatisfied"),
        "deputy-04": ("dissatisfied", "satisfied"),
        "deputy-05": ("satisfied", None),
        "deputy-06": ("basically_satisfied", None),
        "deputy-07": ("satisfied", "basically_satisfied"),  # paper, entered by staff
    }
    for who, (first, second) in script.items():
        pairs = [("case-1", first)] + ([("case-2", second)] if second else [])
        if who == "deputy-07":
            await handlers.cast(sheet(session.id, *pairs, evaluator_id=who), STAFF)
        else:
            await handlers.cast(sheet(session.id, *pairs), evaluator(who))
    published = await handlers.close(CloseSession(session_id=session.id), STAFF)
    assert published.status == "published"
    history = await handlers.store.history(session.id)
    results = history[-1].payload
    assert results["electorate_size"] == 10 and results["voters"] == 7
    first, second = results["results"]
    assert first["counts"] == {"satisfied": 4, "basically_satisfied": 2, "dissatisfied": 1}
    assert first["valid"] == 7 and first["rate"] == round(6 / 7, 4) and first["turnout"] == 0.7
    assert first["quorum_met"] is True and first["dissatisfied_dominates"] is False
    assert second["counts"] == {"satisfied": 1, "basically_satisfied": 1, "dissatisfied": 3}
    assert second["valid"] == 5 and second["rate"] == 0.4 and second["turnout"] == 0.5
    assert second["quorum_met"] is False and second["dissatisfied_dominates"] is True
    paper = await handlers.store.load(BallotSheet, handlers.sheet_id(session, "deputy-07"))
    assert paper.on_paper


async def test_a_secret_session_never_links_an_evaluator_to_a_choice(nc, store, handlers, clock, engine, caplog):
    caplog.set_level(logging.DEBUG, logger="duban")
    settings = Settings(jurisdiction=HERE)
    api = create_api(settings, handlers=handlers, engine=engine)
    session = await drafted(handlers, secret=True)
    clock.set(OPENS + timedelta(minutes=1))
    responses: list[str] = []
    choices = {f"deputy-{i:02d}": ("satisfied" if i % 3 else "dissatisfied") for i in range(1, 9)}

    def token(principal: Principal) -> dict[str, str]:
        value = issue_token(principal.id, [r.value for r in principal.roles], HERE, secret=settings.jwt_secret)
        return {"Authorization": f"Bearer {value}"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://evaluation") as http:
        responses.append((await http.post(f"/sessions/{session.id}/open", headers=token(STAFF))).text)
        for who, option in choices.items():
            body = {"choices": [{"subject_id": "case-1", "option": option}]}
            if who == "deputy-08":  # a paper ballot entered by staff
                answer = await http.post(
                    f"/sessions/{session.id}/ballots", json=body | {"evaluator_id": who}, headers=token(STAFF)
                )
            else:
                answer = await http.post(f"/sessions/{session.id}/ballots", json=body, headers=token(evaluator(who)))
            assert answer.status_code == 200, answer.text
            responses.append(answer.text)
        projectors = [
            Projector(
                nc,
                projection,
                engine,
                stream=store.stream,
                filter_subjects=[f"duban.evt.{store.context}.{HERE}.*"],
                jurisdiction=HERE,
                context=store.context,
                settings=store.settings,
            )
            for projection in (SessionProjection(), TurnoutProjection())
        ]
        for projector in projectors:
            await projector.prepare()
            await projector.catch_up(timeout=30)
        for path in (f"/sessions/{session.id}/turnout", f"/sessions/{session.id}", "/sessions"):
            answer = await http.get(path, headers=token(STAFF))
            assert answer.status_code == 200
            responses.append(answer.text)
        for who in choices:
            responses.append((await http.get(f"/sessions/{session.id}", headers=token(evaluator(who)))).text)
        responses.append((await http.post(f"/sessions/{session.id}/close", headers=token(STAFF))).text)
        for projector in projectors:
            await projector.catch_up(timeout=30)
        responses.append((await http.get(f"/sessions/{session.id}", headers=token(STAFF))).text)
        for projector in projectors:
            await projector.close()

    turnout_view = json.loads(responses[len(choices) + 1])
    assert turnout_view["voted"] == 8 and turnout_view["turnout"] == 0.8  # staff see who voted
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for table in (turnout, sessions) for r in await conn.execute(select(table))]
    evaluators, options = set(choices), {"satisfied", "basically_satisfied", "dissatisfied"}

    def values(node) -> set[str]:
        """Every string value in a record, however nested (keys are labels, not data)."""
        if isinstance(node, dict):
            return set().union(*(values(v) for v in node.values())) if node else set()
        if isinstance(node, list | tuple):
            return set().union(*(values(v) for v in node)) if node else set()
        return {node} if isinstance(node, str) else set()

    def linked(record) -> bool:
        found = values(record)
        return bool(found & evaluators) and bool(found & options)

    for text in responses:
        assert not linked(json.loads(text)), text
    for row in rows:
        assert not linked(json.loads(json.dumps(row, default=str))), row
    for record in caplog.records:
        line = f"{record.getMessage()} {json.dumps(record.__dict__, default=str, ensure_ascii=False)}"
        assert not (any(e in line for e in evaluators) and any(o in line for o in options)), line
    assert any(row.get("evaluator_id") in evaluators for row in rows)  # turnout rows exist, without choices
    final = json.loads(responses[-1])
    assert final["results"][0]["counts"] == {"satisfied": 6, "basically_satisfied": 0, "dissatisfied": 2}
    # and the sheets themselves, in the event store, name no evaluator
    for who in choices:
        history = await store.history(handlers.sheet_id(await store.load(Session, session.id), who))
        assert history and all(e.payload["evaluator_id"] is None for e in history)
        assert all(who not in json.dumps(e.model_dump(mode="json")) for e in history)
