"""Export the contracts as files: JSON Schema per event and command, the envelope, and AsyncAPI.

The files are committed under ``contracts/schemas/`` so that other systems (and reviewers) can
read duban's public language without running Python, and a test fails when they no longer match
the code (``duban contracts export`` rewrites them, ``duban contracts check`` compares)::

    contracts/schemas/
      envelope.json                          the Envelope model
      events/<event_type>.v<version>.json    every registered event, current and old versions
      commands/<command_type>.json           every registered command
      asyncapi.json                          the subjects, from the services' FastStream brokers

Only classes defined in the ``contracts`` package are exported: tests and services may register
events of their own, which are not part of the public language. Output is deterministic (sorted
keys, two-space indent, UTF-8, final newline), so the files diff well.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import json
import pkgutil
from pathlib import Path
from typing import Any

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import contracts
from contracts.envelope import Envelope
from contracts.events import command_types, event_class, event_types

from . import asyncapi as runtime_asyncapi

__all__ = [
    "ASYNCAPI_FILE",
    "ENVELOPE_FILE",
    "SCHEMAS_DIR",
    "SERVICE_PACKAGES",
    "asyncapi_document",
    "compare",
    "generate",
    "load_contracts",
    "managed_files",
    "write",
]

#: Where the committed files live: ``contracts/schemas/`` of the repository.
SCHEMAS_DIR = Path(contracts.__file__).parent / "schemas"
#: Service packages whose ``app.asyncapi_broker()`` contributes to the AsyncAPI document.
SERVICE_PACKAGES = ("intake", "tracking", "evaluation", "notify", "directory")

ENVELOPE_FILE = "envelope.json"
ASYNCAPI_FILE = "asyncapi.json"
EVENTS_DIR = "events"
COMMANDS_DIR = "commands"
#: Folders whose every file is generated: a file no longer generated there is removed.
_MANAGED_DIRS = (EVENTS_DIR, COMMANDS_DIR)
_TOP_LEVEL_FILES = (ENVELOPE_FILE, ASYNCAPI_FILE)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
DESCRIPTION = (
    "duban (督办): deputies' motions, suggestions, proposals and problems followed from intake to "
    "evaluation across Taizhou's three levels of people's congresses. Every change is an event "
    "stored in NATS JetStream, one subject per aggregate; levels exchange integration events "
    "through outbox and inbox streams. Event payloads are described by the JSON Schemas next to "
    "this document (events/<event_type>.v<version>.json)."
)


def render(document: Any) -> str:
    """The one JSON text form of every exported file."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def load_contracts() -> None:
    """Import every module of the ``contracts`` package, so that all its classes are registered."""
    for module in pkgutil.walk_packages(contracts.__path__, prefix=f"{contracts.__name__}."):
        importlib.import_module(module.name)


def _is_contract(cls: type) -> bool:
    return cls.__module__.startswith(f"{contracts.__name__}.")


def _model_schema(model: type[BaseModel], file: str, **metadata: Any) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.update({"$schema": JSON_SCHEMA_DIALECT, "$id": file, **metadata})
    return schema


def event_file(event_type: str, version: int) -> str:
    return f"{EVENTS_DIR}/{event_type}.v{version}.json"


def command_file(command_type: str) -> str:
    return f"{COMMANDS_DIR}/{command_type}.json"


def _schema_files() -> dict[str, Any]:
    documents: dict[str, Any] = {
        ENVELOPE_FILE: _model_schema(Envelope, ENVELOPE_FILE, title="Envelope"),
    }
    for (event_type, version), cls in event_types().items():
        if _is_contract(cls):
            file = event_file(event_type, version)
            documents[file] = _model_schema(
                cls, file, title=event_type, **{"x-event-type": event_type, "x-schema-version": version}
            )
    for command_type, cls in command_types().items():
        if _is_contract(cls):
            file = command_file(command_type)
            documents[file] = _model_schema(cls, file, title=command_type, **{"x-command-type": command_type})
    return documents


