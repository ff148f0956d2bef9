"""Issue 19's findings that are not about the bus, each reproduced and shown refused or harmless:
``duban serve`` without a key; formulas in the exported lists; control characters in what is
submitted and in the logs; raisers' contacts shown to whoever asked; a deputy submitting in
another deputy's name."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import subprocess
import sys

import httpx
import openpyxl
import pytest

from contracts import subjects
from contracts.envelope import PREVIOUS_SEQUENCE_HEADER
from services.intake.api import create_api as intake_api
from services.notify.api import create_api as notify_api
from services.runtime.es.mends import ensure_mends_stream
from services.runtime.http.auth import issue_token
from services.runtime.observe.logs import JsonFormatter
from services.runtime.observe.metrics import sample
from services.runtime.service import operated
from services.runtime.settings import Settings
from services.runtime.tools.cli import key_refusal
from services.tracking.api import create_api as tracking_api
from tests.support.notify import WENLING, wenling_level
from tests.support.waiting import eventually

FORMULAS = [
    '=HYPERLINK("http://evil.example/x","点击查看")',
    "=cmd|' /C calc'!A0",
    "+1+1 企业反映",
    "-2+3 企业反映",
    "@SUM(1,2) 企业反映",
]


def bearer(role: str, code: str = WENLING, sub: str | None = None) -> dict[str, str]:
    """A development token of ``role`` at ``code``: the principal ``<role>-<code>``, or ``sub``."""
    principal = sub or f"{role}-{code}"
    token = issue_token(principal, [role], code, name=principal, secret=Settings().jwt_secret)
    return {"Authorization": f"Bearer {token}"}


def test_duban_serve_refuses_to_start_without_a_key_to_verify_tokens_with():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUBAN_DEV_SIGNIN", "DUBAN_JWKS", "DUBAN_JWT"))}
    done = subprocess.run(
        [sys.executable, "-m", "services.runtime.tools.cli", "serve", "intake", "--jurisdiction", "331082"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no key to verify tokens with" in done.stderr and "DUBAN_JWKS_URL" in done.stderr
    bare = Settings(jurisdiction="331082", dev_signin=False, jwks_url=None, jwt_public_key=None)
    assert key_refusal("tracking", bare) is not None
    assert (
        key_refusal("tracking", bare.model_copy(update={"jwks_url": "http://directory/.well-known/jwks.json"})) is None
    )
    assert key_refusal("tracking", bare.model_copy(update={"dev_signin": True})) is None
    assert key_refusal("directory", bare) is None  # it holds the keys


def test_logs_escape_what_a_terminal_would_act_on():
    record = logging.makeLogRecord(
        {"msg": "matter submitted", "levelname": "INFO", "name": "t", "title": "红\x1b[2J\x9b31m\x00\u2028x"}
    )
    line = JsonFormatter().format(record)
    assert all(ch not in line for ch in ("\x1b", "\x9b", "\x00", "\u2028"))
    assert "\\u001b[2J\\u009b31m\\u0000\\u2028x" in line


@pytest.fixture
async def level(tmp_path):
    async with wenling_level(tmp_path) as running:
        intake = intake_api(running.intake.settings, handlers=running.intake.handlers, engine=running.intake.engine)
        notify = notify_api(running.notify_settings, handlers=running.notify.handlers, engine=running.notify.engine)
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=intake), base_url="http://intake") as i,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=notify), base_url="http://notify") as n,
        ):
            yield running, i, n


def problem(title: str, lead: str = "deputy-331081", contact: str | None = None) -> dict:
    matter = {
        "kind": "problem",
        "title": title,
        "content": "企业反映的问题。",
        "channel": "liaison_station",
        "lead": {"id": lead, "name": "王代表"},
        "raised_in": WENLING,
        "raised_by": {"name": "温岭某泵业有限公司", **({"contact": contact} if contact else {})},
    }
    return {"matter": matter}


async def test_the_lists_keep_formulas_as_text_in_xlsx_and_csv(level):
    running, intake, notify = level
    for title in FORMULAS:
        answer = await intake.post("/matters", json=problem(title), headers=bearer("liaison_station"))
        assert answer.status_code == 201, answer.text

    async def listed():
        await running.idle()
        rows = (await notify.get("/lists/problems", headers=bearer("committee"))).json()
        return rows if rows["count"] == len(FORMULAS) else None

    await eventually(listed)
    xlsx = await notify.get("/lists/problems", params={"format": "xlsx"}, headers=bearer("committee"))
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    cells = [c for row in book.active.iter_rows() for c in row if isinstance(c.value, str)]
    for title in FORMULAS:
        found = [c for c in cells if c.value == title]
        assert found and all(c.data_type == "s" for c in found), title  # a string, not a formula
    assert not [c for c in cells if c.data_type == "f"]
    text = (await notify.get("/lists/problems", params={"format": "csv"}, headers=bearer("committee"))).content
    values = [v for row in csv.reader(io.StringIO(text.decode("utf-8-sig"))) for v in row]
    for title in FORMULAS:
        assert f"'{title}" in values and title not in values, title


async def test_control_characters_are_refused_where_text_comes_in_naming_the_field(level):
    _, intake, _ = level
    for bad in ("园区\x1b[31m道路", "道路\x00破损", "退格\x08"):
        answer = await intake.post("/matters", json=problem(bad), headers=bearer("liaison_station"))
        assert answer.status_code == 422, answer.text
        assert "matter.title" in answer.text and "控制字符" in answer.text
    fine = await intake.post("/matters", json=problem("道路破损\t二期"), headers=bearer("liaison_station"))
    assert fine.status_code == 201  # a tab (and newlines) are text


async def test_a_raisers_contact_is_shown_only_to_staff_and_the_submitters(level):
    running, intake, _ = level
    raised = await intake.post(
        "/matters", json=problem("园区道路破损", contact="13957600001"), headers=bearer("liaison_station")
    )
    matter_id = raised.json()["id"]
    await running.idle()

    async def contact(headers) -> str | None:
        detail = await intake.get(f"/matters/{matter_id}", headers=headers)
        listed = (await intake.get("/matters", headers=headers)).json()["items"]
        row = next(r for r in listed if r["id"] == matter_id)
        assert row["raised_by_contact"] == detail.json()["matter"]["raised_by_contact"]
        return row["raised_by_contact"]

    assert await contact(bearer("committee")) == "13957600001"
    assert await contact(bearer("deputy", sub="deputy-331081")) == "13957600001"  # its submitter
    for role in ("unit", "leader", "operator", "evaluator"):
        assert await contact(bearer(role)) == "139****0001", role
    assert await contact(bearer("deputy", sub="deputy-331081-009")) == "139****0001"  # another deputy


async def test_a_deputy_submits_as_himself_and_a_station_on_a_deputys_behalf(level):
    running, intake, _ = level
    forged = await intake.post(
        "/matters", json=problem("冒名提出", lead="deputy-331081-009"), headers=bearer("deputy", sub="deputy-331081")
    )
    assert forged.status_code == 403 and "本人名义" in forged.json()["detail"]["message"]
    own = await intake.post("/matters", json=problem("本人提出"), headers=bearer("deputy", sub="deputy-331081"))
    assert own.status_code == 201
    entered = await intake.post(
        "/matters", json=problem("联络站代录", lead="deputy-331081-009"), headers=bearer("liaison_station")
    )
    assert entered.status_code == 201
    history = await running.intake.handlers.store.history(entered.json()["id"])
    assert history[0].actor.principal_id == f"liaison_station-{WENLING}"  # who entered it, on the deputy's behalf


async def test_an_unreadable_event_is_reported_answered_clearly_and_voided_by_an_operator(tmp_path):
    async with wenling_level(tmp_path) as level:
        await ensure_mends_stream(level.tracking.store.js, WENLING)  # duban provision makes it
        case_id = await level.routed_suggestion("园区道路破损")
        store = level.tracking.store
        subject = subjects.event_subject("tracking", WENLING, case_id)
        last = await store.js.get_msg(store.stream, subject=subject, direct=True)
        broken = json.loads(last.data)
        broken[0] |= {"event_id": "broken-1", "sequence": 2, "trace_context": None}
        headers = {PREVIOUS_SEQUENCE_HEADER: str(last.seq), "Nats-Expected-Last-Subject-Sequence": str(last.seq)}
        bad = await store.js.publish(subject, json.dumps(broken).encode(), headers=headers)
        api = operated(
            tracking_api(level.tracking.settings, handlers=level.tracking.handlers, engine=level.tracking.engine),
            level.tracking,
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://tracking") as http:
            answer = await http.get(f"/cases/{case_id}", headers=bearer("committee"))
            assert answer.status_code == 409, answer.text
            assert answer.json()["detail"]["code"] == "undecodable_event"
            assert f"第 {bad.seq} 号消息无法读取" in answer.json()["detail"]["message"]
            assign = {"lead_unit": {"id": "unit-water", "name": "市农业农村和水利局"}, "committee": "农业农村工委"}
            refused = await http.post(f"/cases/{case_id}/assign", json=assign, headers=bearer("committee"))
            assert refused.status_code == 409  # nothing is decided on a state it cannot read
            status = (await http.get("/status")).json()
            assert {"subject": subject, "sequence": bad.seq} in [
                {k: u[k] for k in ("subject", "sequence")} for u in status["undecodable"]
            ]
            assert sample("duban_undecodable_events_total", {"stream": store.stream}) >= 1
            # the operator voids it, with a reason; the commit stays, the mend says who and why
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "services.runtime.tools.cli",
                    "events",
                    "void",
                    "--level",
                    WENLING,
                    "--subject",
                    subject,
                    "--sequence",
                    str(bad.seq),
                    "--reason",
                    "trace_context 为空的消息，由某外部系统误发",
                    "--operator",
                    "ops-zhang",
                    "--nats",
                    level.nats.url,
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            mend = json.loads(done.stdout)
            assert (mend["sequence"], mend["operator"], mend["action"]) == (bad.seq, "ops-zhang", "void")
            assert (await http.get(f"/cases/{case_id}", headers=bearer("committee"))).status_code == 200
            assigned = await http.post(f"/cases/{case_id}/assign", json=assign, headers=bearer("committee"))
            assert assigned.status_code == 200, assigned.text
            assert assigned.json()["status"] == "assigned"
        assert (await store.js.stream_info(store.stream)).state.messages >= bad.seq  # nothing deleted


async def test_a_database_refusing_for_a_moment_is_a_503_not_a_500():
    """PostgreSQL breaks a deadlock by aborting one side (asyncpg's error comes as a plain
    ``DBAPIError``, SQLSTATE 40P01), e.g. a list read while ``duban rebuild`` swaps its tables:
    the reader is told to try again (503, ``Retry-After``), as when the database is away; an error
    of the database that says the work is wrong stays ours (500, its text not shown)."""
    from fastapi import FastAPI
    from sqlalchemy.exc import DBAPIError, OperationalError

    from services.runtime.http.app import install_error_handlers

    class Refused(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(f"sqlstate {sqlstate}")
            self.sqlstate = sqlstate

    raised = {
        "deadlock": DBAPIError("SELECT 1", {}, Refused("40P01")),
        "away": OperationalError("SELECT 1", {}, Refused("08006")),
        "ours": DBAPIError("INSERT", {}, Refused("23505")),
    }
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/{what}")
    async def fail(what: str) -> None:
        raise raised[what]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for what in ("deadlock", "away"):
            answer = await client.get(f"/{what}")
            assert answer.status_code == 503 and answer.headers["Retry-After"], what
            assert answer.json()["detail"]["message"] == "数据库暂时不可用，请稍后重试"
        answer = await client.get("/ours")
        assert answer.status_code == 500 and "23505" not in answer.text
