"""Jurisdiction registry: 台州市, its counties and their townships.

Three levels of people's congresses take part in 督办: the prefecture (台州市), the counties
(districts and county-level cities) and the townships (subdistricts 街道 and towns 镇). Every
jurisdiction has a stable code:

* prefecture and county: the 6-digit administrative division code (e.g. ``331081`` 温岭市);
* township: 9 digits, the county code followed by 3 digits in the pattern of the statistical
  division codes (``001``-``099`` subdistricts, ``100`` and above towns), e.g. ``331081100`` 泽国镇.

The built-in data (``contracts/data/jurisdictions.json``) holds 台州市, its nine counties and the
townships of 温岭市. More townships (of other counties) are added with extra JSON files of the same
shape, passed to :func:`load_registry` or listed in the environment variable
``DUBAN_JURISDICTIONS_FILES`` -- no code change is needed.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ENV_EXTRA_FILES",
    "Jurisdiction",
    "JurisdictionRegistry",
    "Level",
    "UnknownJurisdiction",
    "default_registry",
    "load_registry",
]

#: Environment variable naming extra jurisdiction files (separated by ``os.pathsep``).
ENV_EXTRA_FILES = "DUBAN_JURISDICTIONS_FILES"

_BUILTIN_PACKAGE = "contracts.data"
_BUILTIN_FILE = "jurisdictions.json"


class Level(StrEnum):
    """Level of a jurisdiction, from the top down."""

    PREFECTURE = "prefecture"
    COUNTY = "county"
    TOWNSHIP = "township"


#: The level a jurisdiction's parent must have (``None``: it must have no parent).
_PARENT_LEVEL: dict[Level, Level | None] = {
    Level.PREFECTURE: None,
    Level.COUNTY: Level.PREFECTURE,
    Level.TOWNSHIP: Level.COUNTY,
}

#: Number of digits of a code at each level.
_CODE_LENGTH: dict[Level, int] = {Level.PREFECTURE: 6, Level.COUNTY: 6, Level.TOWNSHIP: 9}


class Jurisdiction(BaseModel):
    """One jurisdiction (a prefecture, county or township) and its place in the hierarchy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^\d{6}(\d{3})?$", description="6 digits (prefecture, county) or 9 (township)")
    name: str = Field(min_length=1, description="Full Chinese name, e.g. 泽国镇")
    short_name: str = Field(min_length=1, description="Short Chinese name, e.g. 泽国")
    level: Level
    parent: str | None = Field(default=None, description="Code of the parent jurisdiction; None at the top")


