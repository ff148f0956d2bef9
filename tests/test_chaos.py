"""Nothing lost when the bus itself fails (issue 13).

Seven levels (台州市, 温岭市 and 临海市, two townships each) with intake, tracking and notify each
a real process on one real nats-server. A seeded scenario, driven only through the HTTP APIs as
staff use them: matters raised at every township, handled there or escalated to the county and on
to 台州市, each handled one assigned, answered and fed back until its case closes and its outcome
reaches the township; activities, typical cases, the monthly summary reported up the levels, and
the four lists.

The scenario runs twice on fresh servers and data: without faults, then with them: the
nats-server killed with SIGKILL at seeded points and restarted on the same store while the
services keep running, once while an escalation sits in a county's INBOX with that county's
intake stopped, and one intake, one tracking and one notify process killed mid-work and started
again. Both runs must account for every matter at every level, every escalation exactly once at
the level above, every township's outcome, no dead letter and every acknowledged step in its
history; the faulty run's summary and lists must equal the fault-free run's.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from contracts.envelope import SHANGHAI
from tests.support.chaos import (
    COUNTIES,
    LEVELS,
    PROBE_PATIENCE_S,
    SERVICES,
    TAIZHOU,
    TOWNSHIPS,
    Acknowledged,
    Chaos,
    Fault,
    Ledger,
    PatientClient,
    Recovery,
    System,
    bearer,
    parent_of,
)
from tests.support.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SEED = 13
NAMES = {
    TAIZHOU: "台州市",
    "331081": "温岭市",
    "331082": "临海市",
    "331081100": "泽国镇",
    "331081101": "大溪镇",
    "331082001": "古城街道",
    "331082100": "杜桥镇",
}
TOPICS = [
    "园区道路破损影响企业运输",
    "企业用工难",
    "物流成本高",
    "农村饮水安全改造",
    "工业园区供水不足",
    "人才公寓建设",
    "港区集疏运通道",
    "老旧小区加装电梯",
    "渔港码头维修",
    "跨县域公交线路",
    "中小企业融资难",
    "农贸市场改造",
    "山区道路安全隐患",
    "学校周边交通拥堵",
    "污水管网改造",
    "垃圾分类设施不足",
]
DEPARTMENTS = [("water", "农业农村和水利局"), ("housing", "住房和城乡建设局"), ("econ", "经济和信息化局")]
COMMITTEES = ["城建环资工委", "财经工委", "农业农村工委"]


# -- the plan: what staff will do, drawn from the seed ---------------------------------------------
@dataclass(frozen=True)
class Raised:
    """A matter as it is raised, and where and how it is to be handled."""

    key: str  # its Idempotency-Key
    code: str  # where it is raised
    kind: str
    title: str
    lead: str  # deputy id
    co_signer: str | None
    handled_at: str  # the level that handles it
    reply_class: str  # A (solved) or B (in the plan)
    rating: str
    unit: tuple[str, str]  # (id, name) of the lead unit
    committee: str
    still_open: bool = False  # assigned and left under supervision (督办清单)

    @property
    def path(self) -> list[str]:
        """The levels that hold a record of it, from where it was raised up to where it is handled."""
        levels = [self.code]
        while levels[-1] != self.handled_at:
            levels.append(parent_of(levels[-1]))
        return levels

    @property
    def submitters(self) -> list[str]:
        return [self.lead, *([self.co_signer] if self.co_signer else [])]

    def body(self) -> dict:
        co = [{"id": self.co_signer, "name": f"代表{self.co_signer[-2:]}"}] if self.co_signer else []
        return {
            "matter": {
                "kind": self.kind,
                "title": self.title,
                "content": f"{self.title}，群众和企业反映强烈，请予研究解决。",
                "lead": {"id": self.lead, "name": f"代表{self.lead[-2:]}"},
                "co_signers": co,
                "channel": "liaison_station",
                "raised_in": self.code,
            }
        }

    def reply(self) -> dict:
        reason = None if self.reply_class == "A" else "已列入明年计划"
        return {"reply_class": self.reply_class, "text": f"{self.unit[1]}已办理：{self.title}。", "reason": reason}


@dataclass(frozen=True)
class Plan:
    month: str
    matters: list[Raised]
    activities: list[tuple[str, dict]]  # (code, RecordActivity body)
    typical_cases: list[tuple[str, dict]]  # (code, AddTypicalCase body)
    inbox_fault: str  # the key of the escalation that sits in a stopped county's INBOX


def draw_plan(seed: int) -> Plan:
    """Three matters per township (one handled there, one by the county, one by the county or
    台州市), two per county and per 台州市 (one handled, one left open), an activity at every
    township and county, a typical case per county."""
    rng = random.Random(seed)
    today = datetime.now(SHANGHAI).date()
    topics = iter(rng.sample(TOPICS, len(TOPICS)) * 3)
    deputies = 0

    def raised(code: str, handled_at: str, still_open: bool = False) -> Raised:
        nonlocal deputies
        deputies += 1
        department = rng.choice(DEPARTMENTS)
        return Raised(
            key=f"chaos-{seed}-{code}-{deputies}",
            code=code,
            kind=rng.choice(["problem", "demand", "suggestion"]) if not still_open else "suggestion",
            title=f"{NAMES[code]}：{next(topics)}（{deputies}）",
            lead=f"deputy-{deputies:02d}",
            co_signer=f"deputy-{deputies + 50:02d}" if rng.random() < 0.3 else None,
            handled_at=handled_at,
            reply_class=rng.choice("AB"),
            rating=rng.choice(["satisfied", "basically_satisfied"]),
            unit=(f"unit-{handled_at}-{department[0]}", f"{NAMES[handled_at]}{department[1]}"),
            committee=rng.choice(COMMITTEES),
            still_open=still_open,
        )

    matters = []
    for county, townships in TOWNSHIPS.items():
        for township in townships:
            fates = [township, county, rng.choice([county, TAIZHOU])]
            rng.shuffle(fates)
            matters += [raised(township, handled_at) for handled_at in fates]
        matters += [raised(county, rng.choice([county, TAIZHOU])), raised(county, county, still_open=True)]
    matters += [raised(TAIZHOU, TAIZHOU), raised(TAIZHOU, TAIZHOU, still_open=True)]

    activities = []
    for code in LEVELS:
        if code == TAIZHOU:
            continue  # 台州市's view has a row per county only
        count = rng.randint(2, 6)
        held_on = today.replace(day=rng.randint(1, today.day))
        activities.append(
            (
                code,
                {
                    "kind": rng.choice(["inspection", "research", "discussion", "contact"]),
                    "title": f"{NAMES[code]}代表联络站主题活动",
                    "held_on": held_on.isoformat(),
                    "place": f"{NAMES[code]}代表联络站",
                    "organiser": f"{NAMES[code]}代表联络站",
                    "organiser_kind": "liaison_station",
                    "deputies": [{"id": f"deputy-{code}-{i}", "name": f"代表{i}"} for i in range(count)],
                },
            )
        )
    typical_cases = [
        (code, {"title": f"{NAMES[code]}代表助企典型案例", "text": "代表牵线，部门三天解决。"}) for code in COUNTIES
    ]
    escalated = [m.key for m in matters if m.code in LEVELS[3:] and m.handled_at != m.code]
    return Plan(today.strftime("%Y-%m"), matters, activities, typical_cases, rng.choice(escalated))


def draw_faults(seed: int, steps: list[Acknowledged]) -> list[Fault]:
    """Three kills of the bus at seeded points spread over the fault-free run's acknowledged
    commands (``steps``), and one kill each of an intake, a tracking and a notify process
    mid-work: just as a seeded command of the fault-free run that went to that service is sent
    again in the faulty run, the process it goes to is killed."""
    rng = random.Random(seed * 1009)
    count = len(steps)
    faults = [
        Fault(after, rng.uniform(0, 0.3), pause_s=rng.uniform(0.5, 2.0))
        for after in rng.sample(range(count // 10, count - count // 20), 3)
    ]
    for service in SERVICES:
        number = rng.choice([n for n, step in enumerate(steps, 1) if step.service == service])
        faults.append(Fault(number - 1, rng.uniform(0, 0.05), target=service, code=steps[number - 1].code))
    return faults


# -- staff at every level, over HTTP -------------------------------------------------------------
class Staff:
    """Every step of the scenario as staff take it, each through :class:`PatientClient`; a step
    repeated after an unknown outcome does only what the re-read state still needs."""

    def __init__(self, client: PatientClient, system: System) -> None:
        self.client = client
        self.system = system
        self.ids: dict[str, dict[str, str]] = {}  # key → {code: the matter's id at that level}
        self.cases: dict[str, str] = {}  # code → a case id there (for the recovery probes)

    # who
    @staticmethod
    def committee(code: str) -> dict:
        return bearer(f"committee-{code}", "committee", code, "工委")

    # intake
    def matter(self, code: str, matter_id: str) -> dict | None:
        found = self.client.read("intake", code, f"/matters/{matter_id}", self.committee(code))
        return found["matter"] if found else None

    def submit(self, m: Raised) -> str:
        station = bearer(f"station-{m.code}", "liaison_station", m.code, f"{NAMES[m.code]}代表联络站")
        view = self.client.command(
            "submit", "intake", m.code, "/matters", m.body(), station, event_type="intake.MatterSubmitted", key=m.key
        )
        self.ids[m.key] = {m.code: view["id"]}
        return view["id"]

    def _matter_step(self, what: str, code: str, matter_id: str, body: dict | None, event_type: str, done) -> None:
        self.client.command(
            what,
            "intake",
            code,
            f"/matters/{matter_id}/{what}",
            body,
            self.committee(code),
            event_type=event_type,
            aggregate_id=matter_id,
            done=lambda: (m := self.matter(code, matter_id)) is not None and done(m),
        )

    def register(self, code: str, matter_id: str) -> None:
        self._matter_step(
            "register", code, matter_id, None, "intake.MatterRegistered", lambda m: m["registration_no"] is not None
        )

    def escalate(self, code: str, matter_id: str) -> None:
        body = {"reason": "超出本级事权，逐级上报"}
        self._matter_step("escalate", code, matter_id, body, "intake.MatterEscalated", lambda m: m["sent_to"])

    def route(self, m: Raised, code: str, matter_id: str) -> None:
        body = {"committee": m.committee}
        routed = lambda m: m["status"] in ("routed", "closed")  # noqa: E731
        self._matter_step("route", code, matter_id, body, "intake.MatterRouted", routed)

    def arrived(self, m: Raised, code: str) -> str:
        """The id the level above gave ``m`` (its record here learns it when it is taken in there)."""
        here = self.ids[m.key][code]

        def forwarded():
            return (self.matter(code, here) or {}).get("forwarded_matter_id")

        above = wait_for(forwarded, 120, f"{m.title}: escalated from {code}, taken in at {parent_of(code)}")
        self.ids[m.key][parent_of(code)] = above
        return above

    def activity(self, code: str, body: dict) -> None:
        station = bearer(f"station-{code}", "liaison_station", code)
        key = f"chaos-activity-{code}"
        self.client.command("activity", "intake", code, "/activities", body, station, event_type=None, key=key)

    # tracking
    def case(self, code: str, case_id: str) -> dict | None:
        found = self.client.read("tracking", code, f"/cases/{case_id}", self.committee(code))
        return found["case"] if found else None

    def opened(self, code: str, case_id: str) -> None:
        wait_for(lambda: self.case(code, case_id), 120, f"the case of {case_id} to open at {code}")
        self.cases.setdefault(code, case_id)

    def _case_step(self, what: str, code: str, case_id: str, body: dict, who: dict, event_type: str, done) -> None:
        self.client.command(
            what,
            "tracking",
            code,
            f"/cases/{case_id}/{what}",
            body,
            who,
            event_type=event_type,
            aggregate_id=case_id,
            done=lambda: (c := self.case(code, case_id)) is not None and done(c),
        )

    def assign(self, m: Raised, code: str, case_id: str) -> None:
        body = {
            "lead_unit": {"id": m.unit[0], "name": m.unit[1]},
            "committee": m.committee,
            "key": m.still_open,
            "leader": "陈主任" if m.still_open else None,
        }
        assigned = lambda c: c["status"] != "opened"  # noqa: E731
        self._case_step("assign", code, case_id, body, self.committee(code), "tracking.CaseAssigned", assigned)

    def reply(self, m: Raised, code: str, case_id: str) -> None:
        unit = bearer(m.unit[0], "unit", code, m.unit[1])
        answered = lambda c: c["status"] in ("replied", "closed")  # noqa: E731
        self._case_step("reply", code, case_id, m.reply(), unit, "tracking.ReplySubmitted", answered)

    def feedback(self, m: Raised, code: str, case_id: str, deputy: str) -> None:
        who = bearer(deputy, "deputy", code, f"代表{deputy[-2:]}")
        given = lambda c: deputy in c["feedback"] or c["status"] == "closed"  # noqa: E731
        self._case_step("feedback", code, case_id, {"rating": m.rating}, who, "tracking.FeedbackGiven", given)

    # notify
    def summary(self, code: str, month: str) -> dict:
        return self.client.read("notify", code, f"/summaries/{month}", self.committee(code))

    def typical_case(self, code: str, month: str, body: dict) -> None:
        def added() -> bool:
            self.system.settle([("notify", code)])
            own = self.summary(code, month)["rows"][0]
            return any(c["title"] == body["title"] for c in own["typical_cases"])

        path = f"/summaries/{month}/typical-cases"
        staff = self.committee(code)
        self.client.command("typical case", "notify", code, path, body, staff, event_type=None, done=added)

    def report(self, code: str, month: str) -> int:
        path = f"/summaries/{month}/report"
        answer = self.client.command("report", "notify", code, path, None, self.committee(code), event_type=None)
        return answer["revision"]

    def reported(self, code: str, month: str, revision: int) -> None:
        """Wait until the level above shows ``code``'s report of ``revision``."""
        above = parent_of(code)

        def shown() -> bool:
            rows = {r["jurisdiction"]: r for r in self.summary(above, month)["rows"]}
            return rows[code]["reported"] and rows[code]["revision"] == revision

        wait_for(shown, 120, f"{code}'s summary revision {revision} at {above}")

    def probes(self) -> dict[tuple[str, str], tuple[str, set[int]]]:
        """A read that needs the bus per service and level: an aggregate known there (2xx), else
        one that is not there (404, the store's answer)."""
        known_matters = {code: ids[code] for ids in list(self.ids.values()) for code in list(ids)}
        found: dict[tuple[str, str], tuple[str, set[int]]] = {}
        for code in LEVELS:
            matter, case = known_matters.get(code), self.cases.get(code)
            found[("intake", code)] = (f"/matters/{matter}", {200}) if matter else ("/matters/chaos-probe", {404})
            found[("tracking", code)] = (f"/cases/{case}", {200}) if case else ("/cases/chaos-probe", {404})
            found[("notify", code)] = ("/deliveries/chaos-probe", {404})
        return found


