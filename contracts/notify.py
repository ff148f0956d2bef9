"""Notify's language: notices and their deliveries, the recipient directory, the monthly summary
(一月一小结) and public disclosure (公示).

A *notice* is what one person must know because of one event (交办通知, 催办, 答复通知…). Each
notice goes to one recipient over each of the channels the directory lists for them; one
*delivery* (aggregate ``delivery``) is one notice to one recipient over one channel, with the
id derived from (source event id, recipient id, channel): so an event redelivered any number
of times plans the same deliveries again, which are stored once. Its events are stored on
``duban.evt.notify.<jurisdiction>.<delivery_id>``: the intent (``DeliveryPlanned``, which is
also what asks the sender to send), each attempt recorded *before* sending
(``DeliveryAttempted``), and what came of it.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from .bodies import Body
from .events import Command, Event, command, event
from .intake import ID_PATTERN

#: A recipient id: a principal id (``unit-water``, ``deputy-1``), a role (``role:committee``), a
#: leader named in an assignment (``leader:陈主任``) or whoever raised a problem (``raiser:<matter>``).
RECIPIENT_ID = r"^[^\s|]{1,128}$"
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class NoticeChannel(StrEnum):
    """How a notice reaches its recipient."""

    inbox = "inbox"  # 站内消息: the in-app inbox of this level
    email = "email"  # 电子邮件 (SMTP)
    webhook = "webhook"  # 对接系统 (HTTP POST signed with HMAC-SHA256)


CHANNEL_NAMES = {NoticeChannel.inbox: "站内消息", NoticeChannel.email: "电子邮件", NoticeChannel.webhook: "系统对接"}


class NoticeKind(StrEnum):
    """What a notice is about; each kind has a Jinja2 template ``services/notify/templates/<kind>.j2``."""

    assignment = "assignment"  # 交办通知 (lead unit and co-units)
    reminder = "reminder"  # 到期提醒 (due soon)
    urging = "urging"  # 催办 (overdue, long overdue)
    leader_escalation = "leader_escalation"  # 超期重点督办件报领导
    rehandling = "rehandling"  # 重新办理通知
    reply = "reply"  # 答复通知与征询意见 (every submitter)
    escalation_received = "escalation_received"  # 收到上报/交办事项 (the receiving level)
    raiser_feedback = "raiser_feedback"  # 向市场主体反馈 (the enterprise or resident)
    evaluation_invitation = "evaluation_invitation"  # 测评邀请
    evaluation_results = "evaluation_results"  # 测评结果反馈
    appraisal_results_cc = "appraisal_results_cc"  # 履职评议结果抄报市委
    plan_duty = "plan_duty"  # 工作方案节点提醒/催办 (a group behind, a summary not handed in)
    plan_item_results = "plan_item_results"  # 工作方案项目测评结果 (its units and leaders)


KIND_NAMES = {
    NoticeKind.assignment: "交办通知",
    NoticeKind.reminder: "到期提醒",
    NoticeKind.urging: "催办通知",
    NoticeKind.leader_escalation: "超期报领导督办",
    NoticeKind.rehandling: "重新办理通知",
    NoticeKind.reply: "答复通知",
    NoticeKind.escalation_received: "上报事项通知",
    NoticeKind.raiser_feedback: "办理结果反馈",
    NoticeKind.evaluation_invitation: "测评邀请",
    NoticeKind.evaluation_results: "测评结果",
    NoticeKind.appraisal_results_cc: "履职评议结果抄报",
    NoticeKind.plan_duty: "工作节点催办",
    NoticeKind.plan_item_results: "项目测评结果",
}


class DeliveryStatus(StrEnum):
    planned = "planned"  # 待发送
    sending = "sending"  # 发送中 (an attempt is recorded, its outcome not yet)
    delivered = "delivered"  # 已送达
    failed = "failed"  # 发送失败，待重试
    in_doubt = "in_doubt"  # 结果不明，未重发 (at most once)
    dead_lettered = "dead_lettered"  # 多次失败，已转死信


DELIVERY_STATUS_NAMES = {
    DeliveryStatus.planned: "待发送",
    DeliveryStatus.sending: "发送中",
    DeliveryStatus.delivered: "已送达",
    DeliveryStatus.failed: "发送失败，待重试",
    DeliveryStatus.in_doubt: "结果不明，未重发",
    DeliveryStatus.dead_lettered: "多次失败，已转死信",
}


class Recipient(BaseModel):
    """Who a notice is for: an id the directory knows (or not) and a name people read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=RECIPIENT_ID)
    name: str = Field(min_length=1, max_length=200)


