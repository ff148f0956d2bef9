"""Evaluation's language: sessions in which deputies score how matters, motions, projects and
department heads were handled (满意度测评, 可行性测评, 履职评议, 民主评议), and their ballots.

Events are stored on ``duban.evt.evaluation.<jurisdiction>.<aggregate_id>``: a session under its
id; each evaluator's ballot sheet of a session under an id derived from both (in a secret session
an opaque one, see ``services/evaluation/domain.py``); in a secret session also each evaluator's
turnout record. Results are published as events for tracking (reopen supervision of subjects
rated unsatisfactory) and notify (results to the units, 抄报市委 for performance appraisals).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .bodies import Body
from .events import Command, Event, command, event
from .intake import ID_PATTERN


class SessionKind(StrEnum):
    satisfaction = "satisfaction"  # 满意度测评
    feasibility = "feasibility"  # 可行性测评
    performance = "performance"  # 履职评议 (of department heads)
    democratic = "democratic"  # 民主评议 (CPPCC, of proposals)


KIND_NAMES = {
    SessionKind.satisfaction: "满意度测评",
    SessionKind.feasibility: "可行性测评",
    SessionKind.performance: "履职评议",
    SessionKind.democratic: "民主评议",
}


def session_body(kind: SessionKind | str) -> Body:
    """The body that holds a session of ``kind``: 民主评议 the CPPCC standing committee's, the
    others (满意度测评, 可行性测评, 履职评议) the congress's. Its staff draft and run it, its members
    score, and its notices are signed with its name."""
    return Body.cppcc if str(kind) == SessionKind.democratic.value else Body.congress


#: The options of each kind, best first: the first two count towards the rate.
OPTIONS: dict[SessionKind, tuple[str, str, str]] = {
    SessionKind.satisfaction: ("satisfied", "basically_satisfied", "dissatisfied"),
    SessionKind.performance: ("satisfied", "basically_satisfied", "dissatisfied"),
    SessionKind.democratic: ("satisfied", "basically_satisfied", "dissatisfied"),
    SessionKind.feasibility: ("feasible", "basically_feasible", "infeasible"),
}
OPTION_NAMES = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
    "feasible": "可行",
    "basically_feasible": "基本可行",
    "infeasible": "不可行",
}


#: Every option of every kind (which ones a session takes is its kind's: ``OPTIONS``).
Option = Literal["satisfied", "basically_satisfied", "dissatisfied", "feasible", "basically_feasible", "infeasible"]


class UnitRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)


class SubjectRef(BaseModel):
    """What is evaluated, by reference: a case (its id is its matter's), a matter, a work item,
    a motion, a department head. ``unit`` is the unit that handled it, to be told the result."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    kind: str = Field(pattern=r"^(case|matter|work_item|plan_item|motion|department_head|proposal|project)$")
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=300)
    unit: UnitRef | None = None


class Choice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject_id: str = Field(pattern=ID_PATTERN)
    option: Option = Field(
        description="满意度测评、履职评议、民主评议：satisfied 满意, basically_satisfied 基本满意, "
        "dissatisfied 不满意；可行性测评：feasible 可行, basically_feasible 基本可行, infeasible 不可行"
    )


class SubjectResult(BaseModel):
    """The result for one subject: counts per option, valid ballots, the rate, turnout, quorum."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: SubjectRef
    counts: dict[str, int]
    valid: int
    rate: float | None = Field(description="(first + second option) / valid ballots; None without ballots")
    turnout: float = Field(description="evaluators who scored this subject / electorate")
    quorum_met: bool
    dissatisfied_dominates: bool = Field(description="the third option has more ballots than the first two together")


# -- events ------------------------------------------------------------------------------------


@event("evaluation.SessionDrafted")
class SessionDrafted(Event):
    kind: SessionKind
    title: str
    subjects: list[SubjectRef]
    electorate: list[str] = Field(description="principal ids of the evaluators")
    roster: str | None = Field(default=None, description="the roster the electorate was taken from, if any")
    opens_at: AwareDatetime
    closes_at: AwareDatetime
    secret: bool
    quorum: float = Field(description="the share of the electorate that must take part for a valid result")
    report_to_party_committee: bool = False


@event("evaluation.SessionOpened")
class SessionOpened(Event):
    """Ballots are taken from now until ``closes_at``: evaluators are invited (notify)."""

    kind: SessionKind
    title: str
    subjects: list[SubjectRef]
    electorate: list[str]
    closes_at: AwareDatetime
    secret: bool


@event("evaluation.BallotsCast")
class BallotsCast(Event):
    """Choices of one evaluator's sheet. In a secret session ``evaluator_id`` is None and the
    sheet's id is opaque: the choice is stored without who made it."""

    session_id: str
    choices: list[Choice]
    evaluator_id: str | None = None
    on_paper: bool = False


