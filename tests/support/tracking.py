"""Tracking test helpers: principals, a routed matter's envelope, a case handled to its close, the
case read models."""

from __future__ import annotations

from contracts.bodies import default_body
from contracts.envelope import Actor, Envelope, new_id, utcnow
from contracts.intake import MatterKind, MatterRouted, Submitter
from contracts.tracking import AssignCase, CaseStatus, GiveFeedback, Rating, SubmitReply, Unit
from services.runtime.http.auth import Principal, Role
from services.tracking.domain import Case

WENLING = "331081"
STAFF = Principal(sub="committee-1", name="代表工委", roles=[Role.committee], jurisdiction=WENLING)
LEAD = Unit(id="unit-water", name="市农业农村和水利局")
CO = Unit(id="unit-housing", name="市住房和城乡建设局")
OTHER = Unit(id="unit-market", name="市市场监管局")
DEPUTIES = [Submitter(id="deputy-1", name="王代表"), Submitter(id="deputy-2", name="李代表")]


def unit(u: Unit, code: str = WENLING) -> Principal:
    return Principal(sub=u.id, name=u.name, roles=[Role.unit], jurisdiction=code)


def deputy(s: Submitter, code: str = WENLING) -> Principal:
    return Principal(sub=s.id, name=s.name, roles=[Role.deputy], jurisdiction=code)


def routed(matter_id: str | None = None, *, kind=MatterKind.suggestion, submitters=DEPUTIES, when=None):
    """The envelope of an intake ``MatterRouted``, as tracking's listener receives it."""

    event = MatterRouted(
        kind=kind,
        body=default_body(kind),
        title="农村饮水安全一户一表改造",
        submitters=submitters,
        registration_no="温岭建〔2026〕1号",
    )
    return event, Envelope(
        event_id=new_id(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type="matter",
        aggregate_id=matter_id or new_id(),
        sequence=4,
        jurisdiction=WENLING,
        occurred_at=when or utcnow(),
        actor=Actor(principal_id="committee-1", role="committee", jurisdiction=WENLING),
        correlation_id=new_id(),
        payload=event.model_dump(mode="json"),
    )


def assignment(case_id: str, **overrides) -> AssignCase:
    values = {"case_id": case_id, "lead_unit": LEAD, "co_units": [], "committee": "农业农村工委"} | overrides
    return AssignCase(**values)


async def closed_case(tracking) -> Case:
    """A case of a running ``TrackingService`` opened, assigned, replied (A) and closed by its
    submitters' satisfied feedback."""
    event, envelope = routed()
    case = await tracking.handlers.open_case(event, envelope)
    await tracking.handlers.assign(assignment(case.id), STAFF)
    await tracking.handlers.reply(SubmitReply(case_id=case.id, reply_class="A", text="已完成改造"), unit(LEAD))
    for submitter in DEPUTIES:
        case = await tracking.handlers.feedback(
            GiveFeedback(case_id=case.id, rating=Rating.satisfied), deputy(submitter)
        )
    assert case.status == CaseStatus.closed
    return case