# -- one run -----------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one run of the scenario did and left behind."""

    plan: Plan
    staff: Staff | None = None
    ledger: Ledger = field(default_factory=Ledger)
    startup_s: float = 0.0
    duration_s: float = 0.0
    revisions: dict[str, int] = field(default_factory=dict)
    matters: dict[str, list[dict]] = field(default_factory=dict)  # code → every matter row there
    histories: dict[tuple[str, str, str], Counter] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)
    activities: dict[str, list[dict]] = field(default_factory=dict)
    lists: dict[tuple[str, str], dict] = field(default_factory=dict)
    dead_letters: dict[str, list[dict]] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)  # (what, seconds it took)
    recoveries: list[Recovery] = field(default_factory=list)
    retries: int = 0
    rereads: int = 0
    _phase_began: float = field(default_factory=time.monotonic)

    def phase(self, what: str) -> None:
        now = time.monotonic()
        self.phases.append((what, now - self._phase_began))
        self._phase_began = now


def play(system: System, plan: Plan, faults: list[Fault] | None, run: Run) -> None:
    """Start the system, play the plan (with the faults, if any), read back what it left into
    ``run`` (which keeps what was done so far when a step fails)."""
    began = time.monotonic()
    system.start()
    run.startup_s = system.startup_s or 0.0
    run.phase("21 processes started")
    client = PatientClient(system, run.ledger)
    staff = run.staff = Staff(client, system)
    chaos = Chaos(system, faults or [], staff.probes)
    run.ledger.listeners.append(chaos.step)
    chaos.start()
    try:
        scenario(staff, plan, chaos if faults is not None else None, run)
        chaos.finish()
        system.settle()
        run.phase("remaining faults, settled")
        read_back(system, staff, run)
        run.phase("read back")
    finally:
        chaos.stop()
        chaos.join(120)
        client.close()
        run.faults, run.recoveries = chaos.done, chaos.recoveries
        run.retries, run.rereads = client.retries, client.rereads
        run.duration_s = time.monotonic() - began


