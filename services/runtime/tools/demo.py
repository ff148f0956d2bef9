"""``duban up --demo``: a living system for a new user, built from the seeds, through the HTTP APIs only.

What it loads is data (``data/demo.json``), read here as a story:

- at every level, matters raised by deputies and liaison stations (seed 003's enterprise problems,
  seed 001's business-environment suggestions), the first of each registered;
- a township problem escalated from 泽国镇 to 温岭市 and on to 台州市 (逐级上报), registered at each
  level, visible at each with its path;
- a 温岭市 matter routed there (本级办理) and assigned in tracking to its lead unit (交办);
- seed 004's work plan loaded into 温岭市's tracking (deputy groups, work items, projects);
- a satisfaction evaluation of the livelihood projects, when the evaluation service runs.

Idempotent: submissions carry an ``Idempotency-Key``, and every later step looks at the state
first, so running ``duban up --demo`` again adds nothing.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.runtime.http.auth import dev_token

from .children import pause

DATA_FILE = Path(__file__).parent / "data" / "demo.json"
#: The packaged plans (seeds 000, 001, 004), imported at the level they are for.
PLAN_FILES = sorted((Path(__file__).parents[2] / "tracking" / "data" / "plans").glob("*.json"))


class Demo:
    """The demo of ``DATA_FILE`` (or ``data``), loaded into the system of a ``run.json``."""

    def __init__(
        self, run_info: dict[str, Any], *, say=print, timeout: float = 60.0, data: dict[str, Any] | None = None
    ) -> None:
        import httpx

        self.info = run_info
        self.say = say
        self.timeout = timeout
        self.data = data or json.loads(DATA_FILE.read_text(encoding="utf-8"))
        levels = self.data["levels"]
        self.prefecture, self.county, self.township = levels["prefecture"], levels["county"], levels["township"]
        self.http = httpx.Client(timeout=30.0)

    # -- plumbing
    def url(self, code: str, service: str) -> str | None:
        return self.info["services"].get(code, {}).get(service)

    def headers(self, code: str, role: str) -> dict[str, str]:
        """A development principal of ``role``; ``cppcc:committee`` is the 政协's 提案委 staff."""
        body, _, role = role.rpartition(":")
        token = (None if body else self.info.get("tokens", {}).get(code, {}).get(role)) or dev_token(
            code, role, body=body or None
        )
        return {"Authorization": f"Bearer {token}"}

    def call(self, method: str, code: str, service: str, path: str, role: str, **kwargs: Any) -> Any:
        url = self.url(code, service)
        headers = {**self.headers(code, role), **kwargs.pop("headers", {})}
        answer = self.http.request(method, f"{url}{path}", headers=headers, **kwargs)
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {service}@{code}{path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def matter(self, code: str, matter_id: str) -> dict[str, Any]:
        return self.call("GET", code, "intake", f"/matters/{matter_id}", "committee")["matter"]

    def wait(self, what: str, check) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {self.timeout:.0f}s for {what}")
            pause(0.3)

    def submit(self, code: str, key: str, matter: dict[str, Any], role: str = "liaison_station") -> str:
        body = {"matter": {"channel": "liaison_station", "raised_in": code, **matter}}
        answer = self.call("POST", code, "intake", "/matters", role, json=body, headers={"Idempotency-Key": key})
        return answer["id"]

    def register(self, code: str, matter_id: str, role: str = "committee") -> None:
        if self.matter(code, matter_id)["status"] == "submitted":
            self.call("POST", code, "intake", f"/matters/{matter_id}/register", role)

    def _exists(self, code: str, matter_id: str) -> bool:
        try:
            self.matter(code, matter_id)
            return True
        except RuntimeError:
            return False

    # -- the story
    def load(self) -> None:
        if self.url(self.county, "intake") is None:
            self.say(f"demo: needs intake at {self.county}; skipped")
            return
        self.say("demo: loading matters, an escalation across three levels, seed 004's work plan …")
        self.matters_per_level()
        self.escalation()
        self.routed_and_assigned()
        self.work_plan()
        self.evaluation()
        self.say("demo: loaded (run it again any time: nothing is added twice)")

    def matters_per_level(self) -> None:
        for code, items in self.data["matters"].items():
            if self.url(code, "intake") is None:
                continue
            for number, item in enumerate(items, 1):
                who = "member" if item["kind"] == "proposal" else "deputy"
                lead = {"id": f"{who}-{code}-{number}", "name": item["lead"]}
                matter = {"kind": item["kind"], "title": item["title"], "content": item["content"], "lead": lead}
                # a 提案 is entered and registered by the 政协's 提案委, anything else by the station and 工委
                staff = "cppcc:committee" if item["kind"] == "proposal" else "committee"
                role = staff if item["kind"] == "proposal" else "liaison_station"
                matter_id = self.submit(code, f"demo-{code}-{number}", matter, role)
                if number == 1:
                    self.register(code, matter_id, staff)
            self.say(f"demo: {len(items)} matters at {code} {self.info['levels'].get(code, '')}")

    def escalation(self) -> None:
        """A township problem that only the city can solve, up two levels."""
        if any(self.url(code, "intake") is None for code in (self.township, self.county, self.prefecture)):
            self.say("demo: escalation needs intake at all three levels; skipped")
            return
        story = self.data["escalation"]
        matter_id = self.submit(self.township, "demo-escalation", story["matter"])
        current_code, current_id = self.township, matter_id
        for upper in (self.county, self.prefecture):
            self.register(current_code, current_id)
            if self.matter(current_code, current_id)["status"] == "registered":
                path = f"/matters/{current_id}/escalate"
                self.call("POST", current_code, "intake", path, "committee", json={"reason": story["reason"]})
            forwarded = self.wait(
                f"the escalated matter at {upper}",
                lambda c=current_code, i=current_id: self.matter(c, i).get("forwarded_matter_id"),
            )
            self.wait(f"the matter's record at {upper}", lambda u=upper, f=forwarded: self._exists(u, f))
            current_code, current_id = upper, forwarded
        self.register(current_code, current_id)
        names = self.info["levels"]
        self.say(
            f"demo: {names.get(self.township, self.township)} matter {matter_id} escalated to "
            f"{names.get(self.county, self.county)} and on to {names.get(self.prefecture, self.prefecture)} "
            f"({current_id})"
        )

    def routed_and_assigned(self) -> None:
        if self.url(self.county, "tracking") is None:
            self.say("demo: tracking is not running; no case assigned")
            return
        story = self.data["routed"]
        matter_id = self.submit(self.county, "demo-routed", story["matter"], role="deputy")
        self.register(self.county, matter_id)
        if self.matter(self.county, matter_id)["status"] == "registered":
            body = {"committee": story["committee"]}
            self.call("POST", self.county, "intake", f"/matters/{matter_id}/route", "committee", json=body)

        def case() -> dict[str, Any] | None:
            try:
                return self.call("GET", self.county, "tracking", f"/cases/{matter_id}", "committee")
            except RuntimeError:
                return None

        found = self.wait("the case opened in tracking", case)
        if (found.get("case") or found).get("status") == "opened":
            body = {"lead_unit": story["lead_unit"], "committee": story["committee"]}
            self.call("POST", self.county, "tracking", f"/cases/{matter_id}/assign", "committee", json=body)
        self.say(f"demo: matter {matter_id} routed and assigned to {story['lead_unit']['name']}")

    def work_plan(self) -> None:
        if self.url(self.county, "tracking") is None:
            return
        at = self.info["levels"].get(self.county, self.county)
        for path in PLAN_FILES:
            plan = json.loads(path.read_text(encoding="utf-8"))
            if plan["jurisdiction"] != self.county:
                continue
            files = {"file": (path.name, path.read_bytes(), "application/json")}

            def imported(files=files) -> Any:
                try:  # its units must be in tracking's copy of the directory first
                    return self.call("POST", self.county, "tracking", "/plans/import", "committee", files=files)
                except RuntimeError as exc:
                    if "unknown_unit" in str(exc):
                        return None
                    raise

            loaded = self.wait(f"the units of {path.name} in tracking's directory", imported)
            self.say(f"demo: plan {plan['title']} at {at}: {loaded['result']}, {loaded['items']} items")

    def evaluation(self) -> None:
        url = self.url(self.county, "evaluation")
        if url is None:
            self.say("demo: the evaluation service is not running; no evaluation session")
            return
        story = self.data["evaluation"]
        now = datetime.now(UTC)
        projects = self.wait(
            "the livelihood projects in tracking's read model",
            lambda: self.call(
                "GET", self.county, "tracking", f"/plan-items?kind={story['subjects_kind']}", "committee"
            )["items"],
        )
        subjects = [
            {"kind": "plan_item", "id": item["id"], "title": item["title"][:300]}
            for item in projects[: story["subjects"]]
        ]
        body = {
            "title": story["title"],
            "kind": story["kind"],
            "subjects": subjects,
            "roster": story["roster"],
            "opens_at": now.isoformat(),
            "closes_at": (now + timedelta(days=story["open_days"])).isoformat(),
        }
        answer = self.http.post(
            f"{url}/sessions",
            json=body,
            headers={**self.headers(self.county, "committee"), "Idempotency-Key": "demo-evaluation-1"},
        )
        if answer.status_code >= 400:
            self.say(f"demo: evaluation session not created ({answer.status_code}: {answer.text[:200]})")
            return
        session = answer.json()
        if session["status"] == "drafted":
            self.http.post(f"{url}/sessions/{session['id']}/open", headers=self.headers(self.county, "committee"))
            self.say("demo: an evaluation session at the county")
