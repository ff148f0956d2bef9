"""Which notices an event calls for, and for whom (DOMAIN.md "Lists, reports and notices").

=====================================  ====================================================================
event (this level)                     notices
=====================================  ====================================================================
tracking ``CaseAssigned``              交办通知 to the lead unit and to each co-unit
tracking ``CaseUrged`` (due soon)      到期提醒 to the lead unit; for a key item also to its leader
tracking ``CaseUrged`` (overdue…)      催办 to the lead unit (and the leader when long overdue)
tracking ``CaseUrgedByStaff``          催办 by committee staff, with their note, to the lead unit
tracking ``CaseEscalatedToLeader``     超期报领导督办 to the supervising leader of the key item
tracking ``CaseReopened``              重新办理 to the lead unit
tracking ``ReplyReleased``             答复通知 with the request for feedback, to every submitter who
                                       raised it here or is a person of this level's directory
intake ``ReplyRecorded`` (reported     答复通知 to the submitters of a matter raised here and handled
back)                                  at a higher level: a deputy is told where he signs in
intake ``MatterReceived``              上报/交办事项 to whoever receives escalations at this level
intake ``OutcomeRecorded``             办理结果反馈 to the enterprise or resident who raised it (its
                                       e-mail contact) and to the deputy who collected it, asking them
                                       to pass it on; at the level where it was raised, whether it was
                                       handled here or reported back from a higher level
evaluation ``SessionOpened``           测评邀请 to each evaluator of the electorate
tracking ``PlanDutyUrged``             工作节点提醒/催办 to the group that owes the duty and its leader;
                                       for a milestone (形象进度), to the item's lead units
tracking ``PlanItemEvaluated``         项目测评结果 to every unit of the plan item and its leaders
evaluation ``ResultsPublished``        测评结果 to the unit of each subject; for a performance
                                       appraisal (履职评议) also 抄报市委 (the party committee)
=====================================  ====================================================================

The facts a notice needs (the case's title, its units, its submitters, the reply) are read from
the producer's own stream, the aggregate's events up to the one being handled: so a notice says
what was true when its event happened, whatever came later, and never waits for a read model.
A recipient gets at most one notice per event (duplicates within one event are dropped).

Every notice is signed by the organ of the body whose case, matter or session it is (DOMAIN.md
"Two bodies at a level"), as the jurisdiction data names it: ``organ`` (the full name, e.g.
政协温岭市委员会, 泽国镇人大主席团) signs, ``organ_short`` (温岭市政协) is for running text. A case's or
matter's body is in its events (stored before bodies existed: by its kind), a session's follows
from its kind (民主评议 the CPPCC's), a plan is the congress's. People are greeted by name: an
electorate of ids is looked up in the level's directory (名册), and a person it does not know is
greeted as 尊敬的代表 / 尊敬的委员, never by an id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from contracts.bodies import BODY_NAMES, Body, default_body
from contracts.envelope import SHANGHAI, Envelope
from contracts.evaluation import session_body
from contracts.events import UnknownEventType, upcast
from contracts.intake import KIND_NAMES, MatterKind, MatterReceived, OutcomeRecorded, ReplyRecorded
from contracts.jurisdictions import Jurisdiction, JurisdictionRegistry, NoSuchOrgan, Organ, UnknownJurisdiction
from contracts.notify import NoticeChannel, NoticeKind, Recipient
from contracts.plans import PlanDutyUrged, PlanItemEvaluated
from contracts.tracking import (
    THRESHOLD_NAMES,
    CaseAssigned,
    CaseEscalatedToLeader,
    CaseReopened,
    CaseUrged,
    CaseUrgedByStaff,
    ReplyReleased,
    Threshold,
)
from services.runtime.es.eventstore import EventStore

from .projections import evaluation_payload, result_lines

log = logging.getLogger("duban.notify")

SESSION_OPENED = "evaluation.SessionOpened"
RESULTS_PUBLISHED = "evaluation.ResultsPublished"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REPLY_CLASS_NAMES = {"A": "已解决或采纳", "B": "正在解决或列入计划", "C": "因条件限制暂不能解决、留作参考"}
SESSION_KIND_NAMES = {
    "satisfaction": "满意度测评",
    "feasibility": "可行性测评",
    "performance": "履职评议",
    "performance_appraisal": "履职评议",
    "democratic": "民主评议",
    "democratic_appraisal": "民主评议",
}

#: Event types notify plans notices for, by context.
TRACKING_TYPES = {
    CaseAssigned.event_type,
    CaseUrged.event_type,
    CaseUrgedByStaff.event_type,
    CaseEscalatedToLeader.event_type,
    CaseReopened.event_type,
    ReplyReleased.event_type,
}
PLAN_TYPES = {PlanItemEvaluated.event_type, PlanDutyUrged.event_type}
TRACKING_TYPES |= PLAN_TYPES
INTAKE_TYPES = {MatterReceived.event_type, OutcomeRecorded.event_type, ReplyRecorded.event_type}
EVALUATION_TYPES = {SESSION_OPENED, RESULTS_PUBLISHED}


@dataclass
class Notice:
    """One notice to one recipient: its kind, the facts its template reads, and how to reach a
    recipient the directory cannot know (the e-mail an enterprise left)."""

    kind: NoticeKind
    recipient: Recipient
    context: dict[str, Any]
    topic_id: str | None = None
    role: str | None = None
    direct: tuple[NoticeChannel, str] | None = None
    by_name: bool = False  # the recipient is a name to find in the directory (a leader)
    subscribers_of: NoticeKind | None = None  # send to the directory's subscribers of this kind instead
    data: dict[str, Any] = field(default_factory=dict)


def _upcast(envelope: Envelope):
    return upcast(envelope.event_type, envelope.schema_version, envelope.payload)


# -- facts folded from a producer's stream -----------------------------------------------------


def case_facts(history: list[Envelope], upto: int) -> dict[str, Any]:
    """A case as its events up to ``upto`` (its sequence) describe it."""
    facts: dict[str, Any] = {
        "id": None,
        "title": "",
        "kind": None,
        "kind_name": "事项",
        "body": Body.congress,
        "registration_no": None,
        "submitters": [],
        "committee": None,
        "leader": None,
        "key": False,
        "lead_unit": {"id": "", "name": ""},
        "co_units": [],
        "due_on": None,
        "deadline_rule": "",
        "return_until": None,
        "round": 1,
        "reply_text": None,
        "reply_class": None,
    }
    for envelope in history:
        if envelope.sequence > upto:
            break
        facts["id"] = envelope.aggregate_id
        payload = envelope.payload
        match envelope.event_type:
            case "tracking.CaseOpened":
                kind = payload.get("kind")
                facts.update(
                    title=payload.get("title", ""),
                    kind=kind,
                    kind_name=_kind_name(kind),
                    body=Body(payload.get("body") or default_body(kind)),
                    registration_no=payload.get("registration_no"),
                    submitters=list(payload.get("submitters") or []),
                    committee=payload.get("committee"),
                )
            case "tracking.CaseAssigned":
                deadline = payload.get("deadline") or {}
                facts.update(
                    lead_unit=payload["lead_unit"],
                    co_units=list(payload.get("co_units") or []),
                    committee=payload.get("committee"),
                    leader=payload.get("leader"),
                    key=bool(payload.get("key")),
                    due_on=deadline.get("due_on"),
                    deadline_rule=deadline.get("rule", ""),
                    return_until=payload.get("return_until"),
                )
            case "tracking.ExtensionGranted" | "tracking.CaseReopened":
                deadline = payload.get("deadline") or {}
                facts.update(due_on=deadline.get("due_on"), deadline_rule=deadline.get("rule", ""))
                if "round" in payload:
                    facts["round"] = payload["round"]
            case "tracking.ReplySubmitted":
                facts.update(reply_text=payload.get("text"), reply_class=payload.get("reply_class"))
            case "tracking.ReplyReleased":
                facts["reply_class"] = payload.get("reply_class")
    return facts


def matter_facts(history: list[Envelope], upto: int) -> dict[str, Any]:
    """A matter as its events up to ``upto`` describe it (its body too: a transfer to the other
    body changes it, and its kind)."""
    facts: dict[str, Any] = {
        "id": None,
        "title": "",
        "kind_name": "事项",
        "body": Body.congress,
        "lead_name": "",
        "raised_by": None,
    }
    for envelope in history:
        if envelope.sequence > upto:
            break
        payload = envelope.payload
        facts["id"] = envelope.aggregate_id
        if envelope.event_type in ("intake.MatterSubmitted", "intake.MatterReceived"):
            data = payload["matter"]
            facts.update(
                title=data["title"],
                kind=data["kind"],
                kind_name=_kind_name(data["kind"]),
                body=Body(data.get("body") or default_body(data["kind"])),
                lead_id=data["lead"]["id"],
                lead_name=data["lead"]["name"],
                submitters=[data["lead"], *data.get("co_signers", [])],
                raised_in=data["raised_in"],
                raised_by=data.get("raised_by"),
                content=data.get("content"),
            )
        elif envelope.event_type == "intake.MatterConverted":
            facts.update(kind=payload["to_kind"], kind_name=_kind_name(payload["to_kind"]))
        elif envelope.event_type == "intake.MatterTransferred":
            to_kind = payload["to_kind"]
            facts.update(kind=to_kind, kind_name=_kind_name(to_kind), body=Body(payload["to_body"]))
        elif envelope.event_type == "intake.MatterRegistered":
            facts["registration_no"] = payload.get("registration_no")
    return facts


def _kind_name(kind: str | None) -> str:
    try:
        return KIND_NAMES[MatterKind(kind)]
    except ValueError:
        return "事项"


def committee_office(organ: Organ, committee: str | None = None) -> str:
    """The organ's committee a case is with, named in full for those outside it (a submitter's
    paper feedback form goes there): 政协温岭市委员会提案委, 温岭市人大常委会农业农村工委; with no
    committee named, the CPPCC's 提案委, a standing committee's 相关工委, or the township's organ
    itself (泽国镇人大主席团, 太平街道人大工委), which has no committees of its own."""
    has_committees = organ.type in ("cppcc_committee", "standing_committee")
    if committee:
        named = not has_committees or committee.startswith((organ.name, organ.short_name))
        return committee if named else f"{organ.name}{committee}"
    if organ.type == "cppcc_committee":
        return f"{organ.name}提案委"
    if organ.type == "standing_committee":
        return f"{organ.name}相关工委"
    return organ.name


def _session_body(kind: Any, facts: dict[str, Any]) -> Body:
    """The body holding a session: as its events say, else by its kind (民主评议 the CPPCC's)."""
    if facts.get("body"):
        return Body(facts["body"])
    kind = str(kind or "")
    return session_body("democratic" if kind.startswith("democratic") else kind)


def _people(values: Any) -> list[Recipient]:
    """An electorate: ids, or objects with an id and maybe a name."""
    people = []
    for value in values or []:
        if isinstance(value, str):
            people.append(Recipient(id=value, name=value))
        elif isinstance(value, dict) and value.get("id"):
            people.append(Recipient(id=str(value["id"]), name=str(value.get("name") or value["id"])))
    return people


def party_committee(level: Jurisdiction) -> str:
    """The party committee's office a performance appraisal is 抄报 to, by the kind of the level:
    台州市委办公室, 温岭市委办公室, 椒江区委办公室, 三门县委办公室, 泽国镇党委, 太平街道党工委."""
    if level.kind in ("镇", "乡"):
        return f"{level.name}党委"
    if level.kind == "街道":
        return f"{level.name}党工委"
    return f"{level.name}委办公室"


def reported_to_party_committee(payload: dict[str, Any], kind: str | None) -> bool:
    """抄报市委: as the session says (``report_to_party_committee``), else for a performance appraisal."""
    if "report_to_party_committee" in payload:
        return bool(payload["report_to_party_committee"])
    return bool(kind) and "performance" in str(kind)


# -- the planner -------------------------------------------------------------------------------


class NoticePlanner:
    """Turns one stored event of this level into the notices it calls for."""

    def __init__(
        self,
        here: str,
        registry: JurisdictionRegistry,
        stores: dict[str, EventStore],
        clock,
        *,
        known_here: Callable[[str], Awaitable[bool]] | None = None,
        person_name: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.here = here
        #: Whether an id is a person of this level's directory (where they sign in).
        self.known_here = known_here
        #: The name of a person of this level's directory (名册), None when it has no such person.
        self.person_name = person_name
        self.registry = registry
        self.stores = stores
        self.clock = clock
        self.level_name = registry.get(here).name

    def organ(self, body: Body | str) -> Organ:
        """The organ of ``body`` here; a body this level does not have (a 政协 at a township, which
        no matter of this level should name) signs as the level's congress."""
        try:
            return self.registry.organ(self.here, body)
        except NoSuchOrgan as missing:
            log.warning(
                "no organ of the body here: signed by the congress", extra={"body": str(body), "why": str(missing)}
            )
            return self.registry.organ(self.here, Body.congress)

    def common(self, body: Body | str = Body.congress, committee: str | None = None) -> dict[str, Any]:
        """What every notice of ``body``'s reads: the organ that signs it (``organ``), its name in
        running text (``organ_short``), the committee the case is with (``committee_office``: the
        ``committee``'s full name, or the organ's own when none is named), and how a person the
        directory does not know is greeted (尊敬的代表 / 尊敬的委员)."""
        today: date = self.clock().astimezone(SHANGHAI).date()
        organ = self.organ(body)
        cppcc = organ.body is Body.cppcc
        return {
            "level_name": self.level_name,
            "today": today,
            "body": organ.body.value,
            "body_name": BODY_NAMES[organ.body],
            "organ": organ.name,
            "organ_short": organ.short_name,
            "committee_term": "专委会" if cppcc else "工委",
            "committee_office": committee_office(organ, committee),
            "salutation": "尊敬的委员" if cppcc else "尊敬的代表",
        }

    async def named(self, people: list[Recipient]) -> list[Recipient]:
        """An electorate given by ids, with the names the level's directory has for them."""
        if self.person_name is None:
            return people
        found = []
        for person in people:
            if person.name == person.id and (name := await self.person_name(person.id)):
                person = Recipient(id=person.id, name=name)
            found.append(person)
        return found

    def place(self, code: str | None) -> str:
        try:
            return self.registry.get(code or "").name
        except UnknownJurisdiction:
            return code or ""

    async def notices_for(self, envelope: Envelope) -> list[Notice]:
        kind = envelope.event_type
        if kind in TRACKING_TYPES:
            found = await self._tracking(envelope)
        elif kind in INTAKE_TYPES:
            found = await self._intake(envelope)
        elif kind in EVALUATION_TYPES:
            found = await self._evaluation(envelope)
        else:
            return []
        unique: dict[tuple[str, str], Notice] = {}
        for notice in found:
            unique.setdefault((notice.recipient.id, notice.kind.value), notice)
        seen: set[str] = set()
        result = []
        for notice in unique.values():  # one notice per recipient and event
            if notice.recipient.id not in seen:
                seen.add(notice.recipient.id)
                result.append(notice)
        return result

    # -- tracking ------------------------------------------------------------------------
    async def _tracking(self, envelope: Envelope) -> list[Notice]:
        event = _upcast(envelope)
        history = await self.stores["tracking"].history(envelope.aggregate_id)
        if envelope.event_type in PLAN_TYPES:
            return self._plan(event, history, envelope)
        case = case_facts(history, envelope.sequence)
        base = {**self.common(case["body"], case["committee"]), "case": case}
        topic = envelope.aggregate_id
        data = {"case_id": topic, "title": case["title"], "event_type": envelope.event_type}
        lead = Recipient(id=case["lead_unit"]["id"] or "unknown-unit", name=case["lead_unit"]["name"] or "主办单位")
        notices: list[Notice] = []

        def leader_notice(kind: NoticeKind, context: dict[str, Any]) -> Notice | None:
            if not case["leader"]:
                return None
            recipient = Recipient(id=f"leader:{case['leader']}", name=case["leader"])
            return Notice(kind, recipient, context | {"role": "leader"}, topic, "leader", by_name=True, data=data)

        if isinstance(event, CaseAssigned):
            notices.append(Notice(NoticeKind.assignment, lead, base | {"role": "lead"}, topic, "lead", data=data))
            for unit in event.co_units:
                recipient = Recipient(id=unit.id, name=unit.name)
                notices.append(Notice(NoticeKind.assignment, recipient, base | {"role": "co"}, topic, "co", data=data))
        elif isinstance(event, CaseUrged):
            kind = NoticeKind.reminder if event.threshold == Threshold.due_soon else NoticeKind.urging
            context = base | {
                "threshold": event.threshold.value,
                "threshold_name": THRESHOLD_NAMES[event.threshold],
            }
            notices.append(Notice(kind, lead, context | {"role": "lead"}, topic, "lead", data=data))
            # An overdue key item reaches its leader as 超期报领导督办 (CaseEscalatedToLeader).
            if case["key"] and event.threshold != Threshold.overdue:
                if (notice := leader_notice(kind, context)) is not None:
                    notices.append(notice)
        elif isinstance(event, CaseUrgedByStaff):
            urged_by = f"（{base['organ_short']}催办）"  # 温岭市人大常委会, 温岭市政协, 泽国镇人大主席团
            context = base | {"threshold_name": urged_by, "note": event.note, "role": "lead"}
            notices.append(Notice(NoticeKind.urging, lead, context, topic, "lead", data=data))
        elif isinstance(event, CaseEscalatedToLeader):
            case["leader"] = case["leader"] or event.leader
            if (notice := leader_notice(NoticeKind.leader_escalation, base)) is not None:
                notices.append(notice)
        elif isinstance(event, CaseReopened):
            context = base | {"reason": event.reason, "role": "lead"}
            notices.append(Notice(NoticeKind.rehandling, lead, context, topic, "lead", data=data))
        elif isinstance(event, ReplyReleased):
            context = base | {
                "reply_class": event.reply_class,
                "reply_class_name": REPLY_CLASS_NAMES.get(event.reply_class, event.reply_class),
                "reply_text": case["reply_text"] or "",
                "role": "submitter",
            }
            reply_data = data | {"reply_class": event.reply_class}
            matter = matter_facts(await self.stores["intake"].history(topic), envelope.sequence + 10**12)
            raised_elsewhere = matter.get("raised_in") not in (None, self.here)
            for submitter in case["submitters"]:
                if raised_elsewhere and not (self.known_here and await self.known_here(submitter["id"])):
                    continue  # told where the matter was raised, when the reply reaches there
                recipient = Recipient(id=submitter["id"], name=submitter["name"])
                notices.append(Notice(NoticeKind.reply, recipient, context, topic, "submitter", data=reply_data))
        return notices

    # -- intake --------------------------------------------------------------------------
    async def _intake(self, envelope: Envelope) -> list[Notice]:
        event = _upcast(envelope)
        topic = envelope.aggregate_id
        if isinstance(event, MatterReceived):
            matter = event.matter
            direction_name = "上报" if event.direction == "up" else "交办"
            common = self.common(matter.body)
            context = common | {
                "matter": {"title": matter.title, "kind_name": _kind_name(matter.kind), "lead_name": matter.lead.name},
                "origin_name": self.place(event.origin.jurisdiction),
                "direction_name": direction_name,
                "reason": event.reason,
            }
            staff = Recipient(id="role:committee", name=f"{common['organ_short']}工作人员")
            data = {"matter_id": topic, "title": matter.title, "origin": event.origin.model_dump()}
            return [
                Notice(
                    NoticeKind.escalation_received,
                    staff,
                    context,
                    topic,
                    "committee",
                    subscribers_of=NoticeKind.escalation_received,
                    data=data,
                )
            ]
        if isinstance(event, ReplyRecorded):
            return await self._reply_reported_back(event, envelope)
        if isinstance(event, OutcomeRecorded):
            history = await self.stores["intake"].history(envelope.aggregate_id)
            matter = matter_facts(history, envelope.sequence)
            raised_by = matter.get("raised_by")
            if not raised_by or matter.get("raised_in") != self.here:
                return []  # fed back where it was raised, once, whichever level handled it
            context = self.common(matter["body"]) | {
                "matter": matter,
                "outcome": event.outcome.model_dump(mode="json"),
                "handled_in_name": self.place(event.handled_in.jurisdiction),
                "raiser_name": raised_by["name"],
            }
            data = {"matter_id": topic, "title": matter["title"], "raised_by": raised_by["name"]}
            notices = []
            contact = (raised_by.get("contact") or "").strip()
            if EMAIL.match(contact):
                raiser = Recipient(id=f"raiser:{topic}", name=raised_by["name"])
                notices.append(
                    Notice(
                        NoticeKind.raiser_feedback,
                        raiser,
                        context | {"role": "raiser"},
                        topic,
                        "raiser",
                        direct=(NoticeChannel.email, contact),
                        data=data,
                    )
                )
            collector = Recipient(id=matter["lead_id"], name=matter["lead_name"])
            notices.append(
                Notice(
                    NoticeKind.raiser_feedback,
                    collector,
                    context | {"role": "collector"},
                    topic,
                    "collector",
                    data=data,
                )
            )
            return notices
        return []

    async def _reply_reported_back(self, event: ReplyRecorded, envelope: Envelope) -> list[Notice]:
        """A higher level's reply reported back to where the matter was raised: its submitters
        are told here, where they sign in and give their feedback."""
        topic = envelope.aggregate_id
        matter = matter_facts(await self.stores["intake"].history(topic), envelope.sequence)
        if not event.reported_back or matter.get("raised_in") != self.here:
            return []
        reply = event.reply
        case = {
            "title": matter["title"],
            "kind_name": matter["kind_name"],
            "registration_no": matter.get("registration_no"),
            "submitters": matter.get("submitters") or [],
            "lead_unit": {"name": reply.unit or self.place(event.handled_in.jurisdiction)},
            "committee": None,
        }
        context = self.common(matter["body"]) | {
            "case": case,
            "reply_class": reply.reply_class,
            "reply_class_name": REPLY_CLASS_NAMES.get(reply.reply_class, reply.reply_class),
            "reply_text": reply.text,
            "role": "submitter",
        }
        data = {"matter_id": topic, "title": matter["title"], "reply_class": reply.reply_class, "round": reply.round}
        return [
            Notice(
                NoticeKind.reply,
                Recipient(id=submitter["id"], name=submitter["name"]),
                context,
                topic,
                "submitter",
                data=data,
            )
            for submitter in case["submitters"]
        ]

    # -- plans ---------------------------------------------------------------------------
    def _plan(
        self, event: PlanItemEvaluated | PlanDutyUrged, history: list[Envelope], envelope: Envelope
    ) -> list[Notice]:
        """A plan item's evaluation to each of its units and leaders; a duty due soon or overdue
        to the group that owes it and its contact leader, or to the plan's leaders' committee."""
        plan: dict[str, Any] = {}
        for earlier in history:
            if earlier.sequence > envelope.sequence:
                break
            if earlier.event_type in ("tracking.PlanCreated", "tracking.PlanRevised"):
                plan = earlier.payload.get("plan") or {}
        topic = envelope.aggregate_id
        base = self.common(Body.congress) | {"plan_title": plan.get("title", "工作方案")}
        data = {"plan_id": topic, "title": plan.get("title", ""), "event_type": envelope.event_type}
        notices: list[Notice] = []
        if isinstance(event, PlanDutyUrged):
            threshold_name = THRESHOLD_NAMES[Threshold(event.threshold)]
            context = base | {"duty": event.model_dump(mode="json"), "threshold_name": threshold_name}
            kind = NoticeKind.plan_duty
            if event.group_id:
                group = Recipient(id=event.group_id, name=event.group_name or event.group_id)
                notices.append(Notice(kind, group, context | {"role": "group"}, topic, "group", data=data))
            for unit in event.units:  # a milestone: the item's lead units report progress
                recipient = Recipient(id=unit.id, name=unit.name)
                notices.append(Notice(kind, recipient, context | {"role": "lead"}, topic, "lead", data=data))
            if event.leader:
                leader = Recipient(id=f"leader:{event.leader}", name=event.leader)
                notices.append(
                    Notice(kind, leader, context | {"role": "leader"}, topic, "leader", by_name=True, data=data)
                )
            return notices
        item = next((i for i in plan.get("items", []) if i.get("id") == event.item_id), None)
        if item is None:
            return []
        result = event.model_dump(mode="json") | {"turnout": None}
        context = base | {"item": item, "evaluated": event.model_dump(mode="json"), "lines": result_lines(result)}
        kind = NoticeKind.plan_item_results
        for role, units in (("lead", item.get("lead_units", [])), ("co", item.get("co_units", []))):
            for unit in units:
                recipient = Recipient(id=unit["id"], name=unit["name"])
                notices.append(Notice(kind, recipient, context | {"role": role}, topic, role, data=data))
        for leader in item.get("leaders", []):
            recipient = Recipient(id=f"leader:{leader['name']}", name=leader["name"])
            notices.append(
                Notice(kind, recipient, context | {"role": "leader"}, topic, "leader", by_name=True, data=data)
            )
        return notices

    # -- evaluation ----------------------------------------------------------------------
    async def _evaluation(self, envelope: Envelope) -> list[Notice]:
        payload = evaluation_payload(envelope)
        session = await self._session(envelope, payload)
        topic = envelope.aggregate_id
        data = {"session_id": topic, "title": session["title"], "event_type": envelope.event_type}
        base = self.common(session["body"]) | {"session": session}
        if envelope.event_type == SESSION_OPENED:
            electorate = _people(payload.get("electorate") or payload.get("evaluators") or session.get("electorate"))
            electorate = await self.named(electorate)
            return [
                Notice(NoticeKind.evaluation_invitation, person, base, topic, "evaluator", data=data)
                for person in electorate
            ]
        results = []
        for result in payload.get("results") or []:
            subject = result.get("subject") or {}
            results.append({**result, "subject": subject, "lines": result_lines(result)})
        notices = []
        for result in results:
            unit = result["subject"].get("unit")
            if isinstance(unit, dict) and unit.get("id"):
                recipient = Recipient(id=str(unit["id"]), name=str(unit.get("name") or unit["id"]))
                context = base | {"result": result}
                notices.append(Notice(NoticeKind.evaluation_results, recipient, context, topic, "unit", data=data))
        if reported_to_party_committee(payload, session.get("kind")) and results:
            party = Recipient(id="party-committee", name=party_committee(self.registry.get(self.here)))
            notices.append(
                Notice(
                    NoticeKind.appraisal_results_cc,
                    party,
                    base | {"results": results},
                    topic,
                    "party_committee",
                    subscribers_of=NoticeKind.appraisal_results_cc,
                    data=data,
                )
            )
        return notices

    async def _session(self, envelope: Envelope, payload: dict[str, Any]) -> dict[str, Any]:
        """The session's title, kind, subjects and closing time, from this event or earlier ones."""
        facts: dict[str, Any] = {}
        try:
            history = await self.stores["evaluation"].history(envelope.aggregate_id)
        except Exception:  # a session whose history cannot be read still gets its notices
            history = []
        for earlier in history:
            if earlier.sequence > envelope.sequence:
                break
            try:
                values = evaluation_payload(earlier)
            except (UnknownEventType, ValueError):
                values = dict(earlier.payload)
            for name in ("title", "name", "kind", "body", "subjects", "closes_at", "electorate"):
                if values.get(name) not in (None, [], ""):
                    facts[name] = values[name]
        for name in ("title", "name", "kind", "body", "subjects", "closes_at"):
            if payload.get(name) not in (None, [], ""):
                facts[name] = payload[name]
        kind = facts.get("kind")
        return {
            "title": facts.get("title") or facts.get("name") or "测评",
            "kind": kind,
            "kind_name": SESSION_KIND_NAMES.get(str(kind), "测评"),
            "body": _session_body(kind, facts),
            "subjects": [s for s in facts.get("subjects") or [] if isinstance(s, dict)],
            "closes_at": facts.get("closes_at"),
            "electorate": facts.get("electorate"),
        }
