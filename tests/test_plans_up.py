"""Seeds 000 and 001 through the API of ``duban up`` (three levels, every service its own
process): the plans imported from their files; seed 001's activities found by month and a
township's problem collected for a county activity linked to it; seed 000's shape end to end:
problems of two townships collected for a topic, escalated and counted under it at the county,
an inquiry question answered in writing on time, the motion given a deadline before the next
session and evaluated with two topics, its result on its case and its unit told, and the topic
rated below the bar opening a rectification."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import openpyxl
import pytest

from contracts.envelope import SHANGHAI
from contracts.plans import Window
from services.tracking.plans import PLANS_DIR
from tests.support.processes import Up, free_port_block, wait_for

W, Z, D = "331081", "331081100", "331081101"  # 温岭市, 泽国镇, 大溪镇
QG = PLANS_DIR / "wenling-2022-qiang-gong-xing-shi.json"
YS = PLANS_DIR / "wenling-2023-business-environment.json"
FZ = PLANS_DIR / "wenling-2022-group-supervision.json"


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    system = Up(
        tmp_path_factory.mktemp("plans") / ".duban",
        free_port_block(3),
        "--levels",
        f"{W},{Z},{D}",
        "--services",
        "intake,tracking,evaluation,notify,directory",
    )
    try:
        system.wait_ready(150)
        yield system
    finally:
        system.stop()


class Api:
    """The HTTP calls of the scenario, each checked, as committee staff unless told."""

    def __init__(self, up: Up) -> None:
        self.up = up
        self.http = httpx.Client(timeout=30)
        self.tokens: dict[tuple[str, str], dict[str, str]] = {}

    def person(self, code: str, kind: str) -> dict[str, str]:
        key = (code, kind)
        if key not in self.tokens:
            signed_in = wait_for(
                lambda: (done := self.up.sign_in(f"{kind}-{code}", code)).returncode == 0 and done,
                60,
                f"{kind}-{code} enrolled",
            )
            self.tokens[key] = {"Authorization": f"Bearer {signed_in.stdout.strip()}"}
        return self.tokens[key]

    def call(self, method, code, service, path, *, who="committee", expect=(200, 201), **kwargs):
        answer = self.http.request(
            method, f"{self.up.url(code, service)}{path}", headers=self.person(code, who), **kwargs
        )
        assert answer.status_code in expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def until(self, what, check, timeout=60.0):
        found = None

        def done():
            nonlocal found
            found = check()
            return bool(found)

        wait_for(done, timeout, what)
        return found

    def import_plan(self, path) -> dict:
        def attempt():
            files = {"file": (path.name, path.read_bytes(), "application/json")}
            answer = self.http.post(
                f"{self.up.url(W, 'tracking')}/plans/import", files=files, headers=self.person(W, "committee")
            )
            if answer.status_code == 422 and "unknown_unit" in answer.text:
                return None  # the directory's units not yet in tracking's copy
            assert answer.status_code == 200, answer.text
            return answer.json()

        return self.until(f"{path.name} imported", attempt)

    def problem(self, code: str, title: str, item: tuple[str, str]) -> str:
        """A problem raised at a township for a county plan's item, registered and escalated;
        the county's matter it became."""
        matter = {
            "kind": "problem",
            "title": title,
            "content": f"{title}，企业反映强烈。",
            "channel": "liaison_station",
            "lead": {"id": f"deputy-{code}", "name": "王代表"},
            "raised_in": code,
            "raised_by": {"name": "温岭某机电有限公司"},
            "plan_item": {"jurisdiction": W, "plan_id": item[0], "item_id": item[1]},
        }
        raised = self.call("POST", code, "intake", "/matters", who="liaison_station", json={"matter": matter})
        self.call("POST", code, "intake", f"/matters/{raised['id']}/register")
        self.call("POST", code, "intake", f"/matters/{raised['id']}/escalate", json={"reason": "超出本级事权"})
        return self.until(
            "the problem taken in at 温岭市",
            lambda: self.call("GET", code, "intake", f"/matters/{raised['id']}")["matter"]["forwarded_matter_id"],
        )


@pytest.fixture(scope="module")
def api(up):
    client = Api(up)
    for path in (QG, YS, FZ):
        assert client.import_plan(path)["result"] == "created"
    return client