def scenario(staff: Staff, plan: Plan, chaos: Chaos | None, run: Run) -> None:
    month = plan.month
    for code, body in plan.activities:
        staff.activity(code, body)
    for code, body in plan.typical_cases:
        staff.typical_case(code, month, body)

    run.phase("activities and typical cases")
    # townships: raise, handle their own, escalate the rest
    townships = [m for m in plan.matters if m.code in LEVELS[3:]]
    for m in townships:
        staff.submit(m)
    handled: list[tuple[Raised, str, str]] = []  # (matter, level, id there)
    for m in townships:
        here = staff.ids[m.key][m.code]
        if m.handled_at == m.code:
            staff.register(m.code, here)
            staff.route(m, m.code, here)
            handled.append((m, m.code, here))
        elif chaos is not None and m.key == plan.inbox_fault:
            chaos.crash_bus_while_inbox_holds(parent_of(m.code), m.code, lambda m=m, h=here: _escalated(staff, m, h))
        else:
            staff.escalate(m.code, here)

    run.phase("townships raise, handle, escalate")
    # counties: take in, raise their own, handle or escalate on to 台州市
    for m in townships:
        if m.handled_at != m.code:
            staff.arrived(m, m.code)
    for m in plan.matters:
        if m.code in COUNTIES:
            staff.submit(m)
    for m in plan.matters:
        county = next((c for c in m.path if c in COUNTIES), None)
        if county is None:
            continue
        here = staff.ids[m.key][county]
        if m.handled_at == county:
            staff.register(county, here)
            staff.route(m, county, here)
            handled.append((m, county, here))
        else:
            staff.escalate(county, here)

    run.phase("counties take in, raise, handle, escalate")
    # 台州市
    for m in plan.matters:
        if m.handled_at == TAIZHOU and m.code != TAIZHOU:
            staff.arrived(m, m.path[-2])
        elif m.code == TAIZHOU:
            staff.submit(m)
    for m in plan.matters:
        if m.handled_at == TAIZHOU:
            here = staff.ids[m.key][TAIZHOU]
            staff.register(TAIZHOU, here)
            staff.route(m, TAIZHOU, here)
            handled.append((m, TAIZHOU, here))

    run.phase("台州市 takes in, raises, routes")
    # every case handled where it was routed: assigned, answered, fed back until it closes
    for m, code, case_id in handled:
        staff.opened(code, case_id)
        staff.assign(m, code, case_id)
    for m, code, case_id in handled:
        if not m.still_open:
            staff.reply(m, code, case_id)
    for m, code, case_id in handled:
        if not m.still_open:
            for deputy in m.submitters:
                staff.feedback(m, code, case_id, deputy)

    run.phase("cases assigned, answered, fed back")
    # the outcome comes back down to where each matter was raised
    for m in plan.matters:
        if not m.still_open:
            origin = staff.ids[m.key][m.code]
            wait_for(
                lambda m=m, origin=origin: (staff.matter(m.code, origin) or {}).get("status") == "closed",
                180,
                f"the outcome of {m.title} at {m.code}",
            )

    run.phase("outcomes back to where raised")
    # the monthly summary, up the levels: townships to their county, counties to 台州市
    staff.client.system.settle()
    for wave in (LEVELS[3:], COUNTIES):
        for code in wave:
            run.revisions[code] = staff.report(code, month)
        for code in wave:
            staff.reported(code, month, run.revisions[code])
    run.phase("summaries reported up")


