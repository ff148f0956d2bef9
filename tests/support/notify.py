"""Notify test helpers: a real SMTP server (aiosmtpd), a real webhook receiver (uvicorn) that
checks signatures, the services of a level on their own NATS, and a few principals.

Both receivers count what reached them, so tests assert on what was actually received, not on
what notify believes it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from contracts.envelope import utcnow
from contracts.intake import Channel, MatterData, MatterKind, RegisterMatter, RouteMatter, SubmitMatter, Submitter
from contracts.tracking import AssignCase, GiveCoUnitInput, GiveFeedback, SubmitReply, Unit
from services.intake.app import IntakeService
from services.notify.app import NotifyService
from services.notify.settings import NotifySettings
from services.runtime.http.auth import Principal, Role
from services.runtime.settings import Settings
from services.runtime.tools.nats_server import EmbeddedNats
from services.runtime.tools.ports import free_port
from services.tracking.app import TrackingService
from services.tracking.domain import Case
from tests.support.chinese_errors import OUTSIDE
from tests.support.clock import ManualClock
from tests.support.waiting import eventually

WEBHOOK_SECRET = "test-webhook-secret-不要外传"


# -- SMTP ----------------------------------------------------------------------------------------


@dataclass
class Mail:
    envelope_to: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]

    @property
    def delivery_id(self) -> str:
        return str(self.message["X-Duban-Delivery-Id"])


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        if self.sink.delay_s:
            await asyncio.sleep(self.sink.delay_s)
        with self.sink.lock:
            self.sink.mails.append(Mail(list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        return "250 Message accepted for delivery"


class SmtpSink:
    """An aiosmtpd server on a free port, in its own thread, keeping every message it accepts."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.mails: list[Mail] = []
        self.lock = threading.Lock()
        self.delay_s = delay_s
        self.port = free_port()
        self.controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def received(self) -> list[Mail]:
        with self.lock:
            return list(self.mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.received() if address in m.envelope_to]


# -- webhooks ------------------------------------------------------------------------------------


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Computed here from the documented rule, not with notify's own code."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass
class Endpoint:
    """How one path of the receiver answers: fail the first ``fail_first`` requests, or always."""

    fail_first: int = 0
    always_fail: bool = False
    status: int = 503
    delay_s: float = 0.0
    requests: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0


class WebhookReceiver:
    """A real HTTP server (uvicorn + Starlette) on a free port in the test's event loop."""

    def __init__(self, secret: str = WEBHOOK_SECRET) -> None:
        self.secret = secret
        self.port = free_port()
        self.endpoints: dict[str, Endpoint] = {}
        app = Starlette(routes=[Route("/hooks/{name}", self._receive, methods=["POST"])])
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="off")
        )
        self._task: asyncio.Task | None = None

    def url(self, name: str) -> str:
        self.endpoints.setdefault(name, Endpoint())
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def endpoint(self, name: str) -> Endpoint:
        return self.endpoints.setdefault(name, Endpoint())

    async def _receive(self, request: Request) -> JSONResponse:
        endpoint = self.endpoint(request.path_params["name"])
        body = await request.body()
        endpoint.requests += 1
        timestamp = request.headers.get("Duban-Timestamp", "")
        signature = request.headers.get("Duban-Signature", "")
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
        if not fresh or not hmac.compare_digest(expected_signature(self.secret, timestamp, body), signature):
            endpoint.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401, headers=OUTSIDE)
        if endpoint.delay_s:
            await asyncio.sleep(endpoint.delay_s)
        if endpoint.always_fail or endpoint.requests <= endpoint.fail_first:
            return JSONResponse({"error": "not now"}, status_code=endpoint.status, headers=OUTSIDE)
        document = json.loads(body)
        document["_delivery_header"] = request.headers.get("Duban-Delivery-Id")
        endpoint.accepted.append(document)
        return JSONResponse({"ok": True})

    async def __aenter__(self) -> WebhookReceiver:
        self._task = asyncio.create_task(self.server.serve())
        await eventually(self._started, timeout=10, interval=0.02)
        return self

    async def _started(self) -> bool:
        return self.server.started

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- services ------------------------------------------------------------------------------------


