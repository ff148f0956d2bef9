"""One trace per matter's journey: a problem raised at 泽国镇, escalated to 温岭市 and on to 台州市,
routed there and assigned in tracking, produces spans at every level and service with one trace
id; ``duban trace`` prints that tree with every level in it."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context

from contracts.intake import (
    Channel,
    EscalateMatter,
    MatterData,
    MatterKind,
    RaisedBy,
    RegisterMatter,
    RouteMatter,
    SubmitMatter,
    Submitter,
)
from contracts.tracking import AssignCase, Unit
from services.intake.app import IntakeService
from services.intake.domain import Matter
from services.intake.handlers import derived_id
from services.notify.app import NotifyService
from services.notify.projections import inbox
from services.notify.settings import NotifySettings
from services.runtime.http.auth import Principal, Role
from services.runtime.observe.telemetry import extract_context, tracer
from services.runtime.observe.tracefile import FileSpanExporter
from services.runtime.settings import Settings
from services.runtime.tools.cli import main
from services.runtime.tools.nats_server import EmbeddedNats
from services.tracking.app import TrackingService
from services.tracking.domain import Case
from tests.support.waiting import eventually

TAIZHOU, WENLING, ZEGUO = "331000", "331081", "331081100"


STATION = Principal(sub="station-1", name="泽国镇代表联络站", roles=[Role.liaison_station], jurisdiction=ZEGUO)


def staff(code: str) -> Principal:
    return Principal(sub=f"committee-{code}", name="工委", roles=[Role.committee], jurisdiction=code)


async def arrived(level: IntakeService, matter_id: str) -> bool:
    """Whether ``matter_id`` has been taken in at ``level``'s intake."""
    return (await level.handlers.store.load(Matter, matter_id)).exists


