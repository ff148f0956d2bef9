"""Notify's rules without servers: the delivery's at-most-once decisions, the webhook signature a
receiver checks, texts staff change without code, the example directory, month arithmetic."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from contracts.envelope import utcnow
from contracts.notify import (
    DeliveryAttempted,
    DeliveryDeadLettered,
    DeliveryFailed,
    DeliveryInDoubt,
    DeliveryPlanned,
    DeliveryReplayed,
    DeliveryStatus,
    NoticeChannel,
    NoticeDelivered,
    NoticeKind,
    Recipient,
    RecipientEntry,
    SourceEvent,
)
from services.notify.channels import sign, verify_signature
from services.notify.domain import Delivery, DirectoryEntry, month_bounds, previous_month
from services.notify.texts import Templates, zh_date
from services.runtime.es.aggregate import DomainError, NotAllowed

DATA = Path(__file__).parent.parent / "services" / "notify" / "data"


def planned(channel: NoticeChannel = NoticeChannel.email) -> DeliveryPlanned:
    return DeliveryPlanned(
        source=SourceEvent(event_id="e1", event_type="tracking.CaseAssigned", aggregate_id="c1", jurisdiction="331081"),
        kind=NoticeKind.assignment,
        recipient=Recipient(id="unit-water", name="市农业农村和水利局"),
        channel=channel,
        address="water@example.cn",
        subject="【交办通知】x",
        body="正文",
    )


def delivery(*events) -> Delivery:
    state = Delivery(id="d1", version=1)
    for event in events:
        state.apply(event)
    return state


def test_a_delivery_is_planned_once_and_an_inbox_notice_is_delivered_by_being_stored():
    assert delivery(planned()).plan(planned()) == []
    inbox = Delivery(id="d2").plan(planned(NoticeChannel.inbox))
    assert [type(e) for e in inbox] == [DeliveryPlanned, NoticeDelivered]


def test_a_send_is_recorded_before_it_starts_and_a_delivered_notice_is_never_sent_again():
    now = utcnow()
    fresh = delivery(planned()).on_request(7, now, "me", 60)
    assert fresh.action == "send" and [type(e) for e in fresh.events] == [DeliveryAttempted]
    sent = delivery(planned(), *fresh.events, NoticeDelivered(attempt=1))
    assert sent.on_request(7, now, "me", 60).action == "skip"
    assert sent.on_request(9, now, "me", 60, forced=True).action == "skip"  # even a replay


def test_an_attempt_without_an_outcome_waits_for_its_lease_then_is_in_doubt_not_resent():
    started = utcnow()
    sending = delivery(planned(), DeliveryAttempted(attempt=1, started_at=started, instance="crashed"))
    waiting = sending.on_request(7, started + timedelta(seconds=10), "me", 60)
    assert waiting.action == "wait" and 49 < waiting.wait_s <= 50
    doubt = sending.on_request(7, started + timedelta(seconds=61), "me", 60)
    assert doubt.action == "in_doubt" and doubt.events == () and "至多一次" in doubt.reason


def test_a_settled_delivery_is_sent_again_only_by_an_operators_replay():
    started = utcnow()
    settled = delivery(
        planned(),
        DeliveryAttempted(attempt=1, started_at=started, instance="x"),
        DeliveryInDoubt(attempt=1, reason="?", request_seq=7),
    )
    assert settled.status == DeliveryStatus.in_doubt
    assert settled.on_request(7, started, "me", 60).action == "skip"  # the late redelivery
    replay = settled.on_request(0, started, "me", 60, forced=True)
    assert replay.action == "send" and replay.attempt == 2
    assert [type(e) for e in replay.events] == [DeliveryReplayed, DeliveryAttempted]
    assert [type(e) for e in settled.replay("operator-1")] == [DeliveryReplayed]
    with pytest.raises(DomainError):
        delivery(planned()).replay("operator-1")  # nothing to replay


def test_failures_are_retried_and_dead_letters_settle_once():
    started = utcnow()
    failed = delivery(
        planned(),
        DeliveryAttempted(attempt=1, started_at=started, instance="x"),
        DeliveryFailed(attempt=1, error="webhook answered HTTP 503"),
    )
    again = failed.on_request(7, started, "me", 60)
    assert again.action == "send" and again.attempt == 2
    dead = delivery(*[planned()], DeliveryDeadLettered(attempts=5, error="HTTP 500", request_seq=7))
    assert dead.dead_lettered("HTTP 500", 7) == [] and dead.in_doubt(5, "?", 7) == []


def test_only_the_recipient_marks_an_inbox_notice_read():
    notice = delivery(planned(NoticeChannel.inbox), NoticeDelivered(attempt=0))
    with pytest.raises(NotAllowed):
        notice.read("unit-housing", {"unit-housing", "role:unit"})
    assert len(notice.read("unit-water", {"unit-water"})) == 1


def test_the_webhook_signature_is_an_hmac_of_timestamp_and_body_that_a_receiver_can_check():
    body = '{"subject":"【交办通知】"}'.encode()
    stamp = int(time.time())
    signature = sign("key", stamp, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("key", str(stamp), body, signature)
    assert not verify_signature("other", str(stamp), body, signature)
    assert not verify_signature("key", str(stamp), body + b" ", signature)
    assert not verify_signature("key", str(stamp - 600), body, sign("key", stamp - 600, body))  # too old


def test_staff_change_a_notice_text_without_code(tmp_path):
    context = {
        "case": {"title": "道路", "registration_no": None, "due_on": "2026-12-24", "lead_unit": {"name": "交通局"}},
        "recipient": {"id": "unit-traffic", "name": "交通局"},
        "role": "lead",
        **_signed_by_the_congress(),
        "today": date(2026, 12, 20),
    }
    subject, body = Templates().notice("reminder", context)
    assert subject == "【到期提醒】道路将于2026年12月24日到期" and body.endswith("2026年12月20日\n")
    (tmp_path / "reminder.j2").write_text(
        "{% block subject %}请注意：{{ case.title }}{% endblock %}{% block body %}{{ recipient.name }}，"
        "{{ case.due_on | zh_date }}到期。{% endblock %}",
        encoding="utf-8",
    )
    assert Templates(tmp_path).notice("reminder", context) == ("请注意：道路", "交通局，2026年12月24日到期。\n")
    assert (
        Templates(tmp_path)
        .notice("assignment", context | {"case": context["case"] | _assigned()})[0]
        .startswith("【交办通知】")
    )  # the others stay as packaged


def _signed_by_the_congress() -> dict:
    """What the planner gives every notice of 温岭市's congress (``NoticePlanner.common``)."""
    return {
        "level_name": "温岭市",
        "organ": "温岭市人大常委会",
        "organ_short": "温岭市人大常委会",
        "body_name": "人大",
        "committee_term": "工委",
        "committee_office": "温岭市人大常委会相关工委",
        "salutation": "尊敬的代表",
    }


