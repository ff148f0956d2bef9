"""Evaluation's aggregates: the session, each evaluator's ballot sheet, and (secret sessions) the
turnout record. Pure: no I/O; the clock's time is passed in.

Exactly once per evaluator and subject: all of an evaluator's ballots in a session go to one
sheet aggregate, so the event store's version check serialises them; a second ballot for a
subject already on the sheet is refused, whichever request came second.

Secret sessions (无记名): the sheet's id is an HMAC of session and evaluator under a key the
service holds (``DUBAN_BALLOT_SECRET``), its events carry no evaluator id and are appended under
an anonymous actor, so the choice is stored without who made it; who took part is stored apart,
in the evaluator's turnout record, without the choice. Read models, APIs, exports and logs see
one or the other, never both. The service itself can derive a sheet's id from an evaluator's
(it must, to refuse a second ballot), and the raw stream's order puts a turnout record next to
its sheet: whoever holds the key or reads the raw stream with timing could link them, which is
why the key lives outside the event log and the streams are not for staff to read.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime

from pydantic import PrivateAttr

from contracts.evaluation import (
    KIND_NAMES,
    OPTION_NAMES,
    OPTIONS,
    BallotsCast,
    Choice,
    ResultsPublished,
    SessionClosed,
    SessionDrafted,
    SessionKind,
    SessionOpened,
    SubjectRef,
    SubjectResult,
    TurnoutRecorded,
)
from services.runtime.es.aggregate import Aggregate, DomainError, applies
from services.runtime.es.ids import id_deriver

STATUS_NAMES = {"drafted": "草拟", "opened": "测评中", "closed": "已结束", "published": "结果已公布"}


derived_id = id_deriver("7d3f9b2e-5a41-4c8e-b0d6-2f9e1a6c4b85")  # namespace of evaluation's derived ids


def sheet_id(session_id: str, evaluator_id: str, *, secret: bool, key: bytes) -> str:
    """The id of an evaluator's sheet: derived from both in an open session, an HMAC in a secret one."""
    if not secret:
        return derived_id("sheet", session_id, evaluator_id)
    return hmac.new(key, f"{session_id}|{evaluator_id}".encode(), hashlib.sha256).hexdigest()[:32]


def turnout_id(session_id: str, evaluator_id: str) -> str:
    return derived_id("turnout", session_id, evaluator_id)


class Session(Aggregate):
    """An evaluation session (测评): what is evaluated, by whom, when, secret or not."""

    context = "evaluation"
    aggregate_type = "session"

    status: str | None = None
    kind: SessionKind | None = None
    title: str | None = None
    subjects: list[SubjectRef] = []
    electorate: list[str] = []
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    secret: bool = False
    quorum: float = 0.5
    report_to_party_committee: bool = False
    results: list[SubjectResult] | None = None
    voters: int | None = None
    #: The electorate as a set, made at the first check (a congress session's roster has hundreds).
    _electors: frozenset[str] | None = PrivateAttr(default=None)

    def in_electorate(self, evaluator_id: str) -> bool:
        if self._electors is None:
            self._electors = frozenset(self.electorate)
        return evaluator_id in self._electors

    def _require(self, *allowed: str, action: str) -> None:
        if not self.exists:
            raise DomainError(f"测评 {self.id} 不存在", field="session_id", code="not_found")
        if self.status not in allowed:
            raise DomainError(
                f"测评当前状态为「{STATUS_NAMES[self.status]}」，不能{action}",
                field="session_id",
                code="invalid_transition",
            )

    def draft(self, event: SessionDrafted) -> list[SessionDrafted]:
        if self.exists:
            raise DomainError("测评已存在", field="session_id", code="exists")
        return [event]

    def open(self, now: datetime) -> list[SessionOpened]:
        self._require("drafted", action="开始")
        assert self.closes_at is not None and self.kind is not None and self.title is not None
        if now >= self.closes_at:
            raise DomainError("已过结束时间，不能开始", field="session_id", code="window_passed")
        return [
            SessionOpened(
                kind=self.kind,
                title=self.title,
                subjects=self.subjects,
                electorate=self.electorate,
                closes_at=self.closes_at,
                secret=self.secret,
            )
        ]

    def close(self, by: str) -> list[SessionClosed]:
        self._require("opened", action="结束")
        return [SessionClosed(by=by)]

    def check_publishable(self) -> None:
        """Refuse publishing a session that does not exist or is not closed (before its sheets
        are counted)."""
        if self.status != "published":
            self._require("closed", action="公布结果")

    def publish(self, results: ResultsPublished) -> list[ResultsPublished]:
        if self.status == "published":
            return []
        self.check_publishable()
        return [results]

    # -- ballots: the checks that need the session only --------------------------------
    def check_ballot(self, evaluator_id: str, choices: Sequence[Choice], now: datetime) -> None:
        """Refuse, with the reason, a sheet outside the window, from outside the electorate, for a
        subject not in the session or with an option the kind does not have."""
        if not self.exists:
            raise DomainError(f"测评 {self.id} 不存在", field="session_id", code="not_found")
        assert self.opens_at is not None and self.closes_at is not None and self.kind is not None
        if self.status == "drafted" or now < self.opens_at:
            raise DomainError("测评尚未开始", field="session_id", code="not_open")
        if self.status in ("closed", "published") or now >= self.closes_at:
            raise DomainError("测评已结束，不再接受投票", field="session_id", code="closed")
        if not self.in_electorate(evaluator_id):
            raise DomainError("您不在本次测评的参评人员名单中", field="evaluator_id", code="not_in_electorate")
        subjects = {s.id for s in self.subjects}
        options = OPTIONS[self.kind]
        for i, choice in enumerate(choices):
            if choice.subject_id not in subjects:
                raise DomainError(
                    f"测评对象 {choice.subject_id} 不在本次测评中",
                    field=f"choices.{i}.subject_id",
                    code="unknown_subject",
                )
            if choice.option not in options:
                names = "、".join(OPTION_NAMES[o] for o in options)
                raise DomainError(
                    f"{KIND_NAMES[self.kind]}的选项为：{names}", field=f"choices.{i}.option", code="unknown_option"
                )

    @applies(SessionDrafted)
    def _drafted(self, event: SessionDrafted) -> None:
        self.status = "drafted"
        self.kind = event.kind
        self.title = event.title
        self.subjects = list(event.subjects)
        self.electorate = list(event.electorate)
        self._electors = None
        self.opens_at = event.opens_at
        self.closes_at = event.closes_at
        self.secret = event.secret
        self.quorum = event.quorum
        self.report_to_party_committee = event.report_to_party_committee

    @applies(SessionOpened)
    def _opened(self, event: SessionOpened) -> None:
        self.status = "opened"

    @applies(SessionClosed)
    def _closed(self, event: SessionClosed) -> None:
        self.status = "closed"

    @applies(ResultsPublished)
    def _published(self, event: ResultsPublished) -> None:
        self.status = "published"
        self.results = list(event.results)
        self.voters = event.voters


