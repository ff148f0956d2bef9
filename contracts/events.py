"""Events and commands as data, with a registry by name and schema version, and upcasting.

An event class declares its ``event_type`` (``"<context>.<EventName>"``) and ``schema_version``.
When a payload's shape changes, the old class stays registered under its version only for
schema export, and an upcaster turns a stored old payload into the next version's shape, so an
event stored years ago is still read as the current class. Events are never edited.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "Command",
    "Event",
    "UnknownEventType",
    "command",
    "command_types",
    "event",
    "event_class",
    "event_types",
    "refuse_control_characters",
    "upcast",
    "upcaster",
]


class UnknownEventType(LookupError):
    """A stored event whose type or version no registered class or upcaster can read."""


class Event(BaseModel):
    """Base of every domain and integration event: a payload, named in the past tense."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


def _control_character(text: str) -> str | None:
    """The first control character of ``text`` other than newline and tab (a CRLF counts as a
    newline), as ``\\x1b``; None when there is none."""
    for char in text.replace("\r\n", "\n"):
        if char not in "\n\t" and unicodedata.category(char) == "Cc":
            return f"\\x{ord(char):02x}"
    return None


def refuse_control_characters(value: Any, where: str = "") -> Any:
    """``value`` (a command's input, walked through), with CRLF as newlines; refuses any other
    control character (NUL, escape sequences…) in any text, naming the field: text people type
    has none, and in logs, exports and pages they only deceive."""
    if isinstance(value, str):
        found = _control_character(value)
        if found is not None:
            raise ValueError(f"{where or '内容'} 含有不可见的控制字符（{found}），请删除后重试")
        return value.replace("\r\n", "\n") if "\r\n" in value else value
    if isinstance(value, dict):
        return {
            key: refuse_control_characters(item, f"{where}.{key}" if where else str(key)) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [refuse_control_characters(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


class Command(BaseModel):
    """Base of every command: an imperative request that a handler may refuse. Text in it may
    hold newlines and tabs but no other control character (``refuse_control_characters``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    command_type: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        return refuse_control_characters(data)


_EVENTS: dict[str, type[Event]] = {}
_OLD_EVENTS: dict[tuple[str, int], type[Event]] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}
_COMMANDS: dict[str, type[Command]] = {}

E = TypeVar("E", bound=type[Event])
C = TypeVar("C", bound=type[Command])


def event(event_type: str, version: int = 1, *, current: bool = True) -> Callable[[E], E]:
    """Register an event class under ``event_type`` and ``version``.

    ``current=False`` keeps an old version's class for the schema export only.
    """

    def register(cls: E) -> E:
        cls.event_type = event_type
        cls.schema_version = version
        if current:
            existing = _EVENTS.get(event_type)
            if existing is not None and existing is not cls:
                raise ValueError(f"event type {event_type} registered twice")
            _EVENTS[event_type] = cls
        else:
            _OLD_EVENTS[(event_type, version)] = cls
        return cls

    return register


def upcaster(event_type: str, from_version: int):
    """Register a function that turns a payload of ``from_version`` into ``from_version + 1``."""

    def register(fn: Callable[[dict[str, Any]], dict[str, Any]]):
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def event_class(event_type: str) -> type[Event]:
    try:
        return _EVENTS[event_type]
    except KeyError:
        raise UnknownEventType(f"no event class registered for {event_type!r}") from None


def upcast(event_type: str, version: int, payload: dict[str, Any]) -> Event:
    """Read a stored payload of any published version as the current event class."""
    cls = event_class(event_type)
    if version > cls.schema_version:
        raise UnknownEventType(f"{event_type} v{version} is newer than this code knows (v{cls.schema_version})")
    while version < cls.schema_version:
        try:
            payload = _UPCASTERS[(event_type, version)](payload)
        except KeyError:
            raise UnknownEventType(f"no upcaster for {event_type} from v{version}") from None
        version += 1
    return cls.model_validate(payload)


def event_types() -> dict[tuple[str, int], type[Event]]:
    """Every registered event class, current and old, by (type, version)."""
    found = {(name, cls.schema_version): cls for name, cls in _EVENTS.items()}
    found.update(_OLD_EVENTS)
    return dict(sorted(found.items()))


def command(command_type: str) -> Callable[[C], C]:
    """Register a command class under its name (``"<context>.<CommandName>"``)."""

    def register(cls: C) -> C:
        cls.command_type = command_type
        existing = _COMMANDS.get(command_type)
        if existing is not None and existing is not cls:
            raise ValueError(f"command type {command_type} registered twice")
        _COMMANDS[command_type] = cls
        return cls

    return register


def command_types() -> dict[str, type[Command]]:
    return dict(sorted(_COMMANDS.items()))
