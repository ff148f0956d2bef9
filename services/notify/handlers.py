"""Notify's command handlers: load, decide (domain.py), append. Each reads like DOMAIN.md.

Planning a notice: for each channel the directory lists for its recipient, one delivery with an
id derived from (source event id, recipient id, channel) is planned; its ``DeliveryPlanned``
commit is what the sender acts on (``dispatch.py``). A redelivered event plans nothing new: the
store recognises the commit (same derived event ids) as already there.

Who may do what: committee staff (工委) release disclosures, add typical cases, compile
summaries and edit the directory; operators and admins replay deliveries; anyone may read their
own inbox; the public may comment on released disclosures without an account.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import integration as x
from contracts import notify as n
from contracts import subjects
from contracts.bodies import Body, default_body
from contracts.envelope import SHANGHAI, Actor, Envelope, utcnow
from contracts.intake import Channel, MatterData, MatterKind, RaisedBy, Submitter, SubmitterKind
from contracts.jurisdictions import JurisdictionRegistry
from services.runtime.bus.levels import send_to_level
from services.runtime.bus.reactions import Reactions, reacts_to
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.commands import execute
from services.runtime.es.eventstore import ConcurrencyError, EventStore
from services.runtime.es.ids import id_deriver
from services.runtime.http.auth import STAFF, Guarded, Principal, Role, issue_token
from services.runtime.observe.metrics import DELIVERIES
from services.runtime.read import people
from services.runtime.read.projector import caught_up

from . import projections
from .domain import Delivery, DirectoryEntry, Disclosure, MonthlySummary, PublicComment
from .notices import EVALUATION_TYPES, INTAKE_TYPES, TRACKING_TYPES, Notice, NoticePlanner
from .settings import NotifySettings
from .summary import children_cases, level_rows
from .texts import Templates

log = logging.getLogger("duban.notify")

OPERATORS = (Role.operator, Role.admin)
#: A stable id from its parts: the same event, recipient and channel always give the same delivery.
derived_id = id_deriver("3f2b6d0a-7c1e-4e8b-a9d5-2c7f1e0b9a44")  # namespace of notify's derived ids


def delivery_id(source_event_id: str, recipient_id: str, channel: n.NoticeChannel | str) -> str:
    return derived_id("delivery", source_event_id, recipient_id, str(channel))


class DirectoryCache:
    """The directory in memory for planning: read from its read model at most every ``ttl_s``
    seconds (a directory is hundreds of entries; planning looks several up per event), and
    changed at once by this process's own edits."""

    def __init__(self, engine: AsyncEngine, ttl_s: float) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._entries: dict[str, n.RecipientEntry] = {}
        self._loaded_at = -1e9

    async def _current(self) -> dict[str, n.RecipientEntry]:
        now = time.monotonic()
        if now - self._loaded_at > self.ttl_s:
            self._entries = {e.id: e for e in await projections.directory_entries(self.engine)}
            self._loaded_at = now
        return self._entries

    def put(self, entry: n.RecipientEntry) -> None:
        self._entries[entry.id] = entry

    def drop(self, recipient_id: str) -> None:
        self._entries.pop(recipient_id, None)

    async def find(self, key: str) -> n.RecipientEntry | None:
        """By id first, else by name or alias (the first in id order)."""
        entries = await self._current()
        if key in entries:
            return entries[key]
        named = [e for e in entries.values() if key == e.name or key in e.names]
        return min(named, key=lambda e: e.id) if named else None

    async def subscribers(self, kind: n.NoticeKind) -> list[n.RecipientEntry]:
        entries = await self._current()
        return sorted((e for e in entries.values() if kind in e.subscribe), key=lambda e: e.id)


