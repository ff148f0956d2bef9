"""Seed 002 end to end, the CPPCC's way, through the API of ``duban up`` (温岭市, every service its
own process): the CPPCC's members, 界别 and staff enrolled from a roster, the 14 key proposals entered
by the 提案委 with their leads as the seed has them (sector groups, persons, merged ones, the joint one),
numbered in the CPPCC's own book, handled by their units, appraised by a 民主评议 of the standing
committee and disclosed under the CPPCC's heading in number order with every lead; the congress's
staff can do none of it and its book is untouched; every notice about them is signed by the CPPCC
and greets people by name."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contracts.envelope import SHANGHAI
from tests.support.processes import Up, free_port_block, wait_for

W = "331081"
SEED = Path(__file__).parent / "data" / "seeds" / "002_2b820db0cf9ff608.txt"
CPPCC = "政协温岭市委员会"
HEADING = "政协温岭市委员会重点提案办理落实情况公示"

#: The persons among the seed's leads (政协委员), each in a sector (界别) or 委员联络组.
MEMBERS = {
    "王云安": "科技界",
    "陈伟": "经济界一组",
    "金航宇": "青联",
    "陈林一": "经济界二组",
    "王建宏": "经济界三组",
    "叶文龙": "社科界",
    "王诚慧": "政协城东街道委员联络组",
    "王永进": "科学技术界",
}
#: The standing committee (常委) who appraise, so that every group the seed names has members.
STANDING = {
    "林国平": "台联界",
    "郑海燕": "科协界",
    "徐志强": "民宗界",
    "陈晓东": "农业界",
    "黄美玲": "政协泽国镇委员联络组",
    "潘建军": "政协坞根镇委员联络组",
    "周立新": "经济界一组",
}
STAFF_NAME = "林晓红"  # 提案委 staff


@dataclass
class Record:
    title: str
    marks: list[str]
    leads: list[str]
    unit: str
    summary: str


def seed_records() -> list[Record]:
    """The 14 records of seed 002 as its text gives them."""
    records = []
    for chunk in SEED.read_text(encoding="utf-8").split("**案由：**")[1:]:
        first, rest = chunk.split("\n", 1)
        title = re.match(r"《(.+?)》", first).group(1)
        leads = re.search(r"\*\*提案领衔者：\*\*(.+)", rest).group(1).strip().split("、")
        unit = re.search(r"\*\*主办单位：\*\*(.+)", rest).group(1).strip()
        summary = rest.split("**办理落实情况摘要：**", 1)[1]
        summary = "\n".join(line.strip() for line in summary.splitlines() if line.strip())
        records.append(Record(title, re.findall(r"（(专题类|合并)）", first), leads, unit, summary))
    return records


RECORDS = seed_records()


def roster_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["姓名", "身份", "证号", "所属代表团/界别", "所属机关", "所在单位"])
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    system = Up(
        tmp_path_factory.mktemp("seed002") / ".duban",
        free_port_block(1),
        "--levels",
        W,
        "--services",
        "intake,tracking,evaluation,notify,directory,web",
    )
    try:
        system.wait_ready(150)
        yield system
    finally:
        system.stop()


class Level:
    """温岭市's services over HTTP, as a person signed in through the directory."""

    def __init__(self, up: Up) -> None:
        self.up = up
        self.http = httpx.Client(timeout=30)
        self.tokens: dict[str, dict[str, str]] = {}

    def url(self, service: str, path: str) -> str:
        return f"{self.up.url(W, service)}{path}"

    def signed_in(self, person_id: str) -> dict[str, str]:
        """Signed in through the directory (development sign-in: choosing a person)."""
        if person_id not in self.tokens:
            answer = self.http.post(self.url("directory", "/auth/dev/token"), json={"person_id": person_id})
            assert answer.status_code == 200, answer.text
            self.tokens[person_id] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        return self.tokens[person_id]

    def call(self, method, service, path, who, *, expect=(200, 201, 202), **kwargs):
        headers = who if isinstance(who, dict) else self.signed_in(who)
        answer = self.http.request(method, self.url(service, path), headers=headers, **kwargs)
        assert answer.status_code in expect, f"{method} {service}{path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None


