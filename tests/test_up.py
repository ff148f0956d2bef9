"""``duban serve`` and ``duban up`` as people run them: real processes, real ports, real signals.

- ``duban serve intake`` with a settings file: SIGTERM while requests are in flight ends it with
  exit code 0, and nothing it acknowledged is lost (nor doubled when the client retries).
- ``duban up --demo`` (the one tests/test_readme.py uses too): every service of the three
  levels its own process, each ``/healthz`` answering, ``run.json`` written, the demo loaded
  (and loading it again adds nothing), a matter escalated over HTTP from 泽国镇 to 温岭市 to
  台州市 visible at each level with its path, a service killed with SIGKILL restarted and then
  handling what was published while it was down, and Ctrl-C leaving no process behind.
- ``duban up`` and its own nats-server (one service of one level, to stay light): a nats-server
  killed with SIGKILL is restarted on the same port and store while the services keep running;
  an exception inside ``duban up`` still stops every child, and the next start on the same ports
  works; ``duban up`` killed with SIGKILL takes its children with it (the kernel's parent-death
  signal).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import nats
import pytest
from nats.errors import Error as NatsError

from contracts import subjects
from services.runtime.http.auth import issue_token
from services.runtime.settings import Settings
from services.runtime.tools.demo import Demo
from services.runtime.tools.nats_server import EmbeddedNats
from services.runtime.tools.ports import free_port
from services.runtime.tools.up import discover_services
from tests.support.processes import (
    DUBAN,
    ROOT,
    Up,
    alive,
    free_port_block,
    healthz,
    processes_mentioning,
    wait_for,
)

pytestmark = pytest.mark.slow

TAIZHOU, WENLING, ZEGUO = "331000", "331081", "331081100"
LEVELS = (TAIZHOU, WENLING, ZEGUO)


# -- duban serve ------------------------------------------------------------------------------------
def test_sigterm_drains_a_served_intake_and_nothing_it_acknowledged_is_lost(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    port = free_port()
    settings_file = tmp_path / "intake.yaml"
    settings_file.write_text(
        f"# what a deployment puts in its settings file\n"
        f"nats_url: {server.url}\n"
        f"data_dir: {tmp_path / 'data'}\n"
        f"max_deliver: 7\n"
        f"reply_classes: [A, B, C, D]\n"
        f"dev_signin: true  # the test's development token\n"
    )
    command = [*DUBAN, "serve", "intake", "--jurisdiction", WENLING]
    command += ["--port", str(port), "--settings", str(settings_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_") and k not in {"NATS_URL", "DATABASE_URL"}}
    token = issue_token("station-1", ["liaison_station"], WENLING, secret=Settings().jwt_secret)
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: process.poll() is not None or healthz(url), 60, "duban serve intake")
        assert process.poll() is None, process.stdout.read().decode(errors="replace")
        return process

    def body(n: int) -> dict:
        return {
            "matter": {
                "kind": "problem",
                "title": f"第{n}号企业诉求",
                "content": "企业反映的问题",
                "lead": {"id": "deputy-1", "name": "王代表"},
                "channel": "liaison_station",
                "raised_in": WENLING,
            }
        }

    async def submit_many(keys: list[str], stop_after: int | None, process: subprocess.Popen | None):
        """Eight clients submit one after another; after ``stop_after`` answers the process gets
        SIGTERM while requests are in flight, and the clients go on (those refused are retried by
        the caller). Returns key → matter id of every acknowledged submission."""
        answered: dict[str, str] = {}
        waiting = list(keys)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:

            async def client() -> None:
                while waiting:
                    key = waiting.pop(0)
                    try:
                        answer = await http.post(
                            "/matters", json=body(int(key.split("-")[1])), headers={**headers, "Idempotency-Key": key}
                        )
                    except httpx.HTTPError:
                        continue  # refused while stopping: the client retries later
                    if answer.status_code == 201:
                        answered[key] = answer.json()["id"]
                        if process is not None and len(answered) == stop_after:
                            process.send_signal(signal.SIGTERM)

            await asyncio.gather(*(client() for _ in range(8)))
        return answered

    keys = [f"key-{n}" for n in range(60)]
    try:
        process = start()
        first = asyncio.run(submit_many(keys, stop_after=20, process=process))
        code = process.wait(30)
        output = process.stdout.read().decode(errors="replace")
        assert code == 0, output
        print(f"{len(first)} of {len(keys)} submissions acknowledged before the process stopped")
        assert 20 <= len(first) < len(keys)  # some were refused while it stopped

        process = start()  # the same level again, on the same stream and database
        second = asyncio.run(submit_many(keys, stop_after=None, process=None))
        assert len(second) == len(keys)
        assert all(second[key] == matter_id for key, matter_id in first.items())  # acknowledged, kept

        async def stored() -> int:
            nc = await nats.connect(server.url)
            try:
                info = await nc.jetstream().stream_info(subjects.event_stream("intake", WENLING))
                return info.state.messages
            finally:
                await nc.close()

        assert asyncio.run(stored()) == len(keys)  # one submission each: none lost, none doubled

        def listed() -> bool:
            answer = httpx.get(f"{url}/matters", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"})
            return answer.status_code == 200 and len(answer.json()["items"]) == len(keys)

        wait_for(listed, 20, "every matter in the read model")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        server.stop()


# -- duban up ---------------------------------------------------------------------------------------


@pytest.fixture
def up(shared_up) -> Up:
    """The ``duban up --demo`` these tests share with tests/test_readme.py (tests/support/shared_up.py)."""
    return shared_up.running()


def test_every_service_of_every_level_is_its_own_process_and_answers_healthz(up):
    present, _ = discover_services()
    info = up.run_file
    assert info["ready"] is True
    assert set(info["services"]) == set(LEVELS)
    expected = {f"{service}-{code}" for service in present for code in LEVELS}
    assert set(info["processes"]) == expected  # with all four services: twelve
    assert len({p["pid"] for p in info["processes"].values()}) == len(expected)
    for name, process in info["processes"].items():
        assert alive(process["pid"]), name
        assert healthz(process["url"]), name
    assert "tokens" not in info  # people sign in: duban token, or --dev-tokens for scripts
    assert info["nats_url"].startswith("nats://127.0.0.1:")
    # the bus is as closed as in production: nobody connects without the generated credentials
    with pytest.raises(NatsError, match="Authorization Violation"):
        asyncio.run(nats.connect(info["nats_url"], allow_reconnect=False, max_reconnect_attempts=0))
    assert Path(info["nats_credentials"]).stat().st_mode & 0o777 == 0o600


def test_duban_token_signs_in_a_person_of_the_directory_whose_token_two_services_accept(up):
    token = up.sign_in

    def wait_enrolled() -> bool:
        return token(f"unit-staff-{WENLING}", WENLING).returncode == 0

    wait_for(wait_enrolled, 30, "the development people enrolled")
    unit = token(f"unit-staff-{WENLING}", WENLING).stdout.strip()
    claims = jwt.decode(unit, options={"verify_signature": False})
    assert jwt.get_unverified_header(unit)["alg"] == "RS256"
    assert claims["sub"] == f"unit-staff-{WENLING}" and claims["unit"] == f"unit-{WENLING}"
    assert claims["roles"] == ["unit"] and claims["aud"] == "duban" and claims["exp"] - claims["iat"] <= 900
    bearer = {"Authorization": f"Bearer {unit}"}
    for service in ("intake", "tracking"):
        assert httpx.get(f"{up.url(WENLING, service)}/readyz").status_code == 200
        path = "/matters" if service == "intake" else "/cases"
        assert httpx.get(f"{up.url(WENLING, service)}{path}", headers=bearer).status_code == 200, service
        # the token of 温岭市's directory is not 台州市's
        assert httpx.get(f"{up.url(TAIZHOU, service)}{path}", headers=bearer).status_code == 401, service
    refused = token("nobody-here", WENLING)
    assert refused.returncode == 1 and "不在本级名册中" in refused.stderr


def test_the_demo_shows_matters_at_every_level_and_loading_it_again_adds_nothing(up):
    def counts() -> dict[str, int]:
        return {
            code: len(
                httpx.get(
                    f"{up.url(code, 'intake')}/matters", params={"limit": 200}, headers=up.headers(code, "committee")
                ).json()["items"]
            )
            for code in LEVELS
        }

    def sessions() -> list[dict]:
        answer = httpx.get(f"{up.url(WENLING, 'evaluation')}/sessions", headers=up.headers(WENLING, "committee"))
        return answer.json()["items"]

    before = counts()
    assert all(count >= 2 for count in before.values()), before
    present, _ = discover_services()
    if "evaluation" in present:
        opened = sessions()
        assert len(opened) == 1 and opened[0]["status"] == "opened" and len(opened[0]["subjects"]) == 10
    items = httpx.get(f"{up.url(WENLING, 'tracking')}/plans", headers=up.headers(WENLING, "committee"))
    assert items.status_code == 200 and len(items.json()["items"]) == 3  # seeds 000, 001 and 004
    lines: list[str] = []
    Demo(up.run_file, say=lines.append).load()
    assert "demo: plan 2022年“一府两院”重点工作和民生实事项目代表分组监督方案 at 温岭市: unchanged, 51 items" in lines
    assert counts() == before
    if "evaluation" in present:
        assert len(sessions()) == 1


def test_a_township_matter_escalated_over_http_is_visible_at_each_level_with_its_path(up):
    station, committee = up.headers(ZEGUO, "liaison_station"), {c: up.headers(c, "committee") for c in LEVELS}
    submitted = httpx.post(
        f"{up.url(ZEGUO, 'intake')}/matters",
        json={
            "matter": {
                "kind": "problem",
                "title": "泽国镇牧屿片区企业污水纳管难",
                "content": "片区企业污水无法纳管，需市级统筹管网建设。",
                "lead": {"id": "deputy-7", "name": "郑代表"},
                "channel": "liaison_station",
                "raised_in": ZEGUO,
            }
        },
        headers={**station, "Idempotency-Key": "test-escalation"},
    )
    assert submitted.status_code == 201, submitted.text
    path = [(ZEGUO, submitted.json()["id"])]
    for upper in (WENLING, TAIZHOU):
        code, matter_id = path[-1]
        intake = up.url(code, "intake")
        assert httpx.post(f"{intake}/matters/{matter_id}/register", headers=committee[code]).status_code == 200
        escalated = httpx.post(
            f"{intake}/matters/{matter_id}/escalate", json={"reason": "超出本级事权"}, headers=committee[code]
        )
        assert escalated.status_code == 200, escalated.text

        def forwarded(code=code, matter_id=matter_id):
            detail = httpx.get(f"{up.url(code, 'intake')}/matters/{matter_id}", headers=committee[code]).json()
            return detail["matter"].get("forwarded_matter_id")

        path.append((upper, wait_for(forwarded, 30, f"the matter at {upper}")))

    details = {
        code: httpx.get(f"{up.url(code, 'intake')}/matters/{matter_id}", headers=committee[code]).json()
        for code, matter_id in path
    }
    (zeguo, zeguo_id), (wenling, wenling_id), (taizhou, taizhou_id) = path
    assert details[zeguo]["matter"]["status"] == "escalated" and details[zeguo]["matter"]["sent_to"] == WENLING
    assert details[wenling]["matter"]["origin_jurisdiction"] == ZEGUO
    assert details[wenling]["matter"]["origin_matter_id"] == zeguo_id
    assert details[wenling]["matter"]["forwarded_matter_id"] == taizhou_id
    assert details[taizhou]["matter"]["origin_jurisdiction"] == WENLING
    assert details[taizhou]["matter"]["origin_matter_id"] == wenling_id
    assert details[taizhou]["matter"]["title"] == "泽国镇牧屿片区企业污水纳管难"
    received = [h for h in details[taizhou]["history"] if h["event_type"] == "intake.MatterReceived"]
    assert received, details[taizhou]["history"]
    # each level reads only its own: 泽国镇's token is refused at 台州市
    refused = httpx.get(f"{up.url(TAIZHOU, 'intake')}/matters/{taizhou_id}", headers=station)
    assert refused.status_code == 403


def duban_token(up, person: str, level: str) -> dict[str, str]:
    """The bearer header of a person of ``level``'s directory, signed in with ``duban token``."""
    return {"Authorization": f"Bearer {up.person_token(person, level)}"}