class NotifyHandlers(Guarded):
    """The commands of one level's notify."""

    guarded = "数据"

    def __init__(
        self,
        store: EventStore,
        engine: AsyncEngine,
        registry: JurisdictionRegistry,
        settings: NotifySettings,
        templates: Templates,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.js: JetStreamContext = store.js
        self.engine = engine
        self.registry = registry
        self.settings = settings
        self.templates = templates
        self.clock = clock
        self.here = store.jurisdiction
        self.level_name = registry.get(self.here).name
        self.directory = DirectoryCache(engine, settings.directory_cache_s)

    # -- who may do what ---------------------------------------------------------------
    def today(self) -> date:
        return self.clock().astimezone(SHANGHAI).date()

    # -- notices -----------------------------------------------------------------------
    def channels_enabled(self) -> set[n.NoticeChannel]:
        enabled = {n.NoticeChannel.inbox, n.NoticeChannel.webhook}
        if self.settings.smtp_host:
            enabled.add(n.NoticeChannel.email)
        return enabled

    async def routes_for(self, notice: Notice) -> list[tuple[n.Recipient, n.NoticeChannel, str | None, str | None]]:
        """(recipient, channel, address, webhook key env) for each delivery of ``notice``.

        Notify's recipient directory decides: its channels for the recipient (minus what is off
        here, or muted), the inbox when it lists none usable. A recipient it does not know gets
        the inbox, and e-mail too when the level's directory (名册) has the person's address."""
        if notice.direct is not None:
            channel, address = notice.direct
            if channel in self.channels_enabled():
                return [(notice.recipient, channel, address, None)]
            return []
        entries: list[n.RecipientEntry] = []
        if notice.subscribers_of is not None:
            entries = await self.directory.subscribers(notice.subscribers_of)
        if not entries:
            key = notice.recipient.name if notice.by_name else notice.recipient.id
            found = await self.directory.find(key)
            if found is None and notice.by_name:
                found = await self.directory.find(notice.recipient.id)
            entries = [found] if found is not None else []
        if not entries:
            inbox = (notice.recipient, n.NoticeChannel.inbox, None, None)
            person = None if notice.by_name else await people.find_person(self.engine, notice.recipient.id)
            if person and person["email"] and person["active"] and n.NoticeChannel.email in self.channels_enabled():
                return [inbox, (notice.recipient, n.NoticeChannel.email, person["email"], None)]
            return [inbox]
        routes = []
        enabled = self.channels_enabled()
        for entry in entries:
            if notice.kind in entry.mute:
                continue
            recipient = n.Recipient(id=entry.id, name=entry.name)
            chosen = []
            for channel in dict.fromkeys(entry.channels):
                if channel not in enabled:
                    continue
                if channel == n.NoticeChannel.email and entry.email:
                    chosen.append((recipient, channel, entry.email, None))
                elif channel == n.NoticeChannel.webhook and entry.webhook_url:
                    chosen.append((recipient, channel, entry.webhook_url, entry.webhook_secret_env))
                elif channel == n.NoticeChannel.inbox:
                    chosen.append((recipient, channel, None, None))
            routes.extend(chosen or [(recipient, n.NoticeChannel.inbox, None, None)])
        return routes

    async def plan(self, notice: Notice, source: Envelope) -> int:
        """Plan the deliveries of one notice (idempotent); returns how many sends it newly asked for
        (the ``DeliveryPlanned`` commit is what the sender acts on)."""
        requested = 0
        for recipient, channel, address, secret_env in await self.routes_for(notice):
            context = notice.context | {"recipient": recipient.model_dump()}
            subject, body = self.templates.notice(notice.kind.value, context)
            planned = n.DeliveryPlanned(
                source=n.SourceEvent(
                    event_id=source.event_id,
                    event_type=source.event_type,
                    aggregate_id=source.aggregate_id,
                    jurisdiction=source.jurisdiction,
                ),
                kind=notice.kind,
                recipient=recipient,
                channel=channel,
                address=address,
                webhook_secret_env=secret_env,
                subject=subject,
                body=body,
                topic_id=notice.topic_id,
                data=notice.data | ({"role": notice.role} if notice.role else {}),
            )
            the_id = delivery_id(source.event_id, recipient.id, channel)
            fresh = Delivery(id=the_id)
            events = fresh.plan(planned)
            # A delivery is planned once, so it is appended as a new aggregate without loading it:
            # if it exists, the store recognises our own commit (same derived ids) or refuses.
            try:
                commit = await self.store.append(
                    fresh,
                    events,
                    expected_version=0,
                    correlation_id=source.correlation_id,
                    causation_id=source.event_id,
                    event_ids=[derived_id(the_id, "planned", str(k)) for k in range(len(events))],
                )
                new = not commit.duplicate
            except ConcurrencyError:
                new = False
            if new and channel == n.NoticeChannel.inbox:
                DELIVERIES.labels(channel.value, "sent").inc()  # in the inbox by being stored
            requested += channel != n.NoticeChannel.inbox and new
        return requested

    async def replay(self, command: n.ReplayDelivery, principal: Principal) -> Delivery:
        """An operator puts an in-doubt or dead-lettered delivery back on its way: the sender sends
        it once more when it reads the ``DeliveryReplayed`` commit."""
        self._in_scope(principal)
        if not principal.has(*OPERATORS, *STAFF):
            raise NotAllowed("仅运维人员或工委工作人员可以重发通知")
        delivery, _ = await execute(
            self.store,
            Delivery,
            command.delivery_id,
            lambda d: d.replay(principal.id),
            actor=principal.actor(Role.operator),
        )
        log.info("delivery replay requested", extra={"delivery_id": command.delivery_id, "by": principal.id})
        return delivery

    async def mark_read(self, command: n.MarkRead, principal: Principal) -> Delivery:
        self._in_scope(principal)
        delivery, _ = await execute(
            self.store,
            Delivery,
            command.delivery_id,
            lambda d: d.read(principal.id, set(reader_ids(principal))),
            actor=principal.actor(),
        )
        return delivery

    # -- the directory -----------------------------------------------------------------
    async def record_recipient(self, entry: n.RecipientEntry, principal: Principal) -> DirectoryEntry:
        self._staff(principal, "维护通讯录")
        recipient, _ = await execute(
            self.store,
            DirectoryEntry,
            _directory_key(entry.id),
            lambda d: d.record(entry, "api"),
            actor=principal.actor(),
        )
        return recipient

    async def remove_recipient(self, recipient_id: str, principal: Principal) -> DirectoryEntry:
        self._staff(principal, "维护通讯录")
        recipient, _ = await execute(
            self.store, DirectoryEntry, _directory_key(recipient_id), lambda d: d.remove(None), actor=principal.actor()
        )
        self.directory.drop(recipient_id)
        return recipient

    async def load_directory(self, path: Path) -> int:
        """Apply the directory data file: entries whose text changed since last applied (see
        ``DirectoryEntry.record``). Returns how many entries were recorded now."""
        document = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
        count = 0
        for raw in document.get("recipients", []):
            entry = n.RecipientEntry.model_validate(raw)
            digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            _, commit = await execute(
                self.store,
                DirectoryEntry,
                _directory_key(entry.id),
                lambda d, e=entry, h=digest: d.record(e, "file", h),
            )
            count += commit is not None
        return count

    # -- public disclosure (公示) --------------------------------------------------------
    async def release(self, command: n.ReleaseDisclosure, principal: Principal) -> Disclosure:
        """Only a closed key matter (办结的重点件) can be released; the text comes from the records."""
        self._staff(principal, "发布公示")
        case = await projections.get_row(self.engine, projections.cases, command.case_id)
        if case is None:
            raise DomainError("办理件不存在（或尚未同步）", field="case_id", code="not_found")
        if case["status"] != "closed":
            raise DomainError("只有已办结的事项可以公示", field="case_id", code="not_closed")
        if not case["key"]:
            raise DomainError("只有重点督办件（重点提案、重点建议）公示", field="case_id", code="not_key")
        matter = await projections.get_row(self.engine, projections.matters, case["matter_id"] or command.case_id)
        evaluated = await projections.get_row(self.engine, projections.evaluation_results, command.case_id)
        if evaluated is None and case["matter_id"]:
            evaluated = await projections.get_row(self.engine, projections.evaluation_results, case["matter_id"])
        body = Body(case["body"] or default_body(case["kind"] or ""))
        self._body_staff(principal, body, "发布公示")
        leads = command.leads or case["leads"] or (matter["leads"] if matter and matter["leads"] else None)
        text = n.DisclosureText(
            title=case["title"],
            body=body,
            leads=leads or [case["submitter_names"].split("、")[0] if case["submitter_names"] else "—"],
            merged=bool(case["merged"] or (matter and matter["absorbed_ids"])),
            topical=bool(case["topical"]),
            unit=case["lead_unit_name"] or "—",
            summary=command.summary or case["summary"] or case["reply_text"] or "—",
            evaluation_result=command.evaluation_result or (evaluated["result"] if evaluated else None),
            kind=case["kind"],
            registration_no=case["registration_no"],
            year=matter["registration_year"] if matter else None,
            number=matter["registration_number"] if matter else None,
        )
        disclosure, _ = await execute(
            self.store, Disclosure, command.case_id, lambda d: d.release(command.case_id, text), actor=principal.actor()
        )
        return disclosure

    async def withdraw(self, command: n.WithdrawDisclosure, principal: Principal) -> Disclosure:
        self._staff(principal, "撤回公示")

        def decide(disclosure: Disclosure):
            if disclosure.text is not None:
                self._body_staff(principal, disclosure.text.body, "撤回公示")
            return disclosure.withdraw(command.reason)

        disclosure, _ = await execute(self.store, Disclosure, command.case_id, decide, actor=principal.actor())
        return disclosure

    async def comment(
        self, disclosure_id: str, command: n.SubmitPublicComment, idempotency_key: str | None = None
    ) -> PublicComment:
        """A comment of the public on a released disclosure; it is forwarded to intake as a matter."""
        disclosure = await self.store.load(Disclosure, disclosure_id)
        if not disclosure.released or disclosure.text is None:
            raise DomainError("该公示不存在或已撤回", field="disclosure_id", code="not_found")
        comment_id = derived_id("comment", disclosure_id, idempotency_key) if idempotency_key else uuid.uuid4().hex
        received = n.PublicCommentReceived(
            disclosure_id=disclosure_id,
            title=disclosure.text.title,
            name=command.name,
            contact=command.contact,
            content=command.content,
        )
        actor = Actor(principal_id="public", role="public", name=command.name[:128])
        comment, _ = await execute(self.store, PublicComment, comment_id, lambda c: c.receive(received), actor=actor)
        return comment

    def intake_token(self) -> str:
        if self.settings.intake_token:
            return self.settings.intake_token
        return issue_token(
            f"notify-{self.here}", [Role.system.value], self.here, name="公示意见渠道", secret=self.settings.jwt_secret
        )

    async def forward_comment(self, envelope: Envelope) -> None:
        """Submit the comment to intake as a matter over its command subject (request/reply),
        idempotent by the comment's id; a refusal or no answer raises, so it is retried."""
        comment: n.PublicCommentReceived = n.PublicCommentReceived.model_validate(envelope.payload)
        state = await self.store.load(PublicComment, envelope.aggregate_id)
        if state.matter_id is not None:
            return
        raised_by = RaisedBy(name=comment.name, kind="resident", contact=comment.contact)
        matter = MatterData(
            kind=MatterKind.problem,
            title=f"对公示事项《{comment.title}》的意见"[:200],
            content=comment.content,
            lead=Submitter(id=f"public-{self.here}", name="社会公众（公示意见）", kind=SubmitterKind.group),
            channel=Channel.external_system,
            raised_in=self.here,
            category="公示意见",
            raised_by=raised_by,
        )
        headers = {
            "Authorization": f"Bearer {self.intake_token()}",
            "Idempotency-Key": f"comment-{envelope.aggregate_id}",
        }
        reply = await self.store.nc.request(
            subjects.command_subject("intake", self.here, "submit"),
            json.dumps({"matter": matter.model_dump(mode="json")}, ensure_ascii=False).encode(),
            timeout=10,
            headers=headers,
        )
        answer = json.loads(reply.data)
        if not answer.get("ok"):
            raise RuntimeError(f"intake refused the comment: {answer.get('status')} {answer.get('error')}")
        matter_id = answer["matter"]["id"]
        await execute(
            self.store,
            PublicComment,
            envelope.aggregate_id,
            lambda c: c.forwarded(matter_id),
            causation_id=envelope.event_id,
        )
        log.info("public comment forwarded", extra={"comment_id": envelope.aggregate_id, "matter_id": matter_id})

    # -- the monthly summary -----------------------------------------------------------
    async def add_typical_case(
        self, command: n.AddTypicalCase, principal: Principal, idempotency_key: str | None = None
    ) -> MonthlySummary:
        """A typical case (典型案例) of the month; a retry with the same idempotency key adds it once."""
        self._staff(principal, "报送典型案例")
        key = idempotency_key
        case = n.TypicalCase(
            id=derived_id("typical-case", command.month, principal.id, key) if key else uuid.uuid4().hex,
            title=command.title,
            text=command.text,
            jurisdiction=self.here,
            matter_id=command.matter_id,
        )
        summary, _ = await execute(
            self.store,
            MonthlySummary,
            MonthlySummary.id_for(command.month),
            lambda s: s.add_typical_case(case),
            actor=principal.actor(Role.committee),
        )
        return summary

    async def remove_typical_case(self, command: n.RemoveTypicalCase, principal: Principal) -> MonthlySummary:
        self._staff(principal, "删除典型案例")
        month, case_id = command.month, command.case_id
        summary, _ = await execute(
            self.store,
            MonthlySummary,
            MonthlySummary.id_for(month),
            lambda s: s.remove_typical_case(case_id),
            actor=principal.actor(Role.committee),
        )
        return summary

    async def report_summary(self, command: n.ReportSummary, principal: Principal) -> MonthlySummary:
        """Staff compile and report ``month`` now rather than on the report day."""
        self._staff(principal, "报送汇总表")
        return await self.compile_summary(command.month, actor=principal.actor(Role.committee))

    async def compile_summary(self, month: str, *, actor: Actor | None = None) -> MonthlySummary:
        """Compile this level's summary of ``month`` (its own figures and its lower levels' reports);
        a new revision is stored, and reported up, only when something changed. It includes
        everything accepted before it was asked for: the read models it counts are waited for
        until they hold what their streams held then, and this level's own typical cases are the
        summary's own state, not a read model."""
        await caught_up(self.engine, self.store.js, self.summary_sources)
        parent = self.registry.parent_of(self.here)
        rows = await level_rows(self.engine, self.registry, self.here, month, tuple(self.settings.solved_classes))
        from_below = await children_cases(self.engine, month)
        extra = {"actor": actor} if actor is not None else {}
        summary, _ = await execute(
            self.store,
            MonthlySummary,
            MonthlySummary.id_for(month),
            lambda s: s.compile(
                month, rows, [*s.typical_cases, *from_below], parent.code if parent else None, self.today()
            ),
            **extra,
        )
        return summary

    @property
    def summary_sources(self) -> dict[str, str]:
        """The read models a summary counts, each with the stream it reads."""
        here = self.here
        return {
            "notify_matters": subjects.event_stream("intake", here),
            "notify_activities": subjects.event_stream("intake", here),
            "notify_cases": subjects.event_stream("tracking", here),
            "notify_group_activities": subjects.event_stream("tracking", here),
        }

    async def relay_summary(self, envelope: Envelope) -> None:
        """Publish a compiled summary to the level above, through this level's OUTBOX (idempotent:
        ``Nats-Msg-Id`` is derived from the compiled event's id)."""
        compiled = n.MonthlySummaryCompiled.model_validate(envelope.payload)
        if compiled.report_to is None:
            return
        message = x.MonthlySummaryReported(
            reporter=self.here,
            reporter_name=self.level_name,
            month=compiled.month,
            revision=compiled.revision,
            figures=compiled.figures,
            rows=compiled.rows,
            typical_cases=compiled.typical_cases,
            compiled_on=compiled.compiled_on,
        )
        await send_to_level(
            self.js,
            here=self.here,
            to=compiled.report_to,
            kind=x.KIND_MONTHLY_SUMMARY,
            message=message,
            source=envelope,
            event_id=derived_id(envelope.event_id, x.KIND_MONTHLY_SUMMARY),
            aggregate_type=MonthlySummary.aggregate_type,
        )
        log.info("monthly summary reported", extra={"month": compiled.month, "revision": compiled.revision})


def reader_ids(principal: Principal) -> list[str]:
    """The recipient ids whose inbox notices a principal reads: their own, their roles', and a
    leader's by name (assignments name leaders, not ids)."""
    ids = [principal.id, *(f"role:{role.value}" for role in principal.roles)]
    if principal.unit:
        ids.append(principal.unit)
    if principal.has(Role.leader) and principal.name:
        ids.append(f"leader:{principal.name}")
    return ids


def _directory_key(recipient_id: str) -> str:
    """Directory entries are aggregates: ids such as ``role:committee`` are hashed into a subject token."""
    return derived_id("recipient", recipient_id)


# -- reactions --------------------------------------------------------------------------------
class PlannedNotices(Reactions):
    """Intake's, tracking's and evaluation's events at this level: the notices each calls for,
    planned (each notice its own deliveries, their own aggregates: planned side by side)."""

    def __init__(self, planner: NoticePlanner, handlers: NotifyHandlers) -> None:
        self.planner = planner
        self.handlers = handlers

    @reacts_to(*INTAKE_TYPES, *TRACKING_TYPES, *EVALUATION_TYPES)
    async def plan(self, event: object, envelope: Envelope) -> None:
        notices = await self.planner.notices_for(envelope)
        await asyncio.gather(*(self.handlers.plan(notice, envelope) for notice in notices))


class SummaryRelay(Reactions):
    """A compiled monthly summary goes up to the level above."""

    def __init__(self, handlers: NotifyHandlers) -> None:
        self.handlers = handlers

    @reacts_to(n.MonthlySummaryCompiled)
    async def relay(self, event: n.MonthlySummaryCompiled, envelope: Envelope) -> None:
        await self.handlers.relay_summary(envelope)


class CommentForwarding(Reactions):
    """A public comment on a disclosure goes to intake as a matter."""

    def __init__(self, handlers: NotifyHandlers) -> None:
        self.handlers = handlers

    @reacts_to(n.PublicCommentReceived)
    async def forward(self, event: n.PublicCommentReceived, envelope: Envelope) -> None:
        await self.handlers.forward_comment(envelope)