def _escalated(staff: Staff, m: Raised, matter_id: str) -> str:
    staff.escalate(m.code, matter_id)
    return matter_id


def read_back(system: System, staff: Staff, run: Run) -> None:
    """Every matter at every level, each acknowledged aggregate's history, the summaries, the
    four lists at every level and the dead letters."""
    month = run.plan.month
    for code in LEVELS:
        headers = staff.committee(code)
        run.matters[code] = staff.client.read("intake", code, "/matters", headers, {"limit": 500})["items"]
        run.summaries[code] = staff.summary(code, month)
        run.activities[code] = staff.client.read("intake", code, "/activities", headers)["items"]
        for name in ("problems", "suggestions", "supervision", "results"):
            run.lists[(code, name)] = staff.client.read("notify", code, f"/lists/{name}", headers)
    for entry in run.ledger.entries:
        if entry.event_type is None:
            continue
        key = (entry.service, entry.code, entry.aggregate_id)
        if key not in run.histories:
            path = f"/matters/{entry.aggregate_id}" if entry.service == "intake" else f"/cases/{entry.aggregate_id}"
            found = staff.client.read(entry.service, entry.code, path, staff.committee(entry.code))
            run.histories[key] = Counter(h["event_type"] for h in found["history"])
    run.dead_letters = system.bus.dead_letters(LEVELS)