def service_brokers() -> list[NatsBroker]:
    """The runtime's broker, then ``services.<name>.app.asyncapi_broker()`` of each service that has one.

    A service package that does not exist yet is skipped; one that exists but fails to import
    raises, so that a broken service cannot silently drop out of the document.
    """
    brokers = [runtime_asyncapi.asyncapi_broker()]
    for name in SERVICE_PACKAGES:
        module_name = f"services.{name}.app"
        try:
            found = importlib.util.find_spec(module_name)
        except ModuleNotFoundError:  # the service package itself is not there
            found = None
        if found is None:
            continue
        factory = getattr(importlib.import_module(module_name), "asyncapi_broker", None)
        if callable(factory):
            brokers.append(factory())
    return brokers


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every broker of :func:`service_brokers`, as plain JSON data."""
    spec = AsyncAPI(
        *service_brokers(),
        title="duban",
        version=importlib.metadata.version("duban"),
        description=DESCRIPTION,
        schema_version=ASYNCAPI_VERSION,
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    # What FastStream's generator cannot say about the runtime's messages (headers, correlation id).
    messages = document.get("components", {}).get("messages", {})
    for title, fields in runtime_asyncapi.MESSAGE_FIELDS.items():
        message = messages.get(f"{title}:Message")
        if message is not None:
            message.update(fields)
    _add_event_payloads(document)
    return document


def _add_event_payloads(document: dict[str, Any]) -> None:
    """Each event channel's message names the events an envelope's ``payload`` may hold, at their
    current version, with their schemas in ``components.schemas`` (a matter's ``body``, 人大 or 政协,
    included): ``x-events: {event_type: {schemaVersion, payload: {$ref}}}``. Older versions are in
    contracts/schemas/events, read through the upcasters."""
    current = sorted(
        (event_type, version, cls)
        for (event_type, version), cls in event_types().items()
        if _is_contract(cls) and event_class(event_type) is cls
    )
    refs, top = models_json_schema(
        [(cls, "validation") for _, _, cls in current], ref_template="#/components/schemas/{model}"
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(dict(sorted(top.get("$defs", {}).items())))
    messages = document["components"].get("messages", {})
    for context in {event_type.split(".", 1)[0] for event_type, _, _ in current}:
        title = runtime_asyncapi.OUTBOX_TITLE if context == "x" else runtime_asyncapi.event_channel_title(context)
        message = messages.get(f"{title}:Message")
        if message is None:
            continue
        message["x-events"] = {
            event_type: {"schemaVersion": version, "payload": refs[(cls, "validation")]}
            for event_type, version, cls in current
            if event_type.split(".", 1)[0] == context
        }


def generate() -> dict[str, str]:
    """Every exported file: its path relative to the schemas folder, and its text."""
    load_contracts()
    documents = _schema_files()
    documents[ASYNCAPI_FILE] = asyncapi_document()
    return {path: render(documents[path]) for path in sorted(documents)}


def managed_files(folder: Path) -> dict[str, str]:
    """The files in ``folder`` that the export owns (and their text): what :func:`compare` reads."""
    found: dict[str, str] = {}
    for name in _TOP_LEVEL_FILES:
        if (folder / name).is_file():
            found[name] = (folder / name).read_text(encoding="utf-8")
    for sub in _MANAGED_DIRS:
        if (folder / sub).is_dir():
            for path in sorted((folder / sub).iterdir()):
                if path.is_file():
                    found[f"{sub}/{path.name}"] = path.read_text(encoding="utf-8")
    return dict(sorted(found.items()))


def write(out: Path = SCHEMAS_DIR, files: dict[str, str] | None = None) -> list[str]:
    """Write the export into ``out`` and remove managed files no longer generated.

    Returns what changed, one ``"<verb> <path>"`` line per file (``written``, ``removed``).
    """
    files = generate() if files is None else files
    out.mkdir(parents=True, exist_ok=True)
    changes: list[str] = []
    existing = managed_files(out)
    for path, text in files.items():
        if existing.get(path) != text:
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            changes.append(f"written {path}")
    for path in existing.keys() - files.keys():
        (out / path).unlink()
        changes.append(f"removed {path}")
    return sorted(changes, key=lambda line: line.split(" ", 1)[1])


def compare(committed: Path = SCHEMAS_DIR, files: dict[str, str] | None = None, *, context: int = 3) -> list[str]:
    """How the files in ``committed`` differ from the export: a report, empty when they agree.

    Missing and stale files are named; changed ones come with a unified diff.
    """
    files = generate() if files is None else files
    existing = managed_files(committed)
    report: list[str] = []
    for path in sorted(files.keys() | existing.keys()):
        old, new = existing.get(path), files.get(path)
        if old == new:
            continue
        if old is None:
            report.append(f"missing: {path} (generated, not committed)")
        elif new is None:
            report.append(f"stale: {path} (committed, no longer generated)")
        else:
            report.append(f"changed: {path}")
            report.extend(
                line.rstrip("\n")
                for line in difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"committed/{path}",
                    tofile=f"generated/{path}",
                    n=context,
                )
            )
    return report
