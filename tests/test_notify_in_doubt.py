"""At most once when the outcome of a send is unknown: a send cut off by a restart, or a webhook
that took the notice but answered too late, is not sent again by itself. The delivery is settled
in doubt and dead-lettered with the reason; an operator who has checked replays it."""

from __future__ import annotations

import asyncio

import pytest

from contracts import notify as n
from contracts import subjects
from contracts.notify import ReplayDelivery
from services.notify import projections
from services.notify.domain import Delivery
from services.runtime.bus.deadletters import ERROR, ORIGINAL_SUBJECT
from services.runtime.tools.nats_server import EmbeddedNats
from tests.support.notify import (
    HOUSING,
    WATER,
    WENLING,
    SmtpSink,
    WebhookReceiver,
    WenlingLevel,
    eventually,
    operator,
)


@pytest.fixture
def nats(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    yield server
    server.stop()


async def _delivery_of(level: WenlingLevel, recipient: str, channel: str) -> str:
    async def planned():
        rows = await projections.list_deliveries(level.notify.engine, recipient_id=recipient, channel=channel)
        return rows[0]["id"] if rows else None

    return await eventually(planned)


async def _status(level: WenlingLevel, delivery_id: str, status: n.DeliveryStatus) -> Delivery | None:
    delivery = await level.notify.store.load(Delivery, delivery_id)
    return delivery if delivery.status == status else None


async def test_a_send_cut_off_by_a_restart_is_not_sent_again_but_left_in_doubt_for_an_operator(tmp_path, nats):
    with SmtpSink(delay_s=1.5) as smtp:  # a slow mail server: the restart comes mid-conversation
        async with WebhookReceiver() as receiver:
            level = WenlingLevel(tmp_path, nats, smtp, receiver, send_lease_s=0.3)
            await level.start()
            try:
                case_id = await level.routed_suggestion()
                await level.assign(case_id, co_units=[])
                delivery_id = await _delivery_of(level, WATER.id, "email")
                sending = await eventually(lambda: _status(level, delivery_id, n.DeliveryStatus.sending))
                first_instance = sending.attempt_instance

                await level.notify.halt()  # a crash mid-send: the attempt is recorded, its outcome never
                await level.start_notify()
                settled = await eventually(lambda: _status(level, delivery_id, n.DeliveryStatus.in_doubt))
                assert settled.attempts == 1 and "无法确定是否已送达" in settled.last_error
                # (no waiting for every consumer to be idle here: messages the crashed process had
                # fetched come back only after their ack wait, as after a real crash)
                await asyncio.sleep(2.0)  # longer than the server's delay: anything still coming has come
                received = len(smtp.to("water@wl.example.cn"))
                assert received <= 1  # cut off mid-conversation: it may or may not have got there, never twice
                assert (await level.notify.store.load(Delivery, delivery_id)).attempts == 1  # not tried again
                assert first_instance != level.notify.dispatcher.instance

                js = level.notify.nc.jetstream()
                letter = await js.get_msg(
                    subjects.deadletter_stream(WENLING), subject=f"duban.dlq.{WENLING}.notify.notify_send"
                )
                assert letter.headers[ORIGINAL_SUBJECT] == subjects.event_subject("notify", WENLING, delivery_id)
                assert "not resent (at most once)" in letter.headers[ERROR]
                rows = await projections.list_deliveries(level.notify.engine, status="in_doubt")
                assert [r["id"] for r in rows] == [delivery_id]

                # the operator checked with the unit: it did not arrive; replay sends it once more
                smtp.delay_s = 0
                await level.notify.handlers.replay(ReplayDelivery(delivery_id=delivery_id), operator(WENLING))
                await eventually(lambda: _status(level, delivery_id, n.DeliveryStatus.delivered))
                assert len(smtp.to("water@wl.example.cn")) == received + 1
            finally:
                await level.stop()


async def test_a_webhook_that_answers_too_late_is_not_called_again(tmp_path, nats):
    with SmtpSink() as smtp:
        async with WebhookReceiver() as receiver:
            receiver.endpoint("housing").delay_s = 1.0
            level = WenlingLevel(tmp_path, nats, smtp, receiver, webhook_timeout_s=0.3)
            await level.start()
            try:
                case_id = await level.routed_suggestion()
                await level.assign(case_id, co_units=[HOUSING])
                delivery_id = await _delivery_of(level, HOUSING.id, "webhook")
                settled = await eventually(lambda: _status(level, delivery_id, n.DeliveryStatus.in_doubt))
                assert "webhook gave no answer" in settled.last_error
                await asyncio.sleep(1.5)
                await level.idle()
                housing = receiver.endpoint("housing")
                assert housing.requests == 1  # it got the notice (late): no second call
                assert len(housing.accepted) == 1 and housing.bad_signatures == 0
            finally:
                await level.stop()
