"""Intake's language: matters, their review and routing between levels, and activities.

A *matter* (事项) is anything raised: a motion 议案, a suggestion 建议, a proposal 提案, a
problem 问题 or an enterprise's demand 企业诉求. Its events are stored on
``duban.evt.intake.<jurisdiction>.<matter_id>``.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .bodies import BODY_NAMES, Body, default_body, kind_allowed
from .events import Command, Event, command, event

JURISDICTION_CODE = r"^\d{6}(\d{3})?$"
#: Ids travel in subjects and keys: letters, digits, ``-`` and ``_`` only.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TITLE = 200
MAX_CONTENT = 20_000


class MatterKind(StrEnum):
    """What kind of matter it is (议案 / 建议 / 提案 / 问题 / 企业诉求)."""

    motion = "motion"
    suggestion = "suggestion"
    proposal = "proposal"
    problem = "problem"
    demand = "demand"


KIND_NAMES = {
    MatterKind.motion: "议案",
    MatterKind.suggestion: "建议",
    MatterKind.proposal: "提案",
    MatterKind.problem: "问题",
    MatterKind.demand: "企业诉求",
}


class Channel(StrEnum):
    """How the matter came in."""

    liaison_station = "liaison_station"  # 代表联络站 / 基层单元
    themed_activity = "themed_activity"  # 主题活动
    survey = "survey"  # 问卷
    session = "session"  # 大会期间
    external_system = "external_system"  # 其他系统


class SubmitterKind(StrEnum):
    person = "person"  # a deputy or CPPCC member
    group = "group"  # a deputy group or a CPPCC sector 界别


class Submitter(BaseModel):
    """A lead submitter (领衔) or a co-signer (附议): a person or a group such as 经济界三组."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64, description="principal id of the deputy or group")
    name: str = Field(min_length=1, max_length=100)
    kind: SubmitterKind = SubmitterKind.person


class Participant(BaseModel):
    """Someone listed at an activity: a deputy, of the congress of one level (人大代表: 全国、省、市、
    县、乡镇), or someone else taking part (街道选民代表, a member of the public); 人次 counts the
    deputies listed, whatever their level, and not the others."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(default=None, max_length=64, description="principal id, for a deputy duban knows")
    name: str = Field(min_length=1, max_length=100)
    role: Literal["deputy", "voter_representative", "other"] = Field(
        default="deputy", description="deputy 人大代表, voter_representative 街道选民代表, other 其他"
    )
    congress: Literal["national", "provincial", "prefecture", "county", "township"] | None = Field(
        default=None, description="a deputy's congress: 全国、省、市、县（市、区）、乡镇"
    )


class RaisedBy(BaseModel):
    """The enterprise or resident a problem came from, to be fed back to (向市场主体反馈)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(default="enterprise", pattern=r"^(enterprise|resident|organisation)$")
    contact: str | None = Field(default=None, max_length=200)


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    ref: str = Field(min_length=1, max_length=500, description="where the file is kept (URL or object key)")


class MatterStatus(StrEnum):
    submitted = "submitted"  # 待审查
    registered = "registered"  # 已立案
    not_registered = "not_registered"  # 不予立案
    merged = "merged"  # 已并案
    routed = "routed"  # 本级办理
    escalated = "escalated"  # 已上报
    sent_down = "sent_down"  # 已交下级
    closed = "closed"  # 已办结 (outcome recorded)


STATUS_NAMES = {
    MatterStatus.submitted: "待审查",
    MatterStatus.registered: "已立案",
    MatterStatus.not_registered: "不予立案",
    MatterStatus.merged: "已并案",
    MatterStatus.routed: "本级办理",
    MatterStatus.escalated: "已上报",
    MatterStatus.sent_down: "已交下级",
    MatterStatus.closed: "已办结",
}


