"""What a plan's duties stand at: for each duty, and for each group that owes it, what is had,
what is needed, and whether it is met, due soon or overdue (the same words as for cases).

Counted duties are measured from what their holders record elsewhere: a group's activities
(集中活动, ``GroupActivityRecorded``) held by the due day, and the matters collected for the plan
in a group's township (``tracking_plan_matters``: raised here or arrived from below). The others
are met when staff mark them done (``PlanDutyDone``). Each item's milestones (形象进度) are watched
the same way, owed by the item's lead units and met once progress against them is reported met.
Pure: the sweep and the API pass the facts.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from contracts.plans import DUTY_KIND_NAMES, DutyKind, PlanData, duty_holder

STATUS_NAMES = {"met": "已完成", "pending": "未到期", "due_soon": "即将到期", "overdue": "已超期"}


def _status(met: bool, due_on: date, today: date, due_soon_from: date) -> str:
    if met:
        return "met"
    if today > due_on:
        return "overdue"
    return "due_soon" if today >= due_soon_from else "pending"


def duty_rows(
    row: dict[str, Any],
    *,
    today: date,
    due_soon_from: dict[date, date],
    activity_days: dict[str, list[str]],
    matter_counts: dict[tuple[str, str], int],
) -> list[dict[str, Any]]:
    """One row per duty and holder of the plan ``row`` (a ``tracking_plans`` row).

    ``due_soon_from`` gives, for each due day, the first day it counts as due soon."""
    plan = PlanData.model_validate(row["data"])
    done = row["done"] or {}
    urged = {(u["duty"], u["group_id"], u["threshold"]) for u in row["urged"] or []}
    start = min((p.start for p in plan.phases), default=date(plan.year, 1, 1))
    by_township: dict[str, int] = {}
    for (_, where), n in matter_counts.items():
        by_township[where] = by_township.get(where, 0) + n
    rows = []
    for phase, duty in plan.duties():
        holders = plan.groups if duty.per_group else [None]
        for group in holders:
            group_id = group.id if group is not None else None
            holder = duty_holder(duty.key, group_id)
            if duty.kind is DutyKind.activities:
                days = activity_days.get(group_id, []) if group_id else [d for v in activity_days.values() for d in v]
                have = sum(1 for d in days if start <= date.fromisoformat(d) <= duty.due_on)
            elif duty.kind is DutyKind.problems:
                if group is not None:
                    have = by_township.get(group.township or "", 0)
                else:
                    have = sum(by_township.values())
            else:
                have = 1 if holder in done else 0
            need = duty.min_count if duty.kind in (DutyKind.activities, DutyKind.problems) else 1
            status = _status(have >= need or holder in done, duty.due_on, today, due_soon_from[duty.due_on])
            rows.append(
                {
                    "phase": phase.key,
                    "phase_name": phase.name,
                    "duty": duty.key,
                    "title": duty.title,
                    "kind": duty.kind.value,
                    "kind_name": DUTY_KIND_NAMES[duty.kind],
                    "due_on": duty.due_on,
                    "group_id": group_id,
                    "group_name": group.name if group is not None else None,
                    "township": group.township if group is not None else None,
                    "committee": group.committee if group is not None else None,
                    "leader": group.leader if group is not None else None,
                    "have": have,
                    "need": need,
                    "status": status,
                    "status_name": STATUS_NAMES[status],
                    "done": done.get(holder),
                    "urged": sorted(t for d, g, t in urged if d == duty.key and g == group_id),
                    "item_id": None,
                    "units": [],
                }
            )
    progress = row["progress"] or {}
    for item in plan.items:
        for milestone in item.milestones:
            key = f"{item.id}/{milestone.key}"
            met = bool((progress.get(key) or {}).get("met"))
            status = _status(met, milestone.due_on, today, due_soon_from[milestone.due_on])
            when = f"第{milestone.quarter}季度" if milestone.quarter else ""
            rows.append(
                {
                    "phase": None,
                    "phase_name": None,
                    "duty": key,
                    "title": f"{item.title[:60]}：{when}形象进度",
                    "kind": "milestone",
                    "kind_name": "形象进度",
                    "due_on": milestone.due_on,
                    "group_id": None,
                    "group_name": None,
                    "township": None,
                    "committee": item.committees[0] if item.committees else None,
                    "leader": None,
                    "have": int(met),
                    "need": 1,
                    "status": status,
                    "status_name": STATUS_NAMES[status],
                    "done": progress.get(key),
                    "urged": sorted(t for d, g, t in urged if d == key and g is None),
                    "item_id": item.id,
                    "units": [u.model_dump() for u in item.lead_units],
                }
            )
    return rows
