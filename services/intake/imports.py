"""Bulk import of the list a liaison station collected (收集整理相关的问题、意见和建议).

A station or a township hands in its list as a spreadsheet: CSV (UTF-8 with or without BOM, or
GB18030/GBK as Excel on a Chinese Windows saves it) or XLSX (the first sheet). The first
non-empty row names the columns, in Chinese or in English:

====================  ===============  ==========================================================
column                English          value
====================  ===============  ==========================================================
类别 (required)       kind             议案 / 建议 / 提案 / 问题 / 企业诉求
案由 (required)       title            the matter's title
内容 (required)       content          what was raised (at most 20,000 characters)
领衔人 (required)     lead_name        the lead submitter's name
领衔人编号 (required) lead_id          the lead submitter's id
附议人                co_signers       ``姓名:编号`` separated by 、 or ;
渠道                  channel          代表联络站 (default) / 主题活动 / 问卷 / 大会 / 外部系统
分类                  category         e.g. 营商环境
反映主体              raised_by        the enterprise or resident it came from
联系方式              contact          how to reach them (needs 反映主体)
活动编号              activity_id      the activity it was collected at
领衔人类型            lead_kind        个人 (default) / 团体 (代表小组, 界别, 委员联络组)
联名领衔人            co_leads         the other leads of a jointly led matter, as 附议人
专题类                topical          是 / 否 (default)
所属机关              body             人大 / 政协: by default a 提案 the 政协's, any other kind the
                                       importer's body
====================  ===============  ==========================================================

Every row becomes a ``SubmitMatter`` of its own, validated like any other; a bad row is reported
with its row number (as a spreadsheet shows it: the header is row 1) and a reason in Chinese,
and never stops the good rows. Each row is submitted with the idempotency key
``<file key>:<row>``, where the file key is the request's ``Idempotency-Key`` or the SHA-256 of
the file: uploading the same file again takes nothing twice.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import ValidationError

from contracts.bodies import Body
from contracts.intake import KIND_NAMES, Channel, MatterKind, SubmitMatter
from services.runtime.es.aggregate import DomainError, NotAllowed
from services.runtime.es.eventstore import ConcurrencyError, StoreUnavailable
from services.runtime.http.app import zh_reason
from services.runtime.http.auth import Principal
from services.runtime.http.spreadsheets import MAX_BYTES, MAX_ROWS, ImportRefused, read_table

from .handlers import SUBMITTERS, IntakeHandlers

REQUIRED = ("kind", "title", "content", "lead_name", "lead_id")

#: Column names as they may appear in a file (after ``spreadsheets.header_key``) → the column.
HEADERS: dict[str, str] = {
    "类别": "kind",
    "事项类别": "kind",
    "kind": "kind",
    "案由": "title",
    "标题": "title",
    "title": "title",
    "内容": "content",
    "具体内容": "content",
    "content": "content",
    "领衔人": "lead_name",
    "领衔代表": "lead_name",
    "lead_name": "lead_name",
    "lead": "lead_name",
    "领衔人编号": "lead_id",
    "领衔代表编号": "lead_id",
    "lead_id": "lead_id",
    "附议人": "co_signers",
    "co_signers": "co_signers",
    "渠道": "channel",
    "来源渠道": "channel",
    "channel": "channel",
    "分类": "category",
    "category": "category",
    "反映主体": "raised_by",
    "raised_by": "raised_by",
    "联系方式": "contact",
    "contact": "contact",
    "活动编号": "activity_id",
    "activity_id": "activity_id",
    "领衔人类型": "lead_kind",
    "lead_kind": "lead_kind",
    "联名领衔人": "co_leads",
    "co_leads": "co_leads",
    "专题类": "topical",
    "topical": "topical",
    "所属机关": "body",
    "body": "body",
}

#: The label a column is reported by when the file did not have it (Chinese, as users know it).
LABELS = {
    "kind": "类别",
    "title": "案由",
    "content": "内容",
    "lead_name": "领衔人",
    "lead_id": "领衔人编号",
    "co_signers": "附议人",
    "channel": "渠道",
    "category": "分类",
    "raised_by": "反映主体",
    "contact": "联系方式",
    "activity_id": "活动编号",
    "lead_kind": "领衔人类型",
    "co_leads": "联名领衔人",
    "topical": "专题类",
    "body": "所属机关",
}
#: 领衔人类型: a person (代表、委员) or a group (代表小组、界别、委员联络组).
LEAD_KINDS = {"个人": "person", "代表": "person", "委员": "person", "person": "person"}
LEAD_KINDS |= {"团体": "group", "界别": "group", "代表小组": "group", "group": "group"}
BODIES = {"人大": Body.congress, "政协": Body.cppcc} | {b.value: b for b in Body}
YES_NO = {"是": True, "否": False, "": False, "yes": True, "no": False, "true": True, "false": False}

KINDS: dict[str, MatterKind] = {name: kind for kind, name in KIND_NAMES.items()} | {k.value: k for k in MatterKind}
CHANNELS: dict[str, Channel] = {
    "代表联络站": Channel.liaison_station,
    "联络站": Channel.liaison_station,
    "基层单元": Channel.liaison_station,
    "主题活动": Channel.themed_activity,
    "问卷": Channel.survey,
    "问卷调查": Channel.survey,
    "大会": Channel.session,
    "大会期间": Channel.session,
    "外部系统": Channel.external_system,
    "其他系统": Channel.external_system,
} | {c.value: c for c in Channel}

_CO_SIGNER_SPLIT = re.compile(r"[、;；\n]")
_CO_SIGNER = re.compile(r"^(?P<name>[^:：]+)[:：](?P<id>[^:：]+)$")


class RowRefused(Exception):
    """One row cannot be taken: the column at fault and why, in Chinese."""

    def __init__(self, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


# -- reading the file ----------------------------------------------------------------------
def read_rows(data: bytes) -> tuple[dict[str, str], list[tuple[int, dict[str, str]]]]:
    """The columns found and the non-empty data rows of a list of matters (``read_table``)."""
    return read_table(data, HEADERS, REQUIRED, LABELS, example="类别、案由、内容、领衔人、领衔人编号")


# -- one row -------------------------------------------------------------------------------
def _co_signers(text: str, column: str = "co_signers") -> list[dict[str, str]]:
    found = []
    for part in _CO_SIGNER_SPLIT.split(text):
        part = part.strip()
        if not part:
            continue
        match = _CO_SIGNER.match(part)
        if match is None or not match["name"].strip() or not match["id"].strip():
            raise RowRefused(column, "格式应为“姓名:编号”，多人以“、”或“;”分隔")
        found.append({"name": match["name"].strip(), "id": match["id"].strip()})
    return found


#: Where a field of ``SubmitMatter`` comes from in the file.
_FIELD_COLUMNS = {
    "kind": "kind",
    "title": "title",
    "content": "content",
    "lead": "lead_name",
    "co_signers": "co_signers",
    "co_leads": "co_leads",
    "topical": "topical",
    "body": "body",
    "channel": "channel",
    "category": "category",
    "raised_by": "raised_by",
    "activity_id": "activity_id",
}


def _column_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "matter":
        parts = parts[1:]
    if not parts:
        return "co_signers"  # the model's own rule: a submitter appears twice
    head = parts[0]
    if head == "lead" and len(parts) > 1 and parts[1] == "id":
        return "lead_id"
    if head == "raised_by" and len(parts) > 1 and parts[1] == "contact":
        return "contact"
    return _FIELD_COLUMNS.get(head)


def row_command(row: dict[str, str], *, raised_in: str) -> SubmitMatter:
    """The ``SubmitMatter`` of one row, or ``RowRefused`` naming the column and the reason."""
    kind_text = row.get("kind", "")
    if not kind_text:
        raise RowRefused("kind", "必填")
    kind = KINDS.get(kind_text) or KINDS.get(kind_text.lower())
    if kind is None:
        raise RowRefused("kind", f"应为 {'、'.join(KIND_NAMES.values())} 之一")
    channel_text = row.get("channel", "")
    channel = (
        (CHANNELS.get(channel_text) or CHANNELS.get(channel_text.lower())) if channel_text else Channel.liaison_station
    )
    if channel is None:
        raise RowRefused("channel", "应为 代表联络站、主题活动、问卷、大会、外部系统 之一")
    raised_by = None
    if row.get("raised_by"):
        raised_by = {"name": row["raised_by"], "contact": row.get("contact") or None}
    elif row.get("contact"):
        raise RowRefused("raised_by", "填写联系方式时须填写反映主体")
    lead_kind = LEAD_KINDS.get(row.get("lead_kind", "") or "个人")
    if lead_kind is None:
        raise RowRefused("lead_kind", "应为 个人 或 团体（代表小组、界别）")
    body = BODIES.get(row.get("body", "")) if row.get("body") else None
    if row.get("body") and body is None:
        raise RowRefused("body", "应为 人大 或 政协")
    topical = YES_NO.get(row.get("topical", "").lower())
    if topical is None:
        raise RowRefused("topical", "应为 是 或 否")
    matter = {
        "kind": kind,
        "body": body,
        "title": row.get("title", ""),
        "content": row.get("content", ""),
        "lead": {"name": row.get("lead_name", ""), "id": row.get("lead_id", ""), "kind": lead_kind},
        "co_leads": _co_signers(row.get("co_leads", ""), "co_leads"),
        "topical": topical,
        "co_signers": _co_signers(row.get("co_signers", "")),
        "channel": channel,
        "raised_in": raised_in,
        "category": row.get("category") or None,
        "raised_by": raised_by,
        "activity_id": row.get("activity_id") or None,
    }
    try:
        return SubmitMatter.model_validate({"matter": matter})
    except ValidationError as err:
        first = err.errors(include_input=False, include_url=False)[0]
        raise RowRefused(_column_of(first["loc"]), zh_reason(first)) from None


# -- the import ----------------------------------------------------------------------------
def file_key(data: bytes, idempotency_key: str | None) -> str:
    """What the rows' idempotency keys start with: the request's key, else the file's hash."""
    return idempotency_key or hashlib.sha256(data).hexdigest()