class PlanItemLink(BaseModel):
    """The item of a supervision plan (工作方案) a matter was collected for: a topic (专题), a
    themed activity, a work item or a livelihood project, of this level or of a level above (a
    township's problem collected for the county's topic). It travels with the matter."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    jurisdiction: str = Field(pattern=JURISDICTION_CODE, description="the level whose plan it is")
    plan_id: str = Field(pattern=ID_PATTERN)
    item_id: str = Field(pattern=ID_PATTERN)


class MatterData(BaseModel):
    """What was raised: the part of a matter that travels with it between levels."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    kind: MatterKind
    body: Body = Field(
        description="the body it belongs to (人大 congress / 政协 cppcc): whose members raised it, whose staff "
        "review it, whose book numbers it. When a command leaves it out: 提案 cppcc, any other kind congress"
    )
    title: str = Field(min_length=1, max_length=MAX_TITLE, description="案由")
    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    lead: Submitter = Field(description="领衔者 (the first, when several lead it jointly)")
    co_leads: list[Submitter] = Field(
        default_factory=list,
        max_length=20,
        description="联名领衔: the other leads of a jointly led matter (persons and groups mixed), in order",
    )
    co_signers: list[Submitter] = Field(default_factory=list, max_length=200)
    topical: bool = Field(default=False, description="专题类 (a topical proposal or suggestion)")
    channel: Channel
    raised_in: str = Field(pattern=JURISDICTION_CODE, description="the jurisdiction where it was raised")
    raised_at: AwareDatetime | None = Field(
        default=None,
        description="提出日期: when it was raised, given for what is entered later (a paper list, an import); "
        "the time of submission when not given. Travels with the matter to other levels.",
    )
    category: str | None = Field(default=None, max_length=50)
    attachments: list[Attachment] = Field(default_factory=list, max_length=50)
    raised_by: RaisedBy | None = None
    activity_id: str | None = Field(default=None, pattern=ID_PATTERN)
    plan_item: PlanItemLink | None = Field(
        default=None, description="the plan item (专题、主题活动、工作项目) it was collected for, at any level above"
    )

    @model_validator(mode="before")
    @classmethod
    def _body_from_kind(cls, data: Any) -> Any:
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind in MatterKind.__members__.values() and data.get("body") is None:
            return {**data, "body": default_body(data["kind"])}
        return data

    @model_validator(mode="after")
    def _distinct_submitters(self) -> MatterData:
        ids = [self.lead.id, *(s.id for s in self.co_leads), *(s.id for s in self.co_signers)]
        if len(ids) != len(set(ids)):
            raise ValueError("a submitter appears twice")
        if not kind_allowed(self.body, self.kind):
            raise ValueError(f"{BODY_NAMES[self.body]}不受理{KIND_NAMES[self.kind]}")
        return self

    @property
    def leads(self) -> list[Submitter]:
        """领衔者: the lead and the joint leads, in order."""
        return [self.lead, *self.co_leads]


class Hop(BaseModel):
    """One step of a matter's journey between levels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jurisdiction: str = Field(pattern=JURISDICTION_CODE)
    matter_id: str


class Outcome(BaseModel):
    """How the level that handled the matter answered it (办理结果)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    summary: str = Field(min_length=1, max_length=MAX_CONTENT, description="办理落实情况摘要")
    reply_class: str | None = Field(default=None, max_length=8, description="A/B/C (configuration)")
    unit: str | None = Field(default=None, max_length=200, description="主办单位")
    closed_at: AwareDatetime | None = None


class HandlingReply(BaseModel):
    """The reply of the level that handles a matter (答复), as the levels it came from keep it, so
    that its submitters can read it and give their feedback where they are."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    reply_class: str = Field(max_length=8)
    text: str = Field(max_length=MAX_CONTENT)
    unit: str | None = Field(default=None, max_length=200, description="主办单位")
    round: int = Field(default=1, ge=1, description="1, or the round of re-handling (重新办理)")


# -- events --------------------------------------------------------------------------------


@event("intake.MatterSubmitted", 2)
class MatterSubmitted(Event):
    """A matter was raised (提出) at this level."""

    matter: MatterData
    idempotency_key: str | None = None


@event("intake.MatterReceived", 2)
class MatterReceived(Event):
    """A matter arrived from another level (escalated up to us or sent down to us)."""

    matter: MatterData
    origin: Hop
    direction: str = Field(pattern=r"^(up|down)$")
    path: list[Hop] = Field(default_factory=list, description="earlier hops, oldest first")
    reason: str | None = None


@event("intake.MatterRegistered")
class MatterRegistered(Event):
    """Registered (立案) with a number unique and gapless per jurisdiction, kind and year."""

    year: int
    number: int
    registration_no: str


@event("intake.MatterNotRegistered")
class MatterNotRegistered(Event):
    """Not registered (不予立案), with the reason."""

    reason: str


@event("intake.MatterConverted")
class MatterConverted(Event):
    """Converted to another kind (e.g. a motion turned into a suggestion)."""

    from_kind: MatterKind
    to_kind: MatterKind
    reason: str


@event("intake.MatterTransferred")
class MatterTransferred(Event):
    """Transferred to the level's other body (a CPPCC proposal that is really for the congress, as
    a 建议; or back): from now on that body's staff review it, its book numbers it."""

    from_body: Body
    to_body: Body
    from_kind: MatterKind
    to_kind: MatterKind
    reason: str


