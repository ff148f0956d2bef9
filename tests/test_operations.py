"""What operators see and do: a projection's lag in /metrics and /status, dead letters listed with
their error and replayed once by the service that failed them, and a matter's journey read back
from the span files."""

from __future__ import annotations

import asyncio
import json

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from contracts import subjects
from services.runtime.bus.consumer import DurableWorker
from services.runtime.bus.deadletters import discard_dead_letter, list_dead_letters
from services.runtime.bus.replay import ReplayResponder, replay_subject
from services.runtime.es.eventstore import EventStore
from services.runtime.http.app import health_router, readiness_router
from services.runtime.observe.metrics import Watched, metrics_router, status
from services.runtime.observe.tracefile import FileSpanExporter, journey, read_spans, render
from services.runtime.settings import Settings
from services.runtime.tools.cli import main
from services.runtime.tools.ports import free_port
from tests.support.sample import Counter, Incremented, counter_projector

HERE = "331081"


async def test_a_stopped_projection_shows_its_lag_which_returns_to_zero_after_it_resumes(nc, unique, engine, capsys):
    store = EventStore(nc, context=unique, jurisdiction=HERE)
    await store.ensure_streams()
    projector = counter_projector(nc, engine, context=unique, jurisdiction=HERE)
    await projector.prepare()  # its consumer exists, but it is not running
    for i in range(30):
        counter = await store.load(Counter, f"c{i % 3}")
        await store.append(counter, [Incremented(by=1)])
    watched = Watched(
        consumers=[(projector.stream, projector.durable)],
        streams=[projector.stream],
        checkpoints={projector.durable: lambda: _position(engine, projector)},
    )
    app = FastAPI()
    app.include_router(health_router())
    app.include_router(readiness_router(_ready))
    app.include_router(metrics_router(lambda: nc.jetstream(), lambda: watched))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        lagging = await status(nc.jetstream(), watched)
        assert lagging["consumers"][0]["lag"] == 30 and lagging["consumers"][0]["checkpoint"] == 0
        # what an operator runs: `duban status` (the command line, in its own thread and loop)
        assert await asyncio.to_thread(main, ["status", "--url", f"http://127.0.0.1:{port}", "--json"]) == 0
        [row] = json.loads(capsys.readouterr().out)
        assert row["healthy"] and row["consumers"][0]["lag"] == 30
        text = (await http.get("/metrics")).text
        assert f'duban_consumer_lag{{consumer="{projector.durable}",stream="{projector.stream}"}} 30.0' in text
        assert f'duban_stream_messages{{stream="{projector.stream}"}} 30.0' in text

        await projector.catch_up(timeout=30)
        caught_up = (await http.get("/status")).json()
        assert caught_up["consumers"][0]["lag"] == 0 and caught_up["consumers"][0]["checkpoint"] == 30
        assert (
            f'duban_consumer_lag{{consumer="{projector.durable}",stream="{projector.stream}"}} 0.0'
            in (await http.get("/metrics")).text
        )
        assert await asyncio.to_thread(main, ["status", "--url", f"http://127.0.0.1:{port}"]) == 0
        assert f"consumer {projector.durable}" in capsys.readouterr().out
    server.should_exit = True
    await serving
    await projector.close()


async def _ready() -> list:
    return []


async def _position(engine, projector):
    from services.runtime.read.projector import read_position

    return await read_position(engine, projector.projection.name)


async def test_a_dead_letter_is_listed_with_its_error_and_replayed_once_after_the_fix(nc, unique):
    stream = f"WORK_{unique}"
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{unique}.work.>"])
    handled: list[bytes] = []
    broken = {"now": True}

    async def handle(msg) -> None:
        if broken["now"]:
            raise ConnectionError("receiver down: 503 Service Unavailable")
        handled.append(msg.data)

    settings = Settings(jurisdiction=HERE, max_deliver=2)
    worker = DurableWorker(
        nc,
        stream=stream,
        durable=f"sender_{unique}",
        handle=handle,
        jurisdiction=HERE,
        context=unique,
        span_name="send",
        settings=settings,
    )
    await worker.prepare()
    await js.publish(f"{unique}.work.1", b"notice-1", headers={"Nats-Msg-Id": f"{unique}-1"})
    async with asyncio.timeout(30):
        while not await list_dead_letters(js, HERE, context=unique):
            await worker.step(timeout=0.2)
    [letter] = await list_dead_letters(js, HERE, context=unique)
    assert letter.consumer == worker.durable and letter.original_subject == f"{unique}.work.1"
    assert letter.attempts == 2 and "503 Service Unavailable" in letter.error
    assert letter.data == b"notice-1"

    responder = ReplayResponder(nc, jurisdiction=HERE, context=unique, handlers={worker.durable: handle})
    await responder.start()
    request = json.dumps({"sequence": letter.sequence}).encode()
    failed = json.loads((await nc.request(replay_subject(HERE, unique), request, timeout=10)).data)
    assert failed["ok"] is False and "503" in failed["error"]  # still broken: the letter stays
    assert len(await list_dead_letters(js, HERE, context=unique)) == 1

    broken["now"] = False
    replayed = json.loads((await nc.request(replay_subject(HERE, unique), request, timeout=10)).data)
    assert replayed == {"ok": True, "sequence": letter.sequence, "consumer": worker.durable}
    again = json.loads((await nc.request(replay_subject(HERE, unique), request, timeout=10)).data)
    assert again["ok"] is False  # gone: a second replay delivers nothing
    assert handled == [b"notice-1"]
    assert await list_dead_letters(js, HERE, context=unique) == []
    assert await discard_dead_letter(js, HERE, letter.sequence) is False
    await responder.stop()
    await worker.close()


