"""Notify's aggregates: the delivery, the directory entry, the monthly summary, the disclosure and
the public comment. Pure: no I/O; command methods return events, ``@applies`` changes state.

The delivery is where "at most once per (event, recipient, channel)" is decided. Its id is
derived from that triple, so planning it again adds nothing. Before anything is sent an attempt
is recorded (``DeliveryAttempted``), with optimistic concurrency, so two senders cannot both
start one; after sending, the outcome. An attempt without an outcome older than the lease means
the sender died mid-send: whether the notice arrived is unknown, and at-most-once prefers not to
send it again, so the delivery is settled *in doubt* and handed to operators (who may replay it
after asking the recipient). A request that reaches a settled delivery is a late redelivery and
changes nothing: only an operator's replay (the
delivery's ``replay``, or a replay of the dead letter) sends a settled delivery again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from contracts.notify import (
    DeliveryAttempted,
    DeliveryDeadLettered,
    DeliveryFailed,
    DeliveryInDoubt,
    DeliveryPlanned,
    DeliveryReplayed,
    DeliveryStatus,
    DisclosureReleased,
    DisclosureText,
    DisclosureWithdrawn,
    MonthlySummaryCompiled,
    NoticeChannel,
    NoticeDelivered,
    NoticeRead,
    PublicCommentForwarded,
    PublicCommentReceived,
    RecipientEntry,
    RecipientRecorded,
    RecipientRemoved,
    SummaryFigures,
    SummaryRow,
    TypicalCase,
    TypicalCaseAdded,
    TypicalCaseRemoved,
)
from services.runtime.es.aggregate import Aggregate, DomainError, NotAllowed, applies

CONTEXT = "notify"
SETTLED = (DeliveryStatus.in_doubt, DeliveryStatus.dead_lettered)


# -- deliveries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendDecision:
    """What a sender does with one send request (see :meth:`Delivery.on_request`)."""

    action: str  # "send" | "skip" | "wait" | "in_doubt"
    events: tuple = ()
    attempt: int = 0
    wait_s: float = 0.0
    reason: str = ""


class Delivery(Aggregate):
    """One notice to one recipient over one channel."""

    context = CONTEXT
    aggregate_type = "delivery"

    status: DeliveryStatus | None = None
    planned: DeliveryPlanned | None = None
    attempts: int = 0
    attempt_started_at: datetime | None = None
    attempt_instance: str | None = None
    last_error: str | None = None
    settled_request_seq: int = 0
    read_by: str | None = None

    # -- decisions ---------------------------------------------------------------------
    def plan(self, planned: DeliveryPlanned) -> list:
        """The notice to this recipient over this channel, once: a second plan adds nothing.
        An inbox notice is delivered by being stored."""
        if self.exists:
            return []
        if planned.channel == NoticeChannel.inbox:
            return [planned, NoticeDelivered(attempt=0, detail="inbox")]
        return [planned]

    def on_request(
        self, request_seq: int, now: datetime, instance: str, lease_s: float, *, forced: bool = False
    ) -> SendDecision:
        """A request to send arrived (the commit that planned or replayed the delivery, stream
        sequence ``request_seq``): send, skip, wait, or settle in doubt. ``forced`` is an
        operator's replay of the dead letter: a settled delivery is sent again."""
        if not self.exists or self.planned is None:
            raise DomainError(f"发送记录 {self.id} 不存在", code="not_found")
        if self.status == DeliveryStatus.delivered or self.planned.channel == NoticeChannel.inbox:
            return SendDecision("skip", reason="already delivered")
        if self.status in SETTLED:
            if not forced:
                return SendDecision("skip", reason="settled: only an operator's replay sends it again")
            attempt = self.attempts + 1
            replayed = DeliveryReplayed(request_seq=self.settled_request_seq, by="dead-letter replay")
            return SendDecision("send", (replayed, self._attempt(attempt, now, instance)), attempt=attempt)
        if self.status == DeliveryStatus.sending:
            assert self.attempt_started_at is not None
            age = (now - self.attempt_started_at).total_seconds()
            if age < lease_s:
                return SendDecision("wait", wait_s=lease_s - age, reason="an attempt is under way")
            reason = (
                f"第{self.attempts}次发送开始后未记录结果（发送进程中断），无法确定是否已送达；"
                "按“至多一次”不自动重发，请核实后决定是否重放"
            )
            # Nothing is appended here: the sender dead-letters the request first, then records
            # the decision (``in_doubt``), so a crash in between repeats both, never neither.
            return SendDecision("in_doubt", attempt=self.attempts, reason=reason)
        attempt = self.attempts + 1
        return SendDecision("send", (self._attempt(attempt, now, instance),), attempt=attempt)

    def replay(self, by: str) -> list:
        """An operator sends an in-doubt or dead-lettered delivery again (after checking, for one
        in doubt, that it did not arrive)."""
        if not self.exists or self.planned is None:
            raise DomainError("发送记录不存在", field="delivery_id", code="not_found")
        if self.status not in SETTLED:
            raise DomainError("只有结果不明或已转死信的通知可以重发", field="delivery_id", code="not_replayable")
        return [DeliveryReplayed(request_seq=self.settled_request_seq, by=by)]

    @staticmethod
    def _attempt(attempt: int, now: datetime, instance: str) -> DeliveryAttempted:
        return DeliveryAttempted(attempt=attempt, started_at=now, instance=instance)

    def delivered(self, attempt: int, detail: str | None) -> list:
        if self.status == DeliveryStatus.delivered:
            return []
        return [NoticeDelivered(attempt=attempt, detail=detail)]

    def failed(self, attempt: int, error: str, permanent: bool) -> list:
        if self.status != DeliveryStatus.sending or self.attempts != attempt:
            return []
        return [DeliveryFailed(attempt=attempt, error=error[:2000], permanent=permanent)]

    def in_doubt(self, attempt: int, reason: str, request_seq: int) -> list:
        if self.status in SETTLED or self.status == DeliveryStatus.delivered:
            return []
        return [DeliveryInDoubt(attempt=attempt, reason=reason[:2000], request_seq=request_seq)]

    def dead_lettered(self, error: str, request_seq: int) -> list:
        if self.status in SETTLED or self.status == DeliveryStatus.delivered:
            return []
        return [DeliveryDeadLettered(attempts=self.attempts, error=error[:2000], request_seq=request_seq)]

    def read(self, reader: str, reader_ids: set[str]) -> list:
        """The recipient (or, for a role's notice, someone in that role) marks it read."""
        if not self.exists or self.planned is None or self.planned.channel != NoticeChannel.inbox:
            raise DomainError("站内消息不存在", field="delivery_id", code="not_found")
        if self.planned.recipient.id not in reader_ids:
            raise NotAllowed("只能标记自己的站内消息")
        if self.read_by is not None:
            return []
        return [NoticeRead(reader=reader)]

    # -- state -------------------------------------------------------------------------
    @applies(DeliveryPlanned)
    def _planned(self, event: DeliveryPlanned) -> None:
        self.status = DeliveryStatus.planned
        self.planned = event

    @applies(DeliveryAttempted)
    def _attempted(self, event: DeliveryAttempted) -> None:
        self.status = DeliveryStatus.sending
        self.attempts = event.attempt
        self.attempt_started_at = event.started_at
        self.attempt_instance = event.instance

    @applies(NoticeDelivered)
    def _delivered(self, event: NoticeDelivered) -> None:
        self.status = DeliveryStatus.delivered
        self.last_error = None

    @applies(DeliveryFailed)
    def _failed(self, event: DeliveryFailed) -> None:
        self.status = DeliveryStatus.failed
        self.last_error = event.error

    @applies(DeliveryInDoubt)
    def _in_doubt(self, event: DeliveryInDoubt) -> None:
        self.status = DeliveryStatus.in_doubt
        self.last_error = event.reason
        self.settled_request_seq = max(self.settled_request_seq, event.request_seq)

    @applies(DeliveryDeadLettered)
    def _dead_lettered(self, event: DeliveryDeadLettered) -> None:
        self.status = DeliveryStatus.dead_lettered
        self.last_error = event.error
        self.settled_request_seq = max(self.settled_request_seq, event.request_seq)

    @applies(DeliveryReplayed)
    def _replayed(self, event: DeliveryReplayed) -> None:
        self.status = DeliveryStatus.planned
        self.settled_request_seq = max(self.settled_request_seq, event.request_seq)

    @applies(NoticeRead)
    def _read(self, event: NoticeRead) -> None:
        self.read_by = event.reader


