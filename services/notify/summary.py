"""一月一小结 (seed 003 三(四) and its 附件): the monthly summary of each level, reported up.

The 附件 table has, per reporting county, six columns. Each is computed from notify's own
projections of this level's streams, for the month's days in Asia/Shanghai:

==============================================  =========================================================
column (附件)                                   computed as
==============================================  =========================================================
辖区内各级人大开展有关视察、调研、座谈、          activities recorded in intake (``ActivityRecorded``, any kind)
联系群众活动次数                                  held in the month, plus deputy-group activities recorded
                                                in tracking (``GroupActivityRecorded``, seed 004)
辖区内各级人大代表参与活动人次                   the deputies of those intake activities, plus the
                                                participants of those group activities
收集意见建议数量（件）                            matters raised at this level in the month
                                                (``MatterSubmitted``; a matter received from another
                                                level was counted where it was collected)
解决问题数量（件）                                cases closed here in the month (``CaseClosed``) with a
                                                reply class that means solved (A 已解决或采纳; setting
                                                ``solved_classes``)
上报市级处理研究的意见建议数量（件）              matters escalated in the month (``MatterEscalated``) to
                                                a prefecture-level jurisdiction
典型案例                                          the typical cases staff added to the month's summary
==============================================  =========================================================

The table is the congress's (三级人大, signed by its organ): it counts the congress's matters and
cases, not the 政协's.

"各县（市、区）人大负责统计汇总所辖乡镇（街道）情况": each level adds to its own figures the
latest report of each of its lower levels for the month, so a township's notify reports to its
county (on the 5th by default), the county's report includes them and reaches Taizhou by the
20th (on the 10th by default). Taizhou's view has one row per county and a total.
"""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, Side
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.bodies import Body
from contracts.envelope import SHANGHAI
from contracts.jurisdictions import JurisdictionRegistry, Level
from contracts.notify import SummaryFigures, SummaryRow, TypicalCase
from services.runtime.http import exports
from services.runtime.read.db import connected

from .domain import month_bounds
from .projections import activities, cases, group_activities, matters, reported, summaries

TITLE = "三级人大万名代表助力“稳企助企、稳进提质”活动情况汇总表"
#: The 附件's columns, in its order, with the figure each shows.
COLUMNS = [
    ("activities", "辖区内各级人大开展有关视察、调研、座谈、联系群众活动次数"),
    ("participations", "辖区内各级人大代表参与活动人次"),
    ("collected", "收集意见建议数量(件)"),
    ("solved", "解决问题数量(件)"),
    ("escalated", "上报市级处理研究的意见建议数量(件)"),
    ("typical_cases", "典型案例(可另行文本发送)"),
]
NOTES = [
    "备注：1. 各设县（市、区）人大负责统计汇总所辖乡镇（街道）情况；",
    "2. 汇总表和典型案例需要于每月 20 日前发送至市人大办公室。",
]


def _instants(month: str) -> tuple[datetime, datetime]:
    first, last = month_bounds(month)
    return (
        datetime.combine(first, time.min, tzinfo=SHANGHAI),
        datetime.combine(last + timedelta(days=1), time.min, tzinfo=SHANGHAI),
    )


async def own_figures(
    conn: AsyncEngine | AsyncConnection,
    registry: JurisdictionRegistry,
    month: str,
    solved_classes: tuple[str, ...] = ("A",),
) -> SummaryFigures:
    """This level's own figures of ``month`` (see the module docstring for each column)."""
    first, last = month_bounds(month)
    since, until = _instants(month)
    prefectures = [j.code for j in registry.by_level(Level.PREFECTURE)]
    async with connected(conn) as db:
        held = (
            await db.execute(
                select(func.count(), func.coalesce(func.sum(activities.c.deputy_count), 0)).where(
                    activities.c.held_on >= first, activities.c.held_on <= last
                )
            )
        ).one()
        groups = (
            await db.execute(
                select(func.count(), func.coalesce(func.sum(group_activities.c.participants), 0)).where(
                    group_activities.c.held_on >= first, group_activities.c.held_on <= last
                )
            )
        ).one()
        # the congress's report (seed 003's annex): its deputies' matters, not the 政协's
        congress = Body.congress.value
        collected = await db.scalar(
            select(func.count()).where(
                matters.c.collected.is_(True),
                matters.c.body == congress,
                matters.c.submitted_at >= since,
                matters.c.submitted_at < until,
            )
        )
        solved = await db.scalar(
            select(func.count()).where(
                cases.c.status == "closed",
                cases.c.body == congress,
                cases.c.reply_class.in_(solved_classes),
                cases.c.closed_at >= since,
                cases.c.closed_at < until,
            )
        )
        escalated = await db.scalar(
            select(func.count()).where(
                and_(
                    matters.c.escalated_to.in_(prefectures),
                    matters.c.body == congress,
                    matters.c.escalated_at >= since,
                    matters.c.escalated_at < until,
                )
            )
        )
    return SummaryFigures(
        activities=int(held[0]) + int(groups[0]),
        participations=int(held[1]) + int(groups[1]),
        collected=int(collected or 0),
        solved=int(solved or 0),
        escalated=int(escalated or 0),
    )


async def reports_of(conn: AsyncEngine | AsyncConnection, month: str) -> dict[str, dict[str, Any]]:
    """The latest report of each lower level for ``month``, by reporter."""
    async with connected(conn) as db:
        rows = [dict(r._mapping) for r in await db.execute(select(reported).where(reported.c.month == month))]
    return {row["reporter"]: row for row in rows}