@event("intake.MatterMerged")
class MatterMerged(Event):
    """This matter was merged (合并) into another; its submitters went with it."""

    into: str
    reason: str | None = None


@event("intake.MatterAbsorbed")
class MatterAbsorbed(Event):
    """Another matter was merged into this one; every submitter of it is kept here."""

    merged: str
    submitters: list[Submitter]
    leads: list[Submitter] = Field(
        default_factory=list, description="the merged matter's leads (领衔者, joint ones included), in order"
    )


@event("intake.MatterRouted", 2)
class MatterRouted(Event):
    """Handled at this level (本级办理): tracking opens a case for it."""

    kind: MatterKind
    body: Body = Field(description="the body whose matter it is (人大 / 政协)")
    title: str
    submitters: list[Submitter]
    leads: list[Submitter] = Field(
        default_factory=list, description="领衔者: its leads and those of the matters merged into it, in order"
    )
    merged: bool = Field(default=False, description="合并: other matters were merged into it")
    topical: bool = Field(default=False, description="专题类")
    registration_no: str | None = None
    category: str | None = None
    committee: str | None = None
    note: str | None = None
    raised_in: str | None = Field(default=None, description="where it was raised (a township of this county…)")
    plan_item: PlanItemLink | None = Field(default=None, description="the plan item it was collected for")


@event("intake.MatterEscalated")
class MatterEscalated(Event):
    """Reported up (逐级上报) to the parent level, which holds the power to act."""

    to: str
    reason: str


@event("intake.MatterSentDown")
class MatterSentDown(Event):
    """Sent down (交由下级办理) to a child level."""

    to: str
    reason: str


@event("intake.MatterForwarded")
class MatterForwarded(Event):
    """The other level took the matter in as its own matter (its id, for the path)."""

    to: Hop


@event("intake.OutcomeRecorded")
class OutcomeRecorded(Event):
    """The outcome, recorded where the matter was handled or reported back by that level."""

    outcome: Outcome
    handled_in: Hop
    reported_back: bool = False


class FeedbackWay(StrEnum):
    """How the outcome was told to whoever raised the problem (向市场主体反馈)."""

    phone = "phone"  # 电话
    visit = "visit"  # 上门走访
    message = "message"  # 短信、微信
    meeting = "meeting"  # 座谈会
    link = "link"  # 扫码反映的回访链接


FEEDBACK_WAY_NAMES = {
    FeedbackWay.phone: "电话",
    FeedbackWay.visit: "上门走访",
    FeedbackWay.message: "短信、微信",
    FeedbackWay.meeting: "座谈会",
    FeedbackWay.link: "回访链接",
}
#: The raiser's satisfaction (None: not asked, or they would not say).
RaiserRating = Literal["satisfied", "basically_satisfied", "dissatisfied"]
RAISER_RATING_NAMES = {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}


@event("intake.RaiserFedBack")
class RaiserFedBack(Event):
    """向企业/群众反馈: the outcome was told to the enterprise or resident who raised the problem,
    this way, on this day, and they said how satisfied they were."""

    way: FeedbackWay
    rating: RaiserRating | None = None
    note: str | None = None
    fed_back_on: date


@event("intake.ReplyRecorded")
class ReplyRecorded(Event):
    """答复: the reply of the level that handles the matter (``handled_in``), recorded there when its
    case's reply is released, and at each level the matter came from when it is reported back."""

    reply: HandlingReply
    handled_in: Hop
    reported_back: bool = False


@event("intake.SubmitterFeedbackGiven")
class SubmitterFeedbackGiven(Event):
    """A submitter's 满意 / 基本满意 / 不满意 on the reply, given at the level where they raised the
    matter; it travels level by level to the one that handles it (``handled_in``)."""

    submitter: Submitter
    rating: RaiserRating
    comment: str | None = None
    round: int = 1
    handled_in: Hop


@event("intake.SubmitterFeedbackReceived")
class SubmitterFeedbackReceived(Event):
    """A submitter's feedback given at another level (``given_in``), arrived on its way to the level
    that handles the matter: there, tracking takes it as the submitter's own feedback."""

    submitter: Submitter
    rating: RaiserRating
    comment: str | None = None
    round: int = 1
    given_in: str = Field(pattern=JURISDICTION_CODE)
    handled_in: Hop


@event("intake.RegistrationNumberAssigned")
class RegistrationNumberAssigned(Event):
    """The next registration number of a book (one per jurisdiction, kind and year) went to a matter."""

    matter_id: str
    number: int