# -- what must hold after a run ------------------------------------------------------------------
def check_everything_accounted_for(run: Run) -> None:
    """Every matter at every level where it should be and nowhere else, in its final state; each
    escalation taken in once above; each township's matter closed with the outcome of the level
    that handled it."""
    plan, ids = run.plan, run.staff.ids
    for code in LEVELS:
        expected = {ids[m.key][code]: m for m in plan.matters if code in m.path}
        rows = {row["id"]: row for row in run.matters[code]}
        assert set(rows) == set(expected), f"the matters at {code} differ from what was raised and escalated"
        for matter_id, m in expected.items():
            row = rows[matter_id]
            if m.still_open:
                assert row["status"] == "routed", (code, m.title, row["status"])
                continue
            assert row["status"] == "closed", (code, m.title, row["status"])
            assert row["handled_in_jurisdiction"] == m.handled_at, (code, m.title)
            assert (row["outcome_class"], row["outcome_summary"]) == (m.reply_class, m.reply()["text"])
        origins = Counter(row["origin_matter_id"] for row in run.matters[code] if row["origin_matter_id"])
        below = {ids[m.key][m.path[m.path.index(code) - 1]] for m in expected.values() if m.path[0] != code}
        assert set(origins) == below and all(n == 1 for n in origins.values()), f"escalations taken in at {code}"