# -- the directory -----------------------------------------------------------------------------


class DirectoryEntry(Aggregate):
    """One recipient of the directory (keyed by its recipient id)."""

    context = CONTEXT
    aggregate_type = "recipient"

    entry: RecipientEntry | None = None
    removed: bool = False
    file_digest: str | None = None

    def record(self, entry: RecipientEntry, source: str, file_digest: str | None = None) -> list:
        """From the API: record when it differs. From the data file: only when the file's entry
        changed since it was last applied, so an edit made through the API is not undone by a
        restart, while a changed file still takes effect."""
        if source == "file":
            if self.file_digest == file_digest:
                return []
        elif not self.removed and self.entry == entry:
            return []
        return [RecipientRecorded(entry=entry, source=source, file_digest=file_digest)]

    def remove(self, reason: str | None) -> list:
        if not self.exists or self.removed:
            raise DomainError("通讯录中没有该接收人", field="recipient_id", code="not_found")
        return [RecipientRemoved(reason=reason)]

    @applies(RecipientRecorded)
    def _recorded(self, event: RecipientRecorded) -> None:
        self.entry = event.entry
        self.removed = False
        if event.source == "file":
            self.file_digest = event.file_digest

    @applies(RecipientRemoved)
    def _removed(self, event: RecipientRemoved) -> None:
        self.removed = True