class UnknownJurisdiction(KeyError):
    """Raised when a jurisdiction code is not in the registry."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"unknown jurisdiction code {self.code!r}"


def _merge(
    entries: Iterable[tuple[Jurisdiction, str]],
) -> list[Jurisdiction]:
    """Merge ``(jurisdiction, source)`` pairs: identical repeats collapse, conflicting ones raise."""
    merged: dict[str, tuple[Jurisdiction, str]] = {}
    for item, source in entries:
        seen = merged.get(item.code)
        if seen is None:
            merged[item.code] = (item, source)
        elif seen[0] != item:
            before, after = seen[0].model_dump(mode="json"), item.model_dump(mode="json")
            raise ValueError(
                f"jurisdiction {item.code!r} is defined differently in {seen[1]} ({before}) and in {source} ({after})"
            )
    return [item for item, _ in merged.values()]


class JurisdictionRegistry:
    """An immutable, validated set of jurisdictions with hierarchy look-ups.

    Construction checks that codes are unique, every parent exists, a prefecture has no parent,
    a county's parent is a prefecture, a township's parent is a county, and a township's code
    starts with its county's code; a violation raises :class:`ValueError` naming the code.
    Iteration yields jurisdictions ordered by code (a parent comes right before its children).
    """

    def __init__(self, entries: Iterable[Jurisdiction]) -> None:
        by_code: dict[str, Jurisdiction] = {}
        for item in entries:
            if not isinstance(item, Jurisdiction):
                raise TypeError(f"expected Jurisdiction, got {type(item).__name__}")
            if item.code in by_code:
                raise ValueError(f"duplicate jurisdiction code {item.code!r}")
            by_code[item.code] = item
        for item in by_code.values():
            self._check(item, by_code)
        self._by_code: dict[str, Jurisdiction] = dict(sorted(by_code.items()))
        children: dict[str, list[Jurisdiction]] = {code: [] for code in self._by_code}
        for item in self._by_code.values():
            if item.parent is not None:
                children[item.parent].append(item)
        self._children: dict[str, tuple[Jurisdiction, ...]] = {k: tuple(v) for k, v in children.items()}

    @staticmethod
    def _check(item: Jurisdiction, by_code: Mapping[str, Jurisdiction]) -> None:
        code = item.code
        if len(code) != _CODE_LENGTH[item.level]:
            raise ValueError(
                f"jurisdiction {code!r} ({item.name}): a {item.level} code has {_CODE_LENGTH[item.level]} digits"
            )
        expected = _PARENT_LEVEL[item.level]
        if expected is None:
            if item.parent is not None:
                raise ValueError(
                    f"jurisdiction {code!r} ({item.name}): a {item.level} has no parent, got {item.parent!r}"
                )
            return
        if item.parent is None:
            raise ValueError(f"jurisdiction {code!r} ({item.name}): a {item.level} needs a {expected} parent")
        parent = by_code.get(item.parent)
        if parent is None:
            raise ValueError(f"jurisdiction {code!r} ({item.name}): unknown parent {item.parent!r}")
        if parent.level != expected:
            raise ValueError(
                f"jurisdiction {code!r} ({item.name}): the parent of a {item.level} must be a {expected}, "
                f"but {parent.code!r} ({parent.name}) is a {parent.level}"
            )
        if item.level is Level.TOWNSHIP and not code.startswith(parent.code):
            raise ValueError(
                f"jurisdiction {code!r} ({item.name}): a township code must start with its county's "
                f"code {parent.code!r}"
            )

    # -- container protocol -------------------------------------------------------------

    def __contains__(self, code: object) -> bool:
        """Whether ``code`` is a known jurisdiction code."""
        return isinstance(code, str) and code in self._by_code

    def __iter__(self) -> Iterator[Jurisdiction]:
        """All jurisdictions, ordered by code."""
        return iter(self._by_code.values())

    def __len__(self) -> int:
        """Number of jurisdictions."""
        return len(self._by_code)

    def __repr__(self) -> str:
        return f"JurisdictionRegistry({len(self)} jurisdictions)"

    # -- look-ups -----------------------------------------------------------------------

    def get(self, code: str) -> Jurisdiction:
        """The jurisdiction with ``code``; raises :class:`UnknownJurisdiction` if there is none."""
        try:
            return self._by_code[code]
        except (KeyError, TypeError):
            raise UnknownJurisdiction(code) from None

    def by_level(self, level: Level | str) -> list[Jurisdiction]:
        """All jurisdictions of ``level``, ordered by code."""
        level = Level(level)
        return [item for item in self._by_code.values() if item.level is level]

    def parent_of(self, code: str) -> Jurisdiction | None:
        """The parent of ``code``, or ``None`` for the prefecture."""
        item = self.get(code)
        return None if item.parent is None else self._by_code[item.parent]

    def children_of(self, code: str) -> list[Jurisdiction]:
        """The direct children of ``code``, ordered by code (empty for a township)."""
        self.get(code)
        return list(self._children[code])

    def ancestors_of(self, code: str) -> list[Jurisdiction]:
        """The ancestors of ``code``, nearest first (parent, grandparent, ...); ``code`` excluded."""
        result: list[Jurisdiction] = []
        parent = self.parent_of(code)
        while parent is not None:
            result.append(parent)
            parent = self.parent_of(parent.code)
        return result

    def is_ancestor(self, ancestor: str, code: str) -> bool:
        """Whether ``ancestor`` is a strict ancestor of ``code`` (a code is not its own ancestor).

        Both codes must be known; an unknown one raises :class:`UnknownJurisdiction`.
        """
        self.get(ancestor)
        return any(item.code == ancestor for item in self.ancestors_of(code))

    def path(self, code: str) -> list[Jurisdiction]:
        """The chain from the prefecture down to ``code``, both included."""
        return [*reversed(self.ancestors_of(code)), self.get(code)]

    # -- derivation ---------------------------------------------------------------------

    def merged_with(self, other_entries: Iterable[Jurisdiction | Mapping[str, Any]]) -> JurisdictionRegistry:
        """A new registry holding these jurisdictions plus ``other_entries``.

        Entries may be :class:`Jurisdiction` objects or mappings of the same fields. Repeating an
        existing jurisdiction unchanged is allowed; redefining a code with different data raises
        :class:`ValueError`, as does any entry that breaks the hierarchy rules.
        """
        new = [_to_jurisdiction(entry, "merged entries") for entry in other_entries]
        pairs = [(item, "the registry") for item in self] + [(item, "the merged entries") for item in new]
        return JurisdictionRegistry(_merge(pairs))


def _to_jurisdiction(entry: Jurisdiction | Mapping[str, Any], source: str) -> Jurisdiction:
    if isinstance(entry, Jurisdiction):
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(f"{source}: a jurisdiction entry must be an object, got {entry!r}")
    try:
        return Jurisdiction.model_validate(entry)
    except ValidationError as exc:
        raise ValueError(f"{source}: invalid jurisdiction {entry.get('code')!r}: {exc}") from exc


def _parse_document(text: str, source: str) -> list[Jurisdiction]:
    """Parse one jurisdiction file: ``{"version": ..., "note": ..., "jurisdictions": [...]}``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("jurisdictions"), list):
        raise ValueError(f'{source}: expected an object with a "jurisdictions" list')
    return [_to_jurisdiction(entry, source) for entry in document["jurisdictions"]]


