"""A served service while its nats-server is killed and started again on the same store.

``duban serve intake`` and ``duban serve tracking`` keep running: while NATS is away every API call
answers 503 with ``Retry-After`` and a Chinese message (never 500) and ``/readyz`` says why,
while ``/healthz`` (liveness) keeps answering; once NATS is back they answer normally within
10 s, without being restarted: reads of matters that exist and of ones that do not (404, as
before), new submissions, commands on existing matters, and the snapshot bucket (memory storage,
gone with the server) is there again; the read models list what was submitted after it within
10 s, although the pull requests their consumers had waiting (120 s here) went with the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest

from contracts import subjects
from services.runtime.http.auth import issue_token
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.runtime.tools.ports import free_port
from tests.support.processes import healthz, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
WENLING = "331081"


def serve(service: str, port: int, server: EmbeddedNats, data_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_") and k not in {"NATS_URL", "DATABASE_URL"}}
    env["DUBAN_DEV_SIGNIN"] = "true"  # the test's development tokens
    env.update(DUBAN_NATS_URL=server.url, DUBAN_DATA_DIR=str(data_dir), DUBAN_TRACE_FILES="false")
    # Idle pull requests linger 120 s (5 by default): the restarted server has lost them, and the
    # read models must catch up within 10 s all the same (the reconnection wakes the consumers).
    env["DUBAN_PULL_WAIT_S"] = "120"
    command = [sys.executable, "-m", "services.runtime.tools.cli", "serve", service, "--jurisdiction", WENLING]
    return subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def matter(n: int) -> dict:
    return {
        "matter": {
            "kind": "problem",
            "title": f"第{n}号企业诉求",
            "content": "园区道路破损，货车进出困难",
            "lead": {"id": "deputy-1", "name": "王代表"},
            "channel": "liaison_station",
            "raised_in": WENLING,
        }
    }


def test_while_nats_is_away_calls_answer_503_and_after_it_returns_they_work_again_without_a_restart(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    intake_url, tracking_url = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    processes = [
        serve("intake", int(intake_url.rsplit(":", 1)[1]), server, tmp_path / "data"),
        serve("tracking", int(tracking_url.rsplit(":", 1)[1]), server, tmp_path / "data"),
    ]
    secret = Settings().jwt_secret
    station = {"Authorization": f"Bearer {issue_token('station-1', ['liaison_station'], WENLING, secret=secret)}"}
    staff = {"Authorization": f"Bearer {issue_token('staff-1', ['committee'], WENLING, secret=secret)}"}
    intake = httpx.Client(base_url=intake_url, timeout=30)
    tracking = httpx.Client(base_url=tracking_url, timeout=30)
    try:
        wait_for(lambda: healthz(intake_url) and healthz(tracking_url), 60, "intake and tracking")
        wait_for(lambda: intake.get("/readyz").status_code == 200, 20, "intake ready")
        first = intake.post("/matters", json=matter(1), headers={**station, "Idempotency-Key": "k-1"})
        assert first.status_code == 201, first.text
        matter_id = first.json()["id"]
        assert intake.get(f"/matters/{matter_id}", headers=staff).status_code == 200  # a snapshot is now kept
        wait_for(lambda: len(intake.get("/matters", headers=staff).json()["items"]) == 1, 10, "the matter listed")
        time.sleep(1.0)  # every consumer idle, its pull request lingering at the server

        server.kill()
        wait_for(lambda: intake.get("/readyz").status_code == 503, 10, "intake to notice NATS is gone")
        answers = {
            "submit": intake.post("/matters", json=matter(2), headers={**station, "Idempotency-Key": "k-2"}),
            "read": intake.get(f"/matters/{matter_id}", headers=staff),
            "read unknown": intake.get("/matters/no-such-matter", headers=staff),
            "command": intake.post(f"/matters/{matter_id}/register", json={}, headers=staff),
            "list": intake.get("/matters", headers=staff),
            "tracking read": tracking.get(f"/cases/{matter_id}", headers=staff),
        }
        for what, answer in answers.items():
            assert answer.status_code == 503, (what, answer.status_code, answer.text)
            assert answer.headers["Retry-After"].isdigit(), what
            assert "暂时不可用" in answer.json()["detail"]["message"], what
        ready = intake.get("/readyz")
        assert ready.headers["Retry-After"].isdigit()
        assert [r["code"] for r in ready.json()["reasons"]] == ["nats_disconnected"]
        assert "消息总线" in ready.json()["reasons"][0]["message"]
        assert tracking.get("/readyz").status_code == 503
        assert intake.get("/healthz").status_code == 200  # alive: nothing to restart

        server.start()  # the same store, the same ports
        back = time.monotonic()
        wait_for(lambda: intake.get(f"/matters/{matter_id}", headers=staff).status_code == 200, 10, "a read")
        recovered = time.monotonic() - back
        assert intake.get("/matters/no-such-matter", headers=staff).status_code == 404
        retried = intake.post("/matters", json=matter(2), headers={**station, "Idempotency-Key": "k-2"})
        assert retried.status_code == 201, retried.text
        registered = intake.post(f"/matters/{matter_id}/register", json={}, headers=staff)
        assert registered.status_code == 200, registered.text
        assert intake.get("/readyz").json() == {"status": "ready"}
        wait_for(lambda: tracking.get("/readyz").status_code == 200, 10, "tracking ready")
        assert tracking.get("/cases/no-such-case", headers=staff).status_code == 404
        assert all(p.poll() is None for p in processes)  # the same processes, never restarted
        print(f"intake answered normally {recovered:.2f}s after nats-server was back")

        async def snapshot_bucket_messages() -> int:
            nc = await nats.connect(server.url)
            try:
                bucket = f"KV_{subjects.snapshot_bucket('intake', WENLING)}"  # intake wrote again
                return (await nc.jetstream().stream_info(bucket)).state.messages
            finally:
                await nc.close()

        wait_for(lambda: asyncio.run(snapshot_bucket_messages()) > 0, 10, "snapshots kept again")
        listed = intake.get("/matters", headers=staff, params={"limit": 50})
        wait_for(lambda: len(intake.get("/matters", headers=staff).json()["items"]) == 2, 10, "both matters listed")
        assert listed.status_code == 200
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        intake.close()
        tracking.close()
        server.stop()


def test_a_service_started_before_its_nats_server_waits_for_it_and_then_serves(tmp_path):
    server = EmbeddedNats(tmp_path / "nats")
    server.write_config()  # its ports are chosen now; it is started later
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = serve("intake", port, server, tmp_path / "data")
    try:
        time.sleep(3)  # a few failed connection attempts
        assert process.poll() is None, "intake gave up while NATS was not there yet"
        server.start()
        wait_for(lambda: healthz(url), 30, "intake serving once NATS is there")
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, 10, "intake ready")
        assert process.poll() is None
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        server.stop()


async def test_a_connection_closed_on_purpose_is_not_reported_as_reconnecting_and_a_lost_one_is(tmp_path, caplog):
    """nats-py calls the disconnected callback on a deliberate close too: a service stopping
    logs that its connection closed, not that it is reconnecting; a server killed under it is
    still reported (and the reconnection after)."""
    from services.runtime.bus.levels import connect

    caplog.set_level(logging.INFO, logger="duban.levels")
    server = EmbeddedNats(tmp_path / "nats").start()
    settings = Settings(jurisdiction=WENLING, nats_url=server.url)

    def said(message: str) -> int:
        return sum(1 for record in caplog.records if record.getMessage() == message)

    try:
        stopping = await connect(settings, "intake")
        await stopping.close()
        await asyncio.sleep(0.1)
        assert said("nats connection closed") == 1
        assert said("nats disconnected, reconnecting") == 0

        lost = await connect(settings, "intake")
        server.kill()
        for _ in range(100):
            if said("nats disconnected, reconnecting"):
                break
            await asyncio.sleep(0.05)
        assert said("nats disconnected, reconnecting") == 1
        server.start()  # the same port
        for _ in range(200):
            if said("nats reconnected"):
                break
            await asyncio.sleep(0.05)
        assert said("nats reconnected") == 1
        await lost.close()
        await asyncio.sleep(0.1)
        assert said("nats connection closed") == 2
        assert said("nats disconnected, reconnecting") == 1
    finally:
        server.stop()
