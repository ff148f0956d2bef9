"""Three levels of intake on one NATS server: a township's problem goes up to Taizhou and the
outcome comes back down, every level keeping its own record of the whole path."""

from __future__ import annotations

import httpx
import pytest

from contracts import integration as x
from contracts.envelope import Envelope, utcnow
from contracts.intake import (
    Channel,
    EscalateMatter,
    Hop,
    MatterData,
    MatterKind,
    MatterStatus,
    Outcome,
    RaisedBy,
    RecordOutcome,
    RegisterMatter,
    RouteMatter,
    SubmitMatter,
    Submitter,
)
from services.intake.api import create_api
from services.intake.app import IntakeService
from services.intake.domain import Matter
from services.intake.handlers import derived_id
from services.runtime.es.aggregate import NotAllowed
from services.runtime.http.auth import Principal, Role, issue_token
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.waiting import eventually

TAIZHOU, WENLING, ZEGUO, DAXI = "331000", "331081", "331081100", "331081101"


def staff(code: str) -> Principal:
    return Principal(sub=f"committee-{code}", name="工委", roles=[Role.committee], jurisdiction=code)


def station(code: str) -> Principal:
    return Principal(sub=f"station-{code}", name="泽国镇代表联络站", roles=[Role.liaison_station], jurisdiction=code)