class SourceEvent(BaseModel):
    """The event a notice was derived from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    event_type: str
    aggregate_id: str
    jurisdiction: str


# -- deliveries -------------------------------------------------------------------------------


@event("notify.DeliveryPlanned")
class DeliveryPlanned(Event):
    """A notice is to go to one recipient over one channel: rendered once, sent as planned."""

    source: SourceEvent
    kind: NoticeKind
    recipient: Recipient
    channel: NoticeChannel
    address: str | None = Field(default=None, max_length=2000, description="e-mail address or webhook URL")
    webhook_secret_env: str | None = Field(default=None, description="names the env var of the receiver's own key")
    subject: str = Field(max_length=500)
    body: str = Field(max_length=50_000)
    topic_id: str | None = Field(default=None, description="the matter, case or session the notice is about")
    data: dict = Field(default_factory=dict, description="the facts of the notice, as a webhook receives them")


@event("notify.DeliveryAttempted")
class DeliveryAttempted(Event):
    """A send is starting: recorded *before* anything leaves, so a crash mid-send is known."""

    attempt: int = Field(ge=1)
    started_at: AwareDatetime
    instance: str = Field(description="the sending process (a random id per start)")


@event("notify.NoticeDelivered")
class NoticeDelivered(Event):
    """The channel accepted the notice (SMTP server queued it, webhook answered 2xx, inbox stored)."""

    attempt: int = Field(ge=0)
    detail: str | None = Field(default=None, max_length=500)


@event("notify.DeliveryFailed")
class DeliveryFailed(Event):
    """The channel refused or could not be reached, before the notice could have arrived."""

    attempt: int = Field(ge=1)
    error: str = Field(max_length=2000)
    permanent: bool = False


@event("notify.DeliveryInDoubt")
class DeliveryInDoubt(Event):
    """An attempt's outcome is unknown (a crash or a timeout after sending began): not resent,
    by the at-most-once rule; an operator checks with the recipient and may replay."""

    attempt: int = Field(ge=1)
    reason: str = Field(max_length=2000)
    request_seq: int = Field(ge=0, description="the stream sequence of the request this decision settles")


@event("notify.DeliveryDeadLettered")
class DeliveryDeadLettered(Event):
    """Attempts exhausted (or a permanent refusal): the send request is in the dead-letter stream."""

    attempts: int = Field(ge=0)
    error: str = Field(max_length=2000)
    request_seq: int = Field(ge=0)


@event("notify.DeliveryReplayed")
class DeliveryReplayed(Event):
    """An operator put an in-doubt or dead-lettered delivery back on its way: it is sent again."""

    request_seq: int = Field(ge=0, description="the request that had settled it")
    by: str | None = None


@event("notify.NoticeRead")
class NoticeRead(Event):
    """The recipient opened the notice in the in-app inbox."""

    reader: str


# -- the recipient directory -----------------------------------------------------------------


class RecipientEntry(BaseModel):
    """One entry of the recipient directory: who is reachable how, and what they want.

    ``names`` lets an assignment's leader (a name such as 陈主任) find the entry; ``channels`` are
    the channels wanted, in order (inbox is always available; e-mail needs ``email``, a webhook
    ``webhook_url``); ``mute`` lists notice kinds not wanted; ``subscribe`` lists kinds wanted
    without being addressed (the committee receiving escalations, 市委办公室 for 抄报)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=RECIPIENT_ID)
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(default="person", pattern=r"^(person|unit|leader|committee|party_committee|system|role)$")
    names: list[str] = Field(default_factory=list, max_length=20)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    webhook_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    webhook_secret_env: str | None = Field(
        default=None, max_length=100, pattern=r"^[A-Z][A-Z0-9_]*$", description="env var holding this receiver's key"
    )
    channels: list[NoticeChannel] = Field(default_factory=lambda: [NoticeChannel.inbox], min_length=1)
    mute: list[NoticeKind] = Field(default_factory=list)
    subscribe: list[NoticeKind] = Field(default_factory=list)

    @field_validator("names")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        if any(not v or "|" in v or len(v) > 200 for v in values):
            raise ValueError("a name is empty, too long or contains |")
        return values


@event("notify.RecipientRecorded")
class RecipientRecorded(Event):
    """A directory entry was added or changed (``source``: the data file or the API)."""

    entry: RecipientEntry
    source: str = Field(pattern=r"^(file|api)$")
    file_digest: str | None = None


@event("notify.RecipientRemoved")
class RecipientRemoved(Event):
    reason: str | None = None


# -- the monthly summary (seed 003 附件) -------------------------------------------------------


class SummaryFigures(BaseModel):
    """The figures of the 附件 table for one jurisdiction and month (typical cases aside)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    activities: int = Field(default=0, ge=0, description="视察、调研、座谈、联系群众活动次数")
    participations: int = Field(default=0, ge=0, description="代表参与活动人次")
    collected: int = Field(default=0, ge=0, description="收集意见建议数量（件）")
    solved: int = Field(default=0, ge=0, description="解决问题数量（件）")
    escalated: int = Field(default=0, ge=0, description="上报市级处理研究的意见建议数量（件）")

    def __add__(self, other: SummaryFigures) -> SummaryFigures:
        return SummaryFigures(**{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields})


class TypicalCase(BaseModel):
    """典型案例: a short account staff add to the month's summary."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(default="", max_length=5000)
    jurisdiction: str = Field(pattern=r"^\d{6}(\d{3})?$")
    matter_id: str | None = Field(default=None, pattern=ID_PATTERN)