# -- the monthly summary -----------------------------------------------------------------------


def month_bounds(month: str) -> tuple[date, date]:
    """The first and last day of ``YYYY-MM``."""
    year, number = (int(part) for part in month.split("-"))
    first = date(year, number, 1)
    following = date(year + (number == 12), number % 12 + 1, 1)
    return first, following - timedelta(days=1)


def previous_month(day: date) -> str:
    first = day.replace(day=1) - timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


class MonthlySummary(Aggregate):
    """一月一小结 of this level for one month: the typical cases staff add, and each compiled revision."""

    context = CONTEXT
    aggregate_type = "monthly_summary"

    month: str | None = None
    typical_cases: list[TypicalCase] = []
    revision: int = 0
    figures: SummaryFigures | None = None
    rows: list[SummaryRow] = []
    reported_cases: list[TypicalCase] = []

    @staticmethod
    def id_for(month: str) -> str:
        return f"summary-{month}"

    def add_typical_case(self, case: TypicalCase) -> list:
        if any(c.id == case.id for c in self.typical_cases):
            return []
        return [TypicalCaseAdded(case=case)]

    def remove_typical_case(self, case_id: str) -> list:
        if not any(c.id == case_id for c in self.typical_cases):
            raise DomainError("没有该典型案例", field="case_id", code="not_found")
        return [TypicalCaseRemoved(case_id=case_id)]

    def compile(
        self,
        month: str,
        rows: list[SummaryRow],
        typical_cases: list[TypicalCase],
        report_to: str | None,
        today: date,
    ) -> list:
        """A new revision when the figures, the rows or the typical cases differ from the last one."""
        figures = sum((row.figures for row in rows), SummaryFigures())
        if self.revision and (figures, rows, typical_cases) == (self.figures, self.rows, self.reported_cases):
            return []
        return [
            MonthlySummaryCompiled(
                month=month,
                revision=self.revision + 1,
                figures=figures,
                rows=rows,
                typical_cases=typical_cases,
                report_to=report_to,
                compiled_on=today,
            )
        ]

    @applies(TypicalCaseAdded)
    def _case_added(self, event: TypicalCaseAdded) -> None:
        self.typical_cases = [*self.typical_cases, event.case]

    @applies(TypicalCaseRemoved)
    def _case_removed(self, event: TypicalCaseRemoved) -> None:
        self.typical_cases = [c for c in self.typical_cases if c.id != event.case_id]

    @applies(MonthlySummaryCompiled)
    def _compiled(self, event: MonthlySummaryCompiled) -> None:
        self.month = event.month
        self.revision = event.revision
        self.figures = event.figures
        self.rows = list(event.rows)
        self.reported_cases = list(event.typical_cases)


# -- public disclosure -------------------------------------------------------------------------


class Disclosure(Aggregate):
    """公示 of one closed key matter (keyed by its case id)."""

    context = CONTEXT
    aggregate_type = "disclosure"

    released: bool = False
    text: DisclosureText | None = None

    def release(self, case_id: str, text: DisclosureText) -> list:
        if self.released and self.text == text:
            return []
        return [DisclosureReleased(case_id=case_id, text=text)]

    def withdraw(self, reason: str) -> list:
        if not self.released:
            raise DomainError("该事项未公示", field="case_id", code="not_released")
        return [DisclosureWithdrawn(reason=reason)]

    @applies(DisclosureReleased)
    def _released(self, event: DisclosureReleased) -> None:
        self.released = True
        self.text = event.text

    @applies(DisclosureWithdrawn)
    def _withdrawn(self, event: DisclosureWithdrawn) -> None:
        self.released = False


class PublicComment(Aggregate):
    """A comment of the public on a disclosure, until intake has taken it in as a matter."""

    context = CONTEXT
    aggregate_type = "public_comment"

    received: PublicCommentReceived | None = None
    matter_id: str | None = None

    def receive(self, comment: PublicCommentReceived) -> list:
        if self.exists:
            return []  # the same comment again (its idempotency key)
        return [comment]

    def forwarded(self, matter_id: str) -> list:
        if self.matter_id == matter_id:
            return []
        return [PublicCommentForwarded(matter_id=matter_id)]

    @applies(PublicCommentReceived)
    def _received(self, event: PublicCommentReceived) -> None:
        self.received = event

    @applies(PublicCommentForwarded)
    def _forwarded(self, event: PublicCommentForwarded) -> None:
        self.matter_id = event.matter_id


__all__ = [
    "Delivery",
    "DirectoryEntry",
    "Disclosure",
    "MonthlySummary",
    "PublicComment",
    "SendDecision",
    "month_bounds",
    "previous_month",
]
