"""Review at one level: registration numbers, merging, conversion, transitions."""

from __future__ import annotations

import asyncio

import pytest

from contracts.bodies import Body
from contracts.intake import (
    Channel,
    ConvertMatter,
    MatterData,
    MatterKind,
    MatterStatus,
    MergeMatter,
    RegisterMatter,
    RejectMatter,
    RouteMatter,
    SubmitMatter,
    Submitter,
)
from contracts.jurisdictions import default_registry
from services.intake.domain import Matter, RegistrationBook
from services.intake.handlers import IntakeHandlers
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.http.auth import Principal, Role
from tests.support.stores import event_store, stored_messages

WENLING = "331081"
STAFF = Principal(sub="committee-1", name="代表工委", roles=[Role.committee], jurisdiction=WENLING)
DEPUTY = Principal(sub="deputy-1", name="王代表", roles=[Role.deputy], jurisdiction=WENLING)


def suggestion(title: str, lead: str = "deputy-1", co: tuple[str, ...] = ()) -> SubmitMatter:
    return SubmitMatter(
        matter=MatterData(
            kind=MatterKind.suggestion,
            title=title,
            content=f"{title}的具体内容。",
            lead=Submitter(id=lead, name=f"代表{lead}"),
            co_signers=[Submitter(id=c, name=f"代表{c}") for c in co],
            channel=Channel.session,
            raised_in=WENLING,
        )
    )


@pytest.fixture
async def store(request, unique):
    async for store in event_store(request, context=unique, jurisdiction=WENLING):
        yield store


@pytest.fixture
def handlers(store):
    return IntakeHandlers(store, default_registry())


async def test_registration_numbers_stay_unique_and_gapless_when_50_race(nc, store):
    """On the real server (``nc``): the race is decided by JetStream's version check."""
    # two handler objects, as two processes: their locks do not see each other
    first, second = IntakeHandlers(store, default_registry()), IntakeHandlers(store, default_registry())
    matters = [await first.submit(suggestion(f"建议{i}"), DEPUTY) for i in range(50)]
    registered = await asyncio.gather(
        *((first if i % 2 else second).register(RegisterMatter(matter_id=m.id), STAFF) for i, m in enumerate(matters))
    )
    numbers = sorted(int(m.registration_no.split("〕")[1].rstrip("号")) for m in registered)
    assert numbers == list(range(1, 51))
    assert all(m.registration_no.startswith("温岭建〔") for m in registered)
    year = registered[0].registration_year
    book = await store.load(RegistrationBook, RegistrationBook.id_for(Body.congress, MatterKind.suggestion, year))
    assert sorted(book.assigned.values()) == list(range(1, 51)) and book.last_number == 50


async def test_a_process_does_not_load_the_book_it_wrote_last_and_a_book_written_elsewhere_is_read_again(
    nc, store, monkeypatch
):
    """Registrations wait for one another, so the book is kept by the process that appended to it;
    another process's (an HTTP helper's) number since makes the kept one stale: the append's
    expected version refuses it, the book is loaded and the number is the next one."""
    first, second = IntakeHandlers(store, default_registry()), IntakeHandlers(store, default_registry())
    matters = [await first.submit(suggestion(f"编号{i}"), DEPUTY) for i in range(4)]
    loads: list[str] = []
    load = store.load

    async def counted(cls, aggregate_id):
        if cls is RegistrationBook:
            loads.append(aggregate_id)
        return await load(cls, aggregate_id)

    monkeypatch.setattr(store, "load", counted)
    registered = [await first.register(RegisterMatter(matter_id=matters[0].id), STAFF)]
    registered.append(await first.register(RegisterMatter(matter_id=matters[1].id), STAFF))
    assert len(loads) == 1  # the second number was taken from the book as the first left it
    registered.append(await second.register(RegisterMatter(matter_id=matters[2].id), STAFF))
    registered.append(await first.register(RegisterMatter(matter_id=matters[3].id), STAFF))
    assert len(loads) == 3  # the other process's first, then this one's after its stale book was refused
    assert [int(m.registration_no.split("〕")[1].rstrip("号")) for m in registered] == [1, 2, 3, 4]