@event("evaluation.TurnoutRecorded")
class TurnoutRecorded(Event):
    """In a secret session: that an evaluator scored these subjects (never what they chose)."""

    session_id: str
    evaluator_id: str
    subject_ids: list[str]
    on_paper: bool = False


@event("evaluation.SessionClosed")
class SessionClosed(Event):
    by: str = Field(pattern=r"^(time|staff)$")


@event("evaluation.ResultsPublished")
class ResultsPublished(Event):
    """The results of a closed session, per subject (反馈"一府两院"及有关部门; 抄报市委 when
    ``report_to_party_committee``)."""

    kind: SessionKind
    title: str
    electorate_size: int
    voters: int
    results: list[SubjectResult]
    report_to_party_committee: bool = False


# -- commands ------------------------------------------------------------------------------------


@command("evaluation.DraftSession")
class DraftSession(Command):
    kind: SessionKind
    title: str = Field(min_length=1, max_length=200)
    subjects: list[SubjectRef] = Field(min_length=1, max_length=500)
    electorate: list[str] = Field(default_factory=list, max_length=5000)
    roster: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="a group of the level's directory (代表小组, 代表团: its enabled members), or a roster file's",
        validate_default=True,
    )
    opens_at: AwareDatetime
    closes_at: AwareDatetime
    secret: bool = False
    quorum: float = Field(default=0.5, gt=0, le=1)
    report_to_party_committee: bool | None = Field(default=None, description="default: true for 履职评议")

    @field_validator("closes_at")
    @classmethod
    def _window(cls, closes_at: datetime, info: ValidationInfo) -> datetime:
        opens_at = info.data.get("opens_at")
        if opens_at is not None and closes_at <= opens_at:
            raise ValueError("closes_at must be after opens_at")
        return closes_at

    @field_validator("subjects")
    @classmethod
    def _distinct_subjects(cls, subjects: list[SubjectRef]) -> list[SubjectRef]:
        ids = [s.id for s in subjects]
        if len(ids) != len(set(ids)):
            raise ValueError("a subject appears twice")
        return subjects

    @field_validator("roster")
    @classmethod
    def _someone_votes(cls, roster: str | None, info: ValidationInfo) -> str | None:
        if not info.data.get("electorate") and not roster:
            raise ValueError("an electorate or a roster is needed")
        return roster


@command("evaluation.OpenSession")
class OpenSession(Command):
    """开始测评: evaluators may cast their sheets from now until the session closes."""

    session_id: str = Field(pattern=ID_PATTERN)


@command("evaluation.CloseSession")
class CloseSession(Command):
    """结束测评 and publish the results (staff; sessions also close by time)."""

    session_id: str = Field(pattern=ID_PATTERN)


@command("evaluation.PublishResults")
class PublishResults(Command):
    """公布结果 of a closed session whose results are not published yet (once)."""

    session_id: str = Field(pattern=ID_PATTERN)


@command("evaluation.CastBallots")
class CastBallots(Command):
    """One evaluator's ballot sheet (one or more subjects). Staff entering a paper ballot name
    the evaluator; evaluators omit it."""

    session_id: str = Field(pattern=ID_PATTERN)
    choices: list[Choice] = Field(min_length=1, max_length=500)
    evaluator_id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _distinct(self) -> CastBallots:
        ids = [c.subject_id for c in self.choices]
        if len(ids) != len(set(ids)):
            raise ValueError("a subject appears twice on the sheet")
        return self