def test_a_county_reply_reaches_the_township_deputy_in_his_own_inbox(up):
    present, _ = discover_services()
    assert {"intake", "tracking", "notify", "directory"} <= set(present)
    wait_for(lambda: duban_token(up, f"deputy-{ZEGUO}", ZEGUO), 30, "the township's people")
    station, deputy = duban_token(up, f"liaison_station-{ZEGUO}", ZEGUO), duban_token(up, f"deputy-{ZEGUO}", ZEGUO)
    committee = {c: duban_token(up, f"committee-{c}", c) for c in (ZEGUO, WENLING)}
    title = "泽国镇工业园区雨污管网堵塞"
    submitted = httpx.post(
        f"{up.url(ZEGUO, 'intake')}/matters",
        json={
            "matter": {
                "kind": "problem",
                "title": title,
                "content": "园区雨污管网堵塞，汛期企业厂区积水。",
                "lead": {"id": f"deputy-{ZEGUO}", "name": "王代表"},
                "channel": "liaison_station",
                "raised_in": ZEGUO,
            }
        },
        headers={**station, "Idempotency-Key": "test-reply-reaches-deputy"},
    )
    assert submitted.status_code == 201, submitted.text
    township_id = submitted.json()["id"]
    intake = up.url(ZEGUO, "intake")
    assert httpx.post(f"{intake}/matters/{township_id}/register", headers=committee[ZEGUO]).status_code == 200
    escalated = httpx.post(
        f"{intake}/matters/{township_id}/escalate", json={"reason": "超出本级事权"}, headers=committee[ZEGUO]
    )
    assert escalated.status_code == 200, escalated.text

    def forwarded():
        detail = httpx.get(f"{intake}/matters/{township_id}", headers=committee[ZEGUO]).json()
        return detail["matter"].get("forwarded_matter_id")

    county_id = wait_for(forwarded, 30, "the matter at 温岭市")
    county = up.url(WENLING, "intake")
    assert httpx.post(f"{county}/matters/{county_id}/register", headers=committee[WENLING]).status_code == 200
    routed = httpx.post(
        f"{county}/matters/{county_id}/route", json={"committee": "城建环资工委"}, headers=committee[WENLING]
    )
    assert routed.status_code == 200, routed.text
    tracking = up.url(WENLING, "tracking")
    wait_for(
        lambda: httpx.get(f"{tracking}/cases/{county_id}", headers=committee[WENLING]).status_code == 200,
        30,
        "the case",
    )
    assigned = httpx.post(
        f"{tracking}/cases/{county_id}/assign",
        json={"lead_unit": {"id": f"unit-{WENLING}", "name": "温岭市交通运输局"}, "committee": "城建环资工委"},
        headers=committee[WENLING],
    )
    assert assigned.status_code == 200, assigned.text
    # the unit's staff member signs in as himself; his token names his unit
    replied = httpx.post(
        f"{tracking}/cases/{county_id}/reply",
        json={"reply_class": "A", "text": "已疏通园区雨污管网并新建泵站。"},
        headers=duban_token(up, f"unit-staff-{WENLING}", WENLING),
    )
    assert replied.status_code == 200, replied.text

    def the_reply_notice():
        items = httpx.get(f"{up.url(ZEGUO, 'notify')}/inbox", headers=deputy).json()["items"]
        return [i for i in items if i["kind"] == "reply" and title in i["subject"]]

    notices = wait_for(the_reply_notice, 60, "the 答复通知 in the deputy's inbox at 泽国镇")
    assert "已疏通园区雨污管网并新建泵站。" in notices[0]["body"]
    # 温岭市 sent none to him: he signs in at 泽国镇, not there
    sent = httpx.get(
        f"{up.url(WENLING, 'notify')}/deliveries",
        params={"recipient": f"deputy-{ZEGUO}"},
        headers=up.headers(WENLING, "operator"),
    )
    assert sent.status_code == 200 and sent.json()["items"] == [], sent.text


