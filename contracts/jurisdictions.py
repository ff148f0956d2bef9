"""Jurisdiction registry: 台州市, its counties and their townships, with the organs of their bodies.

Three levels of people's congresses take part in 督办: the prefecture (台州市), the counties
(districts 市辖区, counties 县 and county-level cities 县级市) and the townships (subdistricts 街道,
towns 镇 and townships 乡). Every jurisdiction has a stable code:

* prefecture and county: the 6-digit administrative division code (e.g. ``331081`` 温岭市);
* township: this project's 9-digit code, the county code followed by 3 digits: ``001``-``099`` a
  街道, ``100``-``199`` a 镇, ``200``-``299`` a 乡 (e.g. ``331081100`` 泽国镇). Codes are never
  renumbered or reused.

Each jurisdiction has its ``kind`` (地级市, 市辖区, 县, 县级市, 街道, 镇, 乡) and the ``organs`` of the
bodies it has (DOMAIN.md, "Two bodies at a level"): the prefecture and each county a 人大常委会 and a
政协委员会; a 镇 or 乡 only its 人大主席团; a 街道 only its 人大工委 (an organ of the county's
standing committee). Wherever duban writes an organ's name, it takes it from here
(:meth:`JurisdictionRegistry.organ`).

The built-in data (``contracts/data/jurisdictions.json``) holds 台州市, its nine counties and all
their townships, kinds and organs written out. More jurisdictions are added with extra JSON files of
the same shape, passed to :func:`load_registry` or listed in the environment variable
``DUBAN_JURISDICTIONS_FILES`` -- no code change is needed. In them ``kind`` and ``organs`` may be
left out: the kind is derived from the name's suffix and the level, the organs from the kind and
the name (``{name}人大常委会`` and ``政协{name}委员会``, ``{name}人大主席团``, ``{name}人大工委``), so
a file of the older shape still loads and a built-in entry repeated in it compares equal.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .bodies import BODY_NAMES, Body

__all__ = [
    "ENV_EXTRA_FILES",
    "Jurisdiction",
    "JurisdictionKind",
    "JurisdictionRegistry",
    "Level",
    "NoSuchOrgan",
    "Organ",
    "OrganType",
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

#: The type of a division: 地级市 (the prefecture); 市辖区, 县, 县级市 (counties); 街道, 镇, 乡 (townships).
JurisdictionKind = Literal["地级市", "市辖区", "县", "县级市", "街道", "镇", "乡"]

#: The kinds a jurisdiction of each level may have.
_LEVEL_KINDS: dict[Level, tuple[JurisdictionKind, ...]] = {
    Level.PREFECTURE: ("地级市",),
    Level.COUNTY: ("市辖区", "县", "县级市"),
    Level.TOWNSHIP: ("街道", "镇", "乡"),
}

#: The last three digits of a township code, by kind.
_TOWNSHIP_CODE_RANGES: dict[JurisdictionKind, range] = {
    "街道": range(1, 100),
    "镇": range(100, 200),
    "乡": range(200, 300),
}

#: The organ of a body: 人大常委会 (prefecture, county), 人大主席团 (镇, 乡), 街道人大工委 (an organ of
#: the county's standing committee), 政协委员会 (prefecture, county).
OrganType = Literal["standing_committee", "presidium", "working_committee", "cppcc_committee"]

#: The type of a level's congress organ, by kind (a 政协 is always a ``cppcc_committee``).
_CONGRESS_ORGAN: dict[JurisdictionKind, OrganType] = {
    "地级市": "standing_committee",
    "市辖区": "standing_committee",
    "县": "standing_committee",
    "县级市": "standing_committee",
    "街道": "working_committee",
    "镇": "presidium",
    "乡": "presidium",
}


def _kind_from_name(name: str, level: Level) -> JurisdictionKind | None:
    """The kind the name's suffix says at ``level`` (``None`` when it says none)."""
    if level is Level.TOWNSHIP:
        suffixes: tuple[tuple[str, JurisdictionKind], ...] = (("街道", "街道"), ("镇", "镇"), ("乡", "乡"))
    elif level is Level.COUNTY:
        suffixes = (("区", "市辖区"), ("县", "县"), ("市", "县级市"))
    else:
        suffixes = (("市", "地级市"),)
    return next((kind for suffix, kind in suffixes if name.endswith(suffix)), None)