def notify_settings(code: str, nats_url: str, data_dir: Path, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "jurisdiction": code,
        "nats_url": nats_url,
        "data_dir": data_dir,
        "webhook_secret": WEBHOOK_SECRET,
        "retry_base_s": 0.05,
        "retry_max_s": 0.2,
        "delivery_attempts": 5,
        "send_ack_wait_s": 5,
        "summary_interval_s": 3600,
    } | overrides
    return NotifySettings(**values)


async def start_notify(settings: NotifySettings, **kwargs: Any) -> NotifyService:
    service = NotifyService(settings, **kwargs)
    await service.start(sweep=False)
    return service


def staff(code: str) -> Principal:
    return Principal(sub=f"committee-{code}", name="代表工委", roles=[Role.committee], jurisdiction=code)


def operator(code: str) -> Principal:
    return Principal(sub=f"operator-{code}", name="运维", roles=[Role.operator], jurisdiction=code)


def directory_file(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"recipients": entries}, ensure_ascii=False), encoding="utf-8")
    return path


# -- 温岭市 with intake, tracking and notify ------------------------------------------------------

WENLING = "331081"
WATER = Unit(id="unit-water", name="市农业农村和水利局")
HOUSING = Unit(id="unit-housing", name="市住房和城乡建设局")
MARKET = Unit(id="unit-market", name="市市场监管局")
DEPUTIES = [Submitter(id="deputy-1", name="王代表"), Submitter(id="deputy-2", name="李代表")]
TITLE = "农村饮水安全一户一表改造"


def deputy(s: Submitter) -> Principal:
    return Principal(sub=s.id, name=s.name, roles=[Role.deputy], jurisdiction=WENLING)


def unit(u: Unit) -> Principal:
    return Principal(sub=u.id, name=u.name, roles=[Role.unit], jurisdiction=WENLING)


def directory(receiver: WebhookReceiver) -> list[dict]:
    """温岭市's directory in the tests: the lead unit by e-mail, two units by webhook, the leader
    (found by name) by e-mail, one deputy by e-mail."""
    return [
        _unit(WATER, email="water@wl.example.cn", channels=["email", "inbox"]),
        _unit(HOUSING, webhook_url=receiver.url("housing"), channels=["webhook"]),
        _unit(MARKET, webhook_url=receiver.url("market"), channels=["webhook"]),
        {
            "id": "leader-chen",
            "name": "陈主任",
            "kind": "leader",
            "names": ["陈建国"],
            "email": "chen@wl.example.cn",
            "channels": ["email"],
        },
        {"id": "deputy-1", "name": "王代表", "email": "wang@wl.example.cn", "channels": ["email", "inbox"]},
    ]


def _unit(u: Unit, **values: Any) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "kind": "unit", **values}


