"""The directory's language (名册): the people duban serves at one level, the organisations they
belong to, and what the roster imports did.

Events are stored on ``duban.evt.directory.<jurisdiction>.<aggregate_id>``: a person under their
person id, an organisation (承办单位, 代表联络站, 代表小组/代表团, 工委, 政协界别) under its id, a
roster import under the digest of the file. Every other service of the level reads them into
its own projection (``services/runtime/read/people.py``): evaluation's electorates, notify's
recipients, tracking's units, and whether a signed-in person is still enabled.

A person can belong to more than one level (a 温岭市 deputy who is also a 台州市 deputy): each
level's directory holds its own record of them, under the same person id when the rosters give
the same 身份标识 (``identity``), and they sign in at each level for that level.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .bodies import Body
from .events import Command, Event, command, event
from .intake import ID_PATTERN

MOBILE_PATTERN = r"^1\d{10}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"


class PersonKind(StrEnum):
    deputy = "deputy"  # 人大代表
    member = "member"  # 政协委员
    committee_staff = "committee_staff"  # 工委 / 提案委 / 代表工委工作人员
    station_staff = "station_staff"  # 代表联络站工作人员
    unit_staff = "unit_staff"  # 承办单位工作人员
    leader = "leader"  # 联系领导
    operator = "operator"  # 运维人员
    admin = "admin"  # 系统管理员


PERSON_KIND_NAMES = {
    PersonKind.deputy: "人大代表",
    PersonKind.member: "政协委员",
    PersonKind.committee_staff: "工委工作人员",
    PersonKind.station_staff: "联络站工作人员",
    PersonKind.unit_staff: "承办单位工作人员",
    PersonKind.leader: "联系领导",
    PersonKind.operator: "运维人员",
    PersonKind.admin: "系统管理员",
}

#: The roles each kind of person holds in every service (``services/runtime/http/auth.py``).
KIND_ROLES: dict[PersonKind, tuple[str, ...]] = {
    PersonKind.deputy: ("deputy", "evaluator"),
    PersonKind.member: ("deputy", "evaluator"),
    PersonKind.committee_staff: ("committee",),
    PersonKind.station_staff: ("liaison_station",),
    PersonKind.unit_staff: ("unit",),
    PersonKind.leader: ("leader",),
    PersonKind.operator: ("operator",),
    PersonKind.admin: ("admin",),
}


class OrgKind(StrEnum):
    unit = "unit"  # 承办单位
    station = "station"  # 代表联络站
    group = "group"  # 代表小组 / 代表团
    committee = "committee"  # 工委 / 提案委
    sector = "sector"  # 政协界别


ORG_KIND_NAMES = {
    OrgKind.unit: "承办单位",
    OrgKind.station: "代表联络站",
    OrgKind.group: "代表小组（代表团）",
    OrgKind.committee: "工委",
    OrgKind.sector: "政协界别",
}


class Org(BaseModel):
    """An organisation people belong to, with a stable id."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=ID_PATTERN, description="stable id (unit-…, station-…, group-…)")
    kind: OrgKind
    name: str = Field(min_length=1, max_length=200)


class Person(BaseModel):
    """One person as the directory of one level knows them."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=ID_PATTERN)
    kind: PersonKind
    name: str = Field(min_length=1, max_length=64)
    gender: str | None = Field(default=None, pattern=r"^(男|女)$")
    credential_no: str | None = Field(default=None, max_length=64, description="代表证号 / 委员证号 / 工号")
    identity: str | None = Field(
        default=None, max_length=128, description="统一身份标识: what the identity provider's claim carries"
    )
    congress: str | None = Field(
        default=None, pattern=r"^(national|province|city|county|township)$", description="a deputy's congress level"
    )
    body: Body | None = Field(
        default=None,
        description="the body (机关) they belong to: congress 人大 (代表、工委) or cppcc 政协 (委员、提案委); "
        "when not given, a 政协委员's is the CPPCC, anyone else's the congress",
    )
    orgs: list[str] = Field(
        default_factory=list, max_length=20, description="ids of the groups, station, sector, committee or unit"
    )
    mobile: str | None = Field(default=None, pattern=MOBILE_PATTERN)
    email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)
    extra_roles: list[str] = Field(default_factory=list, max_length=8, description="roles beyond the kind's")

    @field_validator("orgs")
    @classmethod
    def _no_repeats(cls, orgs: list[str]) -> list[str]:
        return list(dict.fromkeys(orgs))

    def roles(self) -> list[str]:
        return list(dict.fromkeys([*KIND_ROLES[self.kind], *self.extra_roles]))

    def body_of(self) -> Body:
        """The body they act for: as given, else a 政协委员's the CPPCC and anyone else's the congress."""
        return self.body or (Body.cppcc if self.kind is PersonKind.member else Body.congress)


class RejectedRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    row: int = Field(description="row number in the sheet (the header is row 1)")
    reasons: list[str] = Field(description="why, in Chinese")


# -- events -----------------------------------------------------------------------------------
@event("directory.OrgEnrolled")
class OrgEnrolled(Event):
    org: Org


@event("directory.OrgRenamed")
class OrgRenamed(Event):
    org_id: str
    name: str


@event("directory.PersonEnrolled")
class PersonEnrolled(Event):
    person: Person


@event("directory.PersonChanged")
class PersonChanged(Event):
    """The whole record as it now is, and which fields changed."""

    person: Person
    changed: list[str]


@event("directory.PersonDisabled")
class PersonDisabled(Event):
    person_id: str
    reason: str


@event("directory.PersonEnabled")
class PersonEnabled(Event):
    person_id: str


@event("directory.RosterImported")
class RosterImported(Event):
    """One import of a roster file: what it did. Importing the same file again records nothing."""

    import_id: str
    file_name: str
    sha256: str
    rows: int
    enrolled: list[str]
    changed: list[str]
    unchanged: int
    rejected: list[RejectedRow]


# -- commands ---------------------------------------------------------------------------------
@command("directory.EnrollOrg")
class EnrollOrg(Command):
    org: Org


@command("directory.EnrollPerson")
class EnrollPerson(Command):
    person: Person


@command("directory.ChangePerson")
class ChangePerson(Command):
    person: Person


@command("directory.DisablePerson")
class DisablePerson(Command):
    person_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(min_length=1, max_length=500)


@command("directory.EnablePerson")
class EnablePerson(Command):
    person_id: str = Field(pattern=ID_PATTERN)