def test_the_three_plans_import_once_and_list_with_their_items(api):
    assert api.import_plan(QG)["result"] == "unchanged"
    plans = {p["id"]: p for p in api.call("GET", W, "tracking", "/plans")["items"]}
    assert {k: v["items"] for k, v in plans.items()} == {"wl2022qg": 14, "wl2023ys": 21, "wl2022fz": 51}
    assert [p["name"] for p in plans["wl2022qg"]["phases"]] == [
        "前期准备阶段",
        "调研阶段",
        "询问方案形成阶段",
        "询问阶段",
        "跟踪测评阶段",
    ]
    # 责任领导 and 联系领导 of seed 004 come back, and the items filter by them
    led = api.call("GET", W, "tracking", "/plan-items", params={"plan": "wl2022fz", "leader": "金加树"})["items"]
    assert led and all("责任领导 金加树" in i["leader_names"] for i in led)
    by_committee = api.call("GET", W, "tracking", "/plan-items", params={"plan": "wl2022qg", "committee": "预算工委"})
    assert [i["title"] for i in by_committee["items"]] == ["涉企财政性扶持政策方面", "金融服务保障方面"]


def test_seed_001_activities_by_month_and_a_township_problem_collected_for_one(api):
    plan = json.loads(YS.read_text(encoding="utf-8"))
    # October: all but 预算工委's 6-8月, 专题询问's 3-6月 and 履职评议's 12月; July: the sixteen rows
    # of 3-12月 and 6-8月; December: the sixteen, 专题调研's 10-12月 and 履职评议
    for month, count in ((10, 18), (7, 17), (12, 18), (2, 0)):
        expected = {i["id"] for i in plan["items"] if Window.model_validate(i["window"]).covers_month(2023, month)}
        found = api.call("GET", W, "tracking", "/plan-items", params={"month": f"2023-{month:02d}", "plan": "wl2023ys"})
        assert {i["id"] for i in found["items"]} == expected and len(expected) == count, month

    county_matter = api.problem(Z, "企业开办跨部门材料重复提交", ("wl2023ys", "wl2023ys-01"))
    mine = api.call("GET", Z, "intake", "/matters", params={"plan_item": "wl2023ys-01"})["items"]
    assert len(mine) == 1  # the township sees what it collected for the county's activity
    collected = api.until(
        "the matter counted under the activity at 温岭市",
        lambda: api.call("GET", W, "tracking", "/plans/wl2023ys/matters", params={"item": "wl2023ys-01"})["items"],
    )
    assert [(m["matter_id"], m["raised_in"]) for m in collected] == [(county_matter, Z)]
    at_county = api.call("GET", W, "intake", f"/matters/{county_matter}")["matter"]
    assert at_county["plan_item"] == "wl2023ys-01" and at_county["plan_id"] == "wl2023ys"


