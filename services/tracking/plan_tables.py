"""A plan's items as the office keeps them: the 附件 table (XLSX or CSV), one row per item.

Columns (the first row names them; ``*`` required): 编号*, 序号, 类别 (专题、主题活动、重点工作、
民生实事项目、专项行动、辖区工作), 项目*, 具体内容, 牵头领导, 责任领导, 联系领导, 工委 (责任工委、
牵头委办), 牵头单位 (△), 责任单位 (协办单位), 开始, 结束 (时限: days, or months such as 2023-03),
期限 (the item's own due day), 参与小组 (group ids). Several names in a cell are separated by 、
or ；. Every row is checked and a file with any bad row is refused whole, each bad row named with
its number and reasons, so that nothing is stored from half a table.
"""

from __future__ import annotations

import re
from calendar import monthrange
from datetime import date
from typing import Any

from pydantic import ValidationError

from contracts.plans import ITEM_KIND_NAMES, LeaderRole, PlanItemDraft
from services.runtime.es.aggregate import DomainError
from services.runtime.http.spreadsheets import ImportRefused, header_key, read_table

HEADERS = {
    header_key(name): column
    for column, names in {
        "id": ("编号", "项目编号"),
        "seq": ("序号",),
        "kind": ("类别", "类型"),
        "title": ("项目", "项目名称", "活动主题", "工作内容", "专题"),
        "content": ("具体内容", "具体工作", "内容"),
        "lead": ("牵头领导",),
        "responsible": ("责任领导",),
        "contact": ("联系领导",),
        "committees": ("工委", "责任工委", "牵头委办", "联系委办"),
        "lead_units": ("牵头单位", "主办单位"),
        "co_units": ("责任单位", "协办单位", "实施单位"),
        "start": ("开始", "开始时间"),
        "end": ("结束", "结束时间"),
        "due_on": ("期限", "办理期限"),
        "groups": ("参与小组", "代表小组"),
    }.items()
    for name in names
}
LABELS = {
    "id": "编号",
    "seq": "序号",
    "kind": "类别",
    "title": "项目",
    "content": "具体内容",
    "lead": "牵头领导",
    "responsible": "责任领导",
    "contact": "联系领导",
    "committees": "工委",
    "lead_units": "牵头单位",
    "co_units": "责任单位",
    "start": "开始",
    "end": "结束",
    "due_on": "期限",
    "groups": "参与小组",
}
KINDS = {name: kind for kind, name in ITEM_KIND_NAMES.items()} | {kind.value: kind for kind in ITEM_KIND_NAMES}


def names(cell: str) -> list[str]:
    return [part.strip() for part in re.split(r"[、;；,，\n]", cell or "") if part.strip()]


def day(cell: str, *, end: bool) -> date | None:
    """A day written as 2023-03-01 (or with a time), or a month as 2023-03 / 2023年3月: its
    first day, or its last for an end."""
    text = (cell or "").strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d{4})[-/年.](\d{1,2})(?:[-/月.](\d{1,2})日?)?(?:[ T].*)?月?", text)
    if match is None:
        raise ValueError(f"「{text}」不是日期（如 2023-03-01 或 2023-03）")
    year, month = int(match[1]), int(match[2])
    if match[3]:
        return date(year, month, int(match[3]))
    return date(year, month, monthrange(year, month)[1] if end else 1)


def read_items(content: bytes) -> list[PlanItemDraft]:
    """The items of the table; refuses the whole file (in Chinese, row by row) if any row is bad."""
    try:
        _, rows = read_table(
            content, HEADERS, ("id", "title"), LABELS, example="编号、类别、项目、牵头领导、工委、牵头单位、开始、结束"
        )
    except ImportRefused as err:
        raise DomainError(err.message, field="file", code=err.code) from None
    items: list[PlanItemDraft] = []
    problems: list[str] = []
    for number, row in rows:
        reasons: list[str] = []
        values: dict[str, Any] = {"id": row.get("id", ""), "title": row.get("title", "")}
        kind = row.get("kind", "").strip() or "专题"
        if kind not in KINDS:
            reasons.append(f"类别「{kind}」应为{'、'.join(ITEM_KIND_NAMES.values())}之一")
        values["kind"] = KINDS.get(kind, kind)
        for column in ("seq", "content"):
            if row.get(column):
                values[column] = row[column]
        values["leaders"] = [
            {"name": name, "role": role.value}
            for column, role in (
                ("lead", LeaderRole.lead),
                ("responsible", LeaderRole.responsible),
                ("contact", LeaderRole.contact),
            )
            for name in names(row.get(column, ""))
        ]
        for column in ("committees", "lead_units", "co_units", "groups"):
            values[column] = names(row.get(column, ""))
        try:
            start, end = day(row.get("start", ""), end=False), day(row.get("end", ""), end=True)
            if start or end:
                values["window"] = {"start": start or end, "end": end or start}
            if due := day(row.get("due_on", ""), end=True):
                values["due_on"] = due
        except ValueError as exc:
            reasons.append(str(exc))
        if not reasons:
            try:
                items.append(PlanItemDraft.model_validate(values))
            except ValidationError as exc:
                for error in exc.errors(include_url=False, include_input=False):
                    where = LABELS.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else "该行"
                    reasons.append(f"{where}：{error.get('ctx', {}).get('error') or '内容不符合要求'}")
        if reasons:
            problems.append(f"第 {number} 行：{'；'.join(reasons)}")
    if problems:
        raise DomainError(
            "工作方案项目表有误，未导入任何内容。" + " ".join(problems[:20]), field="file", code="bad_rows"
        )
    ids = [i.id for i in items]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise DomainError(f"项目编号重复：{'、'.join(duplicated)}", field="file", code="bad_rows")
    return items
