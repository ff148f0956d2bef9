"""``DUBAN_HTTP_WORKERS``: a service answering HTTP in more than one process, as a congress hall's
ballot burst needs (``services/runtime/http/workers.py``). Real processes on a real nats-server:

- ``duban serve evaluation`` with two workers starts one helper, and both processes answer
  requests on the one port (each writes the spans of what it answered to its own trace file);
- sheets cast over many connections, so through both processes, are each counted exactly once,
  and a second sheet of an evaluator is refused whichever process it reaches;
- ``/status`` lists the service's projections whichever process answers it;
- a helper killed with SIGKILL is restarted; SIGTERM to the first process stops both (exit 0);
- a helper whose first process is killed stops by itself, leaving nothing on the port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.runtime.http.auth import issue_token
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.runtime.tools.ports import free_port
from tests.support.processes import alive, children, healthz, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
WENLING = "331081"
DUBAN = (sys.executable, "-m", "services.runtime.tools.cli")
EVALUATORS = 40


def server_spans(trace_file: Path) -> int:
    if not trace_file.exists():
        return 0
    return sum(json.loads(line)["kind"] == "SERVER" for line in trace_file.read_text().splitlines() if line.strip())


@pytest.fixture
def served(tmp_path):
    """``duban serve evaluation`` with two HTTP workers: (process, url, data dir, its log)."""
    server = EmbeddedNats(tmp_path / "nats").start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_") and k not in {"NATS_URL", "DATABASE_URL"}}
    env["DUBAN_DEV_SIGNIN"] = "true"  # the test's development tokens
    env |= {"DUBAN_NATS_URL": server.url, "DUBAN_DATA_DIR": str(tmp_path / "data"), "DUBAN_HTTP_WORKERS": "2"}
    command = [*DUBAN, "serve", "evaluation", "--jurisdiction", WENLING, "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or healthz(url), 90, "duban serve evaluation")
        assert process.poll() is None, log.read_text(errors="replace")
        yield process, url, tmp_path / "data", log
    finally:
        helpers = children(process.pid)
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in helpers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()


async def cast_through_many_connections(url: str) -> tuple[str, list[int]]:
    """A session of two subjects; each evaluator's sheet on a connection of its own, and then
    each sends the same sheet again (on another new connection). Returns the session id and the
    status codes of the second sheets."""
    secret = Settings().jwt_secret
    staff = {"Authorization": "Bearer " + issue_token("committee-1", ["committee"], WENLING, secret=secret)}
    electorate = [f"deputy-{i:03d}" for i in range(EVALUATORS)]
    now = datetime.now(UTC)
    session = {
        "kind": "satisfaction",
        "title": "民生实事项目满意度测评",
        "subjects": [{"kind": "project", "id": f"p{i}", "title": f"民生实事项目{i}"} for i in range(2)],
        "electorate": electorate,
        "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(),
    }
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=staff) as http:
        created = await http.post("/sessions", json=session)
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        assert (await http.post(f"/sessions/{session_id}/open")).status_code == 200

    async def sheet(evaluator: str, option: str) -> int:
        token = issue_token(evaluator, ["evaluator"], WENLING, secret=secret)
        choices = [{"subject_id": "p0", "option": option}, {"subject_id": "p1", "option": "satisfied"}]
        # a new client each time: a new connection, which the kernel gives to either process
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            answer = await http.post(
                f"/sessions/{session_id}/ballots",
                json={"choices": choices},
                headers={"Authorization": f"Bearer {token}"},
            )
        return answer.status_code

    options = ["satisfied" if i % 4 else "dissatisfied" for i in range(EVALUATORS)]
    firsts = await asyncio.gather(*(sheet(e, option) for e, option in zip(electorate, options, strict=True)))
    assert firsts == [200] * EVALUATORS
    seconds = await asyncio.gather(*(sheet(e, "satisfied") for e in electorate))
    return session_id, seconds


def test_two_http_workers_answer_on_one_port_and_count_every_sheet_once(served):
    process, url, data_dir, log = served
    helpers = children(process.pid)
    assert len(helpers) == 1, helpers

    session_id, seconds = asyncio.run(cast_through_many_connections(url))
    assert seconds == [409] * EVALUATORS  # already voted, whichever process got the second sheet

    secret = Settings().jwt_secret
    staff = {"Authorization": "Bearer " + issue_token("committee-1", ["committee"], WENLING, secret=secret)}
    closed = httpx.post(f"{url}/sessions/{session_id}/close", headers=staff, timeout=30)
    assert closed.status_code == 200, closed.text
    results = httpx.get(f"{url}/sessions/{session_id}", headers=staff, timeout=30).json()["results"]
    by_subject = {r["subject"]["id"]: r for r in results}
    assert by_subject["p0"]["valid"] == by_subject["p1"]["valid"] == EVALUATORS
    assert by_subject["p0"]["counts"]["dissatisfied"] == EVALUATORS // 4
    assert by_subject["p1"]["counts"]["satisfied"] == EVALUATORS

    # Both processes answered: each wrote server spans to its own file (exported within ~5 s).
    traces = data_dir / "traces"
    first, helper = traces / f"evaluation-{WENLING}.jsonl", traces / f"evaluation-{WENLING}-1.jsonl"
    wait_for(lambda: server_spans(first) and server_spans(helper), 20, "server spans from both processes")
    print(f"requests answered: first process {server_spans(first)}, helper {server_spans(helper)}")

    # /status, whichever process answers it (a new connection each time), lists the projections.
    for _ in range(6):
        consumers = {c["consumer"] for c in httpx.get(f"{url}/status", timeout=10).json()["consumers"]}
        assert {"proj_evaluation_sessions", "proj_evaluation_turnout"} <= consumers, consumers

    # A helper killed is restarted, and serves again.
    os.kill(helpers[0], signal.SIGKILL)
    restarted = wait_for(lambda: [p for p in children(process.pid) if p != helpers[0] and alive(p)], 30, "a new helper")
    assert len(restarted) == 1

    # SIGTERM to the first process stops both.
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    wait_for(lambda: not alive(restarted[0]), 30, "the helper to stop with the first process")
    assert not healthz(url)
    assert "http helper exited, restarting" in log.read_text(errors="replace")  # what the operator sees


def test_a_helper_stops_by_itself_when_its_first_process_is_killed(served):
    process, url, _, _ = served
    helpers = children(process.pid)
    assert len(helpers) == 1
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    wait_for(lambda: not alive(helpers[0]), 30, "the orphaned helper to stop")
    wait_for(lambda: not healthz(url), 10, "nothing answering on the port")