class WenlingLevel:
    """Intake, tracking and notify of Wenling on one embedded NATS, with the receivers."""

    def __init__(
        self, tmp_path, nats: EmbeddedNats, smtp: SmtpSink, receiver: WebhookReceiver, **overrides: Any
    ) -> None:
        self.tmp_path, self.nats, self.smtp, self.receiver = tmp_path, nats, smtp, receiver
        self.clock = ManualClock(utcnow())
        base = Settings(jurisdiction=WENLING, nats_url=nats.url, data_dir=tmp_path / "data")
        self.tracking = TrackingService(base, clock=self.clock)
        self.intake = IntakeService(base)
        self.notify = None
        self.notify_settings = notify_settings(
            WENLING,
            nats.url,
            tmp_path / "data",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            directory_file=directory_file(tmp_path / "directory.json", directory(receiver)),
            **({"send_lease_s": 0.5} | overrides),
        )

    async def start(self) -> None:
        await self.tracking.start(sweep=False)
        await self.intake.start()
        await self.start_notify()

    async def start_notify(self) -> None:
        self.notify = await start_notify(self.notify_settings, clock=self.clock)

    async def stop_notify(self) -> None:
        await self.notify.stop()
        self.notify = None

    async def stop(self) -> None:
        for service in (self.notify, self.intake, self.tracking):
            if service is not None:
                await service.stop()

    async def idle(self) -> None:
        await self.intake.wait_idle()
        await self.tracking.wait_idle()
        if self.notify is not None:
            await self.notify.wait_idle()

    # -- the scenario, as people do it -----------------------------------------------------
    async def routed_suggestion(self, title: str = TITLE) -> str:
        matter = MatterData(
            kind=MatterKind.suggestion,
            title=title,
            content="建议加快推进农村饮水安全一户一表改造，解决山区群众饮水难。",
            lead=DEPUTIES[0],
            co_signers=[DEPUTIES[1]],
            channel=Channel.session,
            raised_in=WENLING,
        )
        raised = await self.intake.handlers.submit(SubmitMatter(matter=matter), deputy(DEPUTIES[0]))
        await self.intake.handlers.register(RegisterMatter(matter_id=raised.id), staff(WENLING))
        await self.intake.handlers.route(RouteMatter(matter_id=raised.id, committee="农业农村工委"), staff(WENLING))

        async def opened():
            await self.tracking.wait_idle()
            return (await self.tracking.handlers.store.last_sequence(raised.id)) > 0

        await eventually(opened)
        return raised.id

    async def assign(self, case_id: str, co_units: list[Unit]) -> None:
        command = AssignCase(
            case_id=case_id,
            lead_unit=WATER,
            co_units=co_units,
            committee="农业农村工委",
            leader="陈主任",
            key=True,
        )
        await self.tracking.handlers.assign(command, staff(WENLING))

    async def urge_overdue(self, case_id: str) -> None:
        case = await self.tracking.handlers.store.load(Case, case_id)
        self.due_on = case.deadline.due_on
        self.clock.set(case.deadline.due_at + timedelta(hours=1))
        await self.tracking.wait_idle()
        await self.tracking.sweeper.sweep_once(self.clock())

    async def closed_case(self, title: str, *, key: bool = True, close: bool = True) -> str:
        """A suggestion routed, assigned (a key item or not), answered A and, with both deputies
        satisfied, closed (办结)."""
        case_id = await self.routed_suggestion(title)
        command = AssignCase(
            case_id=case_id, lead_unit=WATER, committee="农业农村工委", leader="陈主任" if key else None, key=key
        )
        await self.tracking.handlers.assign(command, staff(WENLING))
        if close:
            await self.reply(case_id)
            for submitter in DEPUTIES:
                await self.tracking.handlers.feedback(
                    GiveFeedback(case_id=case_id, rating="satisfied"), deputy(submitter)
                )
        return case_id

    async def reply(self, case_id: str, co_units: list[Unit] = ()) -> None:
        for co in co_units:  # 会签 before the lead unit's reply
            command = GiveCoUnitInput(case_id=case_id, text="同意主办单位意见。", countersign=True)
            await self.tracking.handlers.co_unit_input(command, unit(co))
        text = "已将一户一表改造列入2026年民生实事项目，年底前完成山区12个村改造。"
        await self.tracking.handlers.reply(SubmitReply(case_id=case_id, reply_class="A", text=text), unit(WATER))


@contextlib.asynccontextmanager
async def wenling_level(tmp_path: Path, **overrides: Any):
    """温岭市's intake, tracking and notify on an embedded NATS of their own, with a real SMTP
    server and a real webhook receiver; ``overrides`` are notify settings."""
    nats = EmbeddedNats(tmp_path / "nats").start()
    try:
        with SmtpSink() as smtp:
            async with WebhookReceiver() as receiver:
                level = WenlingLevel(tmp_path, nats, smtp, receiver, **overrides)
                try:
                    await level.start()
                    yield level
                finally:
                    await level.stop()
    finally:
        nats.stop()


@contextlib.asynccontextmanager
async def wenling_level_taking_commands(tmp_path: Path, **overrides: Any):
    """:func:`wenling_level` with intake's NATS command subject, which public comments are
    submitted to."""
    from faststream.nats import NatsBroker

    from services.intake.commands_nats import register_command_subscriber

    async with wenling_level(tmp_path, **overrides) as running:
        broker = NatsBroker(running.nats.url)
        register_command_subscriber(broker, lambda: running.intake.handlers, running.notify_settings)
        await broker.start()
        try:
            yield running
        finally:
            await broker.stop()