@pytest.fixture
async def levels(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    services = {}
    try:
        for code in (TAIZHOU, WENLING, ZEGUO):
            service = IntakeService(Settings(jurisdiction=code, nats_url=server.url, data_dir=tmp_path / "data"))
            await service.start()
            services[code] = service
        yield services
    finally:
        for service in services.values():
            await service.stop()
        server.stop()


async def test_a_problem_goes_up_two_levels_and_its_outcome_comes_back(levels):
    zeguo, wenling, taizhou = levels[ZEGUO], levels[WENLING], levels[TAIZHOU]
    problem = MatterData(
        kind=MatterKind.problem,
        title="泽国镇工业园区企业用地指标不足",
        content="园区内三家企业扩产受限，需市级统筹用地指标。",
        lead=Submitter(id="deputy-1", name="王代表"),
        co_signers=[Submitter(id="deputy-2", name="李代表")],
        channel=Channel.liaison_station,
        raised_in=ZEGUO,
        raised_by=RaisedBy(name="温岭某泵业有限公司", contact="0576-0000000"),
    )
    raised = await zeguo.handlers.submit(SubmitMatter(matter=problem), station(ZEGUO), idempotency_key="k1")
    await zeguo.handlers.escalate(EscalateMatter(matter_id=raised.id, reason="超出镇级事权"), staff(ZEGUO))

    at_wenling_id = derived_id(ZEGUO, raised.id, WENLING)

    async def at(service, matter_id, status=None):
        matter = await service.store.load(Matter, matter_id)
        return matter if matter.exists and (status is None or matter.status == status) else None

    at_wenling = await eventually(lambda: at(wenling, at_wenling_id))
    assert at_wenling.origin.jurisdiction == ZEGUO and at_wenling.direction == "up"
    assert [s.id for s in at_wenling.submitters] == ["deputy-1", "deputy-2"]
    await wenling.handlers.escalate(EscalateMatter(matter_id=at_wenling_id, reason="需市级统筹"), staff(WENLING))

    at_taizhou_id = derived_id(WENLING, at_wenling_id, TAIZHOU)
    at_taizhou = await eventually(lambda: at(taizhou, at_taizhou_id))
    assert [hop.jurisdiction for hop in at_taizhou.path] == [ZEGUO, WENLING]
    await taizhou.handlers.register(RegisterMatter(matter_id=at_taizhou_id), staff(TAIZHOU))
    await taizhou.handlers.route(RouteMatter(matter_id=at_taizhou_id, committee="财经工委"), staff(TAIZHOU))
    outcome = Outcome(
        summary="市自然资源和规划局已统筹调剂用地指标 50 亩。", reply_class="A", unit="市自然资源和规划局"
    )
    await taizhou.handlers.record_outcome(RecordOutcome(matter_id=at_taizhou_id, outcome=outcome), staff(TAIZHOU))

    done_at_wenling = await eventually(lambda: at(wenling, at_wenling_id, MatterStatus.closed))
    done_at_zeguo = await eventually(lambda: at(zeguo, raised.id, MatterStatus.closed))
    for matter in (done_at_wenling, done_at_zeguo):
        assert matter.outcome.summary == outcome.summary
        assert matter.handled_in.jurisdiction == TAIZHOU and matter.handled_in.matter_id == at_taizhou_id
    # each level's record shows where the matter went
    assert done_at_zeguo.forwarded_as.jurisdiction == WENLING and done_at_zeguo.forwarded_as.matter_id == at_wenling_id
    assert done_at_wenling.forwarded_as.matter_id == at_taizhou_id
    history = [e.event_type for e in await zeguo.store.history(raised.id)]
    assert history == [
        "intake.MatterSubmitted",
        "intake.MatterEscalated",
        "intake.MatterForwarded",
        "intake.OutcomeRecorded",
    ]
    taizhou_matter = await taizhou.store.load(Matter, at_taizhou_id)
    assert taizhou_matter.registration_no.startswith("台州问〔")


async def test_a_level_cannot_act_on_another_levels_matters(levels):
    zeguo, wenling = levels[ZEGUO], levels[WENLING]
    data = MatterData(
        kind=MatterKind.suggestion,
        title="建议增设公交线路",
        content="城东至泽国。",
        lead=Submitter(id="deputy-9", name="赵代表"),
        channel=Channel.session,
        raised_in=WENLING,
    )
    matter = await wenling.handlers.submit(SubmitMatter(matter=data), station(WENLING))
    with pytest.raises(NotAllowed):
        await wenling.handlers.register(RegisterMatter(matter_id=matter.id), staff(ZEGUO))
    with pytest.raises(NotAllowed):
        await zeguo.handlers.submit(SubmitMatter(matter=data), station(WENLING))
    # the township's own store has no stream of Wenling's matters to read from
    assert not (await zeguo.store.load(Matter, matter.id)).exists


async def test_over_http_a_township_reads_only_its_own_matters(levels):
    settings = Settings()
    apps = {
        code: create_api(settings.model_copy(update={"jurisdiction": code}), handlers=s.handlers, engine=s.engine)
        for code, s in levels.items()
    }
    token = issue_token("station-zeguo", ["liaison_station"], ZEGUO, secret=settings.jwt_secret)
    other_township = issue_token(
        "station-daxi", ["liaison_station", "committee"], "331081101", secret=settings.jwt_secret
    )
    wenling_matter = await levels[WENLING].handlers.submit(
        SubmitMatter(
            matter=MatterData(
                kind=MatterKind.suggestion,
                title="县级事项",
                content="只属于温岭。",
                lead=Submitter(id="d7", name="钱代表"),
                channel=Channel.session,
                raised_in=WENLING,
            )
        ),
        station(WENLING),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(apps[WENLING]), base_url="http://wenling") as wenling:
        for path in ("/matters", f"/matters/{wenling_matter.id}", "/activities"):
            response = await wenling.get(path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 403, path
    async with httpx.AsyncClient(transport=httpx.ASGITransport(apps[ZEGUO]), base_url="http://zeguo") as zeguo:
        assert (await zeguo.get("/matters", headers={"Authorization": f"Bearer {other_township}"})).status_code == 403
        mine = await zeguo.get("/matters", headers={"Authorization": f"Bearer {token}"})
        assert mine.status_code == 200
        assert wenling_matter.id not in mine.text


async def test_a_hand_over_that_comes_again_is_taken_in_once_whenever_it_comes(levels):
    """The inbox appends a handed-over matter without reading it first (it is nearly always new):
    the same hand-over again, at once or after the matter moved on, or sent again under another id,
    adds nothing. (From 大溪镇, which runs no intake here: 温岭市's confirmations wait in its OUTBOX.)"""
    wenling = levels[WENLING]
    data = MatterData(
        kind=MatterKind.problem,
        title="泽国镇园区污水管网改造",
        content="需县级统筹资金。",
        lead=Submitter(id="deputy-1", name="王代表"),
        channel=Channel.liaison_station,
        raised_in=DAXI,
    )
    origin = Hop(jurisdiction=DAXI, matter_id="d-1")
    message = x.MatterHandedOver(matter=data, origin=origin, direction="up", reason="超出镇级事权")
    envelope = Envelope(
        event_id="handed-over-1",
        event_type=message.event_type,
        schema_version=message.schema_version,
        aggregate_type="matter",
        aggregate_id="d-1",
        sequence=2,
        jurisdiction=DAXI,
        occurred_at=utcnow(),
        actor=staff(DAXI).actor(Role.committee),
        correlation_id="c-1",
        payload=message.model_dump(mode="json"),
    )
    taken = await wenling.handlers.take_in(message, envelope)
    again = await wenling.handlers.take_in(message, envelope)  # a redelivery: its commit is there
    assert taken.id == again.id == derived_id(DAXI, "d-1", WENLING) and again.version == taken.version
    await wenling.handlers.escalate(EscalateMatter(matter_id=taken.id, reason="需市级统筹"), staff(WENLING))
    later = await wenling.handlers.take_in(message, envelope)  # after the matter moved on
    resent = await wenling.handlers.take_in(message, envelope.model_copy(update={"event_id": "handed-over-2"}))
    assert later.status == resent.status == MatterStatus.escalated
    history = [e.event_type for e in await wenling.store.history(taken.id)]
    assert history[:2] == ["intake.MatterReceived", "intake.MatterEscalated"]  # (then forwarded to 台州市)
    assert history.count("intake.MatterReceived") == 1