class BallotSheet(Aggregate):
    """One evaluator's ballots in one session (see the module docstring for secret sessions)."""

    context = "evaluation"
    aggregate_type = "ballot_sheet"
    #: A sheet has a commit per ballot sent (one, or a few when subjects are scored one by one):
    #: loading it is one direct get per commit, no snapshot to read or write in a hall's burst.
    snapshots = False

    choices: dict[str, str] = {}
    on_paper: bool = False

    def cast(
        self, session_id: str, choices: Sequence[Choice], evaluator_id: str | None, on_paper: bool
    ) -> list[BallotsCast]:
        already = [c.subject_id for c in choices if c.subject_id in self.choices]
        if already:
            raise DomainError(
                f"已对以下测评对象投过票，每人每项只能投一次：{'、'.join(already)}",
                field="choices",
                code="already_voted",
            )
        return [BallotsCast(session_id=session_id, choices=list(choices), evaluator_id=evaluator_id, on_paper=on_paper)]

    @applies(BallotsCast)
    def _cast(self, event: BallotsCast) -> None:
        self.choices = {**self.choices, **{c.subject_id: c.option for c in event.choices}}
        self.on_paper = self.on_paper or event.on_paper


class Turnout(Aggregate):
    """In a secret session: which subjects an evaluator scored, never how."""

    context = "evaluation"
    aggregate_type = "turnout"
    snapshots = False  # like a sheet: one commit per ballot sent

    subject_ids: list[str] = []

    def record(self, session_id: str, evaluator_id: str, subject_ids: Sequence[str], on_paper: bool) -> list:
        new = [s for s in subject_ids if s not in self.subject_ids]
        if not new:
            return []
        return [TurnoutRecorded(session_id=session_id, evaluator_id=evaluator_id, subject_ids=new, on_paper=on_paper)]

    @applies(TurnoutRecorded)
    def _recorded(self, event: TurnoutRecorded) -> None:
        self.subject_ids = [*self.subject_ids, *event.subject_ids]


def tally(session: Session, sheets: Sequence[BallotSheet]) -> tuple[list, int]:
    """The results of each subject from the sheets of the session's evaluators, and the voters."""
    assert session.kind is not None
    options = OPTIONS[session.kind]
    electorate = len(session.electorate) or 1
    voters = sum(1 for s in sheets if s.choices)
    results = []
    for subject in session.subjects:
        counts = dict.fromkeys(options, 0)
        for sheet in sheets:
            option = sheet.choices.get(subject.id)
            if option is not None:
                counts[option] += 1
        valid = sum(counts.values())
        good = counts[options[0]] + counts[options[1]]
        turnout = valid / electorate
        results.append(
            SubjectResult(
                subject=subject,
                counts=counts,
                valid=valid,
                rate=round(good / valid, 4) if valid else None,
                turnout=round(turnout, 4),
                quorum_met=turnout >= session.quorum,
                dissatisfied_dominates=counts[options[2]] > good,
            )
        )
    return results, voters