async def level_rows(
    conn: AsyncEngine | AsyncConnection,
    registry: JurisdictionRegistry,
    here: str,
    month: str,
    solved_classes: tuple[str, ...] = ("A",),
) -> list[SummaryRow]:
    """What this level reports: its own row, then one row per lower level (未报送 when it has not
    reported yet)."""
    figures = await own_figures(conn, registry, month, solved_classes)
    own = SummaryRow(jurisdiction=here, name=registry.get(here).name, figures=figures)
    rows = [own]
    reports = await reports_of(conn, month)
    for child in registry.children_of(here):
        report = reports.get(child.code)
        if report is None:  # not reported yet: shown as 未报送, its report makes a new revision
            rows.append(SummaryRow(jurisdiction=child.code, name=child.name, figures=SummaryFigures(), reported=False))
            continue
        rows.append(
            SummaryRow(
                jurisdiction=child.code,
                name=report["reporter_name"],
                figures=SummaryFigures.model_validate(report["figures"]),
                revision=report["revision"],
            )
        )
    return rows


async def children_cases(conn: AsyncEngine | AsyncConnection, month: str) -> list[TypicalCase]:
    cases_found = []
    for _, report in sorted((await reports_of(conn, month)).items()):
        cases_found.extend(TypicalCase.model_validate(c) for c in report["typical_cases"] or [])
    return cases_found


async def level_view(
    conn: AsyncEngine | AsyncConnection,
    registry: JurisdictionRegistry,
    here: str,
    month: str,
    solved_classes: tuple[str, ...] = ("A",),
) -> dict[str, Any]:
    """The month as this level's staff see it (seed 003's 附件): this level's own work first (市本级
    at 台州市, 本级 at a county), then one row per lower level (reported or not: 未报送), then the
    total of them all."""
    reports = await reports_of(conn, month)
    rows = []
    for child in registry.children_of(here):
        report = reports.get(child.code)
        rows.append(
            {
                "jurisdiction": child.code,
                "name": child.name,
                "reported": report is not None,
                "revision": report["revision"] if report else None,
                "compiled_on": report["compiled_on"] if report else None,
                "figures": SummaryFigures.model_validate(report["figures"] if report else {}).model_dump(),
                "typical_cases": list(report["typical_cases"] or []) if report else [],
            }
        )
    # this level's own work, first: every level has its row (市本级 at 台州市, 本级 at a county)
    own = await own_figures(conn, registry, month, solved_classes)
    async with connected(conn) as db:
        stored = (await db.execute(select(summaries.c.typical_cases).where(summaries.c.month == month))).first()
    rows.insert(
        0,
        {
            "jurisdiction": here,
            "name": f"{registry.get(here).name}本级",
            "reported": True,
            "revision": None,
            "compiled_on": None,
            "figures": own.model_dump(),
            "typical_cases": list(stored[0] or []) if stored else [],
        },
    )
    total = SummaryFigures()
    for row in rows:
        total = total + SummaryFigures.model_validate(row["figures"])
    return {
        "jurisdiction": here,
        "name": registry.get(here).name,
        # the congress organ reports the 一月一小结: 温岭市人大常委会, 泽国镇人大主席团, 太平街道人大工委
        "organ": registry.organ(here, Body.congress).name,
        "month": month,
        "rows": rows,
        "total": total.model_dump(),
        "reported": sum(1 for row in rows[1:] if row["reported"]),  # the lower levels that reported
    }


def _cases_text(cases_list: list[dict[str, Any]]) -> str:
    return "\n".join(f"{i}. {c['title']}" for i, c in enumerate(cases_list, 1))


def summary_xlsx(view: dict[str, Any], *, filled_by: str = "", filled_on: date | None = None) -> bytes:
    """The view in the 附件's layout: title, 填报单位 (the level's congress organ)/填报人/填报日期, the
    six columns with a first column naming each jurisdiction, one row each, a 合计 row, and the notes."""
    book = Workbook()
    sheet = book.active
    sheet.title = f"{view['month']}汇总"
    width = len(COLUMNS) + 1
    thin = Side(style="thin")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    sheet.cell(row=1, column=1, value=TITLE).font = Font(bold=True, size=14)
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    sheet.cell(row=1, column=1).alignment = Alignment(horizontal="center")
    sheet.cell(row=2, column=1, value=f"填报单位：{view['organ']}")
    sheet.cell(row=2, column=3, value=f"填报人：{filled_by}")
    sheet.cell(row=2, column=5, value=f"填报日期：{(filled_on or date.today()).isoformat()}")
    sheet.cell(row=2, column=7, value=f"统计月份：{view['month']}")
    header = ["地区", *(label for _, label in COLUMNS)]
    for column, label in enumerate(header, 1):
        cell = sheet.cell(row=3, column=column, value=label)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
        cell.border = border
    row_number = 4
    for row in view["rows"]:
        name = row["name"] if row["reported"] else f"{row['name']}（未报送）"
        values = [name, *(row["figures"][key] for key, _ in COLUMNS[:-1]), _cases_text(row["typical_cases"])]
        for column, value in enumerate(values, 1):
            cell = exports.put(sheet, row_number, column, value)  # typical cases are what people typed
            cell.border = border
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        row_number += 1
    total = ["合计", *(view["total"][key] for key, _ in COLUMNS[:-1]), ""]
    for column, value in enumerate(total, 1):
        cell = sheet.cell(row=row_number, column=column, value=value)
        cell.font = Font(bold=True)
        cell.border = border
    for offset, note in enumerate(NOTES, 2):
        sheet.cell(row=row_number + offset, column=1, value=note)
    sheet.column_dimensions["A"].width = 16
    for letter in "BCDEF":
        sheet.column_dimensions[letter].width = 18
    sheet.column_dimensions["G"].width = 40
    sheet.row_dimensions[3].height = 60
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
