"""Intake's command handlers: load, decide (domain.py), append. Each reads like DOMAIN.md.

Authorisation lives here, with the commands: deputies and liaison stations submit in their own
jurisdiction; only committee staff review, merge, route and escalate.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from contracts import integration as x
from contracts.bodies import BODY_NAMES, Body, kind_allowed
from contracts.envelope import SHANGHAI, Envelope, utcnow
from contracts.intake import (
    KIND_NAMES,
    ActivityRecorded,
    ConvertMatter,
    EscalateMatter,
    FeedBackToRaiser,
    GiveFeedbackOnReply,
    HandlingReply,
    Hop,
    MatterData,
    MergeMatter,
    Outcome,
    RecordActivity,
    RecordOutcome,
    RegisterMatter,
    RejectMatter,
    RouteMatter,
    SendDownMatter,
    SubmitMatter,
    TransferMatter,
)
from contracts.jurisdictions import JurisdictionRegistry, NoSuchOrgan
from contracts.tracking import CaseClosed, ReplyReleased, ReplySubmitted
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.commands import create_once, execute
from services.runtime.es.eventstore import ConcurrencyError, EventStore
from services.runtime.es.ids import id_deriver
from services.runtime.http.auth import STAFF, Guarded, Principal, Role
from services.runtime.observe.telemetry import continue_journey

from .domain import Activity, Matter, RegistrationBook

SUBMITTERS = (Role.deputy, Role.liaison_station, Role.committee, Role.system, Role.admin)
#: A stable id from its parts: a retried command or a redelivered message maps to the same id.
derived_id = id_deriver("6c1e6f0e-8a51-4f57-9d7e-4b1f0b5a0d11")  # namespace of intake's derived ids

log = logging.getLogger("duban.intake.handlers")


#: Who acts for both bodies (人大 and 政协).
BOTH = (Role.admin, Role.system)
#: Who may enter a matter on someone else's behalf (a paper form, a deputy group's collection).
ON_BEHALF = (*STAFF, Role.liaison_station, Role.system)


class IntakeHandlers(Guarded):
    """The commands of one level's intake."""

    guarded = "事项"

    def __init__(
        self,
        store: EventStore,
        registry: JurisdictionRegistry,
        *,
        clock: Callable[[], datetime] = utcnow,
        cases: EventStore | None = None,
        cppcc_number_prefix: str | None = None,
    ) -> None:
        self.store = store
        #: What the CPPCC's numbers start with (its own book): ``温岭政协`` → 温岭政协提〔2026〕1号.
        self.cppcc_number_prefix = cppcc_number_prefix
        self.registry = registry
        self.here = store.jurisdiction
        self.clock = clock
        #: This level's tracking events, read (never written) for the text of a released reply.
        self.cases = cases
        self._books: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: Each book as this process last appended to it (read and changed under its lock).
        self._book_states: dict[str, RegistrationBook] = {}

    # -- who may do what ---------------------------------------------------------------
    def _reviewer(self, principal: Principal) -> None:
        self._staff(principal, "审查、并案、交办或上报")

    def number_prefix(self, body: Body) -> str:
        """What a number of ``body``'s book starts with: the level's short name for the congress
        (温岭建〔2026〕3号, the seeds' form), the CPPCC's configured prefix or ``<short name>政协``."""
        short = self.registry.get(self.here).short_name
        if body is Body.cppcc:
            return self.cppcc_number_prefix or f"{short}政协"
        return short

    def _has_body(self, body: Body) -> None:
        try:
            self.registry.organ(self.here, body)
        except NoSuchOrgan as exc:
            raise DomainError(str(exc), field="body", code="no_such_body") from None

    # -- 1. submitted ------------------------------------------------------------------
    async def submit(self, command: SubmitMatter, principal: Principal, idempotency_key: str | None = None) -> Matter:
        """A deputy, liaison station or other system raises a matter here; a retried submission
        with the same idempotency key is taken once."""
        self._in_scope(principal)
        if not principal.has(*SUBMITTERS):
            raise NotAllowed("当前身份不能提交事项")
        if command.matter.raised_in != self.here:
            raise DomainError(f"事项须在本级（{self.here}）提出", field="matter.raised_in", code="wrong_jurisdiction")
        data = command.matter
        own = principal.body
        if own is not None and data.body is not own and kind_allowed(own, data.kind) and not principal.has(*BOTH):
            # a kind both bodies take (问题, 企业诉求) belongs to the body of whoever raises or enters it
            data = data.model_copy(update={"body": own})
        body = data.body
        self._has_body(body)
        if not principal.acts_for(body):
            raise NotAllowed(
                f"{KIND_NAMES[command.matter.kind]}属于{BODY_NAMES[body]}，"
                f"{'政协委员或政协工作人员' if body is Body.cppcc else '人大代表、联络站或人大工作人员'}才能提出或录入"
            )
        if not principal.has(*ON_BEHALF) and command.matter.lead.id != principal.id:
            # a deputy raises as himself; a station or staff enter on a deputy's behalf, and the
            # event's actor says who entered it
            raise NotAllowed("代表只能以本人名义提出事项（领衔人应为本人）；代他人或代表小组提出请由联络站或工委录入")
        if command.matter.activity_id is not None:
            activity = await self.store.load(Activity, command.matter.activity_id)
            if not activity.exists:
                raise DomainError("活动不存在", field="matter.activity_id", code="not_found")
        now = self.clock()
        if data.raised_at is None:
            data = data.model_copy(update={"raised_at": now})
        elif data.raised_at > now:
            raise DomainError("提出日期不能晚于现在", field="matter.raised_at", code="raised_in_future")
        matter_id = derived_id(self.here, principal.id, idempotency_key) if idempotency_key else uuid.uuid4().hex
        matter, _ = await create_once(
            self.store,
            Matter,
            matter_id,
            lambda m: m.submit(data, idempotency_key=idempotency_key),
            drawn=idempotency_key is None,
            actor=principal.actor(Role.liaison_station, Role.deputy, Role.committee, Role.system),
            event_ids=lambda n: [derived_id(matter_id, "submitted", str(i)) for i in range(n)],
        )
        if idempotency_key and matter.data is not None and not _same_submission(matter.data, command.matter):
            raise DomainError(
                "该 Idempotency-Key 已用于另一项内容不同的提交", field="Idempotency-Key", code="idempotency_key_reused"
            )
        return matter

    # -- 2. reviewed -------------------------------------------------------------------
    async def register(self, command: RegisterMatter, principal: Principal) -> Matter:
        """立案: the next number of the book of this jurisdiction, kind and year, gapless."""
        self._reviewer(principal)
        matter = await self.store.load(Matter, command.matter_id)
        if matter.data is not None:
            self._body_staff(principal, matter.data.body, "立案")
        matter.check_registrable()  # before a number is taken from the book
        assert matter.data is not None
        year = self.clock().astimezone(SHANGHAI).year
        book_id = RegistrationBook.id_for(matter.data.body, matter.data.kind, year)
        actor = principal.actor(Role.committee)
        async with self._books[book_id]:  # one writer per book in this process; the version check covers others
            # Registrations of a level take their numbers one after another, so the time a number
            # takes is the time they all wait: the book is not loaded again when this process
            # wrote it last. Should another process (an HTTP helper) have written since, the
            # append's expected version refuses the old state and the book is loaded and asked again.
            try:
                book, _ = await execute(
                    self.store,
                    RegistrationBook,
                    book_id,
                    lambda b: b.assign(matter.id),
                    actor=actor,
                    retries=200,
                    known=self._book_states.get(book_id),
                )
            except BaseException:
                self._book_states.pop(book_id, None)
                raise
            self._book_states[book_id] = book
            number = book.assigned[matter.id]
        prefix = self.number_prefix(matter.data.body)

        def decide(m: Matter):
            if m.registration_no is not None:
                return []
            return m.register(year, number, prefix)

        matter, _ = await execute(self.store, Matter, command.matter_id, decide, actor=actor)
        return matter

    async def reject(self, command: RejectMatter, principal: Principal) -> Matter:
        self._reviewer(principal)
        return await self._run(command.matter_id, principal, lambda m: m.reject(command.reason), "不予立案")

    async def convert(self, command: ConvertMatter, principal: Principal) -> Matter:
        self._reviewer(principal)
        return await self._run(
            command.matter_id, principal, lambda m: m.convert(command.to_kind, command.reason), "转换类别"
        )

    async def transfer(self, command: TransferMatter, principal: Principal) -> Matter:
        """转交 to the level's other body (人大 ↔ 政协), by the staff of the body that has it."""
        self._reviewer(principal)
        self._has_body(command.to_body)
        return await self._run(
            command.matter_id, principal, lambda m: m.transfer(command.to_body, command.to_kind, command.reason), "转交"
        )

    async def merge(self, command: MergeMatter, principal: Principal) -> Matter:
        """合并: the target keeps every submitter of both; the merged one points at the target."""
        self._reviewer(principal)
        source = await self.store.load(Matter, command.matter_id)
        target = await self.store.load(Matter, command.into)
        if source.data is not None:
            self._body_staff(principal, source.data.body, "并案")
        source.merge_into(target, command.reason)  # check both before changing either
        await self._run(command.into, principal, lambda t: t.absorb(source), "并案")
        return await self._run(
            command.matter_id,
            principal,
            lambda s: [] if s.merged_into == command.into else s.merge_into(target, command.reason),
            "并案",
        )

    # -- 3. routed ---------------------------------------------------------------------
    async def route(self, command: RouteMatter, principal: Principal) -> Matter:
        self._reviewer(principal)
        return await self._run(
            command.matter_id, principal, lambda m: m.route(command.committee, command.note), "本级办理"
        )

    async def escalate(self, command: EscalateMatter, principal: Principal) -> Matter:
        self._reviewer(principal)
        return await self._run(
            command.matter_id, principal, lambda m: m.escalate(self.registry, self.here, command.reason), "上报"
        )

    async def send_down(self, command: SendDownMatter, principal: Principal) -> Matter:
        self._reviewer(principal)

        def decide(m: Matter):
            if (
                m.data is not None
                and command.to in self.registry
                and m.data.body not in self.registry.bodies_of(command.to)
            ):
                name = self.registry.get(command.to).name
                raise DomainError(
                    f"{name}没有{BODY_NAMES[m.data.body]}，{BODY_NAMES[m.data.body]}的事项不能交由其办理",
                    field="to",
                    code="no_such_body",
                )
            return m.send_down(self.registry, self.here, command.to, command.reason)

        return await self._run(command.matter_id, principal, decide, "交由下级办理")

    # -- 8. closed ---------------------------------------------------------------------
    async def record_outcome(self, command: RecordOutcome, principal: Principal) -> Matter:
        self._reviewer(principal)
        outcome = command.outcome
        if outcome.closed_at is None:
            outcome = outcome.model_copy(update={"closed_at": self.clock()})
        here = Hop(jurisdiction=self.here, matter_id=command.matter_id)
        return await self._run(command.matter_id, principal, lambda m: m.record_outcome(outcome, here), "记录办理结果")

    # -- 6. fed back to the raiser ---------------------------------------------------------
    async def feed_back_to_raiser(self, command: FeedBackToRaiser, principal: Principal) -> Matter:
        """向企业/群众反馈, recorded by whoever did it: the deputy, the station or the committee."""
        self._in_scope(principal)
        if not principal.has(Role.deputy, Role.liaison_station, *STAFF):
            raise NotAllowed("仅代表、联络站或工委可以记录向反映主体的反馈")
        today = self.clock().astimezone(SHANGHAI).date()
        on = command.fed_back_on or today
        if on > today:
            raise DomainError("反馈日期不能晚于今天", field="fed_back_on", code="fed_back_in_future")
        matter, _ = await execute(
            self.store,
            Matter,
            command.matter_id,
            lambda m: m.feed_back_to_raiser(command.way, command.rating, command.note, on),
            actor=principal.actor(Role.deputy, Role.liaison_station, Role.committee),
        )
        return matter

    # -- activities --------------------------------------------------------------------
    async def record_activity(
        self, command: RecordActivity, principal: Principal, idempotency_key: str | None = None
    ) -> Activity:
        """An activity of a liaison station or committee (visits, research, meetings); a retry
        with the same idempotency key records it once."""
        self._in_scope(principal)
        if not principal.has(Role.liaison_station, Role.committee, Role.admin):
            raise NotAllowed("仅联络站或工委可以登记活动")
        event = ActivityRecorded(**command.model_dump())
        key = idempotency_key
        the_id = derived_id(self.here, principal.id, "activity", key) if key else uuid.uuid4().hex
        activity, _ = await create_once(
            self.store,
            Activity,
            the_id,
            lambda a: a.record(event),
            drawn=key is None,
            actor=principal.actor(Role.liaison_station),
            event_ids=lambda n: [derived_id(the_id, "recorded", str(i)) for i in range(n)],
        )
        return activity

    # -- from other levels (the INBOX) -------------------------------------------------
    async def take_in(self, message: x.MatterHandedOver, envelope: Envelope) -> Matter:
        """A matter escalated or sent to us becomes our own matter, pointing at its origin.

        Its id here is new but for a hand-over that comes again, so it is appended at once as a
        new matter (expected version 0), without reading it first: a county's escalations stored
        during a cut line arrive together, and each costs one round trip. One that comes again
        finds its own commit (a duplicate) or the matter there, and goes the usual way, which then
        appends nothing."""
        matter_id = derived_id(message.origin.jurisdiction, message.origin.matter_id, self.here)

        def receive(m: Matter):
            return m.receive(message.matter, message.origin, message.direction, message.path, message.reason)

        def ids(n: int) -> list[str]:
            return [derived_id(envelope.event_id, "received", str(i)) for i in range(n)]

        caused = {"actor": envelope.actor, "correlation_id": envelope.correlation_id, "causation_id": envelope.event_id}
        new = Matter(id=matter_id)
        events = receive(new)
        try:
            span = f"{self.store.context} matter command"
            with continue_journey({}, span, _command_attributes(self.store, new, envelope.actor.role)):
                commit = await self.store.append(new, events, expected_version=0, event_ids=ids(len(events)), **caused)
            # a redelivery finds its own first commit: the matter may have moved on since
            return await self.store.load(Matter, matter_id) if commit.duplicate else new
        except ConcurrencyError:
            pass  # taken in before: the usual way
        matter, _ = await execute(self.store, Matter, matter_id, receive, event_ids=ids, **caused)
        return matter

    async def taken_in(self, message: x.MatterTakenIn, envelope: Envelope) -> None:
        """The other level confirms it took our matter in: the path gets its id there."""
        await execute(
            self.store,
            Matter,
            message.origin.matter_id,
            lambda m: m.forwarded(message.taken_in_as),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
        )

    async def case_closed(self, closed: CaseClosed, envelope: Envelope) -> Matter:
        """This level's tracking closed the matter's case (办结): record its outcome, which the
        relay then reports back to the levels the matter came from."""
        outcome = Outcome(
            summary=closed.summary,
            reply_class=closed.reply_class,
            unit=closed.unit.name,
            closed_at=envelope.occurred_at,
        )
        here = Hop(jurisdiction=self.here, matter_id=envelope.aggregate_id)
        matter, _ = await execute(
            self.store,
            Matter,
            envelope.aggregate_id,
            lambda m: m.case_closed(outcome, here),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, "outcome", str(i)) for i in range(n)],
        )
        return matter

    async def reply_released(self, released: ReplyReleased, envelope: Envelope) -> Matter | None:
        """This level's tracking released its case's reply: recorded on the matter (its text and unit
        from the case's own reply), so the relay reports it back to the levels it came from, where
        its submitters read it and give their feedback."""
        if self.cases is None:
            log.warning("no tracking events to read the reply from", extra={"matter_id": envelope.aggregate_id})
            return None
        submitted = [
            e for e in await self.cases.history(envelope.aggregate_id) if e.event_type == ReplySubmitted.event_type
        ]
        if not submitted:
            return None
        text = submitted[-1].payload
        reply = HandlingReply(
            reply_class=released.reply_class,
            text=text["text"],
            unit=(text.get("unit") or {}).get("name"),
            round=released.round,
        )
        here = Hop(jurisdiction=self.here, matter_id=envelope.aggregate_id)
        matter, _ = await execute(
            self.store,
            Matter,
            envelope.aggregate_id,
            lambda m: m.reply_released(reply, here) if m.exists else [],
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, "reply", str(i)) for i in range(n)],
        )
        return matter

    async def reply_reported_back(self, message: x.ReplyReportedBack, envelope: Envelope) -> None:
        await execute(
            self.store,
            Matter,
            message.origin.matter_id,
            lambda m: m.reply_reported_back(message.reply, message.handled_in),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, "reply-back", str(i)) for i in range(n)],
        )

    async def give_feedback_on_reply(self, command: GiveFeedbackOnReply, principal: Principal) -> Matter:
        """反馈满意度 given where the submitter raised the matter; it travels to the handling level."""
        self._in_scope(principal)
        if not principal.has(Role.deputy):
            raise NotAllowed("只有本件的提出人可以反馈意见")
        matter, _ = await execute(
            self.store,
            Matter,
            command.matter_id,
            lambda m: m.give_feedback_on_reply(principal.id, command.rating, command.comment),
            actor=principal.actor(Role.deputy),
        )
        return matter

    async def feedback_forwarded(self, message: x.FeedbackForwarded, envelope: Envelope) -> None:
        """A submitter's feedback from a lower level: on the record of the matter here, where tracking
        takes it (the matter handled here) or the relay passes it on (escalated further)."""
        await execute(
            self.store,
            Matter,
            message.to.matter_id,
            lambda m: m.feedback_received(
                message.submitter, message.rating, message.comment, message.given_in, message.handled_in, message.round
            ),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_ids=lambda n: [derived_id(envelope.event_id, "feedback", str(i)) for i in range(n)],
        )

    async def outcome_reported_back(self, message: x.OutcomeReportedBack, envelope: Envelope) -> None:
        await execute(
            self.store,
            Matter,
            message.origin.matter_id,
            lambda m: m.outcome_reported_back(message.outcome, message.handled_in),
            actor=envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
        )

    # ------------------------------------------------------------------------------------
    async def _run(self, matter_id: str, principal: Principal, decide, action: str) -> Matter:
        """A staff decision on a matter, by the staff of the body whose matter it is."""

        def checked(matter: Matter):
            if matter.data is not None:
                self._body_staff(principal, matter.data.body, action)
            return decide(matter)

        matter, _ = await execute(self.store, Matter, matter_id, checked, actor=principal.actor(Role.committee))
        return matter


def _command_attributes(store: EventStore, matter: Matter, role: str) -> dict[str, str]:
    """The attributes of a command's span on ``matter``, as ``execute`` gives them."""
    return {
        "duban.aggregate.type": Matter.aggregate_type,
        "duban.aggregate.id": matter.id,
        "duban.jurisdiction": store.jurisdiction,
        "duban.service": store.context,
        "duban.actor.role": role,
    }


def _same_submission(stored: MatterData, sent: MatterData) -> bool:
    """A retry repeats what was submitted (its kind may have been converted since)."""
    return (stored.title, stored.content, stored.lead) == (sent.title, sent.content, sent.lead)
