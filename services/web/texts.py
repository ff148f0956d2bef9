"""What the pages say that the services do not: roles, navigation, dates as people write them."""

from __future__ import annotations

from datetime import date, datetime

from contracts.envelope import SHANGHAI

ROLE_NAMES = {
    "deputy": "代表",
    "liaison_station": "联络站",
    "committee": "工委",
    "unit": "承办单位",
    "leader": "领导",
    "evaluator": "测评人",
    "operator": "运维",
    "admin": "管理员",
    "system": "系统",
}

#: What the 政协's people are called where they differ (a 委员, the 提案委's staff).
CPPCC_ROLE_NAMES = ROLE_NAMES | {"deputy": "委员", "committee": "提案委"}

CASE_STATUS_NAMES = {
    "opened": "待交办",
    "assigned": "办理中",
    "returned": "已退回",
    "in_review": "答复待审核",
    "replied": "已答复",
    "rehandling": "重新办理",
    "closed": "已办结",
}

RATING_NAMES = {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}
REPLY_CLASS_NAMES = {"A": "A类（已解决或基本解决）", "B": "B类（列入计划逐步解决）", "C": "C类（因条件限制暂难解决）"}

#: The navigation of each role, in order: (path, label). Room is kept for what comes later
#: (扫码反映, the hall's ballot pages, the leaders' overview).
NAVIGATION = {
    "deputy": [("/matters/new", "反映问题"), ("/matters", "我的事项")],
    "liaison_station": [("/matters/new", "反映问题"), ("/matters", "本站事项")],
    "committee": [
        ("/review", "待审查"),
        ("/matters", "全部事项"),
        ("/cases", "督办清单"),
        ("/plans", "工作方案"),
        ("/lists", "四张清单"),
        ("/summary", "月度小结"),
    ],
    "unit": [("/cases", "我的办理件"), ("/plans", "工作方案")],
    "leader": [("/cases", "督办清单"), ("/plans", "工作方案"), ("/lists", "四张清单")],
    "admin": [("/review", "待审查"), ("/cases", "督办清单")],
}


def zh_date(value: date | datetime | str | None) -> str:
    """``2026年11月27日``; an instant as its day in Shanghai."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.astimezone(SHANGHAI) if value.tzinfo else value
        return f"{value.year}年{value.month}月{value.day}日 {value.hour:02d}:{value.minute:02d}"
    return f"{value.year}年{value.month}月{value.day}日"


def navigation(roles: list[str]) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for role in roles:
        for path, label in NAVIGATION.get(role, []):
            found.setdefault(path, label)
    return [*found.items(), ("/inbox", "通知")]
