"""The rosters offices keep (代表名册、委员名册、工作人员名单), imported into the directory.

An office uploads its roster as XLSX (or CSV); the first non-empty row names the columns:

==================  ===============  =======================================================
column              English          value
==================  ===============  =======================================================
姓名 (required)     name             the person's name
性别                gender           男 / 女
证号                credential_no    代表证号 / 委员证号 / 工号: unique in the file
身份                kind             人大代表 (default) / 政协委员 / 工委工作人员 / 联络站工作人员 /
                                     承办单位工作人员 / 联系领导 / 运维人员 / 系统管理员
代表层级            congress         全国 / 省 / 市 / 县 / 乡镇 (a deputy's congress; default this level's)
所属代表团/界别     group            a 代表团 or 代表小组 (enrolled as a group when new), or a 政协界别
联络站              station          a 代表联络站 already in the directory, by name or id
所在单位            unit             a 承办单位 already in the directory, by name or id (unit staff)
手机                mobile           11 digits
邮箱                email
身份标识            identity         the 统一身份标识 the identity provider gives at sign-in
==================  ===============  =======================================================

A row is checked whole; a bad row is reported with its row number and every reason, and
changes nothing. A good row enrols the person, or changes their record when it differs, or
does nothing when it is the same: importing a roster again adds nobody twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from contracts.bodies import Body
from contracts.directory import PERSON_KIND_NAMES, Org, OrgKind, Person, PersonKind, RejectedRow
from services.runtime.http.app import zh_reason
from services.runtime.http.spreadsheets import read_table

from .domain import derived_id, person_id_for

HEADERS = {
    "姓名": "name",
    "name": "name",
    "性别": "gender",
    "gender": "gender",
    "证号": "credential_no",
    "代表证号": "credential_no",
    "委员证号": "credential_no",
    "工号": "credential_no",
    "credential_no": "credential_no",
    "身份": "kind",
    "类别": "kind",
    "kind": "kind",
    "代表层级": "congress",
    "congress": "congress",
    "所属代表团/界别": "group",
    "所属代表团": "group",
    "代表团": "group",
    "代表小组": "group",
    "界别": "group",
    "group": "group",
    "联络站": "station",
    "所属联络站": "station",
    "station": "station",
    "所在单位": "unit",
    "单位": "unit",
    "unit": "unit",
    "手机": "mobile",
    "手机号": "mobile",
    "mobile": "mobile",
    "邮箱": "email",
    "电子邮箱": "email",
    "email": "email",
    "身份标识": "identity",
    "统一身份标识": "identity",
    "identity": "identity",
    "所属机关": "body",
    "机关": "body",
    "body": "body",
}
LABELS = {
    "name": "姓名",
    "gender": "性别",
    "credential_no": "证号",
    "kind": "身份",
    "congress": "代表层级",
    "group": "所属代表团/界别",
    "station": "联络站",
    "unit": "所在单位",
    "mobile": "手机",
    "email": "邮箱",
    "identity": "身份标识",
    "body": "所属机关",
}
#: 所属机关 as rosters write it: 人大 (人大常委会、代表工委) or 政协 (政协委员会、提案委).
BODIES = {"人大": Body.congress, "人大常委会": Body.congress, "政协": Body.cppcc} | {b.value: b for b in Body}
KINDS = {name: kind for kind, name in PERSON_KIND_NAMES.items()} | {k.value: k for k in PersonKind} | {"代表": "deputy"}
CONGRESSES = {
    "全国": "national",
    "省": "province",
    "市": "city",
    "县": "county",
    "乡镇": "township",
    "镇": "township",
    "乡": "township",
    "街道": "township",
}


@dataclass
class Known:
    """The organisations the directory knows: by id and by name."""

    orgs: dict[str, Org] = field(default_factory=dict)

    def find(self, kind: OrgKind, text: str) -> Org | None:
        found = self.orgs.get(text)
        if found is not None and found.kind == kind:
            return found
        return next((o for o in self.orgs.values() if o.kind == kind and o.name == text), None)


@dataclass
class ReadRoster:
    """What a roster file says: the people of its good rows, the groups they name that are new,
    and the rejected rows."""

    rows: int
    people: list[tuple[int, Person]]
    new_groups: list[Org]
    rejected: list[RejectedRow]


def group_id(here: str, name: str) -> str:
    return "group-" + derived_id("group", here, name)[:16]


def read_roster(data: bytes, *, here: str, known: Known, default_congress: str) -> ReadRoster:
    """The people of a roster file (``ImportRefused`` if the file as a whole cannot be read)."""
    _, rows = read_table(data, HEADERS, ("name",), LABELS, example="姓名、性别、证号、所属代表团/界别、联络站、手机")
    people: list[tuple[int, Person]] = []
    rejected: list[RejectedRow] = []
    new_groups: dict[str, Org] = {}
    seen_numbers: dict[str, int] = {}
    for number, row in rows:
        reasons: list[str] = []
        person = _person(row, here=here, known=known, default_congress=default_congress, reasons=reasons)
        credential = row.get("credential_no", "")
        if credential and credential in seen_numbers:
            reasons.append(f"证号 {credential} 与第 {seen_numbers[credential]} 行重复")
        elif credential:
            seen_numbers[credential] = number
        if reasons or person is None:
            rejected.append(RejectedRow(row=number, reasons=reasons or ["无法读取"]))
            continue
        people.append((number, person))
        group = row.get("group", "")
        if group and known.find(OrgKind.group, group) is None and known.find(OrgKind.sector, group) is None:
            kind = OrgKind.sector if person.kind == PersonKind.member else OrgKind.group
            new_groups.setdefault(group, Org(id=group_id(here, group), kind=kind, name=group))
    return ReadRoster(rows=len(rows), people=people, new_groups=list(new_groups.values()), rejected=rejected)


def _person(
    row: dict[str, str], *, here: str, known: Known, default_congress: str, reasons: list[str]
) -> Person | None:
    name = row.get("name", "")
    if not name:
        reasons.append("姓名：必填")
    kind_text = row.get("kind", "") or PersonKind.deputy.value
    kind = KINDS.get(kind_text)
    if kind is None:
        reasons.append(f"身份：应为 {'、'.join(PERSON_KIND_NAMES.values())} 之一")
        kind = PersonKind.deputy
    kind = PersonKind(kind)
    congress = None
    if kind == PersonKind.deputy:
        congress_text = row.get("congress", "")
        congress = CONGRESSES.get(congress_text.removesuffix("级")) if congress_text else default_congress
        if congress is None:
            reasons.append("代表层级：应为 全国、省、市、县、乡镇 之一")
    body = None
    if body_text := row.get("body", ""):
        body = BODIES.get(body_text)
        if body is None:
            reasons.append("所属机关：应为 人大 或 政协")
    orgs: list[str] = []
    for column, org_kind in (("station", OrgKind.station), ("unit", OrgKind.unit)):
        text = row.get(column, "")
        if not text:
            continue
        org = known.find(org_kind, text)
        if org is None:
            reasons.append(f"{LABELS[column]}：「{text}」不在名册中，请先登记")
        else:
            orgs.append(org.id)
    if kind == PersonKind.unit_staff and not row.get("unit"):
        reasons.append("所在单位：承办单位工作人员须填写所在单位")
    group = row.get("group", "")
    if group:
        org = known.find(OrgKind.group, group) or known.find(OrgKind.sector, group)
        orgs.append(org.id if org is not None else group_id(here, group))
    values: dict[str, Any] = {
        "id": person_id_for(
            here, identity=row.get("identity") or None, credential_no=row.get("credential_no") or None, name=name
        ),
        "kind": kind,
        "name": name,
        "gender": row.get("gender") or None,
        "credential_no": row.get("credential_no") or None,
        "identity": row.get("identity") or None,
        "congress": congress,
        "body": body,
        "orgs": orgs,
        "mobile": (row.get("mobile") or "").replace(" ", "").replace("-", "") or None,
        "email": row.get("email") or None,
    }
    if not name:
        return None
    try:
        person = Person.model_validate(values)
    except ValidationError as err:
        for error in err.errors(include_input=False, include_url=False):
            column = str(error["loc"][0]) if error["loc"] else ""
            reasons.append(f"{LABELS.get(column, column)}：{zh_reason(error)}")
        return None
    return None if reasons else person


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