def _assigned() -> dict:
    return {
        "kind_name": "建议",
        "co_units": [],
        "committee": "城建环资工委",
        "key": False,
        "leader": None,
        "deadline_rule": "3个月",
        "return_until": "2026-10-04T00:00:00+00:00",
    }


def test_the_example_directory_reads_and_a_file_edit_takes_effect_only_when_the_file_changed():
    document = json.loads((DATA / "directory.example.json").read_text(encoding="utf-8"))
    entries = [RecipientEntry.model_validate(raw) for raw in document["recipients"]]
    assert {e.id for e in entries} >= {"role:committee", "party-committee"}
    entry = entries[0]
    state = DirectoryEntry(id="k")
    [recorded] = state.record(entry, "file", "digest-1")
    state.apply(recorded)
    state.version = 1
    edited = entry.model_copy(update={"email": "new@example.cn"})
    state.apply(state.record(edited, "api")[0])
    assert state.record(entry, "file", "digest-1") == []  # same file at the next start: the edit stays
    assert len(state.record(entry, "file", "digest-2")) == 1  # the file changed: it applies


def test_months_and_dates_as_people_read_them():
    assert month_bounds("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert month_bounds("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))
    assert previous_month(date(2026, 1, 10)) == "2025-12"
    assert zh_date("2026-10-02T16:30:00+00:00") == "2026年10月3日"  # 00:30 in Asia/Shanghai


def test_the_assignment_notice_says_both_of_its_last_days_the_same_way(tmp_path):
    """办理期限 is the last day of the reply; the return window ends at an instant (2026-10-04
    08:00 in Asia/Shanghai is its 00:00 UTC): its last day is 10月4日 only if it ends after 00:00."""
    context = {
        "recipient": {"id": "unit-traffic", "name": "交通局"},
        "case": {"title": "道路", "registration_no": None, "due_on": "2026-12-24", "lead_unit": {"name": "交通局"}}
        | _assigned(),
        "role": "lead",
        **_signed_by_the_congress(),
        "today": date(2026, 9, 24),
    }
    _, body = Templates().notice("assignment", context)
    assert "办理期限：2026年12月24日（含当日）前" in body
    assert "请于2026年10月4日（含当日）前说明理由申请退回" in body  # ends 10-04 08:00 Shanghai
    ends_at_midnight = context | {"case": context["case"] | {"return_until": "2026-10-03T16:00:00+00:00"}}
    assert "请于2026年10月3日（含当日）前说明理由申请退回" in Templates().notice("assignment", ends_at_midnight)[1]
