"""The committed contracts (JSON Schemas, AsyncAPI) match the code; old event versions stay readable."""

from __future__ import annotations

import json
import sys
import uuid
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

import pytest
from faststream.nats import NatsBroker

from contracts.envelope import Envelope
from contracts.events import Event, UnknownEventType, event, event_types, upcast, upcaster
from contracts.subjects import CONTEXTS
from services.runtime.tools import schema_export
from services.runtime.tools.cli import main

FIX = "run `duban contracts export` and commit contracts/schemas/"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("schemas")
    schema_export.write(out)
    return out


@pytest.fixture(scope="module")
def asyncapi(exported) -> dict:
    return json.loads((exported / schema_export.ASYNCAPI_FILE).read_text(encoding="utf-8"))


def test_committed_schemas_are_what_the_code_generates(exported):
    generated = schema_export.managed_files(exported)
    committed = schema_export.managed_files(schema_export.SCHEMAS_DIR)
    missing = sorted(generated.keys() - committed.keys())
    stale = sorted(committed.keys() - generated.keys())
    assert not missing, f"generated but not committed: {missing}; {FIX}"
    assert not stale, f"committed but no longer generated: {stale}; {FIX}"
    for path, text in generated.items():
        assert committed[path] == text, f"contracts/schemas/{path} differs from what the code generates; {FIX}"


def test_export_is_deterministic(exported):
    assert schema_export.generate() == schema_export.managed_files(exported)


def test_asyncapi_document_has_the_event_channels_of_every_context(asyncapi):
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"] == "duban"
    assert "督办" in asyncapi["info"]["description"]
    addresses = {channel["address"] for channel in asyncapi["channels"].values()}
    for context in CONTEXTS:
        assert f"duban.evt.{context}.{{jurisdiction}}.{{aggregate_id}}" in addresses
    assert "duban.x.{to}.{from}.{kind}" in addresses
    assert "duban.dlq.{jurisdiction}.{context}.{consumer}" in addresses


def test_event_messages_are_envelope_lists_with_their_headers(asyncapi):
    message = asyncapi["components"]["messages"]["intake events:Message"]
    assert {"Nats-Msg-Id", "Duban-Event-Types", "Duban-Prev-Seq", "traceparent"} <= set(
        message["headers"]["properties"]
    )
    payload = asyncapi["components"]["schemas"]["intake events:Message:Payload"]
    assert payload["type"] == "array"
    assert payload["items"] == {"$ref": "#/components/schemas/Envelope"}


def test_events_registered_outside_contracts_are_not_exported(exported):
    import tests.support.sample  # noqa: F401  (registers sample.* events)

    assert any(name.startswith("sample.") for name, _ in event_types())
    files = schema_export.generate()
    leaked = [path for path in files if path.startswith(("events/sample.", "events/test."))]
    assert not leaked
    assert "sample." not in files[schema_export.ASYNCAPI_FILE]


def test_envelope_schema_is_exported(exported):
    schema = json.loads((exported / schema_export.ENVELOPE_FILE).read_text(encoding="utf-8"))
    assert schema["title"] == "Envelope"
    assert set(schema["required"]) >= {"event_id", "event_type", "schema_version", "aggregate_id", "payload"}
    assert set(schema["properties"]) == set(Envelope.model_fields)


def test_a_service_broker_is_included_in_the_asyncapi_document(monkeypatch):
    broker = NatsBroker()

    @broker.subscriber("duban.evt.intake.*.*", title="fake projection")
    async def project(commit: list[Envelope]) -> None: ...

    package, app = ModuleType("services.fake_service"), ModuleType("services.fake_service.app")
    package.__path__ = []
    package.__spec__ = ModuleSpec("services.fake_service", None, is_package=True)
    app.__spec__ = ModuleSpec("services.fake_service.app", None)
    app.asyncapi_broker = lambda: broker
    monkeypatch.setitem(sys.modules, "services.fake_service", package)
    monkeypatch.setitem(sys.modules, "services.fake_service.app", app)
    monkeypatch.setattr(schema_export, "SERVICE_PACKAGES", ("fake_service", "not_written_yet"))

    document = schema_export.asyncapi_document()

    assert document["operations"]["fake projection"]["action"] == "receive"


def test_check_fails_until_export_and_export_removes_stale_files(tmp_path, capsys):
    assert main(["contracts", "check", "--out", str(tmp_path)]) == 1
    assert "duban contracts export" in capsys.readouterr().err

    (tmp_path / "events").mkdir()
    stale = tmp_path / "events" / "intake.Renamed.v1.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert main(["contracts", "export", "--out", str(tmp_path)]) == 0
    assert not stale.exists()
    assert main(["contracts", "check", "--out", str(tmp_path)]) == 0

    envelope = tmp_path / schema_export.ENVELOPE_FILE
    envelope.write_text(envelope.read_text(encoding="utf-8").replace('"Envelope"', '"Envelop"'), encoding="utf-8")
    assert main(["contracts", "check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "changed: envelope.json" in out
    assert '+  "title": "Envelope"' in out


def test_an_old_event_version_is_read_as_the_current_class():
    # unique names: the registry is process-wide and refuses a second class for a current type
    name = f"test.Renamed{uuid.uuid4().hex[:8]}"

    @event(name, 1, current=False)
    class RenamedV1(Event):
        title: str

    @event(name, 2)
    class Renamed(Event):
        name: str
        note: str = ""

    @upcaster(name, 1)
    def _v1_to_v2(payload: dict) -> dict:
        return {"name": payload["title"]}

    assert event_types()[(name, 1)] is RenamedV1
    read = upcast(name, 1, {"title": "泽国镇 road repair"})
    assert isinstance(read, Renamed)
    assert read == Renamed(name="泽国镇 road repair")
    assert upcast(name, 2, {"name": "x", "note": "y"}) == Renamed(name="x", note="y")
    with pytest.raises(UnknownEventType):
        upcast(name, 3, {"name": "from the future"})