async def test_a_retried_registration_keeps_its_number(handlers):
    matter = await handlers.submit(suggestion("重试立案"), DEPUTY)
    once = await handlers.register(RegisterMatter(matter_id=matter.id), STAFF)
    with pytest.raises(DomainError) as refused:
        await handlers.register(RegisterMatter(matter_id=matter.id), STAFF)
    assert refused.value.code == "invalid_transition"
    assert (await handlers.store.load(Matter, matter.id)).registration_no == once.registration_no


async def test_merging_keeps_every_submitter_and_the_history_shows_it(handlers, store):
    kept = await handlers.submit(suggestion("城东路灯不亮", lead="deputy-1", co=("deputy-2",)), DEPUTY)
    other_deputy = DEPUTY.model_copy(update={"id": "deputy-3"})
    joined = await handlers.submit(
        suggestion("城东街道路灯损坏", lead="deputy-3", co=("deputy-4", "deputy-2")), other_deputy
    )
    await handlers.merge(MergeMatter(matter_id=joined.id, into=kept.id, reason="同一事项"), STAFF)

    target = await store.load(Matter, kept.id)
    merged = await store.load(Matter, joined.id)
    assert [s.id for s in target.submitters] == ["deputy-1", "deputy-2", "deputy-3", "deputy-4"]
    assert merged.status == MatterStatus.merged and merged.merged_into == kept.id
    assert target.merged == [joined.id]
    merged_history = await store.history(joined.id)
    assert merged_history[-1].event_type == "intake.MatterMerged"
    assert merged_history[-1].payload["into"] == kept.id and merged_history[-1].actor.principal_id == "committee-1"
    assert (await store.history(kept.id))[-1].event_type == "intake.MatterAbsorbed"
    # merging again changes nothing and is refused
    with pytest.raises(DomainError):
        await handlers.merge(MergeMatter(matter_id=joined.id, into=kept.id), STAFF)


async def test_review_transitions_and_who_may_do_them(handlers, store):
    matter = await handlers.submit(suggestion("议案转建议"), DEPUTY)
    with pytest.raises(NotAllowed):
        await handlers.register(RegisterMatter(matter_id=matter.id), DEPUTY)
    with pytest.raises(DomainError):
        await handlers.route(RouteMatter(matter_id=matter.id), STAFF)  # not registered yet
    with pytest.raises(DomainError, match="人大不受理提案"):  # a 提案 is the CPPCC's: transferred, not converted
        await handlers.convert(
            ConvertMatter(matter_id=matter.id, to_kind=MatterKind.proposal, reason="转为提案"), STAFF
        )
    converted = await handlers.convert(
        ConvertMatter(matter_id=matter.id, to_kind=MatterKind.motion, reason="转为议案"), STAFF
    )
    assert converted.data.kind == MatterKind.motion
    rejected = await handlers.submit(suggestion("不予立案的建议"), DEPUTY)
    done = await handlers.reject(RejectMatter(matter_id=rejected.id, reason="不属于本级职权"), STAFF)
    assert done.status == MatterStatus.not_registered
    before = await stored_messages(store)
    with pytest.raises(DomainError):
        await handlers.register(RegisterMatter(matter_id=rejected.id), STAFF)
    assert await stored_messages(store) == before


async def test_a_retried_submission_with_the_same_key_is_taken_once(handlers, store):
    first = await handlers.submit(suggestion("幂等提交"), DEPUTY, idempotency_key="abc")
    again = await handlers.submit(suggestion("幂等提交"), DEPUTY, idempotency_key="abc")
    assert first.id == again.id
    assert await stored_messages(store) == 1