def test_seed_000_end_to_end(api):
    today = datetime.now(UTC).astimezone(SHANGHAI).date()
    t05, t01 = ("wl2022qg", "wl2022qg-t05"), ("wl2022qg", "wl2022qg-t01")
    # 1. two townships collect problems for the county's topics and escalate them
    from_z = [api.problem(Z, f"泽国镇企业反映施工许可审批慢{n}", t05) for n in range(2)]
    api.problem(D, "大溪镇企业反映竣工联合验收环节多", t05)
    api.problem(D, "大溪镇泵业数字化改造补助难申请", t01)

    def counted():
        plan = api.call("GET", W, "tracking", "/plans/wl2022qg")
        items = {i["id"]: i for i in plan["items"]}
        return items if items["wl2022qg-t05"]["matters"] == 3 and items["wl2022qg-t01"]["matters"] == 1 else None

    items = api.until("the problems counted under the topics", counted)
    assert items["wl2022qg-t05"]["matters_by_place"] == {Z: 2, D: 1}
    assert items["wl2022qg-t01"]["matters_by_place"] == {D: 1}
    duties = api.call("GET", W, "tracking", "/plans/wl2022qg/duties")["items"]
    problems = {r["group_id"]: r for r in duties if r["duty"] == "problems"}
    assert len(problems) == 16
    assert (problems[f"wl2022qg-{Z}"]["have"], problems[f"wl2022qg-{Z}"]["need"]) == (2, 10)
    assert problems[f"wl2022qg-{D}"]["have"] == 2 and problems[f"wl2022qg-{D}"]["status"] == "overdue"
    # the plan revised: topic (五) to be answered within sixty days (every change an event, listed)
    draft = json.loads(QG.read_text(encoding="utf-8"))
    plan_id = draft.pop("id")
    draft.pop("jurisdiction")
    topic_due = today + timedelta(days=60)
    for item in draft["items"]:
        if item["id"] == "wl2022qg-t05":
            item["due_on"] = topic_due.isoformat()
    revised = api.call("POST", W, "tracking", f"/plans/{plan_id}/revise", json={"plan": draft})
    assert revised["version"] > 1
    changes = api.until(
        "the revision listed",
        lambda: api.call("GET", W, "tracking", f"/plans/{plan_id}")["changes"],
    )
    assert changes[-1]["changes"] == ["修改项目 wl2022qg-t05"]
    # the escalated problem is handled at the county under its topic: the 督办清单 filters by plan and item
    first = from_z[0]
    api.call("POST", W, "intake", f"/matters/{first}/register")
    api.call("POST", W, "intake", f"/matters/{first}/route", json={"committee": "社会建设工委"})
    cases = api.until(
        "the case of the topic",
        lambda: api.call("GET", W, "tracking", "/cases", params={"plan": "wl2022qg", "item": "wl2022qg-t05"})["items"],
    )
    assert [c["id"] for c in cases] == [first]
    # assigned without a deadline of its own: the topic's day, set by the plan
    assign = {"lead_unit": {"id": f"unit-{W}", "name": "温岭市交通运输局"}, "committee": "社会建设工委"}
    assigned = api.call("POST", W, "tracking", f"/cases/{first}/assign", json=assign)
    assert assigned["deadline"]["due_on"] == topic_due.isoformat()
    # the four lists filter by plan and item, in JSON and in the files
    problems_list = api.until(
        "the problems on the 问题清单 of the plan",
        lambda: (
            (rows := api.call("GET", W, "notify", "/lists/problems", params={"plan": "wl2022qg"}))["count"] == 4
            and rows
        ),
    )
    assert problems_list["count"] == 4
    by_item = api.call("GET", W, "notify", "/lists/problems", params={"item": "wl2022qg-t01"})
    assert by_item["count"] == 1
    assert "大溪镇泵业数字化改造补助难申请" in [cell for row in by_item["rows"] for cell in row]

    # 2. an inquiry question sent to a unit in writing with the plan's deadline, answered on time
    due = today + timedelta(days=20)
    question = {
        "item_id": "wl2022qg-t05",
        "title": "“拿地即开工”审批制度改革何时全面推行？",
        "content": "请书面答复“拿地即开工”审批制度改革的推进计划及时间表。",
        "unit": f"unit-{W}",
        "due_on": due.isoformat(),
    }
    sent = api.call("POST", W, "tracking", "/plans/wl2022qg/questions", json=question)
    assert sent["kind"] == "inquiry" and sent["status"] == "assigned" and sent["deadline"]["due_on"] == due.isoformat()
    again = api.call("POST", W, "tracking", "/plans/wl2022qg/questions", json=question)
    assert again["id"] == sent["id"]  # the same question is one case
    listed = api.until(
        "the question on the 督办清单",
        lambda: api.call("GET", W, "tracking", "/cases", params={"kind": "inquiry", "plan": "wl2022qg"})["items"],
    )
    assert [c["id"] for c in listed] == [sent["id"]] and listed[0]["kind_name"] == "询问问题"
    reply = {"reply_class": "A", "text": "已制定推进计划，年内在全市推行。"}
    api.call("POST", W, "tracking", f"/cases/{sent['id']}/reply", who="unit-staff", json=reply)
    answered = api.until(
        "the answer in the list",
        lambda: (row := api.call("GET", W, "tracking", f"/cases/{sent['id']}")["row"])["status"] == "replied" and row,
    )
    assert answered["reply_on_time"] is True
    xlsx = api.http.get(
        f"{api.up.url(W, 'notify')}/lists/supervision",
        params={"plan": "wl2022qg", "format": "xlsx"},
        headers=api.person(W, "committee"),
    )
    assert xlsx.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    cells = [str(c) for row in book.active.iter_rows(values_only=True) for c in row if c]
    assert any(question["title"] in c for c in cells)
    assert not any("泽国镇企业反映施工许可审批慢1" in c for c in cells)  # not handled here: not on it

    # 3. the motion: its deadline set to before the next session, within the policy
    motion = {
        "kind": "motion",
        "title": "关于实施“强工兴市”战略的议案",
        "content": "建议围绕产业优化升级、营商环境等方面实施“强工兴市”战略。",
        "channel": "session",
        "lead": {"id": f"deputy-{W}", "name": "王代表"},
        "raised_in": W,
    }
    raised = api.call("POST", W, "intake", "/matters", who="deputy", json={"matter": motion})
    api.call("POST", W, "intake", f"/matters/{raised['id']}/register")
    api.call("POST", W, "intake", f"/matters/{raised['id']}/route", json={"committee": "财经工委"})
    api.until("the motion's case", lambda: api.call("GET", W, "tracking", "/cases", params={"kind": "motion"})["items"])
    unit = {"id": f"unit-{W}", "name": "温岭市交通运输局"}
    too_late = {"lead_unit": unit, "committee": "财经工委", "due_on": (today + timedelta(days=500)).isoformat()}
    refused = api.call("POST", W, "tracking", f"/cases/{raised['id']}/assign", json=too_late, expect=(409, 422))
    assert "办理期限不能晚于" in json.dumps(refused, ensure_ascii=False)
    session_day = today + timedelta(days=120)
    assign = {"lead_unit": unit, "committee": "财经工委", "due_on": session_day.isoformat()}
    assigned = api.call("POST", W, "tracking", f"/cases/{raised['id']}/assign", json=assign)
    assert assigned["deadline"]["due_on"] == session_day.isoformat()
    api.call("POST", W, "tracking", f"/cases/{raised['id']}/reply", who="unit-staff", json=reply)

    # 4. 满意度测评 of the motion and of two topics by 太平街道代表小组 (the directory's group)
    now = datetime.now(UTC)
    subjects = [
        {"kind": "motion", "id": raised["id"], "title": motion["title"], "unit": unit},
        {"kind": "plan_item", "id": "wl2022qg-t05", "title": "政务服务及中介服务方面"},
        {"kind": "plan_item", "id": "wl2022qg-t01", "title": "产业优化升级方面"},
    ]
    session = api.call(
        "POST",
        W,
        "evaluation",
        "/sessions",
        json={
            "kind": "satisfaction",
            "title": "“强工兴市”大会主题议案办理情况满意度测评",
            "subjects": subjects,
            "roster": "2022-dg-01",
            "opens_at": (now - timedelta(minutes=1)).isoformat(),
            "closes_at": (now + timedelta(hours=1)).isoformat(),
        },
    )
    api.call("POST", W, "evaluation", f"/sessions/{session['id']}/open")
    for n in range(1, 9):
        t05_option = "dissatisfied" if n <= 6 else "satisfied"
        sheet = {
            "evaluator_id": f"deputy-331081-{n:03d}",
            "choices": [
                {"subject_id": raised["id"], "option": "satisfied"},
                {"subject_id": "wl2022qg-t05", "option": t05_option},
                {"subject_id": "wl2022qg-t01", "option": "basically_satisfied"},
            ],
        }
        api.call("POST", W, "evaluation", f"/sessions/{session['id']}/ballots", json=sheet)
    api.call("POST", W, "evaluation", f"/sessions/{session['id']}/close")

    # the motion's result is on its case, and its unit is told
    history = api.until(
        "the result on the motion's case",
        lambda: [
            h
            for h in api.call("GET", W, "tracking", f"/cases/{raised['id']}")["history"]
            if "满意度测评" in h["summary_zh"]
        ],
    )
    assert "满意 8" in history[0]["summary_zh"] and "满意率 100%" in history[0]["summary_zh"]
    inbox = api.until(
        "the results in the unit's inbox",
        lambda: [
            n
            for n in api.call("GET", W, "notify", "/inbox", who="unit-staff")["items"]
            if n["kind"] == "evaluation_results"
        ],
    )
    assert motion["title"] in inbox[0]["subject"]

    # the topics' results are on the items; the one below the bar opened a rectification
    def evaluated():
        plan = api.call("GET", W, "tracking", "/plans/wl2022qg")
        items = {i["id"]: i for i in plan["items"]}
        done = items["wl2022qg-t05"]["evaluation"] and items["wl2022qg-t01"]["evaluation"]
        return items if done else None

    items = api.until("the topics' results", evaluated)
    low, fine = items["wl2022qg-t05"]["evaluation"], items["wl2022qg-t01"]["evaluation"]
    assert (low["below_bar"], low["valid"], round(low["rate"], 2)) == (True, 8, 0.25)
    assert (fine["below_bar"], fine["rate"]) == (False, 1.0)
    rectification = api.until(
        "the rectification on the 督办清单",
        lambda: api.call("GET", W, "tracking", "/cases", params={"kind": "rectification", "plan": "wl2022qg"})["items"],
    )
    assert [(r["id"], r["plan_item"], r["status"]) for r in rectification] == [
        (low["rectification_id"], "wl2022qg-t05", "opened")  # the topic names no unit: staff assign it
    ]
    leaders = api.until(
        "the lead leader told",
        lambda: [
            d
            for d in api.call("GET", W, "notify", "/deliveries", who="operator", params={"topic": "wl2022qg"})["items"]
            if d["kind"] == "plan_item_results"
        ],
    )
    assert {d["recipient_name"] for d in leaders} >= {"狄德兴", "骆立方"}