class SummaryRow(BaseModel):
    """One jurisdiction's figures within a summary: this level's own, or a lower level's report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jurisdiction: str = Field(pattern=r"^\d{6}(\d{3})?$")
    name: str
    figures: SummaryFigures
    revision: int | None = Field(default=None, description="the revision of the lower level's report used")
    reported: bool = Field(default=True, description="false: a lower level that had not reported yet (未报送)")


@event("notify.TypicalCaseAdded")
class TypicalCaseAdded(Event):
    case: TypicalCase


@event("notify.TypicalCaseRemoved")
class TypicalCaseRemoved(Event):
    case_id: str


@event("notify.MonthlySummaryCompiled")
class MonthlySummaryCompiled(Event):
    """一月一小结: this level's figures for a month, its own and those its lower levels reported,
    compiled for the report to the level above (a new revision when the figures changed)."""

    month: str = Field(pattern=MONTH_PATTERN)
    revision: int = Field(ge=1)
    figures: SummaryFigures
    rows: list[SummaryRow]
    typical_cases: list[TypicalCase] = Field(default_factory=list)
    report_to: str | None = Field(default=None, description="the level above, None at the top")
    compiled_on: date


# -- public disclosure (公示, seed 002) --------------------------------------------------------


class DisclosureText(BaseModel):
    """What the public reads of one closed key matter, as staff released it, under the heading of
    the body whose matter it is (政协温岭市委员会…重点提案办理落实情况公示)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200, description="案由")
    body: Body = Field(description="the body whose disclosure it is (人大 / 政协)")
    leads: list[str] = Field(
        min_length=1, max_length=50, description="领衔者: every lead, joint ones and those of merged matters"
    )
    merged: bool = Field(default=False, description="合并")
    topical: bool = Field(default=False, description="专题类")
    unit: str = Field(min_length=1, max_length=200, description="主办单位")
    summary: str = Field(min_length=1, max_length=20_000, description="办理落实情况摘要")
    evaluation_result: str | None = Field(default=None, max_length=200, description="测评/评议结果")
    kind: str | None = None
    registration_no: str | None = None
    year: int | None = Field(default=None, description="the year of its number (立案年度)")
    number: int | None = Field(default=None, description="its number in its body's book of its kind and year")


@event("notify.DisclosureReleased", 2)
class DisclosureReleased(Event):
    """Staff released a closed key matter for public disclosure (公示)."""

    case_id: str
    text: DisclosureText


@event("notify.DisclosureWithdrawn")
class DisclosureWithdrawn(Event):
    reason: str


@event("notify.PublicCommentReceived")
class PublicCommentReceived(Event):
    """A member of the public commented on a disclosed matter: it is to become a matter in intake."""

    disclosure_id: str
    title: str
    name: str
    contact: str | None = None
    content: str


@event("notify.PublicCommentForwarded")
class PublicCommentForwarded(Event):
    """Intake took the comment in as a matter (its id there)."""

    matter_id: str


# -- commands ----------------------------------------------------------------------------------


@command("notify.ReleaseDisclosure")
class ReleaseDisclosure(Command):
    """公示: release a closed key matter; the text defaults to what the records say."""

    case_id: str = Field(pattern=ID_PATTERN)
    evaluation_result: str | None = Field(default=None, max_length=200)
    summary: str | None = Field(default=None, max_length=20_000)
    leads: list[str] | None = Field(default=None, max_length=50)


@command("notify.WithdrawDisclosure")
class WithdrawDisclosure(Command):
    case_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(min_length=1, max_length=2000)


@command("notify.SubmitPublicComment")
class SubmitPublicComment(Command):
    """A comment of the public on a disclosed matter (no account needed)."""

    name: str = Field(min_length=1, max_length=100)
    contact: str | None = Field(default=None, max_length=200)
    content: str = Field(min_length=1, max_length=5000)


@command("notify.MarkRead")
class MarkRead(Command):
    """标记已读: a notice of the caller's inbox."""

    delivery_id: str = Field(pattern=ID_PATTERN)


@command("notify.ReplayDelivery")
class ReplayDelivery(Command):
    """重发: a delivery settled in doubt or dead-lettered is sent once more (after checking it did not arrive)."""

    delivery_id: str = Field(pattern=ID_PATTERN)


@command("notify.ReportSummary")
class ReportSummary(Command):
    """立即汇总并报送: compile this level's summary of ``month`` now, rather than on its report day
    (the 5th at a township, the 10th at a county), and report it to the level above. It holds
    everything accepted before it was asked for. A lower level that has not reported yet is in it
    as 未报送 with no figures; its report, when it comes, makes a new revision (sent up again)."""

    month: str = Field(pattern=MONTH_PATTERN)


@command("notify.RemoveTypicalCase")
class RemoveTypicalCase(Command):
    month: str = Field(pattern=MONTH_PATTERN)
    case_id: str = Field(pattern=ID_PATTERN)


@command("notify.AddTypicalCase")
class AddTypicalCase(Command):
    month: str = Field(pattern=MONTH_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(default="", max_length=5000)
    matter_id: str | None = Field(default=None, pattern=ID_PATTERN)


# Disclosures released before the bodies (人大 / 政协) existed are read through the upcaster there.
from . import notify_v1  # noqa: E402,F401