def _default_organs(name: str, kind: JurisdictionKind) -> list[dict[str, str]]:
    """The organs a jurisdiction of ``kind`` named ``name`` has when its data names none."""
    congress = _CONGRESS_ORGAN[kind]
    if congress == "presidium":
        return [
            {"body": Body.congress, "name": f"{name}人大主席团", "short_name": f"{name}人大主席团", "type": congress}
        ]
    if congress == "working_committee":
        return [{"body": Body.congress, "name": f"{name}人大工委", "short_name": f"{name}人大工委", "type": congress}]
    return [
        {"body": Body.congress, "name": f"{name}人大常委会", "short_name": f"{name}人大常委会", "type": congress},
        {"body": Body.cppcc, "name": f"政协{name}委员会", "short_name": f"{name}政协", "type": "cppcc_committee"},
    ]


class Organ(BaseModel):
    """The organ of one body (人大 or 政协) at a jurisdiction: the name everything it writes is signed with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    body: Body
    name: str = Field(min_length=1, description="Full name, e.g. 温岭市人大常委会, 政协温岭市委员会, 泽国镇人大主席团")
    short_name: str = Field(
        min_length=1, description="What running text may use, e.g. 温岭市人大常委会, 温岭市政协, 太平街道人大工委"
    )
    type: OrganType

    @model_validator(mode="after")
    def _type_fits_body(self) -> Organ:
        if (self.body is Body.cppcc) != (self.type == "cppcc_committee"):
            raise ValueError(f"organ {self.name}: a {self.type} is not an organ of the {self.body} body")
        return self


class Jurisdiction(BaseModel):
    """One jurisdiction (a prefecture, county or township), its place in the hierarchy, its kind
    and the organs of its bodies.

    ``kind`` and ``organs`` may be left out (they are in files of the older shape): the kind is then
    derived from the name's suffix and the level, the organs from the kind and the name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^\d{6}(\d{3})?$", description="6 digits (prefecture, county) or 9 (township)")
    name: str = Field(min_length=1, description="Full Chinese name, e.g. 泽国镇")
    short_name: str = Field(min_length=1, description="Short Chinese name, e.g. 泽国")
    level: Level
    parent: str | None = Field(default=None, description="Code of the parent jurisdiction; None at the top")
    kind: JurisdictionKind = Field(description="Type of division; derived from the name and level when left out")
    organs: tuple[Organ, ...] = Field(
        description="The organs of the bodies this level has, congress first; derived from the kind when left out"
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_defaults(cls, data: Any) -> Any:
        """Fill in a left-out (or null) ``kind`` from the name and level, and left-out ``organs``
        from the kind and name; what cannot be derived stays out, for the fields to say so."""
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            return data
        data, name = dict(data), data["name"]
        if data.get("kind") is None:
            data.pop("kind", None)
            try:
                derived = _kind_from_name(name, Level(data.get("level")))
            except ValueError:  # the level's own validation says what is wrong
                derived = None
            if derived is not None:
                data["kind"] = derived
        if data.get("organs") is None:
            data.pop("organs", None)
            kind = data.get("kind")
            if isinstance(kind, str) and kind in _CONGRESS_ORGAN:
                data["organs"] = _default_organs(name, kind)
        return data

    @field_validator("organs")
    @classmethod
    def _one_organ_per_body(cls, organs: tuple[Organ, ...]) -> tuple[Organ, ...]:
        bodies = [organ.body for organ in organs]
        for body in Body:
            if bodies.count(body) > 1:
                raise ValueError(f"at most one organ per body: {bodies.count(body)} of the {body} body")
        order = list(Body)
        return tuple(sorted(organs, key=lambda organ: order.index(organ.body)))

    @model_validator(mode="after")
    def _kind_and_organs_fit(self) -> Jurisdiction:
        where = f"jurisdiction {self.code!r} ({self.name})"
        if self.kind not in _LEVEL_KINDS[self.level]:
            raise ValueError(f"{where}: a {self.level} is a {' or '.join(_LEVEL_KINDS[self.level])}, not a {self.kind}")
        said = _kind_from_name(self.name, self.level)
        if said is not None and said != self.kind:
            raise ValueError(f"{where}: the name says {said}, the kind {self.kind}")
        by_body = {organ.body: organ for organ in self.organs}
        congress = by_body.get(Body.congress)
        if congress is None:
            raise ValueError(f"{where}: no organ of the congress (every level has one)")
        if congress.type != _CONGRESS_ORGAN[self.kind]:
            raise ValueError(
                f"{where}: the congress organ of a {self.kind} is a {_CONGRESS_ORGAN[self.kind]}, not a {congress.type}"
            )
        if Body.cppcc in by_body and self.level is Level.TOWNSHIP:
            raise ValueError(f"{where}: a township has no CPPCC (政协)")
        return self

    def organ(self, body: Body | str) -> Organ:
        """The organ of ``body`` here; raises :class:`NoSuchOrgan` when this level has no such body."""
        body = Body(body)
        for organ in self.organs:
            if organ.body is body:
                return organ
        raise NoSuchOrgan(self, body)

    @property
    def bodies(self) -> list[Body]:
        """The bodies this level has (congress first)."""
        return [organ.body for organ in self.organs]


class NoSuchOrgan(LookupError):
    """Raised when a jurisdiction has no organ of a body (a 镇, 乡 or 街道 has no 政协)."""

    def __init__(self, jurisdiction: Jurisdiction, body: Body) -> None:
        super().__init__(jurisdiction.code, body)
        self.code = jurisdiction.code
        self.name = jurisdiction.name
        self.body = body

    def __str__(self) -> str:
        return f"{self.name}没有{BODY_NAMES[self.body]}"


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
    starts with its county's code and ends in its kind's range (``001``-``099`` 街道, ``100``-``199``
    镇, ``200``-``299`` 乡); a violation raises :class:`ValueError` naming the code. (Each
    :class:`Jurisdiction` has checked its own kind and organs.)
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
        if item.level is Level.TOWNSHIP and int(code[6:]) not in _TOWNSHIP_CODE_RANGES[item.kind]:
            allowed = _TOWNSHIP_CODE_RANGES[item.kind]
            raise ValueError(
                f"jurisdiction {code!r} ({item.name}): a {item.kind} code ends in "
                f"{allowed.start:03d}-{allowed.stop - 1:03d}"
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

    def organ(self, code: str, body: Body | str) -> Organ:
        """The organ of ``body`` at ``code`` (e.g. 政协温岭市委员会, 泽国镇人大主席团).

        Raises :class:`UnknownJurisdiction` for an unknown code and :class:`NoSuchOrgan` (its
        message in Chinese, e.g. 泽国镇没有政协) when the level has no such body.
        """
        return self.get(code).organ(body)

    def bodies_of(self, code: str) -> list[Body]:
        """The bodies ``code`` has: congress and CPPCC at the prefecture and a county, the congress
        only at a township."""
        return self.get(code).bodies

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
    (an object with a ``"jurisdictions"`` list; ``"version"`` and ``"note"`` are optional; in an
    entry ``kind`` and ``organs`` may be left out), e.g. a township made after the built-in data.
    Repeating a jurisdiction unchanged is allowed (an entry whose derived kind and organs equal the
    built-in ones is unchanged); redefining a code with different data (another name, kind or organ
    name), or breaking the hierarchy rules, raises :class:`ValueError` naming the code.
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