def test_a_service_killed_with_sigkill_is_restarted_and_handles_what_was_published_meanwhile(up):
    present, _ = discover_services()
    assert "tracking" in present
    victim = "tracking-331081"
    before = up.run_file["processes"][victim]
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(before["pid"]), 10, "the killed process to be gone")

    # while tracking of 温岭市 is down, intake of 温岭市 routes a matter: MatterRouted is published
    committee = up.headers(WENLING, "committee")
    intake = up.url(WENLING, "intake")
    submitted = httpx.post(
        f"{intake}/matters",
        json={
            "matter": {
                "kind": "suggestion",
                "title": "关于增设城东街道公共充电桩的建议",
                "content": "城东街道新能源汽车充电设施不足。",
                "lead": {"id": f"deputy-{WENLING}", "name": "王代表"},
                "channel": "session",
                "raised_in": WENLING,
            }
        },
        headers={**up.headers(WENLING, "deputy"), "Idempotency-Key": "test-killed"},
    )
    assert submitted.status_code == 201, submitted.text
    matter_id = submitted.json()["id"]
    assert httpx.post(f"{intake}/matters/{matter_id}/register", headers=committee).status_code == 200
    routed = httpx.post(f"{intake}/matters/{matter_id}/route", json={"committee": "财经工委"}, headers=committee)
    assert routed.status_code == 200, routed.text

    after = wait_for(
        lambda: (p := up.run_file["processes"][victim])["pid"] != before["pid"] and p, 30, "the restarted process"
    )
    assert after["restarts"] == before["restarts"] + 1
    assert f"tracking of {WENLING} exited (signal SIGKILL)" in up.log()
    wait_for(lambda: healthz(after["url"]), 60, "the restarted tracking to answer /healthz")

    def case_opened():
        answer = httpx.get(f"{after['url']}/cases/{matter_id}", headers=committee)
        return answer.status_code == 200 and answer.json()

    case = wait_for(case_opened, 30, "the case the restarted tracking opens from MatterRouted")
    assert case["case"]["matter_id"] == matter_id


