"""Notices over real channels, delivered at most once: intake, tracking and notify of 温岭市 on
their own NATS, a real SMTP server (aiosmtpd) and a real webhook receiver (uvicorn) that checks
every signature. The receivers count what reached them."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from nats.js.api import DeliverPolicy

from contracts import notify as n
from contracts import subjects
from services.notify import projections
from services.notify.domain import Delivery
from services.notify.texts import zh_date
from services.runtime.bus.deadletters import ATTEMPTS, ERROR, ORIGINAL_STREAM, ORIGINAL_SUBJECT, get_dead_letter
from services.runtime.tools.cli import main
from tests.support.notify import (
    HOUSING,
    MARKET,
    TITLE,
    WATER,
    WENLING,
    SmtpSink,
    eventually,
    wenling_level,
)


@pytest.fixture
async def level(tmp_path):
    async with wenling_level(tmp_path) as running:
        yield running


async def test_the_assignment_notice_reaches_a_real_smtp_server_in_correctly_encoded_chinese(level):
    case_id = await level.routed_suggestion()
    await level.assign(case_id, co_units=[])
    mails = await eventually(lambda: _mails(level.smtp, "water@wl.example.cn"))
    await level.idle()

    assert len(level.smtp.to("water@wl.example.cn")) == 1
    mail = mails[0]
    header = re.search(rb"^Subject: (.*(?:\r?\n[ \t].*)*)", mail.raw, re.MULTILINE).group(1)
    assert header.startswith(b"=?utf-8?"), header  # RFC 2047: the Chinese subject travels encoded
    assert mail.subject == f"【交办通知】{TITLE}"
    message = mail.message
    assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"
    body = mail.body
    assert body.startswith(f"{WATER.name}：")
    assert f"现将建议《{TITLE}》" in body and "交由你单位主办" in body
    assert "责任工委：农业农村工委" in body and "由陈主任领衔督办" in body
    assert "办理期限：" in body and "温岭市人大常委会" in body
    # the mailbox can tell it is this delivery, and notify recorded it delivered
    rows = await projections.list_deliveries(level.notify.engine, recipient_id=WATER.id, channel="email")
    assert [r["id"] for r in rows] == [mail.delivery_id] and rows[0]["status"] == "delivered"
    assert message["Message-ID"] == f"<{mail.delivery_id}@duban-{WENLING}>"
    # the lead unit's inbox has the same notice
    inbox = await projections.inbox(level.notify.engine, [WATER.id])
    assert [r["subject"] for r in inbox] == [f"【交办通知】{TITLE}"]


async def _mails(smtp: SmtpSink, address: str):
    return smtp.to(address)


async def test_a_webhook_failing_three_times_then_succeeding_gets_the_notice_once_with_valid_signatures(level):
    housing = level.receiver.endpoint("housing")
    housing.fail_first = 3
    case_id = await level.routed_suggestion()
    await level.assign(case_id, co_units=[HOUSING])

    async def accepted():
        return housing.accepted

    received = await eventually(accepted)
    await level.idle()
    assert housing.requests == 4  # three refusals, then taken
    assert housing.bad_signatures == 0
    assert len(housing.accepted) == 1
    notice = received[0]
    assert notice["kind"] == "assignment" and notice["recipient"] == {"id": HOUSING.id, "name": HOUSING.name}
    assert notice["subject"] == f"【交办通知】{TITLE}" and "交由你单位协办" in notice["body"]
    assert notice["data"]["case_id"] == case_id and notice["_delivery_header"] == notice["delivery_id"]
    delivery = await level.notify.store.load(Delivery, notice["delivery_id"])
    assert delivery.status == n.DeliveryStatus.delivered and delivery.attempts == 4


async def test_a_webhook_that_keeps_failing_ends_in_the_dead_letter_stream_and_a_replay_delivers_it_once(level, capsys):
    market = level.receiver.endpoint("market")
    market.always_fail = True
    market.status = 500
    case_id = await level.routed_suggestion()
    await level.assign(case_id, co_units=[MARKET])

    async def dead_lettered():
        rows = await projections.list_deliveries(level.notify.engine, recipient_id=MARKET.id)
        return rows if rows and rows[0]["status"] == "dead_lettered" else None

    rows = await eventually(dead_lettered)
    assert market.requests == level.notify_settings.delivery_attempts and market.bad_signatures == 0
    assert rows[0]["last_error"] == "webhook answered HTTP 500"

    js = level.notify.nc.jetstream()
    letter = await js.get_msg(subjects.deadletter_stream(WENLING), subject=f"duban.dlq.{WENLING}.notify.notify_send")
    delivery_id = rows[0]["id"]
    assert letter.headers[ORIGINAL_SUBJECT] == subjects.event_subject("notify", WENLING, delivery_id)
    assert letter.headers[ORIGINAL_STREAM] == subjects.event_stream("notify", WENLING)
    assert letter.headers[ATTEMPTS] == str(level.notify_settings.delivery_attempts)
    assert letter.headers[ERROR] == "webhook answered HTTP 500"

    # an operator sees it with `duban dead-letters list` (the command line, in its own thread and loop)
    url = level.notify_settings.nats_url
    listing = ["dead-letters", "list", "--jurisdiction", WENLING, "--nats", url, "--context", "notify", "--json"]
    assert await asyncio.to_thread(main, listing) == 0
    [listed] = [x for x in json.loads(capsys.readouterr().out) if x["sequence"] == letter.seq]
    assert listed["error"] == "webhook answered HTTP 500" and listed["consumer"] == "notify_send"

    # the receiver is fixed; `duban dead-letters replay` asks the service to handle it again: the
    # notice arrives once, and the dead letter is gone
    market.always_fail = False
    replay = ["dead-letters", "replay", str(letter.seq), "--jurisdiction", WENLING, "--nats", url]
    assert await asyncio.to_thread(main, replay) == 0, capsys.readouterr()
    assert json.loads(capsys.readouterr().out)["ok"] is True

    async def accepted():
        return market.accepted

    await eventually(accepted)
    await level.idle()
    assert len(market.accepted) == 1
    delivery = await level.notify.store.load(Delivery, delivery_id)
    assert delivery.status == n.DeliveryStatus.delivered
    assert await get_dead_letter(js, WENLING, letter.seq) is None


async def test_redelivering_every_event_and_restarting_mid_way_sends_no_notice_twice(level):
    case_id = await level.routed_suggestion()
    await level.assign(case_id, co_units=[HOUSING])
    await eventually(lambda: _mails(level.smtp, "water@wl.example.cn"))
    await level.idle()
    # notify restarts mid-way: what happens while it is down is noticed when it is back
    await level.stop_notify()
    await level.urge_overdue(case_id)
    await level.reply(case_id, [HOUSING])
    await level.start_notify()
    await level.idle()
    expected = {
        "water@wl.example.cn": 3,  # 交办, 到期提醒, 催办
        "chen@wl.example.cn": 2,  # 到期提醒 of a key item, 超期报领导督办
        "wang@wl.example.cn": 1,  # 答复通知
    }
    counts = {address: len(level.smtp.to(address)) for address in expected}
    assert counts == expected
    assert len(level.receiver.endpoint("housing").accepted) == 1
    subjects_to_chen = sorted(m.subject for m in level.smtp.to("chen@wl.example.cn"))
    assert subjects_to_chen == sorted(
        [f"【到期提醒】{TITLE}将于{_due(level)}到期", f"【重点督办】{TITLE}已超期，报请领衔督办"]
    )
    li = await projections.inbox(level.notify.engine, ["deputy-2"])
    assert [r["kind"] for r in li] == ["reply"]  # not in the directory: the in-app inbox

    # every event and every send request is handed to notify again, and notify restarts
    await level.stop_notify()
    js = level.tracking.nc.jetstream()
    for context in ("intake", "tracking", "evaluation"):
        await js.delete_consumer(subjects.event_stream(context, WENLING), f"notify_{context}_events")
    await js.delete_consumer(subjects.event_stream("notify", WENLING), "notify_send")
    await level.start_notify()
    await level.idle()
    info = await js.consumer_info(subjects.event_stream("tracking", WENLING), "notify_tracking_events")
    assert info.config.deliver_policy == DeliverPolicy.ALL and info.delivered.stream_seq > 0
    assert {address: len(level.smtp.to(address)) for address in expected} == expected
    assert len(level.receiver.endpoint("housing").accepted) == 1
    ids = [m.delivery_id for m in level.smtp.received()]
    assert len(ids) == len(set(ids))


def _due(level) -> str:
    return zh_date(level.due_on)