def _extra_files_from_env() -> list[Path]:
    value = os.environ.get(ENV_EXTRA_FILES, "")
    return [Path(part) for part in value.split(os.pathsep) if part.strip()]


def load_registry(extra_files: Sequence[str | Path] = ()) -> JurisdictionRegistry:
    """Load the built-in jurisdictions plus those of ``extra_files``.

    Each extra file is JSON of the same shape as the built-in ``contracts/data/jurisdictions.json``
    (an object with a ``"jurisdictions"`` list; ``"version"`` and ``"note"`` are optional), e.g. the
    townships of another county. Repeating a jurisdiction unchanged is allowed; redefining a code
    with different data, or breaking the hierarchy rules, raises :class:`ValueError` naming the code.
    When ``extra_files`` is empty, the files listed in the environment variable
    ``DUBAN_JURISDICTIONS_FILES`` (separated by ``os.pathsep``) are used instead.
    """
    builtin = resources.files(_BUILTIN_PACKAGE).joinpath(_BUILTIN_FILE).read_text(encoding="utf-8")
    pairs = [(item, f"built-in {_BUILTIN_FILE}") for item in _parse_document(builtin, _BUILTIN_FILE)]
    files = [Path(f) for f in extra_files] if extra_files else _extra_files_from_env()
    for path in files:
        source = str(path)
        pairs.extend((item, source) for item in _parse_document(path.read_text(encoding="utf-8"), source))
    return JurisdictionRegistry(_merge(pairs))


@functools.cache
def default_registry() -> JurisdictionRegistry:
    """The registry of :func:`load_registry` with no arguments, loaded once and cached.

    The environment variable is read on the first call; use ``default_registry.cache_clear()``
    to reload.
    """
    return load_registry()