@pytest.fixture
async def system(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    running = []
    try:
        intake = {}
        for code in (TAIZHOU, WENLING, ZEGUO):
            settings = Settings(jurisdiction=code, nats_url=server.url, data_dir=tmp_path / "data")
            intake[code] = IntakeService(settings)
            await intake[code].start()
            running.append(intake[code])
        tracking = TrackingService(Settings(jurisdiction=TAIZHOU, nats_url=server.url, data_dir=tmp_path / "data"))
        await tracking.start(sweep=False)
        running.append(tracking)
        notify = NotifyService(NotifySettings(jurisdiction=TAIZHOU, nats_url=server.url, data_dir=tmp_path / "data"))
        await notify.start(sweep=False)
        running.append(notify)
        yield intake, tracking, notify
    finally:
        for service in reversed(running):
            await service.stop()
        server.stop()


async def test_an_escalated_problem_is_one_trace_across_levels_and_services(system, spans, tmp_path, capsys):
    intake, tracking, notify = system
    spans.clear()
    problem = MatterData(
        kind=MatterKind.problem,
        title="泽国镇企业用地指标不足",
        content="三家企业扩产受限，需市级统筹用地指标。",
        lead=Submitter(id="deputy-1", name="王代表"),
        channel=Channel.liaison_station,
        raised_in=ZEGUO,
        raised_by=RaisedBy(name="温岭某泵业有限公司"),
    )
    raised = await intake[ZEGUO].handlers.submit(SubmitMatter(matter=problem), STATION)
    await intake[ZEGUO].handlers.register(RegisterMatter(matter_id=raised.id), staff(ZEGUO))
    await intake[ZEGUO].handlers.escalate(EscalateMatter(matter_id=raised.id, reason="超出镇级事权"), staff(ZEGUO))

    at_wenling = derived_id(ZEGUO, raised.id, WENLING)
    await eventually(lambda: arrived(intake[WENLING], at_wenling))
    await intake[WENLING].handlers.register(RegisterMatter(matter_id=at_wenling), staff(WENLING))
    await intake[WENLING].handlers.escalate(EscalateMatter(matter_id=at_wenling, reason="需市级统筹"), staff(WENLING))
    at_taizhou = derived_id(WENLING, at_wenling, TAIZHOU)
    await eventually(lambda: arrived(intake[TAIZHOU], at_taizhou))
    await intake[TAIZHOU].handlers.register(RegisterMatter(matter_id=at_taizhou), staff(TAIZHOU))
    await intake[TAIZHOU].handlers.route(RouteMatter(matter_id=at_taizhou, committee="财经工委"), staff(TAIZHOU))

    async def case_opened():
        return (await tracking.handlers.store.load(Case, at_taizhou)).exists

    await eventually(case_opened)
    lead = Unit(id="unit-land", name="台州市自然资源和规划局")
    await tracking.handlers.assign(AssignCase(case_id=at_taizhou, lead_unit=lead, committee="财经工委"), staff(TAIZHOU))

    async def notice_sent():
        return [n for n in await inbox(notify.engine, [lead.id]) if n["kind"] == "assignment"]

    await eventually(notice_sent)  # the 交办通知 to the lead unit
    for service in (*intake.values(), tracking, notify):
        await service.wait_idle()

    finished = list(spans.get_finished_spans())
    journey_trace = raised.journey["traceparent"].split("-")[1]
    ours = [s for s in finished if f"{s.context.trace_id:032x}" == journey_trace]
    seen = {(s.attributes.get("duban.service"), s.attributes.get("duban.jurisdiction")) for s in ours}
    for code in (ZEGUO, WENLING, TAIZHOU):
        assert ("intake", code) in seen, (code, sorted(seen, key=str))
    assert ("tracking", TAIZHOU) in seen
    assert ("notify", TAIZHOU) in seen
    names = {s.name for s in ours}
    assert "tracking case command" in names  # the assignment, asked for later, continues the journey
    assert any(name.startswith("receive duban.x.") for name in names)  # hand-overs between levels
    assert any(name.startswith("process duban.evt.") for name in names)  # projections
    ids = {s.context.span_id for s in ours}
    orphans = [s.name for s in ours if s.parent is not None and s.parent.span_id not in ids and not s.links]
    assert len(orphans) <= 1, orphans  # the journey's first span hangs off the test's own context at most

    FileSpanExporter(tmp_path / "traces" / "all-331000.jsonl").export(finished)
    assert main(["trace", raised.id, "--data-dir", str(tmp_path)]) == 0
    tree = capsys.readouterr().out
    assert tree.count(f"trace {journey_trace}") == 1
    for code in (ZEGUO, WENLING, TAIZHOU):
        assert f"intake     {code}" in tree, tree
    assert f"tracking   {TAIZHOU}" in tree
    assert f"notify     {TAIZHOU}" in tree


async def test_a_journey_begun_under_another_systems_unsampled_trace_is_still_recorded(system, spans):
    """A portal that samples its own traces sends ``traceparent`` with "not sampled" (flags 00):
    duban joins that trace, yet records its own spans of the matter at every level, as the journey
    carries the caller's context on to every later command."""
    intake, _, _ = system
    spans.clear()
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    problem = MatterData(
        kind=MatterKind.problem,
        title="泽国镇工业园区排水不畅",
        content="雨季园区道路积水，企业货车无法进出。",
        lead=Submitter(id="deputy-1", name="王代表"),
        channel=Channel.liaison_station,
        raised_in=ZEGUO,
    )
    token = otel_context.attach(extract_context({"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-00"}))
    try:
        raised = await intake[ZEGUO].handlers.submit(SubmitMatter(matter=problem), STATION)
    finally:
        otel_context.detach(token)
    await intake[ZEGUO].handlers.register(RegisterMatter(matter_id=raised.id), staff(ZEGUO))
    await intake[ZEGUO].handlers.escalate(EscalateMatter(matter_id=raised.id, reason="超出镇级事权"), staff(ZEGUO))
    at_wenling = derived_id(ZEGUO, raised.id, WENLING)
    await eventually(lambda: arrived(intake[WENLING], at_wenling))
    for service in intake.values():
        await service.wait_idle()

    assert raised.journey["traceparent"].split("-")[1] == caller_trace  # the caller's trace, joined
    ours = [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == caller_trace]
    seen = {(s.attributes.get("duban.service"), s.attributes.get("duban.jurisdiction")) for s in ours}
    assert {("intake", ZEGUO), ("intake", WENLING)} <= seen, sorted(seen, key=str)
    assert all(s.context.trace_flags.sampled for s in ours)


async def test_a_number_from_the_registration_book_is_part_of_the_registration_that_asks(system, spans):
    """The book of numbers is shared by every registration of a year: a number taken is in the
    trace of the request that asked for it, not in the trace of the year's first registration,
    which would otherwise gather every registration of the year (one trace of thousands of spans
    in a collector)."""
    intake, _, _ = system
    spans.clear()
    requests = []
    for n in (1, 2):
        data = MatterData(
            kind=MatterKind.suggestion,
            title=f"关于第{n}号道路改造的建议",
            content="路面破损，建议尽快修复。",
            lead=Submitter(id="deputy-1", name="王代表"),
            channel=Channel.liaison_station,
            raised_in=ZEGUO,
        )
        matter = await intake[ZEGUO].handlers.submit(SubmitMatter(matter=data), STATION)
        with tracer().start_as_current_span("POST /matters/{matter_id}/register") as request:
            await intake[ZEGUO].handlers.register(RegisterMatter(matter_id=matter.id), staff(ZEGUO))
        requests.append(request.get_span_context().trace_id)

    finished = list(spans.get_finished_spans())
    book = [s for s in finished if s.attributes.get("duban.aggregate.type") == "registration_book"]
    assert len(book) == 4, [s.name for s in book]  # each registration: the book's command and its append
    assert sorted({s.context.trace_id for s in book}) == sorted(requests)
    for trace_id in requests:
        ids = {s.context.span_id for s in finished if s.context.trace_id == trace_id}
        taken = [s for s in book if s.context.trace_id == trace_id]
        assert len(taken) == 2 and all(s.parent is not None and s.parent.span_id in ids for s in taken)