def test_the_journey_of_a_matter_is_read_back_from_the_span_files_as_one_tree(tmp_path):
    provider = TracerProvider()
    exporter = FileSpanExporter(tmp_path / "intake-331081100.jsonl")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /matters/{matter_id}/escalate"):
        with tracer.start_as_current_span("intake matter command", attributes={"duban.aggregate.id": "m-1"}):
            with tracer.start_as_current_span("send duban.evt.intake.{jurisdiction}.{aggregate_id}"):
                pass
        carrier = trace.get_current_span().get_span_context()
    with tracer.start_as_current_span("unrelated"):
        pass
    with tracer.start_as_current_span("POST /cases/{case_id}/assign") as request:
        assert request.get_span_context().trace_id != carrier.trace_id
        with tracer.start_as_current_span("tracking case command", links=[trace.Link(carrier)]):
            pass

    # a projection's batch (a trace of its own) linked to the appends it applied, m-1's among them
    batch = {"messaging.batch.message_count": 3}
    with tracer.start_as_current_span("process duban.evt.intake", links=[trace.Link(carrier)], attributes=batch):
        pass
    # a request that registered m-1 linked to a trace that another matter's request is linked to
    # too (the registration book's own trace, as span files before it had none show it): that
    # other matter is not m-1's
    with tracer.start_as_current_span("intake registration_book command") as book:
        book_context = book.get_span_context()
    with tracer.start_as_current_span("POST /matters/{matter_id}/register", links=[trace.Link(carrier)]):
        with tracer.start_as_current_span("book again", links=[trace.Link(book_context)]):
            pass
    with tracer.start_as_current_span("POST /matters/m-2/register", links=[trace.Link(book_context)]):
        with tracer.start_as_current_span("other matter", attributes={"duban.aggregate.id": "m-2"}):
            pass
    provider.shutdown()

    roots = journey(read_spans(tmp_path), "m-1")
    text = render(roots)
    assert "unrelated" not in text
    assert "intake matter command" in text and "send duban.evt.intake" in text
    assert "tracking case command" in text  # linked to the journey's trace, so found from it
    assert "other matter" not in text  # not followed through the shared book
    assert "process duban.evt.intake [batch of 3]" in text
    lines = text.splitlines()
    assert lines[0].startswith("trace ") and lines[1].strip().split()[2] == "POST"


def test_duban_dead_letters_lists_shows_and_discards_from_the_command_line(nats_url, capsys):
    import nats as nats_client

    from services.runtime.bus.deadletters import dead_letter, ensure_deadletter_stream
    from services.runtime.tools.cli import main

    async def store_one() -> int:
        nc = await nats_client.connect(nats_url)
        try:
            js = nc.jetstream()
            await ensure_deadletter_stream(js, "331081100")
            sequence = await dead_letter(
                js,
                jurisdiction="331081100",
                context="notify",
                consumer="webhook_sender",
                subject="duban.evt.tracking.331081100.m1",
                stream="TRACKING_331081100",
                sequence=abs(hash(nats_url)) % 10_000_000,
                data=b'{"notice": 1}',
                headers={},
                attempts=5,
                # Chinese, quotes and a backslash: stored as an ASCII header, read back as written
                error=ConnectionError('推送失败："HTTP 500" from https://example.invalid/hook\\x'),
            )
            # NATS headers are ASCII: a non-ASCII value would come back from a stream get as an
            # email.header.Header object, not text
            raw = await js.get_msg(subjects.deadletter_stream("331081100"), seq=sequence)
            assert isinstance(raw.headers["Duban-Error"], str) and raw.headers["Duban-Error"].isascii()
            return sequence
        finally:
            await nc.close()

    sequence = asyncio.run(store_one())
    assert main(["dead-letters", "list", "--jurisdiction", "331081100", "--nats", nats_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    mine = next(letter for letter in listed if letter["sequence"] == sequence)
    assert mine["consumer"] == "webhook_sender" and mine["attempts"] == 5
    assert mine["error"] == 'ConnectionError: 推送失败："HTTP 500" from https://example.invalid/hook\\x'
    assert main(["dead-letters", "list", "--jurisdiction", "331081100", "--nats", nats_url]) == 0
    assert "推送失败" in capsys.readouterr().out  # the table an operator reads
    assert main(["dead-letters", "show", str(sequence), "--jurisdiction", "331081100", "--nats", nats_url]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == '{"notice": 1}'
    assert main(["dead-letters", "discard", str(sequence), "--jurisdiction", "331081100", "--nats", nats_url]) == 0
    capsys.readouterr()
    assert main(["dead-letters", "show", str(sequence), "--jurisdiction", "331081100", "--nats", nats_url]) == 1