def test_seed_002_the_cppcc_way(up):
    level = Level(up)
    admin, congress = up.headers(W, "admin"), up.headers(W, "committee")

    # -- the directory: the units the seed names, the CPPCC's people from a roster -------------------
    units = {o["name"]: o for o in level.call("GET", "directory", "/orgs", admin, params={"kind": "unit"})["items"]}
    for number, record in enumerate(RECORDS, 1):
        if record.unit not in units:
            org = {"id": f"seed002-unit-{number:02d}", "kind": "unit", "name": record.unit}
            level.call("POST", "directory", "/orgs", admin, json={"org": org})
    member = {"身份": "政协委员"}  # their body (机关) follows from their kind: the CPPCC
    rows = [
        *(
            member | {"姓名": n, "证号": f"Z15{i:03d}", "所属代表团/界别": g}
            for i, (n, g) in enumerate(MEMBERS.items())
        ),
        *(
            member | {"姓名": n, "证号": f"C15{i:03d}", "所属代表团/界别": g}
            for i, (n, g) in enumerate(STANDING.items())
        ),
        {"姓名": STAFF_NAME, "身份": "工委工作人员", "证号": "TAW001", "所属机关": "政协"},
        *(
            {"姓名": f"{r.unit}联络员", "身份": "承办单位工作人员", "证号": f"U{i:03d}", "所在单位": r.unit}
            for i, r in enumerate(RECORDS)
        ),
    ]

    def units_known():  # the roster names units: the directory must know them first (a file is read once)
        known = {o["name"] for o in level.call("GET", "directory", "/orgs", admin, params={"kind": "unit"})["items"]}
        return {r.unit for r in RECORDS} <= known

    wait_for(units_known, 30, "the seed's units in the directory")

    def imported():
        answer = level.http.post(
            level.url("directory", "/rosters/import"), files={"file": ("政协名册.csv", roster_csv(rows))}, headers=admin
        )
        assert answer.status_code == 200 and not answer.json()["rejected"], answer.text
        return answer.json()

    report = imported()
    assert len(report["enrolled"]) == len(rows)

    def everyone():
        people = {p["name"]: p for p in level.call("GET", "directory", "/people", admin)["items"]}
        return people if all(row["姓名"] in people for row in rows) else None

    people = wait_for(everyone, 30, "the roster's people in the directory")
    groups = {o["name"]: o for o in level.call("GET", "directory", "/orgs", admin, params={"kind": "sector"})["items"]}
    units = {o["name"]: o for o in level.call("GET", "directory", "/orgs", admin, params={"kind": "unit"})["items"]}
    assert {p["body"] for name, p in people.items() if name in MEMBERS or name in STANDING} == {"cppcc"}
    assert people[STAFF_NAME]["body"] == "cppcc" and people[STAFF_NAME]["kind"] == "committee_staff"
    staff = people[STAFF_NAME]["id"]

    def lead(name: str) -> dict[str, str]:
        if name in MEMBERS:
            return {"id": people[name]["id"], "name": name, "kind": "person"}
        return {"id": groups[name]["id"], "name": name, "kind": "group"}

    # -- 1. entered by the CPPCC's staff (委员 and 界别 raise 提案; merged ones one by one, then merged) --
    def enter(title: str, leads: list[str], topical: bool) -> str:
        matter = {
            "kind": "proposal",
            "title": title,
            "content": f"{title}。",
            "lead": lead(leads[0]),
            "co_leads": [lead(name) for name in leads[1:]],
            "channel": "session",
            "raised_in": W,
            "topical": topical,
        }
        entered = level.call("POST", "intake", "/matters", staff, json={"matter": matter})
        assert entered["data"]["body"] == "cppcc" and entered["body_name"] == "政协"
        return entered["id"]

    matters: list[str] = []
    for record in RECORDS:
        topical = "专题类" in record.marks
        if "合并" not in record.marks:  # one proposal; the last is led jointly (科学技术界 and 王永进)
            matters.append(enter(record.title, record.leads, topical))
            continue
        kept = enter(record.title, record.leads[:1], topical)
        others = record.leads[1:] or record.leads  # 城东街道委员联络组 merged two proposals of its own
        for name in others:
            merged = enter(f"{record.title}（{name}）", [name], topical)
            level.call("POST", "intake", f"/matters/{merged}/merge", staff, json={"into": kept, "reason": "内容相近"})
        matters.append(kept)

    # the congress's staff do not review the CPPCC's proposals, and a deputy cannot raise one
    refused = level.call("POST", "intake", f"/matters/{matters[0]}/register", congress, expect=(403,))
    assert "政协" in refused["detail"]["message"]
    deputy, as_deputy = up.headers(W, "deputy"), {"id": f"deputy-{W}", "name": "代表"}
    a_proposal = {"kind": "proposal", "title": "代表的提案", "content": "内容", "channel": "session", "raised_in": W}
    level.call("POST", "intake", "/matters", deputy, json={"matter": a_proposal | {"lead": as_deputy}}, expect=(403,))

    # -- 2. numbered in the CPPCC's book, 1 to 14 in the order registered -------------------------------
    year = datetime.now(UTC).astimezone().year
    for number, matter_id in enumerate(matters, 1):
        registered = level.call("POST", "intake", f"/matters/{matter_id}/register", staff)
        assert registered["registration_no"] == f"温岭政协提〔{registered['registration_year']}〕{number}号"
        year = registered["registration_year"]
        level.call("POST", "intake", f"/matters/{matter_id}/route", staff, json={"committee": "提案委"})

    # -- 3. handled: assigned to its unit as a key proposal, answered with the seed's summary, closed ----
    def case_of(matter_id: str) -> dict:
        def opened():
            answer = level.http.get(level.url("tracking", f"/cases/{matter_id}"), headers=level.signed_in(staff))
            return answer.json() if answer.status_code == 200 else None

        return wait_for(opened, 30, f"the case of {matter_id}")

    for matter_id, record in zip(matters, RECORDS, strict=True):
        case = case_of(matter_id)
        assert case["case"]["body"] == "cppcc"
        unit = units[record.unit]
        assign = {
            "lead_unit": {"id": unit["id"], "name": unit["name"]},
            "committee": "提案委",
            "key": True,  # 重点提案
            "leader": "市政协副主席",
            "review_reply": False,
        }
        level.call("POST", "tracking", f"/cases/{matter_id}/assign", staff, json=assign)
        unit_staff = people[f"{record.unit}联络员"]["id"]
        level.call("POST", "tracking", f"/cases/{matter_id}/sign", unit_staff, json={})
        reply = {"reply_class": "A", "text": record.summary}
        level.call("POST", "tracking", f"/cases/{matter_id}/reply", unit_staff, json=reply)
        level.call("POST", "tracking", f"/cases/{matter_id}/close", staff, json={})
    level.call("POST", "tracking", f"/cases/{matters[0]}/urge", congress, json={"note": "请抓紧"}, expect=(403,))

    # -- 4. 民主评议 by the standing committee ------------------------------------------------------------
    now = datetime.now(UTC)
    session = {
        "kind": "democratic",
        "title": "市政协十五届一次会议重点提案办理情况",
        "subjects": [
            {"kind": "proposal", "id": m, "title": r.title, "unit": {"id": units[r.unit]["id"], "name": r.unit}}
            for m, r in zip(matters, RECORDS, strict=True)
        ],
        "electorate": [people[name]["id"] for name in STANDING],
        "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=2)).isoformat(),
    }
    level.call("POST", "evaluation", "/sessions", congress, json=session, expect=(403,))
    drafted = level.call("POST", "evaluation", "/sessions", staff, json=session)
    level.call("POST", "evaluation", f"/sessions/{drafted['id']}/open", staff, json={})
    for name in STANDING:
        choices = [{"subject_id": m, "option": "satisfied"} for m in matters]
        level.call(
            "POST", "evaluation", f"/sessions/{drafted['id']}/ballots", people[name]["id"], json={"choices": choices}
        )
    level.call("POST", "evaluation", f"/sessions/{drafted['id']}/close", staff, json={})

    # -- 5. disclosed under the CPPCC's heading, in number order, with every lead -------------------------
    level.call("POST", "notify", "/disclosures", congress, json={"case_id": matters[0]}, expect=(403,))

    def released(matter_id: str):
        level.call("POST", "notify", "/disclosures", staff, json={"case_id": matter_id})
        shown = level.http.get(level.url("notify", f"/public/disclosures/{matter_id}")).json()
        return shown if (shown.get("evaluation_result") or "").startswith("满意") else None

    for matter_id in reversed(matters):  # released in any order, listed by number
        wait_for(lambda m=matter_id: released(m), 60, "the disclosure with the appraisal's result")
    public = level.http.get(level.url("notify", "/public/disclosures"), params={"body": "cppcc"}).json()
    assert public["headings"] == {"cppcc": HEADING}
    items = public["items"]
    assert [i["id"] for i in items] == matters
    assert [i["number"] for i in items] == list(range(1, 15)) and {i["year"] for i in items} == {year}
    for item, record in zip(items, RECORDS, strict=True):
        assert (item["title"], item["leads"], item["unit"]) == (record.title, record.leads, record.unit)
        assert item["marks"] == [m for m in ("专题类", "合并") if m in record.marks]
        assert item["summary"] == record.summary and item["evaluation_result"].startswith("满意")
        assert item["body"] == "cppcc"
    page = level.http.get(level.url("notify", "/public/disclosures.html"), params={"body": "cppcc"}).text
    assert HEADING in page and "人大常委会" not in page
    positions = [page.index(f"《{r.title}》") for r in RECORDS]
    assert positions == sorted(positions)
    assert (
        "<strong>提案领衔者：</strong>科学技术界、王永进" in page
        and "<strong>提案领衔者：</strong>青联、科技界、王云安" in page
    )

    # -- the congress's book is untouched: its first suggestion of the year is number 1 -------------------
    suggestion = {
        "kind": "suggestion",
        "title": "关于加快农村饮水安全改造的建议",
        "content": "建议。",
        "channel": "session",
        "raised_in": W,
        "lead": {"id": f"deputy-{W}", "name": "代表"},
    }
    raised = level.call("POST", "intake", "/matters", deputy, json={"matter": suggestion})
    level.call("POST", "intake", f"/matters/{raised['id']}/register", staff, expect=(403,))
    numbered = level.call("POST", "intake", f"/matters/{raised['id']}/register", congress)
    assert numbered["registration_no"] == f"温岭建〔{year}〕1号"
    listed = level.call("GET", "intake", "/matters", congress, params={"body": "cppcc", "limit": 100})["items"]
    assert {m["id"] for m in listed} >= set(matters) and all(m["body"] == "cppcc" for m in listed)

    # -- the lists and the congress's monthly summary keep to their body ---------------------------------
    def listed(body: str) -> list[str]:  # 建议清单: 建议, 议案 and 提案 as raised
        rows = level.call("GET", "notify", "/lists/suggestions", staff, params={"body": body})["rows"]
        return [cell for row in rows for cell in row]

    assert all(r.title in listed("cppcc") for r in RECORDS) and suggestion["title"] not in listed("cppcc")
    assert not any(r.title in listed("congress") for r in RECORDS) and suggestion["title"] in listed("congress")
    month = datetime.now(UTC).astimezone(SHANGHAI).strftime("%Y-%m")
    figures = level.call("GET", "notify", f"/summaries/{month}", congress)
    assert figures["rows"][0]["figures"]["collected"] == 1  # the congress's suggestion, not the 政协's proposals

    # -- the 工作台: each body's staff see their own body's matters under their organ's name ----------------
    def workbench(person_id: str) -> httpx.Client:
        browser = httpx.Client(base_url=up.url(W, "web"), timeout=30, follow_redirects=True)
        form = browser.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        assert browser.post("/login", data={"person_id": person_id, "csrf": csrf}).status_code == 200
        return browser

    cppcc_pages, congress_pages = workbench(staff), workbench(f"committee-{W}")
    mine = cppcc_pages.get("/matters").text
    assert CPPCC in mine and all(r.title in mine for r in RECORDS) and suggestion["title"] not in mine
    theirs = congress_pages.get("/matters").text
    assert "温岭市人大常委会" in theirs and suggestion["title"] in theirs
    assert not any(r.title in theirs for r in RECORDS)
    cppcc_cases = level.call("GET", "tracking", "/cases", staff, params={"body": "cppcc"})["items"]
    assert sorted(c["id"] for c in cppcc_cases) == sorted(matters) and {c["body"] for c in cppcc_cases} == {"cppcc"}
    assert all(r.title in cppcc_pages.get("/cases").text for r in RECORDS[:5])  # 督办清单
    assert not any(r.title in congress_pages.get("/cases").text for r in RECORDS)

    # -- every notice about them: signed by the CPPCC, greeting people by name ----------------------------
    topics = [*matters, drafted["id"]]

    def noticed():
        found = []
        for topic in topics:
            found += level.call("GET", "notify", "/deliveries", staff, params={"topic": topic, "limit": 1000})["items"]
        kinds = {d["kind"] for d in found}
        return found if {"assignment", "reply", "evaluation_invitation", "evaluation_results"} <= kinds else None

    deliveries = wait_for(noticed, 60, "the notices of assignment, reply, invitation and results")
    ids = {p["id"]: name for name, p in people.items()}
    for delivery in deliveries:
        text = f"{delivery['subject']}\n{delivery['body']}"
        assert CPPCC in text and "人大常委会" not in text, text
        assert not any(person_id in delivery["body"] for person_id in ids), text  # never greeted by id
        if delivery["recipient_id"] in ids:
            assert ids[delivery["recipient_id"]] in delivery["body"], text
