"""Evaluation's notices: invitations to the electorate, results to the units, a performance
appraisal's results reported to the party committee (抄报市委), and the result a disclosure shows.

The session's events are evaluation's own (``contracts/evaluation.py``), stored on 温岭市's
EVALUATION stream with the real event store, as the evaluation service stores them; notify's
listener and read model take them from there.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from contracts.envelope import SHANGHAI, new_id
from contracts.evaluation import ResultsPublished, SessionDrafted, SessionKind, SessionOpened, SubjectRef, SubjectResult
from contracts.events import Event
from contracts.notify import RecipientEntry
from services.notify import projections
from services.runtime.es.aggregate import Aggregate
from services.runtime.es.eventstore import EventStore
from tests.support.notify import (
    WATER,
    WENLING,
    eventually,
    staff,
    wenling_level,
)

SUBJECT = SubjectRef(
    kind="department_head",
    id="head-water",
    title="市农业农村和水利局局长履职情况",
    unit={"id": WATER.id, "name": WATER.name},
)
CLOSES = datetime(2026, 12, 20, 18, tzinfo=SHANGHAI)


class Session(Aggregate):
    """The evaluation session's events as stored, without the evaluation service's rules."""

    context = "evaluation"
    aggregate_type = "session"

    def apply(self, event: Event) -> None:
        self.sequence += 1


@pytest.fixture
async def level(tmp_path):
    async with wenling_level(tmp_path) as running:
        yield running


async def test_an_appraisal_invites_its_electorate_and_sends_results_to_the_unit_and_the_party_committee(level):
    office = RecipientEntry(
        id="party-office",
        name="市委办公室",
        kind="party_committee",
        email="office@party.example.cn",
        channels=["email"],
        subscribe=["appraisal_results_cc"],
    )
    await level.notify.handlers.record_recipient(office, staff(WENLING))
    await level.notify.wait_idle()
    store = EventStore(level.notify.nc, context="evaluation", jurisdiction=WENLING)
    session = await store.load(Session, new_id())
    title = "2026年度部门负责人履职评议"
    drafted = SessionDrafted(
        kind=SessionKind.performance,
        title=title,
        subjects=[SUBJECT],
        electorate=["deputy-1", "deputy-2"],
        opens_at=datetime(2026, 12, 10, 9, tzinfo=SHANGHAI),
        closes_at=CLOSES,
        secret=True,
        quorum=0.5,
        report_to_party_committee=True,
    )
    await store.append(session, [drafted])
    opened = SessionOpened(
        kind=SessionKind.performance,
        title=title,
        subjects=[SUBJECT],
        electorate=["deputy-1", "deputy-2"],
        closes_at=CLOSES,
        secret=True,
    )
    await store.append(session, [opened])
    result = SubjectResult(
        subject=SUBJECT,
        counts={"satisfied": 30, "basically_satisfied": 5, "dissatisfied": 2},
        valid=37,
        rate=35 / 37,
        turnout=37 / 40,
        quorum_met=True,
        dissatisfied_dominates=False,
    )
    published = ResultsPublished(
        kind=SessionKind.performance,
        title=title,
        electorate_size=40,
        voters=37,
        results=[result],
        report_to_party_committee=True,
    )
    await store.append(session, [published])

    invitation = (await eventually(lambda: _to(level, "wang@wl.example.cn")))[0]
    assert invitation.subject == "【测评邀请】2026年度部门负责人履职评议"
    assert "履职评议" in invitation.body and "市农业农村和水利局局长履职情况（市农业农村和水利局）" in invitation.body
    assert "2026年12月20日18:00前" in invitation.body and invitation.body.startswith("王代表：")
    unit_mail = (await eventually(lambda: _to(level, "water@wl.example.cn")))[0]
    assert unit_mail.subject == "【测评结果】2026年度部门负责人履职评议：市农业农村和水利局局长履职情况"
    assert "满意 30 票，基本满意 5 票，不满意 2 票" in unit_mail.body and "满意率 94.6%" in unit_mail.body
    assert "参评率 92.5%" in unit_mail.body
    cc = (await eventually(lambda: _to(level, "office@party.example.cn")))[0]
    assert cc.subject == "【抄报】2026年度部门负责人履职评议结果" and "达到规定参评人数" in cc.body
    await level.idle()
    inbox = await projections.inbox(level.notify.engine, ["deputy-2"])  # not in the directory
    assert [n["kind"] for n in inbox] == ["evaluation_invitation"]
    row = await projections.get_row(level.notify.engine, projections.evaluation_results, "head-water")
    assert row["result"] == "满意（满意率 94.6%）" and row["session_id"] == session.id
    assert row["details"]["valid"] == 37 and row["subject_kind"] == "department_head"
    assert len(level.smtp.to("office@party.example.cn")) == 1 and len(level.smtp.to("wang@wl.example.cn")) == 1


async def _to(level, address):
    return level.smtp.to(address)