def test_ctrl_c_stops_every_process_and_leaves_none_behind(up):
    """Last of the tests on the ``up`` fixture: stops the system they used (shared with
    tests/test_readme.py, which runs before; a test asking for it after this gets a new one)."""
    info = up.run_file
    pids = [p["pid"] for p in info["processes"].values()]
    assert processes_mentioning(str(up.data_dir))  # the services and nats-server, running
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(60) == 0, up.log()
    assert "duban: stopped" in up.log()
    assert [pid for pid in pids if alive(pid)] == []
    assert processes_mentioning(str(up.data_dir)) == []
    stopped = up.run_file
    assert stopped["ready"] is False and stopped["stopped_at"]  # not read as a running system any more
    assert f"DUBAN_DATA_DIR={up.data_dir.resolve()} duban token" in up.log()  # the hint names this run's data


def test_unknown_levels_and_an_unreachable_nats_are_said_in_one_line(tmp_path):
    unknown = subprocess.run(
        [*DUBAN, "up", "--levels", "331083199", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "331083199" in unknown.stderr and "DUBAN_JURISDICTIONS_FILES" in unknown.stderr
    unreachable = subprocess.run(
        [*DUBAN, "dead-letters", "list", "--jurisdiction", WENLING, "--nats", f"nats://127.0.0.1:{free_port()}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert "cannot reach NATS" in unreachable.stderr and len(unreachable.stderr.splitlines()) == 1


# -- duban up, its nats-server and its children ----------------------------------------------------
#: One service of one level: enough to see what duban up does with its children, and light.
LIGHT = ("--services", "intake", "--levels", WENLING)

#: ``duban up`` with an exception injected once it is ready, and another one when it waits for a
#: service to stop (no hook in the product: the wrapper replaces ``Runner.supervise_once`` and
#: ``ServiceProcess.wait_stopped``, then runs the CLI as ``duban`` does).
FAILING_UP = """
import sys
from services.runtime.tools import cli, up

supervise_once = up.Runner.supervise_once
calls = []

def failing(self):
    supervise_once(self)
    if self.ready:
        calls.append(self)
        if len(calls) == 3:
            raise RuntimeError("injected into duban up")

def failing_to_wait(self, deadline):
    raise RuntimeError("injected into stopping")

up.Runner.supervise_once = failing
up.ServiceProcess.wait_stopped = failing_to_wait
sys.exit(cli.main(sys.argv[1:]))
"""


def submit_matter(system: Up, title: str) -> httpx.Response:
    return httpx.post(
        f"{system.url(WENLING, 'intake')}/matters",
        json={
            "matter": {
                "kind": "problem",
                "title": title,
                "content": "企业反映的问题",
                "lead": {"id": "deputy-1", "name": "王代表"},
                "channel": "liaison_station",
                "raised_in": WENLING,
            }
        },
        # retried while a restarted nats-server comes back: taken once
        headers={**system.headers(WENLING, "liaison_station"), "Idempotency-Key": title.encode().hex()[:64]},
        timeout=10,
    )


def stored_matters(url: str) -> int:
    async def count() -> int:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(subjects.event_stream("intake", WENLING))).state.messages
        finally:
            await nc.close()

    return asyncio.run(count())


def test_a_nats_server_killed_with_sigkill_is_restarted_on_the_same_port_and_store(tmp_path):
    system = Up(tmp_path / ".duban", free_port_block(1), *LIGHT)
    try:
        info = system.wait_ready()
        before, service = info["nats"], info["processes"][f"intake-{WENLING}"]
        assert before["restarts"] == 0 and before["url"] == info["nats_url"] and before["last_restart"] is None
        assert submit_matter(system, "重启前提交的问题").status_code == 201

        started = time.monotonic()
        os.kill(before["pid"], signal.SIGKILL)
        after = wait_for(lambda: (n := system.run_file["nats"])["pid"] != before["pid"] and n, 20, "a new nats-server")
        wait_for(lambda: "duban: nats-server is back" in system.log(), 20, "nats-server back")
        print(f"nats-server killed, restarted and answering in {time.monotonic() - started:.1f}s")

        assert after["restarts"] == 1 and after["last_restart"]
        assert (after["url"], after["monitor"]) == (before["url"], before["monitor"])  # the same ports
        assert system.run_file["nats_url"] == info["nats_url"]
        assert alive(after["pid"])
        assert "duban: nats-server exited (signal SIGKILL) after" in system.log()
        assert f"restarting on {before['url']} with its store {system.data_dir / 'nats'}" in system.log()
        assert f"(see {before['log']})" in system.log()
        assert stored_matters(system.nats_admin_url()) == 1  # the same store: what was acknowledged before is there
        # the services were not restarted: they reconnect by themselves and work again
        back = time.monotonic()
        wait_for(lambda: submit_matter(system, "重启后提交的问题").status_code == 201, 10, "intake working again")
        print(f"intake took a submission {time.monotonic() - back:.1f}s after nats-server was back")
        assert stored_matters(system.nats_admin_url()) == 2
        assert system.run_file["processes"][f"intake-{WENLING}"] == service and alive(service["pid"])
    finally:
        system.stop()
    assert system.process.returncode == 0, system.log()
    assert processes_mentioning(str(system.data_dir)) == []


def test_an_exception_inside_duban_up_leaves_no_child_behind_and_the_next_start_works(tmp_path):
    data_dir, base, nats_port = tmp_path / ".duban", free_port_block(1), free_port()
    failing = Up(data_dir, base, *LIGHT, nats_port=nats_port, launcher=(sys.executable, "-c", FAILING_UP))
    try:
        code = failing.process.wait(120)
    finally:
        failing.stop()
    assert code == 1, failing.log()
    assert "RuntimeError: injected into duban up" in failing.log()
    assert f"duban: stopping intake of {WENLING} failed: RuntimeError: injected into stopping" in failing.log()
    assert "duban: stopped" in failing.log()  # and the nats-server was stopped all the same
    children = failing.pids()
    assert len(children) == 2 and all(children)
    wait_for(lambda: not any(alive(pid) for pid in children), 5, "the children to be gone")
    assert processes_mentioning(str(data_dir)) == []

    again = Up(data_dir, base, *LIGHT, nats_port=nats_port, output="up-again.log")
    try:
        info = again.wait_ready()
        assert info["nats_url"] == f"nats://127.0.0.1:{nats_port}"
        assert submit_matter(again, "再次启动后提交的问题").status_code == 201
    finally:
        again.stop()
    assert again.process.returncode == 0, again.log()


def test_the_children_of_a_duban_up_killed_with_sigkill_exit_by_themselves(tmp_path):
    system = Up(tmp_path / ".duban", free_port_block(1), *LIGHT)
    try:
        system.wait_ready()
        children = system.pids()
        system.process.kill()  # no cleanup runs: the kernel signals the children
        system.process.wait()
        killed = time.monotonic()
        wait_for(lambda: not any(alive(pid) for pid in children), 10, "the children to exit")
        print(f"children gone {time.monotonic() - killed:.1f}s after duban up was killed")
        assert processes_mentioning(str(system.data_dir)) == []
        nats_log = Path(system.run_file["nats"]["log"]).read_text(errors="replace")
        assert 'Trapped "terminated" signal' in nats_log  # SIGTERM: JetStream flushed and shut down
    finally:
        for pid in processes_mentioning(str(system.data_dir)):
            os.kill(pid, signal.SIGKILL)