def check_acknowledged_steps_are_in_the_histories(run: Run) -> None:
    """Each acknowledged step's event on its aggregate, exactly as often as it was acknowledged."""
    wanted: dict[tuple[str, str, str], Counter] = {}
    for entry in run.ledger.entries:
        if entry.event_type is not None:
            wanted.setdefault((entry.service, entry.code, entry.aggregate_id), Counter())[entry.event_type] += 1
    missing = {}
    for key, events in wanted.items():
        stored = run.histories[key]
        if any(stored[event_type] != count for event_type, count in events.items()):
            missing[key] = (dict(events), dict(stored))
    assert not missing, f"acknowledged steps not stored once each: {missing}"
    for code, body in run.plan.activities:
        titles = [a["title"] for a in run.activities[code]]
        assert titles.count(body["title"]) == 1, (code, titles)
    for code, body in run.plan.typical_cases:
        titles = [c["title"] for c in run.summaries[code]["rows"][0]["typical_cases"]]
        assert titles.count(body["title"]) == 1, (code, titles)
    for code, revision in run.revisions.items():
        row = next(r for r in run.summaries[parent_of(code)]["rows"] if r["jurisdiction"] == code)
        assert row["reported"] and row["revision"] == revision, (code, row)


def check_no_dead_letters(run: Run) -> None:
    assert run.dead_letters == {code: [] for code in LEVELS}, run.dead_letters


def check_run(run: Run) -> None:
    check_everything_accounted_for(run)
    check_acknowledged_steps_are_in_the_histories(run)
    check_no_dead_letters(run)


# -- comparing runs: ids, times and anything random dropped ---------------------------------------
DATE_COLUMNS = {"序号", "编号", "提出日期", "交办日期", "办理期限", "办结日期"}  # and the ids


def normalised_list(answer: dict) -> list[tuple]:
    keep = [i for i, header in enumerate(answer["headers"]) if header not in DATE_COLUMNS]
    return sorted(tuple(row[i] for i in keep) for row in answer["rows"])