@event("intake.ActivityRecorded")
class ActivityRecorded(Event):
    """An activity where matters are collected (视察、调研、座谈、联系群众、主题活动)."""

    kind: str
    title: str
    held_on: date
    place: str
    organiser: str
    organiser_kind: str
    deputies: list[Submitter]
    participants: list[Participant] = Field(default_factory=list)


# -- commands ------------------------------------------------------------------------------


@command("intake.SubmitMatter")
class SubmitMatter(Command):
    """Raise a matter. Deputies and liaison stations submit in their own jurisdiction."""

    matter: MatterData


@command("intake.RegisterMatter")
class RegisterMatter(Command):
    matter_id: str = Field(pattern=ID_PATTERN)


@command("intake.RejectMatter")
class RejectMatter(Command):
    """不予立案."""

    matter_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(min_length=1, max_length=2000)


@command("intake.ConvertMatter")
class ConvertMatter(Command):
    matter_id: str = Field(pattern=ID_PATTERN)
    to_kind: MatterKind
    reason: str = Field(min_length=1, max_length=2000)


@command("intake.TransferMatter")
class TransferMatter(Command):
    """转交: hand a matter to the level's other body (人大 ↔ 政协), as a kind that body takes."""

    matter_id: str = Field(pattern=ID_PATTERN)
    to_body: Body
    to_kind: MatterKind | None = Field(
        default=None, description="the kind it becomes there; by default 提案 ↔ 建议, other kinds unchanged"
    )
    reason: str = Field(min_length=1, max_length=2000)


@command("intake.MergeMatter")
class MergeMatter(Command):
    matter_id: str = Field(pattern=ID_PATTERN, description="the matter merged away")
    into: str = Field(pattern=ID_PATTERN, description="the matter it joins")
    reason: str | None = Field(default=None, max_length=2000)


@command("intake.RouteMatter")
class RouteMatter(Command):
    """Handle it at this level (it is within this level's powers)."""

    matter_id: str = Field(pattern=ID_PATTERN)
    committee: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=2000)


@command("intake.EscalateMatter")
class EscalateMatter(Command):
    matter_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(min_length=1, max_length=2000)


@command("intake.SendDownMatter")
class SendDownMatter(Command):
    matter_id: str = Field(pattern=ID_PATTERN)
    to: str = Field(pattern=JURISDICTION_CODE)
    reason: str = Field(min_length=1, max_length=2000)


@command("intake.RecordOutcome")
class RecordOutcome(Command):
    matter_id: str = Field(pattern=ID_PATTERN)
    outcome: Outcome


@command("intake.FeedBackToRaiser")
class FeedBackToRaiser(Command):
    """向企业/群众反馈: record that the outcome was told to whoever raised the problem (by the deputy,
    the station or the committee, whoever did it), how, and their satisfaction."""

    matter_id: str = Field(pattern=ID_PATTERN)
    way: FeedbackWay
    rating: RaiserRating | None = Field(
        default=None, description="satisfied 满意, basically_satisfied 基本满意, dissatisfied 不满意"
    )
    note: str | None = Field(default=None, max_length=2000)
    fed_back_on: date | None = Field(default=None, description="the day it was done; today when not given")


@command("intake.GiveFeedbackOnReply")
class GiveFeedbackOnReply(Command):
    """反馈满意度 on the reply to a matter handled at another level, given by its submitter where
    they raised it (a township deputy on the county's reply); it travels to the handling level."""

    matter_id: str = Field(pattern=ID_PATTERN)
    rating: RaiserRating = Field(description="satisfied 满意, basically_satisfied 基本满意, dissatisfied 不满意")
    comment: str | None = Field(default=None, max_length=2000)


@command("intake.RecordActivity")
class RecordActivity(Command):
    kind: str = Field(pattern=r"^(inspection|research|discussion|contact|themed)$")
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    held_on: date
    place: str = Field(min_length=1, max_length=200)
    organiser: str = Field(min_length=1, max_length=200)
    organiser_kind: str = Field(pattern=r"^(liaison_station|deputy_group|committee)$")
    deputies: list[Submitter] = Field(default_factory=list, max_length=500, description="deputies (level not told)")
    participants: list[Participant] = Field(
        default_factory=list,
        max_length=500,
        description="everyone listed, each a deputy of a congress level or a 街道选民代表 or other",
    )


ACTIVITY_KIND_NAMES = {
    "inspection": "视察",
    "research": "调研",
    "discussion": "座谈",
    "contact": "联系群众",
    "themed": "主题活动",
}


# Events stored before the bodies (人大 / 政协) existed are read through the upcasters there.
from . import intake_v1  # noqa: E402,F401
