"""Two bodies at a level (人大 / 政协): who raises what, whose staff review it, whose book numbers
it, transfers between them, joint and merged leads, and events stored before the bodies existed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts import intake_v1, integration_v1, notify_v1, tracking_v1
from contracts.bodies import Body
from contracts.envelope import utcnow
from contracts.events import upcast
from contracts.intake import (
    Channel,
    MatterData,
    MatterKind,
    MergeMatter,
    RegisterMatter,
    RouteMatter,
    SendDownMatter,
    SubmitMatter,
    Submitter,
    SubmitterKind,
    TransferMatter,
)
from contracts.jurisdictions import default_registry
from services.intake.domain import Matter, RegistrationBook
from services.intake.handlers import IntakeHandlers
from services.runtime.es.aggregate import Aggregate, DomainError, NotAllowed, applies
from services.runtime.http.auth import Principal, Role
from tests.support.stores import event_store

WENLING, ZEGUO = "331081", "331081100"
CONGRESS_STAFF = Principal(sub="committee-1", name="代表工委", roles=[Role.committee], jurisdiction=WENLING)
CPPCC_STAFF = Principal(sub="taw-1", name="提案委", roles=[Role.committee], jurisdiction=WENLING, body=Body.cppcc)
ADMIN = Principal(sub="admin-1", name="管理员", roles=[Role.admin], jurisdiction=WENLING)
DEPUTY = Principal(sub="deputy-1", name="王代表", roles=[Role.deputy], jurisdiction=WENLING)
MEMBER = Principal(sub="member-1", name="王永进", roles=[Role.deputy], jurisdiction=WENLING, body=Body.cppcc)
SECTOR = Submitter(id="sector-kxjs", name="科学技术界", kind=SubmitterKind.group)
WANG = Submitter(id="member-1", name="王永进")


def matter(kind: MatterKind, title: str, lead: Submitter = WANG, raised_in: str = WENLING, **more) -> MatterData:
    return MatterData(
        kind=kind, title=title, content=f"{title}。", lead=lead, channel=Channel.session, raised_in=raised_in, **more
    )


@pytest.fixture
async def store(request, unique):
    async for store in event_store(request, context=unique, jurisdiction=WENLING):
        yield store


@pytest.fixture
def handlers(store):
    return IntakeHandlers(store, default_registry())


def test_each_body_takes_its_own_kinds_and_a_matter_left_without_one_is_read_by_its_kind():
    assert matter(MatterKind.proposal, "提案").body is Body.cppcc
    assert matter(MatterKind.suggestion, "建议").body is Body.congress
    assert matter(MatterKind.problem, "问题", body=Body.cppcc).body is Body.cppcc  # both collect problems
    with pytest.raises(ValidationError, match="人大不受理提案"):
        matter(MatterKind.proposal, "提案", body=Body.congress)
    with pytest.raises(ValidationError, match="政协不受理建议"):
        matter(MatterKind.suggestion, "建议", body=Body.cppcc)
    with pytest.raises(ValidationError, match="twice"):
        matter(MatterKind.proposal, "联名", lead=SECTOR, co_leads=[WANG, SECTOR])


async def test_members_raise_proposals_deputies_suggestions_and_each_body_numbers_its_own(handlers):
    proposal = await handlers.submit(SubmitMatter(matter=matter(MatterKind.proposal, "科创区建议")), MEMBER)
    with pytest.raises(NotAllowed, match="提案属于政协"):
        await handlers.submit(SubmitMatter(matter=matter(MatterKind.proposal, "代表的提案")), DEPUTY)
    with pytest.raises(NotAllowed, match="建议属于人大"):
        await handlers.submit(SubmitMatter(matter=matter(MatterKind.suggestion, "委员的建议")), MEMBER)
    # a problem (both bodies collect them) is the body's of whoever raises it
    problem = await handlers.submit(SubmitMatter(matter=matter(MatterKind.problem, "委员收集的问题")), MEMBER)
    assert problem.data.body is Body.cppcc
    suggestion = await handlers.submit(
        SubmitMatter(matter=matter(MatterKind.suggestion, "饮水", lead=Submitter(id="deputy-1", name="王代表"))), DEPUTY
    )
    # staff act on their own body's matters only; an administrator on both
    with pytest.raises(NotAllowed, match="该事项属于政协，仅政协的工作人员可以立案"):
        await handlers.register(RegisterMatter(matter_id=proposal.id), CONGRESS_STAFF)
    with pytest.raises(NotAllowed, match="该事项属于人大"):
        await handlers.register(RegisterMatter(matter_id=suggestion.id), CPPCC_STAFF)
    with pytest.raises(NotAllowed):
        await handlers.route(RouteMatter(matter_id=proposal.id), CONGRESS_STAFF)
    year = utcnow().year
    numbered = await handlers.register(RegisterMatter(matter_id=proposal.id), CPPCC_STAFF)
    assert numbered.registration_no.startswith("温岭政协提〔") and numbered.registration_no.endswith("〕1号")
    assert (await handlers.register(RegisterMatter(matter_id=suggestion.id), ADMIN)).registration_no.endswith("〕1号")
    # the books: a kind in the body it belongs to keeps the id it had before the bodies
    assert RegistrationBook.id_for(Body.cppcc, MatterKind.proposal, year) == f"regbook-proposal-{year}"
    assert RegistrationBook.id_for(Body.congress, MatterKind.suggestion, year) == f"regbook-suggestion-{year}"
    assert RegistrationBook.id_for(Body.cppcc, MatterKind.problem, year) == f"regbook-cppcc-problem-{year}"
    assert RegistrationBook.id_for(Body.congress, MatterKind.problem, year) == f"regbook-problem-{year}"


async def test_the_cppccs_prefix_is_configurable(store):
    handlers = IntakeHandlers(store, default_registry(), cppcc_number_prefix="温政协")
    proposal = await handlers.submit(SubmitMatter(matter=matter(MatterKind.proposal, "科创区")), MEMBER)
    registered = await handlers.register(RegisterMatter(matter_id=proposal.id), CPPCC_STAFF)
    assert registered.registration_no == f"温政协提〔{registered.registration_year}〕1号"


async def test_a_proposal_really_for_the_congress_is_transferred_and_becomes_a_suggestion_there(handlers, store):
    proposal = await handlers.submit(SubmitMatter(matter=matter(MatterKind.proposal, "应由人大办理")), CPPCC_STAFF)
    with pytest.raises(NotAllowed):  # the body that has it transfers it
        await handlers.transfer(
            TransferMatter(matter_id=proposal.id, to_body=Body.congress, reason="x"), CONGRESS_STAFF
        )
    moved = await handlers.transfer(
        TransferMatter(matter_id=proposal.id, to_body=Body.congress, reason="属人大监督事项"), CPPCC_STAFF
    )
    assert (moved.data.body, moved.data.kind) == (Body.congress, MatterKind.suggestion)
    history = await store.history(proposal.id)
    assert history[-1].event_type == "intake.MatterTransferred"
    assert history[-1].payload | {"reason": ""} == {
        "from_body": "cppcc", "to_body": "congress", "from_kind": "proposal", "to_kind": "suggestion", "reason": "",
    }  # fmt: skip
    with pytest.raises(NotAllowed):  # now the congress's
        await handlers.register(RegisterMatter(matter_id=proposal.id), CPPCC_STAFF)
    registered = await handlers.register(RegisterMatter(matter_id=proposal.id), CONGRESS_STAFF)
    assert registered.registration_no == f"温岭建〔{registered.registration_year}〕1号"
    with pytest.raises(DomainError, match="不能转交"):  # registered: no longer transferred
        await handlers.transfer(TransferMatter(matter_id=proposal.id, to_body=Body.cppcc, reason="x"), CONGRESS_STAFF)


async def test_a_township_has_no_cppcc(request, unique, handlers):
    proposal = await handlers.submit(SubmitMatter(matter=matter(MatterKind.proposal, "镇里的事")), CPPCC_STAFF)
    with pytest.raises(DomainError, match="泽国镇没有政协，政协的事项不能交由其办理"):
        await handlers.send_down(SendDownMatter(matter_id=proposal.id, to=ZEGUO, reason="属地"), CPPCC_STAFF)
    async for store in event_store(request, context=unique, jurisdiction=ZEGUO):
        handlers = IntakeHandlers(store, default_registry())
        staff = Principal(sub="taw-z", roles=[Role.committee], jurisdiction=ZEGUO, body=Body.cppcc)
        with pytest.raises(DomainError, match="泽国镇没有政协"):
            await handlers.submit(SubmitMatter(matter=matter(MatterKind.proposal, "提案", raised_in=ZEGUO)), staff)


async def test_joint_and_merged_leads_travel_to_the_case(handlers, store):
    joint = matter(MatterKind.proposal, "核心科创区", lead=SECTOR, co_leads=[WANG], topical=True)
    kept = await handlers.submit(SubmitMatter(matter=joint), CPPCC_STAFF)
    other = matter(MatterKind.proposal, "科创", lead=Submitter(id="sector-ql", name="青联", kind=SubmitterKind.group))
    merged = await handlers.submit(SubmitMatter(matter=other), CPPCC_STAFF)
    with pytest.raises(DomainError, match="不同机关"):
        suggestion = await handlers.submit(
            SubmitMatter(matter=matter(MatterKind.suggestion, "建议", lead=Submitter(id="deputy-1", name="王"))), DEPUTY
        )
        await handlers.merge(MergeMatter(matter_id=suggestion.id, into=kept.id), ADMIN)
    await handlers.merge(MergeMatter(matter_id=merged.id, into=kept.id), CPPCC_STAFF)
    await handlers.register(RegisterMatter(matter_id=kept.id), CPPCC_STAFF)
    await handlers.route(RouteMatter(matter_id=kept.id, committee="提案委"), CPPCC_STAFF)
    routed = (await store.history(kept.id))[-1]
    assert routed.event_type == "intake.MatterRouted" and routed.schema_version == 2
    assert [lead["name"] for lead in routed.payload["leads"]] == ["科学技术界", "王永进", "青联"]
    assert routed.payload["body"] == "cppcc" and routed.payload["merged"] and routed.payload["topical"]


class StoredBefore(Aggregate):
    """A matter as the code before the bodies stored it: version 1 events (nothing applied here)."""

    context = "intake"
    aggregate_type = "matter"

    @applies(intake_v1.MatterSubmitted)
    def _submitted(self, event) -> None:
        pass


async def test_events_stored_before_the_bodies_are_read_as_their_kinds_body(handlers, store):
    old = intake_v1.MatterData(
        kind=MatterKind.proposal, title="旧提案", content="内容", lead=WANG, channel="session", raised_in=WENLING
    )
    stored = StoredBefore(id="old-proposal")
    await store.append(stored, [intake_v1.MatterSubmitted(matter=old)])
    assert (await store.history("old-proposal"))[0].schema_version == 1
    loaded = await store.load(Matter, "old-proposal")
    assert loaded.data.body is Body.cppcc and loaded.leads == [WANG] and not loaded.data.co_leads
    registered = await handlers.register(RegisterMatter(matter_id="old-proposal"), CPPCC_STAFF)
    assert registered.registration_no.startswith("温岭政协提")
    with pytest.raises(NotAllowed):
        await handlers.register(RegisterMatter(matter_id="old-proposal"), CONGRESS_STAFF)

    # every event that gained the body: a version 1 payload is read as version 2 by its kind
    suggestion = old.model_copy(update={"kind": MatterKind.suggestion})
    hop = {"jurisdiction": ZEGUO, "matter_id": "m-z"}
    payloads = {
        "intake.MatterSubmitted": intake_v1.MatterSubmitted(matter=old),
        "intake.MatterReceived": intake_v1.MatterReceived(matter=suggestion, origin=hop, direction="up"),
        "intake.MatterRouted": intake_v1.MatterRouted(kind=MatterKind.proposal, title="旧提案", submitters=[WANG]),
        "tracking.CaseOpened": tracking_v1.CaseOpened(
            matter_id="m", kind="suggestion", title="旧建议", submitters=[WANG], year=2025
        ),
        "x.MatterHandedOver": integration_v1.MatterHandedOver(
            matter=suggestion, origin=hop, direction="up", reason="r"
        ),
        "notify.DisclosureReleased": notify_v1.DisclosureReleased(
            case_id="c",
            text=notify_v1.DisclosureText(
                title="旧提案", leads=["台联界"], unit="市经信局", summary="摘要", kind="proposal"
            ),
        ),
    }
    bodies = {}
    for event_type, event in payloads.items():
        assert event.schema_version == 1
        read = upcast(event_type, 1, event.model_dump(mode="json"))
        assert read.schema_version == 2
        bodies[event_type] = getattr(read, "matter", None) or getattr(read, "text", None) or read
    assert {t: b.body.value for t, b in bodies.items()} == {
        "intake.MatterSubmitted": "cppcc",
        "intake.MatterReceived": "congress",
        "intake.MatterRouted": "cppcc",
        "tracking.CaseOpened": "congress",
        "x.MatterHandedOver": "congress",
        "notify.DisclosureReleased": "cppcc",
    }
    assert [s.name for s in bodies["intake.MatterRouted"].leads] == ["王永进"]