def normalised_summary(view: dict) -> dict:
    rows = [
        (
            row["jurisdiction"],
            row["name"],
            row["reported"],
            row["revision"],
            tuple(sorted(row["figures"].items())),
            tuple(sorted(c["title"] for c in row["typical_cases"])),
        )
        for row in view["rows"]
    ]
    return {"rows": rows, "total": view["total"], "reported": view["reported"]}


def normalised_matters(rows: list[dict]) -> list[tuple]:
    fields = (
        "title", "kind", "status", "raised_in", "registration_no", "origin_jurisdiction", "sent_to",
        "handled_in_jurisdiction", "outcome_class", "outcome_unit", "outcome_summary",
    )  # fmt: skip
    return sorted(tuple(row[f] or "" for f in fields) for row in rows)


def outcome_of(run: Run) -> dict:
    return {
        "summaries": {code: normalised_summary(view) for code, view in run.summaries.items()},
        "lists": {key: normalised_list(answer) for key, answer in run.lists.items()},
        "matters": {code: normalised_matters(rows) for code, rows in run.matters.items()},
    }


def report(title: str, run: Run, system: System) -> None:
    """The run's figures in the test output (``-s``), and what the services logged as errors."""
    plan, entries = run.plan, run.ledger.entries
    escalations = sum(len(m.path) - 1 for m in plan.matters)
    outcomes = sum(1 for m in plan.matters if not m.still_open)
    print(f"\n== {title}: {run.duration_s:.1f}s (21 processes healthy after {run.startup_s:.1f}s)")
    print("   matters per level: " + ", ".join(f"{NAMES[c]} {len(run.matters.get(c, []))}" for c in LEVELS))
    print(
        f"   escalations {escalations}, outcomes back to where raised {outcomes}, "
        f"acknowledged commands {len(entries)} ({sum(e.found_on_reread for e in entries)} found stored on re-read), "
        f"client retries {run.retries}, state re-reads {run.rereads}"
    )
    print("   phases: " + ", ".join(f"{what} {seconds:.1f}s" for what, seconds in run.phases))
    bus_kills = sum(1 for fault in run.faults if "nats-server" in fault)
    print(f"   kills: nats-server {bus_kills}, service processes {len(run.faults) - bus_kills}")
    for fault in run.faults:
        print(f"   fault: {fault}")
    for recovery in run.recoveries:
        levels = recovery.by_level()
        shown = ", ".join(f"{NAMES[c]} {'never' if levels[c] is None else f'{levels[c]:.2f}s'}" for c in LEVELS)
        print(f"   normal answers again after [{recovery.cause}]: {shown}")
    for name, lines in system.errors().items():
        print(f"   {name} logged {len(lines)} error(s); first: {lines[0][:300]}")


# -- the tests ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan() -> Plan:
    return draw_plan(SEED)


@pytest.fixture(scope="module")
def calm_run(plan, tmp_path_factory) -> Run:
    system, run = System(tmp_path_factory.mktemp("chaos-calm")), Run(plan)
    try:
        play(system, plan, None, run)
    finally:
        system.stop()
        report("fault-free run", run, system)
    return run


def test_the_fault_free_run_accounts_for_every_matter_and_step(calm_run):
    check_run(calm_run)


def test_with_the_bus_and_services_killed_nothing_is_lost_and_the_figures_are_the_same(plan, calm_run, tmp_path):
    faults = draw_faults(SEED, calm_run.ledger.entries)
    system, run = System(tmp_path / "faulty"), Run(plan)
    try:
        play(system, plan, faults, run)
    finally:
        system.stop()
        report("faulty run", run, system)
    assert len(run.faults) == len(faults) + 1  # the drawn faults and the INBOX one
    late = {f"{name}@{code}" for r in run.recoveries for (name, code), took in r.seconds.items() if took is None}
    assert not late, f"not answering normally {PROBE_PATIENCE_S:.0f}s after the bus was back: {sorted(late)}"
    check_run(run)
    if datetime.now(SHANGHAI).strftime("%Y-%m") != plan.month:
        pytest.skip("the month changed between the runs: their summaries cover different months")
    assert outcome_of(run) == outcome_of(calm_run)