async def import_matters(
    handlers: IntakeHandlers,
    principal: Principal,
    data: bytes,
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Submit every good row of the file; report ``{"taken": [{row, matter_id}], "refused":
    [{row, field, reason}], "total"}``. A principal who may not submit here is refused before
    any row is read (403); a file that cannot be read raises :class:`ImportRefused`."""
    if principal.jurisdiction != handlers.here:
        raise NotAllowed(f"无权操作 {handlers.here} 的事项", field="jurisdiction")
    if not principal.has(*SUBMITTERS):
        raise NotAllowed("当前身份不能提交事项")
    labels, rows = read_rows(data)
    key = file_key(data, idempotency_key)
    taken: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []

    def refuse(number: int, column: str | None, reason: str) -> None:
        label = labels.get(column, LABELS.get(column, column)) if column else None
        refused.append({"row": number, "field": label, "reason": reason})

    for number, row in rows:
        try:
            command = row_command(row, raised_in=handlers.here)
            matter = await handlers.submit(command, principal, f"{key}:{number}")
        except RowRefused as err:
            refuse(number, err.column, err.reason)
        except DomainError as err:
            column = _column_of(err.field.split(".")) if err.field else None
            refuse(number, column, err.message)
        except ConcurrencyError:
            refuse(number, None, "并发冲突，请重新上传（已导入的行不会重复导入）")
        except StoreUnavailable:
            refuse(number, None, "事件存储暂时不可用，请稍后重新上传（已导入的行不会重复导入）")
        else:
            taken.append({"row": number, "matter_id": matter.id})
    return {"taken": taken, "refused": refused, "total": len(rows)}


__all__ = [
    "MAX_BYTES",
    "MAX_ROWS",
    "ImportRefused",
    "RowRefused",
    "file_key",
    "import_matters",
    "read_rows",
    "row_command",
]
