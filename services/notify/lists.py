"""四张清单 (seed 001 四(三)): 问题清单, 建议清单, 督办清单, 成果清单, as rows and as files.

Notify owns the four lists: they are defined here once, served at ``/lists/{name}`` and exported
from there (JSON, CSV, XLSX); intake and tracking serve their records, not lists. Built from
notify's own projections of this level's intake and tracking streams (never by asking those
services); who is on the 督办清单 is ``contracts.tracking.under_supervision``. Every list takes the
same filters:

- ``level``: the level where the matter was raised (township / county / prefecture);
- ``jurisdiction``: where it was raised, that jurisdiction or any below it (a county's code
  also matches its townships' codes, which start with it);
- ``unit``: the lead unit or a co-unit, by id or name;
- ``committee``: the responsible committee (责任工委);
- ``since`` / ``until``: the period, whole days in Asia/Shanghai, both included, on the date the
  list is about (raised for 问题/建议清单, assigned for 督办清单, delivered for 成果清单);
- ``key``: 重点督办件 only; ``year``: a year's 督办清单 or 成果清单 (see :class:`Filters`);
- ``leader``: the supervising leader (领衔督办); ``category``: the matter's category;
- ``plan`` / ``item``: the supervision plan (工作方案) and its item the matter was collected for,
  or the case belongs to (an inquiry question, a rectification).

Each list exports as CSV (UTF-8 with a byte-order mark, which Excel needs to read Chinese) and
as XLSX (openpyxl), with Chinese headers.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.envelope import SHANGHAI
from contracts.intake import (
    FEEDBACK_WAY_NAMES,
    KIND_NAMES,
    RAISER_RATING_NAMES,
    STATUS_NAMES,
    FeedbackWay,
    MatterKind,
    MatterStatus,
)
from contracts.tracking import RATING_NAMES, THRESHOLD_NAMES, CaseStatus, Rating, Threshold
from contracts.tracking import STATUS_NAMES as CASE_STATUS_NAMES
from services.runtime.http import exports
from services.runtime.read.db import connected

from .projections import cases, matters

PROBLEM_KINDS = (MatterKind.problem.value, MatterKind.demand.value)
SUGGESTION_KINDS = (MatterKind.suggestion.value, MatterKind.proposal.value, MatterKind.motion.value)
LEVEL_NAMES = {"prefecture": "市级", "county": "县级", "township": "乡镇（街道）"}


@dataclass(frozen=True)
class Filters:
    level: str | None = None
    jurisdiction: str | None = None
    unit: str | None = None
    committee: str | None = None
    since: date | None = None
    until: date | None = None
    #: 重点督办件 only (or only the others).
    key: bool | None = None
    #: The year's list: the 督办清单 of a year carries what is still open from earlier years and
    #: the closed cases whose commitments were carried over into it (跨年度跟踪), not what was
    #: opened later; the 成果清单 of a year, what was delivered in it.
    year: int | None = None
    leader: str | None = None
    category: str | None = None
    plan: str | None = None
    item: str | None = None
    #: One body's (人大 / 政协) matters and cases only.
    body: str | None = None


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=SHANGHAI)


def _end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=SHANGHAI)


def _where(query: Select, filters: Filters, when) -> Select:
    if filters.level:
        query = query.where(matters.c.raised_level == filters.level)
    if filters.jurisdiction:
        query = query.where(matters.c.raised_in.startswith(filters.jurisdiction, autoescape=True))
    if filters.unit:
        query = query.where(
            or_(
                cases.c.lead_unit_id == filters.unit,
                cases.c.lead_unit_name == filters.unit,
                cases.c.co_unit_bars.contains(f"|{filters.unit}|", autoescape=True),
                cases.c.co_unit_names.contains(filters.unit, autoescape=True),
            )
        )
    if filters.committee:
        query = query.where(or_(cases.c.committee == filters.committee, matters.c.committee == filters.committee))
    if filters.since:
        query = query.where(when >= _start(filters.since))
    if filters.until:
        query = query.where(when < _end(filters.until))
    if filters.key is not None:
        query = query.where(cases.c.key == filters.key)
    if filters.leader:
        query = query.where(cases.c.leader == filters.leader)
    if filters.category:
        query = query.where(matters.c.category == filters.category)
    if filters.plan:
        query = query.where(or_(cases.c.plan_id == filters.plan, matters.c.plan_id == filters.plan))
    if filters.item:
        query = query.where(or_(cases.c.plan_item == filters.item, matters.c.plan_item == filters.item))
    if filters.body:  # a case's body, else (a matter not handled here) its matter's
        query = query.where(func.coalesce(cases.c.body, matters.c.body) == filters.body)
    return query


def _day(value: datetime | date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).date().isoformat()
    return value.isoformat()


def _kind(value: str | None) -> str:
    try:
        return KIND_NAMES[MatterKind(value)]
    except ValueError:
        return value or ""


def _matter_status(value: str | None) -> str:
    try:
        return STATUS_NAMES[MatterStatus(value)]
    except ValueError:
        return value or ""


def _case_status(value: str | None) -> str:
    try:
        return CASE_STATUS_NAMES[CaseStatus(value)]
    except ValueError:
        return value or ""


def _feedback(value: dict[str, str] | None) -> str:
    ratings = []
    for name, rating in (value or {}).items():
        try:
            ratings.append(f"{name}：{RATING_NAMES[Rating(rating)]}")
        except ValueError:
            ratings.append(f"{name}：{rating}")
    return "；".join(ratings)


# -- the lists ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListSpec:
    """One list: its Chinese name, its columns (header, how to read a row) and its query."""

    key: str
    title: str
    columns: list[tuple[str, Callable[[dict[str, Any]], Any]]]
    query: Callable[[Filters], Select]


def _joined():
    return matters.outerjoin(cases, cases.c.id == matters.c.id)


def _matter_list(kinds: tuple[str, ...]) -> Callable[[Filters], Select]:
    def query(filters: Filters) -> Select:
        base = select(matters, *(c.label(f"c_{c.name}") for c in cases.columns)).select_from(_joined())
        base = base.where(matters.c.kind.in_(kinds))
        # when it was raised, wherever that was: a county's list shows its townships' dates
        return _where(base, filters, matters.c.raised_at).order_by(matters.c.raised_at, matters.c.id)

    return query


def _supervision(filters: Filters) -> Select:
    """督办清单: the cases ``under_supervision`` says (the ``supervised`` column), earliest
    deadline first (so what is overdue leads), those not assigned yet last."""
    joined = cases.outerjoin(matters, matters.c.id == cases.c.matter_id)
    base = select(cases, *(c.label(f"m_{c.name}") for c in matters.columns)).select_from(joined)
    base = base.where(cases.c.supervised)
    if filters.year is not None:
        # a year's list: what is still being handled and was opened by then, and what closed by
        # then with a commitment due that year or later (from the day it closed: no sweep needed)
        still_open = cases.c.status != CaseStatus.closed.value
        base = base.where(
            or_(
                and_(still_open, cases.c.year <= filters.year),
                and_(
                    cases.c.open_commitments > 0,
                    cases.c.closed_year <= filters.year,
                    cases.c.commitments_through >= filters.year,
                ),
            )
        )
    base = _where(base, filters, cases.c.assigned_at)
    return base.order_by(cases.c.due_at.is_(None), cases.c.due_at, cases.c.id)


def _results(filters: Filters) -> Select:
    """成果清单: closed with everything promised delivered, in the order delivered."""
    joined = cases.outerjoin(matters, matters.c.id == cases.c.matter_id)
    base = select(cases, *(c.label(f"m_{c.name}") for c in matters.columns)).select_from(joined)
    base = base.where(cases.c.delivered_at.is_not(None))
    if filters.year is not None:
        base = base.where(
            cases.c.delivered_at >= _start(date(filters.year, 1, 1)),
            cases.c.delivered_at < _end(date(filters.year, 12, 31)),
        )
    return _where(base, filters, cases.c.delivered_at).order_by(cases.c.delivered_at, cases.c.id)


def _raiser_feedback(row: dict[str, Any]) -> str:
    """向企业/群众反馈 as the list shows it: the day, the way, the satisfaction."""
    if not row["raiser_fed_back_on"]:
        return "" if not row["raised_by_name"] else "未反馈"
    way = FEEDBACK_WAY_NAMES.get(FeedbackWay(row["raiser_feedback_way"]), row["raiser_feedback_way"])
    rating = RAISER_RATING_NAMES.get(row["raiser_rating"] or "", "")
    return "，".join(part for part in (_day(row["raiser_fed_back_on"]), way, rating) if part)


def _due(row: dict[str, Any]) -> date | None:
    """办理期限 on the 督办清单: the reply's; for a closed case kept there by its commitments, the
    due date of the earliest one still to deliver."""
    if row["status"] == CaseStatus.closed.value and row["commitment_due_on"] is not None:
        return row["commitment_due_on"]
    return row["due_on"]


def _threshold(value: str | None) -> str:
    try:
        return THRESHOLD_NAMES[Threshold(value)]
    except ValueError:
        return ""


_MATTER_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("编号", lambda r: r["id"]),
    ("登记号", lambda r: r["registration_no"] or ""),
    ("类别", lambda r: _kind(r["kind"])),
    ("案由", lambda r: r["title"]),
    ("主要内容", lambda r: r["content"] or ""),
    ("提出人", lambda r: r["submitter_names"] or ""),
    ("反映主体", lambda r: r["raised_by_name"] or ""),
    ("提出地", lambda r: r["raised_in_name"]),
    ("层级", lambda r: LEVEL_NAMES.get(r["raised_level"] or "", "")),
    ("分类", lambda r: r["category"] or ""),
    ("提出日期", lambda r: _day(r["raised_at"])),
    ("状态", lambda r: _matter_status(r["status"])),
    ("主办单位", lambda r: r["c_lead_unit_name"] or r["outcome_unit"] or ""),
    ("责任工委", lambda r: r["c_committee"] or r["committee"] or ""),
    ("办理结果", lambda r: r["outcome_summary"] or ""),
    ("反馈企业（群众）", _raiser_feedback),
]

_CASE_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("编号", lambda r: r["id"]),
    ("登记号", lambda r: r["registration_no"] or ""),
    ("类别", lambda r: _kind(r["kind"])),
    ("案由", lambda r: r["title"]),
    ("提出人", lambda r: r["submitter_names"] or ""),
    ("提出地", lambda r: r["raised_in_name"]),
    ("主办单位", lambda r: r["lead_unit_name"] or ""),
    ("协办单位", lambda r: r["co_unit_names"] or ""),
    ("责任工委", lambda r: r["committee"] or ""),
    ("牵头领导", lambda r: r["leader"] or ""),
    ("重点督办", lambda r: "是" if r["key"] else "否"),
]

LISTS: dict[str, ListSpec] = {
    "problems": ListSpec("problems", "问题清单", _MATTER_COLUMNS, _matter_list(PROBLEM_KINDS)),
    "suggestions": ListSpec("suggestions", "建议清单", _MATTER_COLUMNS, _matter_list(SUGGESTION_KINDS)),
    "supervision": ListSpec(
        "supervision",
        "督办清单",
        [
            *_CASE_COLUMNS,
            ("交办日期", lambda r: _day(r["assigned_at"])),
            ("办理期限", lambda r: _day(_due(r))),
            ("状态", lambda r: _case_status(r["status"])),
            ("催办情况", lambda r: _threshold(r["last_threshold"])),
            ("未落实承诺事项", lambda r: r["open_commitments"] or 0),
        ],
        _supervision,
    ),
    "results": ListSpec(
        "results",
        "成果清单",
        [
            *_CASE_COLUMNS,
            ("答复类别", lambda r: r["reply_class"] or ""),
            ("办理落实情况摘要", lambda r: r["summary"] or ""),
            ("提出人意见", lambda r: _feedback(r["feedback_names"])),
            ("办结日期", lambda r: _day(r["delivered_at"])),
        ],
        _results,
    ),
}


async def list_rows(
    conn: AsyncEngine | AsyncConnection, name: str, filters: Filters, place: Callable[[str | None], str]
) -> list[dict[str, Any]]:
    """The rows of list ``name`` (problems, suggestions, supervision, results) under ``filters``."""
    spec = LISTS[name]
    async with connected(conn) as db:
        rows = [dict(r._mapping) for r in await db.execute(spec.query(filters))]
    for row in rows:
        raised_in = row.get("raised_in") or row.get("m_raised_in")
        row["raised_in"] = raised_in
        row["raised_in_name"] = place(raised_in) if raised_in else ""
    return rows


def table(name: str, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The Chinese headers (序号 first) and the values of each row."""
    spec = LISTS[name]
    headers = ["序号", *(label for label, _ in spec.columns)]
    values = [[i, *(read(row) for _, read in spec.columns)] for i, row in enumerate(rows, 1)]
    return headers, values


def to_csv(name: str, rows: list[dict[str, Any]]) -> bytes:
    return exports.to_csv(*table(name, rows))


def to_xlsx(name: str, rows: list[dict[str, Any]], *, subtitle: str = "") -> bytes:
    headers, values = table(name, rows)
    book = Workbook()
    sheet = book.active
    sheet.title = LISTS[name].title
    exports.append(sheet, headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for row in values:
        exports.append(sheet, row)
    sheet.freeze_panes = "A2"
    for index, label in enumerate(headers, 1):
        letter = sheet.cell(row=1, column=index).column_letter
        wide = "内容" in label or "摘要" in label
        sheet.column_dimensions[letter].width = 8 if label == "序号" else (40 if wide else 18)
    if subtitle:
        book.properties.title = subtitle
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
